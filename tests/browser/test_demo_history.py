"""The demo page shows the state of history, not only live events: a page loaded
after a reaction and a read shows the 👍 count and "Seen by" from the REST page
and the join (docs/protocol.md, "History with its state"). It shows all of it, not
only the newest page: scrolling the list to its top loads the page before."""

from __future__ import annotations

from tests.browser.seed import seed_lobby
from tests.browser.support import ARTIFACTS, Browser, ChatServer, Page
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


SHOWN_TEXTS = """() => [...document.querySelectorAll('#messages li.message[data-id] .text')]
  .map((element) => element.textContent)"""
# Scroll the list to its top, as a person does; where the message `text` is then,
# from the list's top edge (px).
SCROLL_TO_TOP = """(text) => {
  const list = document.querySelector('#messages');
  list.scrollTop = 0;
  return window.offsetOf(text);
}"""
OFFSET_OF = """() => { window.offsetOf = (text) => {
  const list = document.querySelector('#messages');
  const item = [...list.querySelectorAll('li[data-id]')]
    .find((li) => li.querySelector('.text').textContent === text);
  return item.getBoundingClientRect().top - list.getBoundingClientRect().top;
}; }"""
EDGE = "() => getComputedStyle(document.querySelector('#messages'), '::before').content"
# 120 messages: the newest page of 50, then 50 more, then the first 20.
OLD_MESSAGES = 120
PAGE = 50


async def wait_for_count(page: Page, count: int) -> list[str]:
    texts: list[str] = await page.wait_for(
        f"() => {{ const texts = ({SHOWN_TEXTS})(); return texts.length === {count} && texts; }}")
    return texts


async def test_scrolling_to_the_top_loads_older_pages_in_place_until_the_first_message(
    browser: Browser, chat_server: ChatServer
) -> None:
    chat_server.start()
    texts = [f"old message {number}" for number in range(1, OLD_MESSAGES + 1)]
    await seed_lobby(chat_server, "Carol", texts)
    page = await browser.page("alice", viewport=(1280, 800))
    await sign_in(page, chat_server, "Alice")
    # The newest page only, at first.
    assert await wait_for_count(page, PAGE) == texts[-PAGE:]
    await page.eval(OFFSET_OF)

    # To the top: the page before comes in above, and what was on top stays where it
    # was on the screen (the list does not jump to the new first message).
    top = texts[-PAGE]
    before = await page.eval(SCROLL_TO_TOP, top)
    assert await wait_for_count(page, 2 * PAGE) == texts[-2 * PAGE:]
    after = await page.eval("(text) => window.offsetOf(text)", top)
    assert abs(after - before) <= 2, (before, after)
    assert await page.eval("() => document.querySelector('#messages').scrollTop") > 0

    # Again: the first 20, and the list says it starts there.
    await page.eval(SCROLL_TO_TOP, texts[-2 * PAGE])
    assert await wait_for_count(page, OLD_MESSAGES) == texts
    await page.wait_for(f"() => ({EDGE})() === '\"Start of the conversation\"'")
    # Nothing older: another scroll to the top asks nothing more.
    await page.eval(SCROLL_TO_TOP, texts[0])
    await page.eval("() => new Promise((resolve) => setTimeout(resolve, 300))")
    older = [url for url in await page.requests() if "/messages?" in url and "before=" in url]
    assert len(older) == 2, older
    assert await page.eval(SHOWN_TEXTS) == texts
    await page.screenshot(ARTIFACTS / "demo-history-start-1280.png")
    assert await page_errors(page) == []
