"""The demo page's layout in a real Chromium, on a desktop and on a phone-sized screen.

What is checked is what a person sees: computed styles and boxes, not attributes.
Before sign-in only the sign-in card shows (no empty chat below it); the header
stays on one or two lines; a name of only spaces gets a message; in a long
conversation only the message list scrolls, the header, the lists and the
composer stay on screen. Each test saves screenshots to artifacts/browser/
(git-ignored) for people to look at.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.seed import seed_lobby
from tests.browser.support import ARTIFACTS, Browser, ChatServer, Page
from tests.browser.test_demo_page import sign_in, wait_for_texts

# A desktop window, and a phone held upright (an iPhone 12-15 is 390 CSS px wide).
VIEWPORTS = {"desktop": (1280, 800), "phone": (390, 844)}
# The header may wrap once on a phone (badge below the title), never more.
MAX_HEADER_LINES = 2

# How the page shows an element: its computed display and its box.
SHOWN = """(selector) => {
  const element = document.querySelector(selector);
  const box = element.getBoundingClientRect();
  return { display: getComputedStyle(element).display, width: box.width, height: box.height };
}"""
# The header's lines of text: flex items share a line when their text lines are
# centred on the same height (align-items: center), so count the distinct centres.
HEADER_LINES = """() => {
  const centres = [];
  const walker = document.createTreeWalker(document.querySelector('header'), NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const range = document.createRange();
    range.selectNodeContents(walker.currentNode);
    for (const rect of range.getClientRects()) {
      if (rect.width > 0) centres.push(rect.top + rect.height / 2);
    }
  }
  const lines = [];
  for (const centre of centres.sort((a, b) => a - b)) {
    if (lines.length === 0 || centre - lines[lines.length - 1] > 4) lines.push(centre);
  }
  return lines.length;
}"""


def shown(box: dict[str, Any]) -> bool:
    return bool(box["display"] != "none" and box["width"] > 0 and box["height"] > 0)


async def open_demo(browser: Browser, server: ChatServer, viewport: str) -> Page:
    page = await browser.page(viewport, viewport=VIEWPORTS[viewport])
    await page.goto(server.url + "/")
    return page


@pytest.mark.parametrize("viewport", sorted(VIEWPORTS))
async def test_before_sign_in_only_the_sign_in_card_shows(
    browser: Browser, chat_server: ChatServer, viewport: str
) -> None:
    chat_server.start()
    page = await open_demo(browser, chat_server, viewport)
    assert shown(await page.eval(SHOWN, "#sign-in-panel"))
    # The chat below it is not laid out at all: no blank sidebar, no composer.
    for hidden in ("#chat", "#composer", "#conversations", "#whoami"):
        box = await page.eval(SHOWN, hidden)
        assert not shown(box), (hidden, box)
    width, _ = VIEWPORTS[viewport]
    await page.screenshot(ARTIFACTS / f"demo-sign-in-{width}.png")
    assert await page.eval(HEADER_LINES) <= MAX_HEADER_LINES

    # Signed in, the card goes and the chat shows; the header, now with the
    # name and the connection state, still fits on at most two lines.
    await page.fill("#name", "Alexandra Featherstonehaugh")
    await page.click("#sign-in")
    await page.wait_for("() => document.querySelector('#state').dataset.state === 'online'"
                        " && document.querySelector('#conversation-title').textContent")
    assert not shown(await page.eval(SHOWN, "#sign-in-panel"))
    assert shown(await page.eval(SHOWN, "#chat"))
    assert shown(await page.eval(SHOWN, "#composer"))
    await page.screenshot(ARTIFACTS / f"demo-chat-{width}.png")
    assert await page.eval(HEADER_LINES) <= MAX_HEADER_LINES


async def test_a_name_of_only_spaces_is_answered_with_a_message(
    browser: Browser, chat_server: ChatServer
) -> None:
    chat_server.start()
    page = await open_demo(browser, chat_server, "phone")
    await page.fill("#name", "   ")
    await page.click("#sign-in")
    message = await page.wait_for("() => document.querySelector('#sign-in-error').textContent")
    assert "name" in message.lower()
    assert shown(await page.eval(SHOWN, "#sign-in-error"))
    # Nothing was asked of the server, and the form can be used again at once.
    assert not [url for url in await page.requests() if url.endswith("/dev/token")]
    assert await page.eval("() => document.querySelector('#sign-in').disabled") is False
    await page.screenshot(ARTIFACTS / "demo-blank-name-390.png")
    # A real name afterwards signs in, and the message goes.
    await page.fill("#name", "Alice")
    await page.click("#sign-in")
    await page.wait_for("() => window.demo.me && window.demo.me.name === 'Alice'")
    assert await page.eval("() => document.querySelector('#sign-in-error').textContent") == ""


# Where the page's parts are, and what scrolls: the window, and the message list.
GEOMETRY = """() => {
  const box = (selector) => {
    const rect = document.querySelector(selector).getBoundingClientRect();
    return { top: rect.top, bottom: rect.bottom, height: rect.height };
  };
  const list = document.querySelector('#messages');
  return {
    pageHeight: document.scrollingElement.scrollHeight, scrollY: window.scrollY,
    list: { scrollHeight: list.scrollHeight, clientHeight: list.clientHeight },
    parts: Object.fromEntries(['header', '#conversation-title', '#conversations', '#online',
      '#composer', '#send'].map((selector) => [selector, box(selector)])),
  };
}"""
# Enough messages to fill the list several times over, on either screen.
LONG_CONVERSATION = 30


@pytest.mark.parametrize("viewport", sorted(VIEWPORTS))
async def test_in_a_long_conversation_only_the_message_list_scrolls(
    browser: Browser, chat_server: ChatServer, viewport: str
) -> None:
    chat_server.start()
    texts = [f"message {number} of a long conversation"
             for number in range(1, LONG_CONVERSATION + 1)]
    await seed_lobby(chat_server, "Carol", texts)
    page = await browser.page(viewport, viewport=VIEWPORTS[viewport])
    await sign_in(page, chat_server, "Alice")
    await wait_for_texts(page, texts[-1])
    width, height = VIEWPORTS[viewport]

    def on_screen(geometry: dict[str, Any]) -> None:
        # The page is the window's height: there is nothing for the window to scroll...
        assert geometry["pageHeight"] <= height, geometry
        assert geometry["scrollY"] == 0
        # ...the message list scrolls instead, and every other part is on screen.
        assert geometry["list"]["scrollHeight"] > geometry["list"]["clientHeight"], geometry
        for part, box in geometry["parts"].items():
            assert box["height"] > 0 and box["top"] >= 0 and box["bottom"] <= height, (part, box)

    on_screen(await page.eval(GEOMETRY))
    # The newest message is in view, above the composer.
    newest = await page.eval(
        "() => { const items = document.querySelectorAll('#messages li[data-id]');"
        " const rect = items[items.length - 1].getBoundingClientRect();"
        " const list = document.querySelector('#messages').getBoundingClientRect();"
        " return rect.bottom <= list.bottom + 1 && rect.top >= list.top; }")
    assert newest is True
    await page.screenshot(ARTIFACTS / f"demo-long-conversation-{width}.png")

    # A person scrolls (the wheel over the page, the list to its top): the header and
    # the composer stay where they were; only the list moved.
    await page.eval("() => { window.scrollTo(0, 100000);"
                    " document.querySelector('#messages').scrollTop = 0; }")
    on_screen(await page.eval(GEOMETRY))
    assert await page.eval("() => document.querySelector('#messages').scrollTop") == 0
    await page.screenshot(ARTIFACTS / f"demo-long-conversation-top-{width}.png")
