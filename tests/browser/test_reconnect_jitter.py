"""A fleet of ChatManagers in a real Chromium comes back from a server restart spread out.

One page imports /client/chat-manager.js and starts FLEET managers, each its own demo
user (POST /dev/token), all online on the server as a process. The server restarts
(SIGTERM closes every transport, as a deploy does; the same port and database), and
each manager's socket.io-client reconnects after its own jittered delay: the first
attempts after the drop spread over the jitter's range instead of landing in one
instant, and so do the moments the managers are back online.
"""

from __future__ import annotations

from typing import Any

from tests.browser.support import Browser, ChatServer

FLEET = 12
RECONNECT_DELAY_MS = 1000
JITTER = 0.5
# setTimeout in a busy page fires late, never early; this much late is allowed.
TIMER_SLACK_MS = 250
# With FLEET delays drawn from ±50 % of 1 s, the chance that all fall within 200 ms
# of one another is below 1e-8; without jitter they all fall within a few ms.
MIN_SPREAD_MS = 200

START_FLEET = """async ({ count, options }) => {
  const { ChatManager } = await import('/client/chat-manager.js');
  window.fleet = [];
  for (let i = 0; i < count; i += 1) {
    const response = await fetch('/dev/token', { method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: `Fleet ${i}` }) });
    const { token } = await response.json();
    const manager = new ChatManager({ token, fallbackAfterErrors: 1000, fallbackAfterMs: 600000,
      ...options });
    const entry = { manager, drops: [], attempts: [], online: [] };
    manager.on('state', ({ state }) => {
      if (state === 'online') entry.online.push(performance.now());
    });
    window.fleet.push(entry);
    await manager.connect();
    manager._socket.on('disconnect', () => entry.drops.push(performance.now()));
    manager._socket.io.on('reconnect_attempt', () => entry.attempts.push(performance.now()));
  }
  return window.fleet.map(({ manager }) => ({
    jitter: manager._socket.io.randomizationFactor(),
    delay: manager._socket.io.reconnectionDelay(),
    delayMax: manager._socket.io.reconnectionDelayMax(),
  }));
}"""

# (A manager is 'online' again on an upgrade from polling to websocket: the first
# 'online' after the drop is the one that counts.)
ALL_BACK = """() => {
  const back = (entry) => entry.online.find((time) => time > entry.drops[0]);
  return window.fleet.every((entry) => entry.drops.length >= 1 && back(entry) !== undefined)
    && window.fleet.map((entry) => ({ drop: entry.drops[0], firstAttempt: entry.attempts[0],
      back: back(entry) }));
}"""

OPTION_ERRORS = """async () => {
  const { ChatManager } = await import('/client/chat-manager.js');
  const refusal = (options) => {
    try {
      new ChatManager({ token: 'x', ...options });
      return null;
    } catch (error) {
      return `${error.name}: ${error.message}`;
    }
  };
  return [refusal({ reconnectJitter: 0 }), refusal({ socketOptions: { randomizationFactor: 0 } }),
    refusal({ reconnectJitter: 1 }), refusal({ reconnectJitter: '0.5' }), refusal({})];
}"""

RETRY_DELAYS = """() => window.fleet.map(({ manager }) =>
  [1, 2, 3].map((failures) => manager._retryDelay(failures)))"""


async def test_a_fleet_of_pages_reconnects_after_a_restart_spread_out_not_in_lock_step(
    browser: Browser, chat_server: ChatServer
) -> None:
    chat_server.start()
    page = await browser.page("fleet")
    await page.goto(f"{chat_server.url}/")
    settings = await page.eval(START_FLEET, {"count": FLEET, "options": {}})
    # socket.io-client runs with ChatManager's documented defaults.
    assert settings == [{"jitter": JITTER, "delay": RECONNECT_DELAY_MS, "delayMax": 5000}] * FLEET

    chat_server.stop()
    chat_server.start()
    timings: list[dict[str, Any]] = await page.wait_for(ALL_BACK, timeout_ms=30000)

    first = [t["firstAttempt"] - t["drop"] for t in timings]
    low, high = RECONNECT_DELAY_MS * (1 - JITTER), RECONNECT_DELAY_MS * (1 + JITTER)
    assert all(low - 1 <= delay <= high + TIMER_SLACK_MS for delay in first), first
    assert max(first) - min(first) >= MIN_SPREAD_MS, first
    back = [t["back"] for t in timings]
    assert max(back) - min(back) >= MIN_SPREAD_MS, back


async def test_chat_managers_own_retry_delays_differ_between_pages_and_jitter_cannot_be_off(
    browser: Browser, chat_server: ChatServer
) -> None:
    chat_server.start()
    page = await browser.page("fleet")
    await page.goto(f"{chat_server.url}/")
    settings = await page.eval(START_FLEET, {"count": FLEET, "options": {
        "reconnectJitter": 0.3, "reconnectDelayMs": 400, "maxReconnectDelayMs": 2000}})
    assert settings == [{"jitter": 0.3, "delay": 400, "delayMax": 2000}] * FLEET

    # Retries of sends, joins and HTTP calls (500 ms doubling) are jittered by ± 30 %.
    delays: list[list[int]] = await page.eval(RETRY_DELAYS)
    for failures, base in enumerate((500, 1000, 2000)):
        column = [row[failures] for row in delays]
        assert all(base * 0.7 - 1 <= delay <= base * 1.3 + 1 for delay in column), column
        assert len(set(column)) > FLEET // 2, column

    # No jitter is refused at once, with the reason.
    refusals = await page.eval(OPTION_ERRORS)
    assert refusals[:4] == [
        f"RangeError: reconnectJitter (socket.io's randomizationFactor) must be above 0 and "
        f"below 1, not {value}: without it every page reconnects in the same instant after "
        "a server restart" for value in ("0", "0", "1", "0.5")]
    assert refusals[4] is None
