"""The demo page's messages after they are sent, in a real Chromium against the server
as a process: edit (the ✎ tool, or ArrowUp in an empty composer), delete (one's own,
or anyone's as the owner), quoted replies, mentions from the @ picker, pins with the
pinned bar, the earlier versions an owner reads, renaming; each seen on the other
pages as it happens and after a reload. The first person in the demo lobby is its
owner (services/dev_accounts.py), the others members."""

from __future__ import annotations

from typing import Any

from tests.browser.support import ARTIFACTS, Browser, ChatServer, Page
from tests.browser.test_demo_page import page_errors, send, shown, sign_in, wait_for_texts

# The tools a person sees on a message (the CSS hides those their role does not allow).
TOOLS = """(item) => [...document.querySelectorAll(`${item} .tools button`)]
  .filter((button) => getComputedStyle(button).display !== 'none')
  .map((button) => button.dataset.tool)"""
MESSAGE = """(id) => {
  const item = document.querySelector(`#messages li[data-id="${id}"]`);
  if (!item) return null;
  const text = (selector) => item.querySelector(selector)?.textContent ?? null;
  const has = (name) => item.classList.contains(name);
  return { text: text('.text'), edited: text('.edited-mark'),
    quote: text('.quote-sender') === null ? null : [text('.quote-sender'), text('.quote-text')],
    mentions: [...item.querySelectorAll('.mention')]
      .map((span) => [span.textContent, span.classList.contains('me')]),
    deleted: has('deleted'), pinned: has('pinned'), mentionsMe: has('mentions-me') };
}"""
PINNED_BAR = """() => document.querySelector('#pinned').hidden ? null
  : [document.querySelector('#pinned-count').textContent,
     document.querySelector('#pinned-text').textContent]"""
DRAFT = """() => document.querySelector('#draft').hidden ? null
  : [document.querySelector('#draft-what').textContent, document.querySelector('#send').textContent,
     document.querySelector('#composer').value]"""
TITLE = "() => document.querySelector('#conversation-title').textContent"


def item(message_id: int) -> str:
    return f"#messages li[data-id='{message_id}']"


async def message(page: Page, message_id: int) -> dict[str, Any]:
    state: dict[str, Any] = await page.eval(MESSAGE, message_id)
    return state


async def wait_for_message(page: Page, message_id: int, check: str) -> dict[str, Any]:
    """Until the message as `MESSAGE` reads it satisfies `check` (a JS expression on `m`)."""
    state: dict[str, Any] = await page.wait_for(
        f"(id) => {{ const m = ({MESSAGE})(id); return m && ({check}) ? m : false; }}", message_id)
    return state


async def use_tool(page: Page, message_id: int, tool: str) -> None:
    """Point at the message, as a person with a mouse does, and click one of its tools."""
    await page.hover(item(message_id))
    await page.click(f"{item(message_id)} .tool-{tool}")


async def three_in_the_lobby(browser: Browser, chat_server: ChatServer) -> tuple[Page, Page, Page]:
    chat_server.start()
    pages = []
    for name in ("Alice", "Bob", "Carol"):  # Alice first: the lobby's owner
        page = await browser.page(name.lower(), viewport=(1280, 800))
        await sign_in(page, chat_server, name)
        pages.append(page)
    alice, bob, carol = pages
    for page in pages:  # each knows the three members and their roles
        await page.wait_for("() => document.querySelectorAll('#members li').length === 3")
    return alice, bob, carol


