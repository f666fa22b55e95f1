"""Who the demo page says is there: "Seen by" names the readers it knows and counts
the others (never an id), and takes the names a server lists with a join or a
history page (`members`) when it sends them."""

from __future__ import annotations

import re
from typing import Any

from tests.browser.support import ARTIFACTS, Browser, ChatServer, Page
from tests.browser.test_demo_page import (
    ONLINE_ENTRIES,
    STATE_IS,
    page_errors,
    react,
    send,
    shown,
    sign_in,
    wait_for_texts,
)

SEEN_BY = "(id) => document.querySelector(`#messages li[data-id='${id}'] .seen-by`).textContent"
ONLINE_NAMES = f"""() => [...document.querySelectorAll('{ONLINE_ENTRIES}')]
  .map((li) => li.textContent)"""
# A server that lists the members with its join acks and history pages (the field
# the server is adding): each of ChatManager's transports answers with `members` added.
WITH_MEMBERS = """(members) => {
  const manager = window.demo.manager;
  for (const transport of [manager._sockets, manager._http]) {
    const call = transport.call.bind(transport);
    transport.call = async (name, ...rest) => {
      const reply = await call(name, ...rest);
      const listed = name === 'conversation:join' || name === 'messages:history';
      return listed ? { ...reply, members } : reply;
    };
  }
  window.membersHeard = [];
  manager.on('members', (event) => window.membersHeard.push(event));
}"""


async def wait_for_seen(page: Page, message_id: int, text: str) -> None:
    await page.wait_for(f"(id) => ({SEEN_BY})(id) === {text!r}", message_id)


async def test_seen_by_counts_readers_it_has_no_name_for_and_never_shows_an_id(
    browser: Browser, chat_server: ChatServer
) -> None:
    chat_server.start()
    alice, bob, carol = [await browser.page(name) for name in ("alice", "bob", "carol")]
    await sign_in(alice, chat_server, "Alice")
    bob_me = await sign_in(bob, chat_server, "Bob")
    await sign_in(carol, chat_server, "Carol")
    await send(alice, "who saw this?")
    for page in (bob, carol):
        await wait_for_texts(page, "who saw this?")
    [message] = await shown(alice)
    await react(bob, message["id"], "👍")
    await wait_for_seen(alice, message["id"], "Seen by Bob, Carol")

    # Bob leaves (he never wrote anything); Carol stays online.
    await bob.goto("about:blank")
    await alice.wait_for(f"() => !({ONLINE_NAMES})().includes('Bob')")
    # Alice's page loads again: Bob's read and reaction come from history, but no
    # message and no presence says his name. He is counted, not shown as his id.
    await sign_in(alice, chat_server, "Alice")
    await wait_for_texts(alice, "who saw this?")
    await wait_for_seen(alice, message["id"], "Seen by Carol and 1 other")
    chip_title = await alice.eval(
        f"() => document.querySelector(\"#messages li[data-id='{message['id']}']"
        " .reaction[data-emoji='👍']\").title")
    assert chip_title == "1 person"
    assert str(bob_me["userId"]) not in await alice.eval("() => document.body.innerText")
    assert not re.search(r"user \d", await alice.eval("() => document.body.innerText"))
    await alice.screenshot(ARTIFACTS / "demo-seen-by-unknown-1100.png")

    # A server that lists the members with the join: their names come from there.
    await alice.eval(WITH_MEMBERS, [
        {"userId": bob_me["userId"], "name": "Bob", "role": "member"},
    ])
    await alice.eval("() => window.demo.manager._socket.io.engine.close()")  # rejoins
    heard: list[dict[str, Any]] = await alice.wait_for(
        "() => window.membersHeard.length > 0 && window.membersHeard")
    lobby = await alice.eval("() => window.demo.active")
    assert heard[0] == {"conversationId": lobby,
                        "members": [{"userId": bob_me["userId"], "name": "Bob", "role": "member"}]}
    await wait_for_seen(alice, message["id"], "Seen by Bob, Carol")
    # ...and with a history page.
    await alice.eval(f"() => window.demo.manager.history({lobby}, {{ limit: 1 }})")
    await alice.wait_for("() => window.membersHeard.length >= 2")
    await alice.wait_for(STATE_IS, ["online"])
    assert await page_errors(alice) == [] and await page_errors(carol) == []
