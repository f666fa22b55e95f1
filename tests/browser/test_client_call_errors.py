"""ChatManager's calls fail the same way: an acknowledgement that never comes is a
ChatError('OFFLINE') from every call, presence included (issue 26's review: it
escaped from requestPresence as socket.io's plain timeout Error)."""

from __future__ import annotations

from tests.browser.support import Browser, ChatServer

# The socket's ack never comes: socket.io's timeout() rejects emitWithAck with a plain
# Error("operation has timed out"), as it does when the server does not answer.
NO_ACK = """async () => {
  const { ChatManager, ChatError } = await import('/client/chat-manager.js');
  const login = await (await fetch('/dev/token', {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'Ann' }),
  })).json();
  const manager = new ChatManager({ token: login.token });
  await manager.connect();
  manager._socket.timeout = () => ({
    emitWithAck: async () => { throw new Error('operation has timed out'); },
  });
  const outcome = async (call) => {
    try { await call(); return 'resolved'; }
    catch (error) { return { chatError: error instanceof ChatError, code: error.code }; }
  };
  return {
    presence: await outcome(() => manager.requestPresence()),
    react: await outcome(() => manager.react(login.lobby.conversationId, 1, '👍')),
  };
}"""


async def test_a_missing_acknowledgement_is_a_chat_error_from_request_presence_too(
    browser: Browser, chat_server: ChatServer
) -> None:
    chat_server.start()
    page = await browser.page("ann")
    await page.goto(f"{chat_server.url}/")
    result = await page.eval(NO_ACK)
    offline = {"chatError": True, "code": "OFFLINE"}
    assert result == {"presence": offline, "react": offline}
