"""ChatManager in Chromium after a join the server cut at REPLAY_MAX_MESSAGES
(issue 25, point 4): the answer says `resync: true` and `replayedUpTo`, and the
manager pages the rest from REST history, so the page ends up with every message,
once each and in order, a live one that came during the paging included (held
until the history before it was delivered)."""

from __future__ import annotations

from typing import Any

from tests.browser.support import Browser, ChatServer
from tests.browser.test_demo_page import page_errors, store_behind_the_servers_back

CAP = 50
SEEDED = 620  # the cap, then two REST pages of 500 at most
LIVE = "live, sent while Bob pages history"

TOKENS = """async () => {
  const token = async (name) => (await (await fetch('/dev/token', { method: 'POST',
    headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name }) })).json());
  const alice = await token('Alice');
  const bob = await token('Bob');
  return { lobby: bob.lobby.conversationId, alice: alice.token, bob: bob.token };
}"""

# Bob joins with since 0. His manager's fetch sends Alice's live message once the
# first history page has been answered, and lets it arrive before going on.
JOIN = """async ({ lobby, alice, bob, live }) => {
  const { ChatManager } = await import('/client/chat-manager.js');
  const sender = new ChatManager({ token: alice });
  await sender.connect();
  window.historyUrls = [];
  const paced = async (url, init) => {
    const response = await fetch(url, init);
    if (String(url).includes('/messages?since=')) {
      window.historyUrls.push(String(url));
      if (window.historyUrls.length === 1) {
        await sender.send(lobby, live);
        await new Promise((resolve) => setTimeout(resolve, 300));
      }
    }
    return response;
  };
  const manager = new ChatManager({ token: bob, fetch: paced });
  window.got = [];
  manager.on('message', (message) => window.got.push({ id: message.id, text: message.text }));
  const joins = [];
  await manager.connect();
  // (socket.timeout(ms) returns the socket itself: its emitWithAck is the join's)
  const emit = manager._socket.emitWithAck.bind(manager._socket);
  manager._socket.emitWithAck = async (...args) => {
    const reply = await emit(...args);
    if (args[0] === 'conversation:join') joins.push(reply);
    return reply;
  };
  await manager.join(lobby, { since: 0 });
  return { got: window.got, urls: window.historyUrls, joins };
}"""


async def test_after_a_capped_join_chat_manager_pages_the_rest_from_history_in_order(
    browser: Browser, chat_server: ChatServer
) -> None:
    chat_server.env.update(REPLAY_MAX_MESSAGES=str(CAP))
    chat_server.start()
    page = await browser.page("bob")
    await page.goto(f"{chat_server.url}/")
    tokens = await page.eval(TOKENS)
    texts = [f"seeded {number}" for number in range(SEEDED)]
    store_behind_the_servers_back(chat_server.workdir / "chat.db", tokens["lobby"], texts)

    result: dict[str, Any] = await page.eval(JOIN, {**tokens, "live": LIVE})

    [join] = result["joins"]
    assert join["ok"] and join["resync"] is True
    got = result["got"]
    assert [m["text"] for m in got] == [*texts, LIVE]  # all of them, once each, in order
    ids = [m["id"] for m in got]
    assert ids == sorted(set(ids))
    assert join["replayedUpTo"] == ids[CAP - 1]  # the replay stopped at the cap
    # History was paged from where the replay stopped.
    assert f"since={join['replayedUpTo']}&" in result["urls"][0]
    assert len(result["urls"]) >= 2
    assert await page_errors(page) == []
