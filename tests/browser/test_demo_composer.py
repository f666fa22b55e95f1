"""Writing on the demo page: the composer takes several lines (Enter sends,
Shift+Enter starts a new line) and a message shows its line breaks; the http(s)
addresses in a message are links, made with DOM nodes and nothing else."""

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
LINKS_OF = """(text) => {
  const item = [...document.querySelectorAll('#messages li[data-id]')]
    .find((li) => li.querySelector('.text').textContent === text);
  const body = item.querySelector('.text');
  return {
    links: [...body.querySelectorAll('a')].map((a) => ({ href: a.getAttribute('href'),
      text: a.textContent, target: a.target, rel: a.rel })),
    elements: [...body.querySelectorAll('*')].map((element) => element.tagName),
  };
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


async def test_http_and_https_addresses_are_links_and_nothing_else_is(
    browser: Browser, chat_server: ChatServer
) -> None:
    alice, bob = await alice_and_bob(browser, chat_server)
    text = ("the docs: https://example.com/guide_(v2)?q=1&r=2. Or http://127.0.0.1:9/x, "
            "not javascript:alert(1), <b>bold</b>, <img src=x onerror=alert(1)> "
            "nor ftp://example.com/file (see https://example.org/a).")
    await alice.fill("#composer", text)
    await alice.press("#composer", "Enter")
    for page in (bob, alice):
        await wait_for_texts(page, text)  # the text shown is the text sent, exactly
        found = await page.eval(LINKS_OF, text)
        # The sentence's own punctuation (".", ",", the ")" it opened) is not the link's.
        assert found["links"] == [
            {"href": "https://example.com/guide_(v2)?q=1&r=2",
             "text": "https://example.com/guide_(v2)?q=1&r=2",
             "target": "_blank", "rel": "noopener noreferrer"},
            {"href": "http://127.0.0.1:9/x", "text": "http://127.0.0.1:9/x",
             "target": "_blank", "rel": "noopener noreferrer"},
            {"href": "https://example.org/a", "text": "https://example.org/a",
             "target": "_blank", "rel": "noopener noreferrer"},
        ]
        # No markup from the text: the links are the only elements in it.
        assert found["elements"] == ["A", "A", "A"]
    await bob.screenshot(ARTIFACTS / "demo-message-links-1100.png")
    assert await page_errors(alice) == [] and await page_errors(bob) == []
