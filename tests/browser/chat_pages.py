"""ChatManager driven directly in a Chromium page, without the demo page: each page
signs in with POST /dev/token, makes one manager with the options the test gives, and
writes down every event the manager emits, in order. The tests of the client's own
calls and events use it (test_client_message_changes.py and the two after it)."""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from typing import Any

from tests.browser.support import Browser, BrowserError, ChatServer, Page

# The events written down, in the order they come.
EVENTS = [
    "state", "message", "outgoing", "resync", "conversationUpdated", "conversationRemoved",
    "messageUpdated", "messageDeleted", "messagePinned", "messageUnpinned",
    "memberAdded", "memberRemoved", "memberUpdated", "removed",
]

# Fast reconnects, so a test's unblocked page is back within a second or so.
QUICK = {"reconnectDelayMs": 200, "maxReconnectDelayMs": 1000, "retryDelayMs": 200,
         "maxRetryDelayMs": 1000}

START = """async ({ name, options, events }) => {
  const { ChatManager, ChatError } = await import('/client/chat-manager.js');
  const login = await (await fetch('/dev/token', {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name }),
  })).json();
  const manager = new ChatManager({ token: login.token, ...options });
  const heard = [];
  for (const event of events) manager.on(event, (data) => heard.push({ event, data }));
  window.chat = { manager, heard, ChatError, calls: {}, asked: [] };
  await manager.connect();
  // What the manager asked of the server on the socket, whichever engine transport
  // carried it (socket.timeout(ms) is the socket itself: its emitWithAck is this).
  const socket = manager._socket;
  const emitWithAck = socket.emitWithAck.bind(socket);
  socket.emitWithAck = (event, data) => {
    window.chat.asked.push({ event, data });
    return emitWithAck(event, data);
  };
  return { userId: login.userId, lobby: login.lobby.conversationId };
}"""

# A manager method's outcome: its value, or what it threw.
CALL = """async ({ method, args }) => {
  try {
    const value = await window.chat.manager[method](...args);
    return { ok: true, value: value === undefined ? null : value };
  } catch (error) {
    return { ok: false, chatError: error instanceof window.chat.ChatError, code: error.code,
             message: String(error.message) };
  }
}"""

# Start a call and keep its promise (a queued send, say), to await it later by key.
START_CALL = """({ key, method, args }) => {
  const chat = window.chat;
  chat.calls[key] = chat.manager[method](...args).then(
    (value) => ({ ok: true, value: value === undefined ? null : value }),
    (error) => ({ ok: false, chatError: error instanceof chat.ChatError, code: error.code,
                  message: String(error.message) }));
  return true;
}"""
SETTLED = "async (key) => window.chat.calls[key]"

HEARD = """({ event, count }) => {
  const found = window.chat.heard.filter((item) => item.event === event).map((item) => item.data);
  return found.length >= count && found;
}"""
ALL_HEARD = "() => window.chat.heard"
ASKED = """(event) => window.chat.asked.filter((item) => item.event === event)
  .map((item) => item.data)"""
MESSAGE = """(text) => {
  const found = window.chat.heard.find(
    (item) => item.event === 'message' && item.data.text === text);
  return found ? found.data : false;
}"""
STATE = "(states) => states.includes(window.chat.manager.state) && window.chat.manager.state"
# The network goes: the connection there is closed (block() keeps new ones out), and
# socket.io-client starts reconnecting, as after a dropped connection.
DROP = "() => { window.chat.manager._socket.io.engine.close(); return true; }"


def dev_login(server: ChatServer, name: str) -> Any:
    """POST /dev/token from the test: a user who exists without a page."""
    request = urllib.request.Request(
        f"{server.url}/dev/token", data=json.dumps({"name": name}).encode(),
        headers={"content-type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


@dataclass
class ChatPage:
    page: Page
    user_id: Any
    lobby: int

    async def call(self, method: str, *args: Any) -> Any:
        """The manager's method, which must succeed: its value."""
        outcome = await self.page.eval(CALL, {"method": method, "args": list(args)})
        if not outcome["ok"]:
            raise BrowserError(f"{method}{tuple(args)!r} failed: {outcome}")
        return outcome["value"]

    async def refused(self, method: str, *args: Any) -> str:
        """The manager's method, which must reject with a ChatError: its code."""
        outcome = await self.page.eval(CALL, {"method": method, "args": list(args)})
        assert not outcome["ok"], f"{method}{tuple(args)!r} succeeded: {outcome}"
        assert outcome["chatError"], f"{method} threw something else than a ChatError: {outcome}"
        code: str = outcome["code"]
        return code

    async def start(self, key: str, method: str, *args: Any) -> None:
        """Call without waiting (it may be queued): `settled(key)` awaits it."""
        await self.page.eval(START_CALL, {"key": key, "method": method, "args": list(args)})

    async def settled(self, key: str) -> Any:
        outcome: Any = await self.page.eval(SETTLED, key)
        return outcome

    async def heard(self, event: str, count: int = 1) -> list[Any]:
        """The first `count` (or more) payloads of `event`, waiting for them."""
        found: list[Any] = await self.page.wait_for(HEARD, {"event": event, "count": count})
        return found

    async def heard_so_far(self, event: str) -> list[Any]:
        found = await self.page.eval(HEARD, {"event": event, "count": 0})
        return list(found or [])

    async def all_heard(self) -> list[dict[str, Any]]:
        heard: list[dict[str, Any]] = await self.page.eval(ALL_HEARD)
        return heard

    async def asked(self, event: str) -> list[Any]:
        """The payloads of `event` the manager emitted on its socket, in order."""
        found: list[Any] = await self.page.eval(ASKED, event)
        return found

    async def message(self, text: str) -> Any:
        """The `message` event with that text, waiting for it."""
        return await self.page.wait_for(MESSAGE, text)

    async def go_away(self) -> None:
        """No /socket.io/ gets through from now, and the socket there is cut."""
        await self.page.block(websocket=True, polling=True)
        await self.page.eval(DROP)

    async def come_back(self) -> None:
        await self.page.block(websocket=False, polling=False)

    async def state_is(self, *states: str) -> str:
        state: str = await self.page.wait_for(STATE, list(states))
        return state


async def open_chat(
    browser: Browser, server: ChatServer, name: str, http: bool = False, **options: Any
) -> ChatPage:
    """A page with one ChatManager, connected: on the socket, or with `http` on the HTTP
    fallback (its /socket.io/ blocked from the start). Every page can be blocked later."""
    page = await browser.page(name, blockable=True)
    if http:
        await page.block(websocket=True, polling=True)
        options = {"fallbackAfterErrors": 2, **options}
    await page.goto(f"{server.url}/health")
    started = await page.eval(START, {"name": name, "options": {**QUICK, **options},
                                      "events": EVENTS})
    chat = ChatPage(page, started["userId"], started["lobby"])
    assert await chat.state_is("fallback" if http else "online")
    return chat


async def alice_and_bob(
    browser: Browser, server: ChatServer, title: str, **alice_options: Any
) -> tuple[ChatPage, ChatPage, int]:
    """The server started; Alice (with these options) and Bob on the socket, both
    joined to a new conversation Bob made with her (Bob is its owner)."""
    server.start()
    alice = await open_chat(browser, server, "Alice", **alice_options)
    bob = await open_chat(browser, server, "Bob")
    conversation: int = (await bob.call("createConversation", title, [alice.user_id]))["id"]
    await alice.call("join", conversation)
    await bob.call("join", conversation)
    return alice, bob, conversation


async def page_errors(chat: ChatPage) -> list[str]:
    return [line for line in await chat.page.logs() if line.startswith("pageerror")]
