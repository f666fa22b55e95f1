"""ChatManager's calls on messages after they are sent and on members (issue 28), end
to end in Chromium through the real server: Alice's page on the socket, Bob's on the
HTTP fallback (REST, and the long-poll for what others do). Each operation is
declared once in client/src/operations.js; both transports make it, and the other
page hears it as the same page event, from the socket or the long-poll."""

from __future__ import annotations

from tests.browser.chat_pages import dev_login, open_chat, page_errors
from tests.browser.support import Browser, ChatServer

UPDATED_FIELDS = ("id", "conversationId", "text", "editedAt", "version")


def rest_calls(urls: list[str], path: str) -> list[str]:
    return [url for url in urls if "/api/messenger/" in url and url.split("?")[0].endswith(path)]


async def test_each_change_goes_over_the_socket_and_over_rest_and_the_other_page_hears_it(
    browser: Browser, chat_server: ChatServer
) -> None:
    chat_server.start()
    alice = await open_chat(browser, chat_server, "Alice")
    bob = await open_chat(browser, chat_server, "Bob", http=True)
    carol = dev_login(chat_server, "Carol")["userId"]
    rota = (await alice.call("createConversation", "Rota", [bob.user_id]))["id"]
    await alice.call("join", rota)
    await bob.call("join", rota)

    # A send with mentions (socket), and a reply to it (REST).
    hello = await alice.call("send", rota, "hello", {"mentions": [bob.user_id]})
    assert (await bob.message("hello"))["mentions"] == [bob.user_id]
    reply = await bob.call("send", rota, "hi Alice",
                           {"replyTo": hello["id"], "mentions": [alice.user_id]})
    answer = await alice.message("hi Alice")
    assert answer["replyTo"] == {"id": hello["id"], "userId": alice.user_id,
                                 "senderName": "Alice", "excerpt": "hello"}
    assert answer["mentions"] == [alice.user_id]

    # Edits: the ack has the message:updated fields and `changed`.
    edited = await alice.call("editMessage", rota, hello["id"], "hello, all")
    assert edited["changed"] is True and edited["text"] == "hello, all"
    [update] = await bob.heard("messageUpdated")
    assert update == {field: edited[field] for field in UPDATED_FIELDS}
    bob_edited = await bob.call("editMessage", rota, reply["id"], "hi, Alice")
    [update] = await alice.heard("messageUpdated")
    assert update == {field: bob_edited[field] for field in UPDATED_FIELDS}
    assert (await alice.call("editMessage", rota, hello["id"], "hello, all"))["changed"] is False
    assert await bob.refused("editMessage", rota, hello["id"], "mine now") == "FORBIDDEN"

    # Earlier versions are an admin's; in a conversation of two either member pins.
    versions = await alice.call("messageVersions", rota, hello["id"])
    assert versions["text"] == "hello, all"
    assert [version["text"] for version in versions["versions"]] == ["hello"]
    assert await bob.refused("messageVersions", rota, hello["id"]) == "FORBIDDEN"
    assert await bob.call("pinMessage", rota, hello["id"]) == {
        "id": hello["id"], "conversationId": rota, "pinned": True, "changed": True}
    [pin] = await alice.heard("messagePinned")
    assert (pin["id"], pin["conversationId"], pin["pinnedBy"]) == (hello["id"], rota, bob.user_id)
    assert await alice.call("unpinMessage", rota, hello["id"]) == {
        "id": hello["id"], "conversationId": rota, "pinned": False, "changed": True}
    [unpin] = await bob.heard("messageUnpinned")
    assert (unpin["id"], unpin["unpinnedBy"]) == (hello["id"], alice.user_id)

    # Members: the room hears each change (over the socket; the long-poll does not
    # carry other people's memberships).
    assert await alice.call("addMember", rota, carol) == {
        "conversationId": rota, "userId": carol, "changed": True}
    [added] = await alice.heard("memberAdded")
    assert added == {"userId": carol, "conversationId": rota, "addedBy": alice.user_id}
    assert await bob.refused("pinMessage", rota, hello["id"]) == "FORBIDDEN"  # three now
    assert await alice.call("setRole", rota, bob.user_id, "admin") == {
        "conversationId": rota, "userId": bob.user_id, "role": "admin", "changed": True}
    [role] = await alice.heard("memberUpdated")
    assert role == {"conversationId": rota, "userId": bob.user_id, "role": "admin",
                    "updatedBy": alice.user_id}
    assert [v["text"] for v in (await bob.call("messageVersions", rota, hello["id"]))["versions"]] \
        == ["hello"]
    await bob.call("setRole", rota, carol, "admin")
    assert (await alice.heard("memberUpdated", 2))[1] == {
        "conversationId": rota, "userId": carol, "role": "admin", "updatedBy": bob.user_id}
    assert await bob.refused("removeMember", rota, carol) == "FORBIDDEN"  # an owner's, now
    await alice.call("setRole", rota, carol, "member")
    assert await bob.call("removeMember", rota, carol) == {
        "conversationId": rota, "userId": carol, "changed": True}
    [removed] = await alice.heard("memberRemoved")
    assert removed == {"userId": carol, "conversationId": rota, "removedBy": bob.user_id}
    await bob.call("addMember", rota, carol)
    assert (await alice.heard("memberAdded", 2))[1]["addedBy"] == bob.user_id

    # Deletions: anyone's by an owner; again is done already; the others hear it.
    deleted = await alice.call("deleteMessage", rota, reply["id"])
    assert (deleted["id"], deleted["conversationId"], deleted["deletedBy"]) == (
        reply["id"], rota, alice.user_id)
    [gone] = await bob.heard("messageDeleted")
    assert gone == deleted
    assert (await alice.call("deleteMessage", rota, reply["id"]))["alreadyDeleted"] is True
    bye = await bob.call("send", rota, "bye")
    await alice.message("bye")
    mine = await bob.call("deleteMessage", rota, bye["id"])
    [gone] = await alice.heard("messageDeleted")
    assert gone == mine and mine["deletedBy"] == bob.user_id

    # Everyone is called by an owner; Bob leaves for good over REST.
    await alice.call("send", rota, "all hands", {"mentionsEveryone": True})
    assert (await bob.message("all hands"))["mentionsEveryone"] is True
    assert await bob.call("leaveConversation", rota) == {
        "conversationId": rota, "userId": bob.user_id, "changed": True}
    left = (await alice.heard("memberRemoved", 2))[1]
    assert left == {"userId": bob.user_id, "conversationId": rota, "removedBy": bob.user_id}
    assert await bob.refused("send", rota, "still here?") == "FORBIDDEN"

    # Bob's went over REST, Alice's over the socket.
    bob_urls = await bob.page.requests()
    for path in (f"/messages/{reply['id']}", f"/messages/{hello['id']}/pin",
                 f"/messages/{hello['id']}/versions", f"/members/{carol}",
                 f"/members/{bob.user_id}", f"/conversations/{rota}/members"):
        assert rest_calls(bob_urls, path), f"Bob made no REST call to …{path}"
    assert rest_calls(await alice.page.requests(), f"/messages/{hello['id']}/pin") == []
    assert await page_errors(alice) == [] and await page_errors(bob) == []

