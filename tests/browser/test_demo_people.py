"""Who the demo page says is there: "Seen by" names the readers it knows and counts
the others (never an id), takes the names a server lists with a join or a history
page (`members`) when it sends them; and the online list shows as stale, not green,
while the page is disconnected, and is asked anew on reconnect."""

from __future__ import annotations

import re
from typing import Any

from tests.browser.support import ARTIFACTS, Browser, ChatServer, Page
from tests.browser.test_demo_page import (
    ONLINE_ENTRIES,
    STATE_IS,
    page_errors,
    send,
    shown,
    sign_in,
    wait_for_texts,
)

SEEN_BY = "(id) => document.querySelector(`#messages li[data-id='${id}'] .seen-by`).textContent"
ONLINE_NAMES = f"""() => [...document.querySelectorAll('{ONLINE_ENTRIES}')]
  .map((li) => li.textContent)"""
# Bob's 👍 (through ChatManager: this test is about names, not the picker).
BOB_REACTS = """([conversationId, messageId]) =>
  window.demo.manager.react(conversationId, messageId, '👍')"""
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
# Where the online list stands: stale or not, its note, its entries and their dots.
ONLINE_LIST = f"""() => {{
  const list = document.querySelector('#online');
  const entries = [...document.querySelectorAll('{ONLINE_ENTRIES}')];
  return {{
    stale: list.classList.contains('stale'),
    note: list.querySelector('li.note')?.textContent ?? null,
    count: document.querySelector('#online-count').textContent,
    names: entries.map((li) => li.textContent),
    dots: entries.map((li) => getComputedStyle(li, '::before').backgroundColor),
  }};
}}"""
GREEN = "rgb(22, 163, 74)"  # demo.css --ok


async def wait_for_seen(page: Page, message_id: int, text: str) -> None:
    await page.wait_for(f"(id) => ({SEEN_BY})(id) === {text!r}", message_id)


async def test_seen_by_counts_readers_it_has_no_name_for_and_never_shows_an_id(
    browser: Browser, chat_server: ChatServer
) -> None:
    chat_server.start()
    # Alice's page hears no `members` from the server (one from before the field, or
    # a member it has no name for): it knows names from messages and presence only.
    alice = await browser.page("alice", blockable=True)
    await alice.strip_members(True)
    bob, carol = [await browser.page(name) for name in ("bob", "carol")]
    await sign_in(alice, chat_server, "Alice")
    bob_me = await sign_in(bob, chat_server, "Bob")
    await sign_in(carol, chat_server, "Carol")
    await send(alice, "who saw this?")
    for page in (bob, carol):
        await wait_for_texts(page, "who saw this?")
    [message] = await shown(alice)
    lobby = await alice.eval("() => window.demo.active")
    await bob.eval(BOB_REACTS, [lobby, message["id"]])
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

    # A server that lists the members with the join (simulated on the page, over what
    # the wire brings): their names come from there.
    await alice.eval(WITH_MEMBERS, [
        {"userId": bob_me["userId"], "name": "Bob", "role": "member"},
    ])
    await alice.eval("() => { window.demo.manager._socket.io.engine.close(); }")  # rejoins
    heard: list[dict[str, Any]] = await alice.wait_for(
        "() => window.membersHeard.length > 0 && window.membersHeard")
    assert heard[0] == {"conversationId": lobby,
                        "members": [{"userId": bob_me["userId"], "name": "Bob", "role": "member"}]}
    await wait_for_seen(alice, message["id"], "Seen by Bob, Carol")
    # ...and with a history page.
    await alice.eval(f"() => window.demo.manager.history({lobby}, {{ limit: 1 }})")
    await alice.wait_for("() => window.membersHeard.length >= 2")
    await alice.wait_for(STATE_IS, ["online"])
    assert await page_errors(alice) == [] and await page_errors(carol) == []


async def test_while_disconnected_the_online_list_is_stale_and_is_asked_anew_on_reconnect(
    browser: Browser, chat_server: ChatServer
) -> None:
    chat_server.start()
    query = "reconnectDelayMax=1000&fallbackAfterErrors=1000"  # the socket only
    alice = await browser.page("alice", viewport=(1280, 800))
    phone = await browser.page("bob", viewport=(390, 844))
    carol = await browser.page("carol")
    await sign_in(alice, chat_server, "Alice", query)
    await sign_in(phone, chat_server, "Bob", query)
    await sign_in(carol, chat_server, "Carol", query)
    every = ["Alice (you)", "Bob", "Carol"]
    await alice.wait_for(f"() => ({ONLINE_NAMES})().join() === {','.join(every)!r}")
    live = await alice.eval(ONLINE_LIST)
    assert live["stale"] is False and live["note"] is None and live["count"] == "(3)"
    assert live["dots"] == [GREEN] * 3

    chat_server.stop()
    for page in (alice, phone):
        await page.wait_for(STATE_IS, ["offline"])
        stale = await page.eval(ONLINE_LIST)
        # Who was online last: still listed, greyed, and the list says it is offline.
        assert stale["stale"] is True, stale
        assert stale["note"] == "offline — reconnecting…", stale
        assert stale["count"] == "(last known)"
        # (all three, unless the server said someone went offline as it shut down)
        assert "Alice (you)" in stale["names"] or "Bob (you)" in stale["names"], stale
        assert set(stale["names"]) <= set(every) | {"Alice", "Bob (you)"}, stale
        assert stale["dots"] and GREEN not in stale["dots"], stale
    await alice.screenshot(ARTIFACTS / "demo-online-stale-1280.png")
    await phone.screenshot(ARTIFACTS / "demo-online-stale-390.png")

    # Carol goes while the server is down; back up, the list is asked anew.
    await carol.goto("about:blank")
    chat_server.start()
    for page, expected in ((alice, ["Alice (you)", "Bob"]), (phone, ["Alice", "Bob (you)"])):
        await page.wait_for(STATE_IS, ["online"], timeout_ms=15000)
        await page.wait_for(f"() => ({ONLINE_NAMES})().join() === {','.join(expected)!r}",
                            timeout_ms=15000)
        fresh = await page.eval(ONLINE_LIST)
        assert fresh["stale"] is False and fresh["note"] is None and fresh["count"] == "(2)"
        assert fresh["dots"] == [GREEN] * 2
    await alice.screenshot(ARTIFACTS / "demo-online-again-1280.png")
    assert await page_errors(alice) == [] and await page_errors(phone) == []
