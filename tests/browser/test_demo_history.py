"""The demo page shows the state of history, not only live events: a page loaded
after a reaction and a read shows the 👍 count and "Seen by" from the REST page
and the join (docs/protocol.md, "History with its state")."""

from __future__ import annotations

from tests.browser.support import Browser, ChatServer, Page
from tests.browser.test_demo_page import (
    alice_and_bob,
    page_errors,
    react,
    send,
    shown,
    sign_in,
    wait_for_texts,
)


def chip(message_id: int, emoji: str) -> str:
    return f"#messages li[data-id='{message_id}'] .reaction[data-emoji='{emoji}']"


def seen_by(message_id: int) -> str:
    return f"#messages li[data-id='{message_id}'] .seen-by"


async def wait_for_state(page: Page, message_id: int, count: str, seen: str) -> None:
    await page.wait_for(
        f"""() => document.querySelector("{chip(message_id, '👍')}")?.dataset.count === '{count}'
            && document.querySelector("{seen_by(message_id)}")?.textContent === '{seen}'""")


async def test_a_page_loaded_after_a_reaction_and_a_read_shows_them_from_history(
    browser: Browser, chat_server: ChatServer
) -> None:
    alice, bob = await alice_and_bob(browser, chat_server)
    await send(alice, "react to me")
    await wait_for_texts(bob, "react to me")
    [message] = await shown(bob)
    # Bob's page has the message in view, so it reads it; then Bob clicks 👍.
    await react(bob, message["id"], "👍")
    await wait_for_state(alice, message["id"], "1", "Seen by Bob")  # live, on Alice's page

    # Carol arrives after both: her page learns them from history alone.
    carol = await browser.page("carol")
    await sign_in(carol, chat_server, "Carol")
    await wait_for_texts(carol, "react to me")
    await wait_for_state(carol, message["id"], "1", "Seen by Bob")
    # Carol's page read it too (live on Alice's page); Alice reloads hers: the same.
    await wait_for_state(alice, message["id"], "1", "Seen by Bob, Carol")
    await sign_in(alice, chat_server, "Alice")
    await wait_for_texts(alice, "react to me")
    await wait_for_state(alice, message["id"], "1", "Seen by Bob, Carol")
    for page in (alice, bob, carol):
        assert await page_errors(page) == []
