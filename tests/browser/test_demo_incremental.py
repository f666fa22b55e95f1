"""The demo page renders a conversation incrementally: a new message is one node
inserted at its place by server id (one that comes out of order too), and a
reaction or a receipt touches only the nodes it is about; the nodes already shown
stay the same nodes. Watched with a MutationObserver on the message list."""

from __future__ import annotations

from typing import Any

from tests.browser.support import Browser, ChatServer, Page
from tests.browser.test_demo_page import (
    alice_and_bob,
    page_errors,
    react,
    send,
    shown,
    wait_for_texts,
)

# Records what changes under #messages from now on: nodes added or removed at the
# list's level, and which message nodes (by text) had anything inside them change.
WATCH = """() => {
  const list = document.querySelector('#messages');
  window.watched = { before: [...list.children], added: [], removed: 0, touched: new Set() };
  window.watcher?.disconnect();
  window.watcher = new MutationObserver((records) => {
    for (const record of records) {
      if (record.target === list) {
        for (const node of record.addedNodes) {
          window.watched.added.push(node.querySelector('.text').textContent);
        }
        window.watched.removed += record.removedNodes.length;
      } else {
        const item = record.target.closest ? record.target.closest('#messages > li')
          : record.target.parentElement.closest('#messages > li');
        if (item) window.watched.touched.add(item.querySelector('.text').textContent);
      }
    }
  });
  window.watcher.observe(list,
    { childList: true, subtree: true, characterData: true, attributes: true });
}"""
WATCHED = """() => {
  const list = document.querySelector('#messages');
  const { before, added, removed, touched } = window.watched;
  const kept = before.filter((node) => node.parentElement === list);
  return { added, removed, touched: [...touched].sort(), kept: kept.length, before: before.length };
}"""
# A message the server never sent, between two that it did: as one that arrives late.
LATE = """({ id, conversationId }) => window.demo.manager._dispatch('message:new', {
  id, messageId: 'late-one', conversationId, userId: 'someone', senderName: 'Late',
  text: 'late one', createdAt: new Date().toISOString() })"""


async def watched(page: Page) -> dict[str, Any]:
    await page.eval("() => new Promise((resolve) => setTimeout(resolve, 50))")  # observer ran
    result: dict[str, Any] = await page.eval(WATCHED)
    return result


async def test_messages_insert_one_node_at_their_place_and_updates_touch_only_theirs(
    browser: Browser, chat_server: ChatServer
) -> None:
    alice, bob = await alice_and_bob(browser, chat_server)
    for text in ("one", "two", "three"):
        await send(alice, text)
        await wait_for_texts(bob, text)
    one, two, _three = await shown(bob)
    await bob.wait_for("() => document.querySelector('#messages li .seen-by') !== null")

    # A new message: one node added at the end, nothing else rebuilt.
    await bob.eval(WATCH)
    await send(alice, "four")
    await wait_for_texts(bob, "four")
    change = await watched(bob)
    assert change["added"] == ["four"] and change["removed"] == 0
    assert change["kept"] == change["before"] == 3

    # One that arrives out of order goes to its place, the others left as they were.
    await bob.eval(WATCH)
    conversation_id = await bob.eval("() => window.demo.active")
    await bob.eval(LATE, {"id": one["id"] + 0.5, "conversationId": conversation_id})
    await wait_for_texts(bob, "late one")
    assert [m["text"] for m in await shown(bob)] == ["one", "late one", "two", "three", "four"]
    change = await watched(bob)
    assert change["added"] == ["late one"] and change["removed"] == 0 and change["kept"] == 4

    # A reaction on "two": only its node changes.
    await alice.eval(WATCH)
    await react(bob, two["id"], "👍")
    chip = f"#messages li[data-id='{two['id']}'] .reaction[data-emoji='👍']"
    await alice.wait_for(f"() => document.querySelector(\"{chip}\")?.dataset.count === '1'")
    change = await watched(alice)
    assert change["touched"] == ["two"] and change["added"] == [] and change["removed"] == 0

    # Bob has read up to "four": Alice's "Seen by Bob" sits there. Alice sends again;
    # once Bob reads it the receipt moves: the two nodes it moves between, nothing else.
    seen = "(id) => document.querySelector(`#messages li[data-id='${id}'] .seen-by`).textContent"
    four = (await shown(alice))[-1]
    await alice.wait_for(f"(id) => ({seen})(id) === 'Seen by Bob'", four["id"])
    await alice.eval(WATCH)
    await send(alice, "five")
    await wait_for_texts(bob, "five")
    five = (await shown(alice))[-1]
    await alice.wait_for(f"(id) => ({seen})(id) === 'Seen by Bob'", five["id"])
    assert await alice.eval(seen, four["id"]) == ""
    change = await watched(alice)
    # Alice's own: its pending node (its status changes in place), then the stored one
    # in its place.
    assert change["added"] == ["five", "five"] and change["removed"] == 1
    assert set(change["touched"]) <= {"four", "five"} and "four" in change["touched"]
    assert change["kept"] == change["before"]
    assert await page_errors(alice) == [] and await page_errors(bob) == []
