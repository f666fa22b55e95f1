"""A refused sign-in on the demo page says why: the reason the server gave for
refusing the token ("bad signature", ...), not ChatManager's "cannot start:
unauthorized"; and the form can be used again."""

from __future__ import annotations

import time

import jwt

from tests.browser.support import ARTIFACTS, Browser, ChatServer
from tests.browser.test_demo_page import STATE_IS

SIGN_IN_ERROR = "() => document.querySelector('#sign-in-error').textContent"
# /dev/token's tokens with their signature replaced: each one the server refuses.
FORGE_DEV_TOKENS = """() => {
  const fetch = window.fetch;
  window.fetch = async (input, init) => {
    const response = await fetch(input, init);
    if (!String(input).endsWith('/dev/token') || !response.ok) return response;
    const login = await response.json();
    const [header, claims] = login.token.split('.');
    login.token = `${header}.${claims}.${'A'.repeat(43)}`;
    return new Response(JSON.stringify(login), { status: 200,
      headers: { 'Content-Type': 'application/json' } });
  };
}"""


async def test_a_pasted_token_the_server_refuses_shows_its_reason(
    browser: Browser, chat_server: ChatServer
) -> None:
    chat_server.start()
    page = await browser.page("phone", viewport=(390, 844))
    await page.goto(chat_server.url + "/")
    forged = jwt.encode({"sub": "42", "name": "Mallory", "exp": int(time.time()) + 3600},
                        "not-the-secret-of-this-server-but-as-long-as-one", algorithm="HS256")
    await page.click("#sign-in-panel summary")
    await page.fill("#token", forged)
    await page.click("#token-form button")
    message = await page.wait_for(SIGN_IN_ERROR)
    assert message == "The server refused the sign-in: bad signature (AUTH_FAILED)"
    assert await page.eval(STATE_IS, ["unauthorized"]) is not False
    assert await page.eval("() => document.querySelector('#chat').hidden") is True
    await page.screenshot(ARTIFACTS / "demo-sign-in-refused-390.png")


async def test_a_dev_sign_in_whose_token_is_refused_shows_the_reason_and_can_be_retried(
    browser: Browser, chat_server: ChatServer
) -> None:
    chat_server.start()
    page = await browser.page("desktop", viewport=(1280, 800))
    await page.goto(chat_server.url + "/")
    await page.eval(FORGE_DEV_TOKENS)
    await page.fill("#name", "Alice")
    await page.click("#sign-in")
    # ChatManager asks getToken (/dev/token) for a new token after each refusal, a few
    # times; then it gives up with the server's reason.
    message = await page.wait_for(SIGN_IN_ERROR, timeout_ms=20000)
    assert message == "The server refused the sign-in: bad signature (AUTH_FAILED)"
    assert await page.eval("() => document.querySelector('#sign-in').disabled") is False
    await page.screenshot(ARTIFACTS / "demo-sign-in-refused-1280.png")

    # Tokens the server accepts again: the same form signs in, the message goes.
    await page.goto(chat_server.url + "/")
    await page.fill("#name", "Alice")
    await page.click("#sign-in")
    await page.wait_for("() => window.demo.me && window.demo.me.name === 'Alice'")
    assert await page.eval(SIGN_IN_ERROR) == ""
