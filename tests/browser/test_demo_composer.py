"""Writing on the demo page: the composer takes several lines (Enter sends,
Shift+Enter starts a new line) and a message shows its line breaks."""

from __future__ import annotations

from typing import Any

from tests.browser.support import ARTIFACTS, Browser, ChatServer, Page
from tests.browser.test_demo_page import alice_and_bob, page_errors, shown, wait_for_texts

# How many lines the text of the message `text` takes on the screen: its line boxes,
# counted by their distinct heights (as test_demo_layout counts the header's lines).
LINES_OF = """(text) => {
  const item = [...document.querySelectorAll('#messages li[data-id]')]
    .find((li) => li.querySelector('.text').textContent === text);
  const range = document.createRange();
  range.selectNodeContents(item.querySelector('.text'));
  const tops = [...range.getClientRects()].filter((rect) => rect.width > 0)
    .map((rect) => Math.round(rect.top));
  return new Set(tops).size;
}"""
COMPOSER = """() => {
  const composer = document.querySelector('#composer');
  return { tag: composer.tagName, value: composer.value,
    height: composer.getBoundingClientRect().height };
}"""


async def composer(page: Page) -> dict[str, Any]:
    state: dict[str, Any] = await page.eval(COMPOSER)
    return state


async def test_shift_enter_starts_a_new_line_enter_sends_and_the_lines_show(
    browser: Browser, chat_server: ChatServer
) -> None:
    alice, bob = await alice_and_bob(browser, chat_server)
    empty = await composer(alice)
    assert empty["tag"] == "TEXTAREA"

    await alice.type("#composer", "first line")
    await alice.press("#composer", "Shift+Enter")
    await alice.type("#composer", "second line")
    await alice.press("#composer", "Shift+Enter")
    await alice.type("#composer", "third line")
    # Nothing was sent: the composer holds the three lines, and grew to show them.
    written = await composer(alice)
    assert written["value"] == "first line\nsecond line\nthird line"
    assert written["height"] > empty["height"] * 1.8, (empty, written)
    assert await shown(alice) == []
    await alice.screenshot(ARTIFACTS / "demo-composer-lines-1100.png")

    await alice.press("#composer", "Enter")
    text = "first line\nsecond line\nthird line"
    await wait_for_texts(bob, text)
    await wait_for_texts(alice, text)
    for page in (alice, bob):
        assert await page.eval(LINES_OF, text) == 3
    # The composer is empty and one line high again.
    sent = await composer(alice)
    assert sent["value"] == "" and abs(sent["height"] - empty["height"]) < 1, (empty, sent)
    await bob.screenshot(ARTIFACTS / "demo-message-lines-1100.png")
    assert await page_errors(alice) == [] and await page_errors(bob) == []