async def test_edit_reply_mention_pin_versions_delete_and_rename_reach_every_page(
    browser: Browser, chat_server: ChatServer
) -> None:
    alice, bob, carol = await three_in_the_lobby(browser, chat_server)
    assert await alice.eval("() => document.querySelector('#members .role-owner')"
                            ".parentElement.textContent") == "Alice (you)owner"
    assert await carol.eval("() => document.querySelector('#rename').hidden") is True
    assert await alice.eval("() => document.querySelector('#rename').hidden") is False

    await send(bob, "Delivery at 10")
    await wait_for_texts(alice, "Delivery at 10")
    await wait_for_texts(carol, "Delivery at 10")
    [delivery] = await shown(bob)
    first = delivery["id"]

    # Who sees which tools on Bob's message: Bob edits and deletes his own; Carol (a
    # member of a group) only answers; Alice (the owner) pins and deletes it too.
    assert await bob.eval(TOOLS, item(first)) == ["reply", "edit", "delete"]
    assert await carol.eval(TOOLS, item(first)) == ["reply"]
    assert await alice.eval(TOOLS, item(first)) == ["reply", "pin", "delete"]

    # Bob edits it from its ✎: the composer holds the text, Send says Save.
    await use_tool(bob, first, "edit")
    assert await bob.eval(DRAFT) == ["Editing your message", "Save", "Delivery at 10"]
    await bob.fill("#composer", "Delivery at 11")
    await bob.press("#composer", "Enter")
    for page in (alice, bob, carol):
        edited = await wait_for_message(page, first, "m.text === 'Delivery at 11'")
        assert edited["edited"] == "(edited)"
    assert await bob.eval(DRAFT) is None

    # Carol answers it, calling Bob by name from the @ picker.
    await use_tool(carol, first, "reply")
    assert (await carol.eval(DRAFT))[:2] == ["Replying to Bob", "Send"]
    await carol.type("#composer", "Fine by me @Bo", delay_ms=5)
    await carol.wait_for("() => [...document.querySelectorAll('#mention-picker li')]"
                         ".map((li) => li.textContent).join() === '@Bob'")
    await carol.press("#composer", "Enter")  # picks @Bob, does not send
    assert await carol.eval("() => document.querySelector('#composer').value") == "Fine by me @Bob "
    await carol.type("#composer", "see you", delay_ms=5)
    await carol.press("#composer", "Enter")
    [reply_frame] = [frame for frame in await carol.frames_sent() if '"message:send"' in frame]
    assert f'"replyTo":{first}' in reply_frame and '"mentions":[' in reply_frame, reply_frame
    texts = await wait_for_texts(bob, "Fine by me @Bob see you")
    reply = (await shown(bob))[texts.index("Fine by me @Bob see you")]["id"]
    on_bob = await message(bob, reply)
    assert on_bob["quote"] == ["Bob", "Delivery at 11"]
    assert on_bob["mentions"] == [["@Bob", True]] and on_bob["mentionsMe"] is True
    on_alice = await wait_for_message(alice, reply, "m.quote !== null")
    assert on_alice["mentions"] == [["@Bob", False]] and on_alice["mentionsMe"] is False
    assert (await message(carol, reply))["quote"] == ["Bob", "Delivery at 11"]

    # Alice, the owner, pins it: the pinned bar shows it on every page.
    await use_tool(alice, first, "pin")
    for page in (alice, bob, carol):
        await page.wait_for(f"() => ({PINNED_BAR})()?.[1] === 'Bob: Delivery at 11'")
        assert (await message(page, first))["pinned"] is True
    assert await alice.eval(PINNED_BAR) == ["Pinned", "Bob: Delivery at 11"]

    # ...and reads what the edit replaced (owners and admins only: Bob sees no such tool).
    assert await alice.eval(TOOLS, item(first)) == ["reply", "pin", "versions", "delete"]
    assert "versions" not in await bob.eval(TOOLS, item(first))
    await use_tool(alice, first, "versions")
    await alice.wait_for(f"() => document.querySelector(\"{item(first)} .versions .version-text\")")
    assert await alice.eval(f"() => [...document.querySelectorAll(\"{item(first)} .version-text\")]"
                            ".map((span) => span.textContent)") == ["Delivery at 10"]
    await alice.hover("header")
    await bob.hover("header")
    await alice.screenshot(ARTIFACTS / "demo-message-changes-owner.png")
    await bob.screenshot(ARTIFACTS / "demo-message-changes-member.png")

    # Alice deletes Bob's message, after confirming: a tombstone on every page, the
    # quote says so, the pin goes.
    await use_tool(alice, first, "delete")
    await alice.click(f"{item(first)} .confirm-delete")
    for page in (alice, bob, carol):
        gone = await wait_for_message(page, first, "m.deleted")
        assert gone["text"] == "Message deleted by Alice"
        await wait_for_message(page, reply, "m.quote && m.quote[1] === 'Message deleted'")
        await page.wait_for(f"() => ({PINNED_BAR})() === null")
    assert await bob.eval(TOOLS, item(first)) == []  # nothing to do to a tombstone

    # Carol deletes her own reply: the others see it marked as hers, deleted.
    await use_tool(carol, reply, "delete")
    await carol.click(f"{item(reply)} .confirm-delete")
    assert (await wait_for_message(bob, reply, "m.deleted"))["text"] == "Message deleted"

    # Alice renames the lobby: every page's title and list follow.
    await alice.click("#rename")
    await alice.fill("#title-input", "Store 12 team")
    await alice.press("#title-input", "Enter")
    for page in (alice, bob, carol):
        await page.wait_for(f"() => ({TITLE})() === 'Store 12 team'"
                            " && document.querySelector('#conversations li.active .title')"
                            ".textContent === 'Store 12 team'")
    await bob.screenshot(ARTIFACTS / "demo-message-changes-deleted.png")
    for page in (alice, bob, carol):
        assert await page_errors(page) == []


