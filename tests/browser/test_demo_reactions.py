"""The demo page's reactions: eight emoji in a picker that shows when a message is
pointed at, opened from its toggle by keyboard or by a tap on a phone; the
reactions given show as chips under the message, whatever the picker does."""

from __future__ import annotations

from typing import Any

from tests.browser.support import ARTIFACTS, Browser, ChatServer, Page
from tests.browser.test_demo_page import page_errors, send, shown, sign_in, wait_for_texts

EMOJI = ["👍", "❤️", "😂", "🎉", "😮", "😢", "🙏", "👀"]
# The picker of a message: its emoji, and whether a person sees it.
PICKER = """(item) => {
  const picker = document.querySelector(`${item} .picker`);
  if (!picker) return null;
  const box = picker.getBoundingClientRect();
  return { shown: getComputedStyle(picker).display !== 'none' && box.width > 0,
    emoji: [...picker.querySelectorAll('button.react')].map((button) => button.dataset.emoji),
    expanded: document.querySelector(`${item} .react-toggle`).getAttribute('aria-expanded') };
}"""
# Emoji buttons a person sees in the whole list (without pointing at anything: none).
VISIBLE_BUTTONS = """() => [...document.querySelectorAll('#messages button.react')]
  .filter((button) => button.getBoundingClientRect().width > 0).length"""
FOCUSED = """() => { const element = document.activeElement;
  return element ? `${element.className}:${element.dataset.emoji || ''}` : null; }"""


def chip(message_id: int, emoji: str) -> str:
    return f"#messages li[data-id='{message_id}'] .reaction[data-emoji='{emoji}']"


async def picker(page: Page, item: str) -> dict[str, Any]:
    state: dict[str, Any] = await page.eval(PICKER, item)
    return state


async def wait_for_chip(page: Page, message_id: int, emoji: str, count: str) -> None:
    await page.wait_for(f"() => document.querySelector(\"{chip(message_id, emoji)}\")"
                        f"?.dataset.count === '{count}'")


async def test_pointing_at_a_message_shows_eight_reactions_and_the_keyboard_reaches_them(
    browser: Browser, chat_server: ChatServer
) -> None:
    chat_server.start()
    alice = await browser.page("alice", viewport=(1280, 800))
    bob = await browser.page("bob", viewport=(1280, 800))
    await sign_in(alice, chat_server, "Alice")
    await sign_in(bob, chat_server, "Bob")
    await send(alice, "pick a reaction")
    await send(alice, "and another")
    await wait_for_texts(bob, "pick a reaction", "and another")
    first, _second = await shown(bob)
    item = f"#messages li[data-id='{first['id']}']"

    # Not pointed at: no emoji buttons on any message, only the chips to come.
    await bob.hover("header")  # (the mouse was where the sign-in button was)
    closed = await picker(bob, item)
    assert closed == {"shown": False, "emoji": EMOJI, "expanded": "false"}
    assert await bob.eval(VISIBLE_BUTTONS) == 0

    # The mouse on the message: its picker shows (that message's only).
    await bob.hover(item)
    assert (await picker(bob, item))["shown"] is True
    assert await bob.eval(VISIBLE_BUTTONS) == len(EMOJI)
    await bob.screenshot(ARTIFACTS / "demo-reaction-picker-1280.png")
    await bob.click(f"{item} .picker button.react[data-emoji='🎉']")
    await wait_for_chip(alice, first["id"], "🎉", "1")
    await wait_for_chip(bob, first["id"], "🎉", "1")

    # The keyboard: Enter on the message's toggle opens it, Tab goes into it, Enter
    # reacts, and the focus comes back to the toggle with the picker closed.
    await bob.hover("header")
    assert (await picker(bob, item))["shown"] is False
    await bob.press(f"{item} .react-toggle", "Enter")
    assert await picker(bob, item) == {"shown": True, "emoji": EMOJI, "expanded": "true"}
    await bob.press(f"{item} .react-toggle", "Tab")
    assert await bob.eval(FOCUSED) == "react:👍"
    await bob.press(f"{item} .picker button.react[data-emoji='👀']", "Enter")
    await wait_for_chip(alice, first["id"], "👀", "1")
    assert await bob.eval(FOCUSED) == "react-toggle:"
    assert (await picker(bob, item))["shown"] is False
    # Escape closes it too.
    await bob.press(f"{item} .react-toggle", "Enter")
    assert (await picker(bob, item))["shown"] is True
    await bob.press(f"{item} .react-toggle", "Escape")
    assert (await picker(bob, item))["shown"] is False

    # Both chips stay under the message, picker or not; a second click takes one off.
    await bob.hover(item)
    await bob.click(f"{item} .picker button.react[data-emoji='🎉']")
    await alice.wait_for(f"() => document.querySelector(\"{chip(first['id'], '🎉')}\") === null")
    await wait_for_chip(alice, first["id"], "👀", "1")
    assert await page_errors(alice) == [] and await page_errors(bob) == []


async def test_on_a_phone_a_tap_on_the_toggle_opens_the_picker(
    browser: Browser, chat_server: ChatServer
) -> None:
    chat_server.start()
    alice = await browser.page("alice", viewport=(390, 844), touch=True)
    bob = await browser.page("bob", viewport=(390, 844), touch=True)
    await sign_in(alice, chat_server, "Alice")
    await sign_in(bob, chat_server, "Bob")
    await send(alice, "tap to react")
    await wait_for_texts(bob, "tap to react")
    [message] = await shown(bob)
    item = f"#messages li[data-id='{message['id']}']"

    # No hover on a touch screen: the toggle is always there to tap, the picker is not.
    toggle = await bob.eval(f"() => getComputedStyle(document.querySelector(\"{item} "
                            ".react-toggle\")).opacity")
    assert toggle == "1"
    assert (await picker(bob, item))["shown"] is False
    await bob.tap(f"{item} .react-toggle")
    assert (await picker(bob, item))["shown"] is True
    # The picker fits on the screen.
    box = await bob.eval(f"() => {{ const r = document.querySelector(\"{item} .picker\")"
                         ".getBoundingClientRect(); return [r.left, r.right, r.top]; }")
    assert box[0] >= 0 and box[1] <= 390 and box[2] >= 0, box
    await bob.screenshot(ARTIFACTS / "demo-reaction-picker-390.png")
    await bob.tap(f"{item} .picker button.react[data-emoji='😂']")
    await wait_for_chip(alice, message["id"], "😂", "1")
    await wait_for_chip(bob, message["id"], "😂", "1")
    assert (await picker(bob, item))["shown"] is False
    # A tap elsewhere closes an open picker.
    await bob.tap(f"{item} .react-toggle")
    assert (await picker(bob, item))["shown"] is True
    await bob.tap("#conversation-title")
    assert (await picker(bob, item))["shown"] is False
    await bob.screenshot(ARTIFACTS / "demo-reaction-chip-390.png")
    assert await page_errors(alice) == [] and await page_errors(bob) == []