async def test_keyboard_edits_and_a_reload_shows_every_change_from_history(
    browser: Browser, chat_server: ChatServer
) -> None:
    alice, bob, _carol = await three_in_the_lobby(browser, chat_server)
    await send(bob, "first from Bob")
    await send(bob, "second form Bob")
    await wait_for_texts(alice, "first from Bob", "second form Bob")
    first, second = [shown_message["id"] for shown_message in await shown(bob)]

    # ArrowUp in the empty composer edits Bob's last message; Escape drops the draft.
    await bob.press("#composer", "ArrowUp")
    assert await bob.eval(DRAFT) == ["Editing your message", "Save", "second form Bob"]
    await bob.press("#composer", "Escape")
    assert await bob.eval(DRAFT) is None
    assert await bob.eval("() => document.querySelector('#composer').value") == ""
    await bob.press("#composer", "ArrowUp")
    await bob.fill("#composer", "second from Bob")
    await bob.press("#composer", "Enter")
    await wait_for_message(alice, second, "m.text === 'second from Bob' && m.edited")

    # Alice pins the first and deletes the second (as the owner).
    await use_tool(alice, first, "pin")
    await bob.wait_for(f"() => ({PINNED_BAR})()?.[1] === 'Bob: first from Bob'")
    await use_tool(alice, second, "delete")
    await alice.click(f"{item(second)} .confirm-delete")
    await wait_for_message(bob, second, "m.deleted")

    # Bob reloads: history shows the message as it is now, the pin from the join.
    await sign_in(bob, chat_server, "Bob")
    await wait_for_texts(bob, "first from Bob")
    assert (await wait_for_message(bob, second, "m.deleted"))["text"] == "Message deleted by Alice"
    await bob.wait_for(f"() => ({PINNED_BAR})()?.[1] === 'Bob: first from Bob'")
    assert (await message(bob, first))["pinned"] is True
    # The pinned bar shows the message in the list when clicked.
    await bob.click("#pinned")
    await bob.wait_for("(item) => document.querySelector(item).classList.contains('flash')",
                       item(first))
    await bob.screenshot(ARTIFACTS / "demo-message-changes-reloaded.png")
    # Alice unpins it (her tool says Unpin now): the bar goes from Bob's page.
    assert await alice.eval("(tool) => document.querySelector(tool).title",
                            f"{item(first)} .tool-pin") == "Unpin"
    await use_tool(alice, first, "pin")
    await bob.wait_for(f"() => ({PINNED_BAR})() === null")
    assert (await message(bob, first))["pinned"] is False
    assert await page_errors(bob) == []


async def test_on_a_phone_the_tools_fit_the_screen_beside_the_reactions(
    browser: Browser, chat_server: ChatServer
) -> None:
    chat_server.start()
    alice = await browser.page("alice", viewport=(1280, 800))
    bob = await browser.page("bob", viewport=(390, 844), touch=True)
    await sign_in(alice, chat_server, "Alice")
    await sign_in(bob, chat_server, "Bob")
    await send(alice, "Can someone check the stockroom?")
    await send(bob, "On it")
    await wait_for_texts(bob, "Can someone check the stockroom?", "On it")
    theirs, mine = [shown_message["id"] for shown_message in await shown(bob)]
    # (two in the lobby: a conversation of two, where either member pins)
    expected = {theirs: ["reply", "pin"], mine: ["reply", "edit", "pin", "delete"]}
    for message_id, tools in expected.items():
        picker = f"{item(message_id)} .picker"
        await bob.tap(f"{item(message_id)} .react-toggle")
        box = await bob.eval("(picker) => { const box = document.querySelector(picker)"
                             ".getBoundingClientRect(); return [box.left, box.right, box.width]; }",
                             picker)
        assert box[2] > 0 and box[0] >= 0 and box[1] <= 390, box
        assert await bob.eval(TOOLS, item(message_id)) == tools
        whose = "mine" if message_id == mine else "theirs"
        await bob.screenshot(ARTIFACTS / f"demo-message-tools-390-{whose}.png")
        await bob.tap(f"{item(message_id)} .react-toggle")
    # A tap on a tool: the reply draft shows above the composer, and the bar closes.
    await bob.tap(f"{item(theirs)} .react-toggle")
    await bob.tap(f"{item(theirs)} .tool-reply")
    assert (await bob.eval(DRAFT))[0] == "Replying to Alice"
    assert await bob.eval("(picker) => getComputedStyle(document.querySelector(picker)).display",
                          f"{item(theirs)} .picker") == "none"
    await bob.screenshot(ARTIFACTS / "demo-message-reply-390.png")
    assert await page_errors(bob) == []
