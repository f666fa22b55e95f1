"""Messages after they are sent, through the real server on both backends, each
operation on the socket and over REST (one declaration, transport/chat_operations.py):
edit, delete, versions, pin and unpin reach the room as message:updated,
message:deleted, message:pinned and message:unpinned; every refusal carries its
code (and status) and changes nothing; a send's replyTo and mentions; and a
client away and back catches up on every change through its join's `cursor`,
on the socket and on the long-poll alike."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from ecigdis_ws.domain import ChangedBy, StoredMessage, UserId
from tests.support import ChatClient, RunningServer, set_role
from tests.transport.rest_support import SERVER_API_KEY, Rest
from tests.transport.test_rest_poll import start_poll

OWNER, ADMIN, MEMBER, OTHER, OUTSIDER = 1, 2, 3, 4, 9
STATUS = {"INVALID_PAYLOAD": 400, "FORBIDDEN": 403, "NOT_FOUND": 404, "CONFLICT": 409}
# Each operation's REST route under .../conversations/{id}/messages/{messageId}.
ROUTES = {
    "message:edit": ("PATCH", ""),
    "message:delete": ("DELETE", ""),
    "message:versions": ("GET", "/versions"),
    "message:pin": ("PUT", "/pin"),
    "message:unpin": ("DELETE", "/pin"),
}
CHANGE_EVENTS = ("message:updated", "message:deleted", "message:pinned", "message:unpinned")


@dataclasses.dataclass
class Scene:
    """A conversation made over REST by OWNER (so its owner), ADMIN an admin,
    every member connected and joined; OUTSIDER connected, no member."""

    server: RunningServer
    rest: Rest
    conversation: int
    clients: dict[UserId, ChatClient]

    async def send(self, user: UserId, text: str) -> int:
        ack = await self.clients[user].call("message:send", {
            "conversationId": self.conversation, "text": text, "messageId": f"{user}-{text}"})
        assert ack["ok"], ack
        message_id: int = ack["id"]
        return message_id

    async def stored(self, message_id: int) -> StoredMessage | None:
        return await self.server.chat.storage.changes.message(self.conversation, message_id)

    async def call(self, via: str, user: UserId, event: str, message_id: int,
                   **fields: Any) -> Outcome:
        """The operation as `user`, over the socket (their client) or REST."""
        if via == "socket":
            reply = dict(await self.clients[user].call(event, {
                "conversationId": self.conversation, "id": message_id, **fields}))
            ok = reply.pop("ok")
            return Outcome(ok, None if ok else reply["error"]["code"], reply, None)
        method, suffix = ROUTES[event]
        path = f"/api/messenger/conversations/{self.conversation}/messages/{message_id}{suffix}"
        answer = await self.rest.request(method, path, user=user, json=fields or None)
        return Outcome(answer.status == 200, answer.code, answer.body, answer.status)

    def heard(self, event: str, *users: UserId) -> dict[UserId, list[Any]]:
        return {user: self.clients[user].received(event) for user in users}


@dataclasses.dataclass
class Outcome:
    ok: bool
    code: str | None
    body: Any
    status: int | None  # None on the socket

    def refused(self, code: str) -> bool:
        return not self.ok and self.code == code and self.status in (None, STATUS[code])


async def scene_on(server: RunningServer, rest: Rest) -> Scene:
    conversation = await server.chat.storage.conversations.create_conversation(
        "group", [OWNER, ADMIN, MEMBER, OTHER], int(server.clock.now() * 1000),
        ChangedBy(OWNER))
    await set_role(server.chat.storage, conversation, ADMIN, "admin")
    clients = {}
    for user in (OWNER, ADMIN, MEMBER, OTHER, OUTSIDER):
        clients[user] = await server.client(user, f"user{user}")
        if user != OUTSIDER:
            join = await clients[user].call("conversation:join", {"conversationId": conversation})
            assert join["ok"], join
    return Scene(server, rest, conversation, clients)


@pytest.fixture
async def scene(rest: Rest) -> Scene:
    return await scene_on(rest.server, rest)


@pytest.fixture(params=["socket", "rest"])
def via(request: pytest.FixtureRequest) -> str:
    transport: str = request.param
    return transport


def without_changed(body: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if key != "changed"}


async def history(scene: Scene, user: UserId = OWNER) -> dict[int, dict[str, Any]]:
    page = await scene.rest.get(f"/conversations/{scene.conversation}/messages", user=user)
    assert page.status == 200, page.body
    return {message["id"]: message for message in page.body["messages"]}


# -- each operation, on the socket and over REST -----------------------------------------


async def test_an_edit_reaches_the_room_and_history_shows_the_text_as_it_is_now(
    scene: Scene, via: str,
) -> None:
    message = await scene.send(MEMBER, "see you at 9")

    edited = await scene.call(via, MEMBER, "message:edit", message, text="see you at 10")

    assert edited.ok, edited
    assert edited.body == {"id": message, "conversationId": scene.conversation,
                           "text": "see you at 10", "editedAt": edited.body["editedAt"],
                           "version": 2, "changed": True}
    updated = without_changed(edited.body)
    for user in (OWNER, ADMIN, OTHER):
        assert await scene.clients[user].wait_for("message:updated") == [updated]
    # The editing socket has its ack; a REST call has no socket to leave out.
    if via == "rest":
        assert await scene.clients[MEMBER].wait_for("message:updated") == [updated]
    shown = (await history(scene))[message]
    assert (shown["text"], shown["version"], shown["editedAt"]) == (
        "see you at 10", 2, updated["editedAt"])
    again = await scene.call(via, MEMBER, "message:edit", message, text="see you at 10")
    assert again.ok and again.body["changed"] is False
    versions = await scene.call(via, OWNER, "message:versions", message)
    assert versions.ok, versions
    assert versions.body == {
        "id": message, "conversationId": scene.conversation, "text": "see you at 10",
        "version": 2, "versions": [{"version": 1, "text": "see you at 9",
                                    "writtenAt": shown["createdAt"],
                                    "replacedAt": updated["editedAt"]}]}
    await scene.send(OWNER, "after")  # what the repeat would have told comes before this
    await scene.clients[OTHER].wait_for("message:new", lambda m: m["text"] == "after")
    assert len(scene.clients[OTHER].received("message:updated")) == 1
    assert scene.clients[MEMBER].received("message:updated") == ([] if via == "socket" else
                                                                 [updated])


async def test_a_deletion_reaches_the_room_and_leaves_a_tombstone_in_history(
    scene: Scene, via: str,
) -> None:
    message = await scene.send(MEMBER, "my card is 4111 1111 1111 1111")
    kept = await scene.send(OTHER, "kept")
    assert (await scene.clients[OTHER].call("message:react", {
        "conversationId": scene.conversation, "messageId": message, "emoji": "👍"}))["ok"]
    assert (await scene.call("socket", OWNER, "message:pin", message)).ok
    assert (await scene.call("socket", MEMBER, "message:edit", message, text="my card is …")).ok

    deleted = await scene.call(via, ADMIN, "message:delete", message)  # an admin, others' message

    assert deleted.ok, deleted
    assert deleted.body == {"id": message, "conversationId": scene.conversation,
                            "deletedBy": ADMIN, "deletedAt": deleted.body["deletedAt"]}
    for user in (OWNER, MEMBER, OTHER):
        assert await scene.clients[user].wait_for("message:deleted") == [deleted.body]
    shown = await history(scene, MEMBER)
    assert shown[message]["text"] == "" and shown[message]["deleted"] is True
    assert (shown[message]["deletedBy"], shown[message]["reactions"]) == (ADMIN, [])
    assert "mentions" not in shown[message]
    assert shown[kept]["text"] == "kept"
    versions = await scene.call(via, OWNER, "message:versions", message)
    assert versions.ok and (versions.body["text"], versions.body["versions"]) == ("", [])
    listed = await scene.rest.get("/conversations", user=OWNER)
    assert [c["pinned"] for c in listed.body["conversations"]] == [[]]  # its pin went with it
    joined = await scene.clients[OTHER].call("conversation:join",
                                             {"conversationId": scene.conversation})
    assert joined["pinned"] == []


async def test_pins_reach_the_room_and_the_join_and_the_list_show_them(
    scene: Scene, via: str,
) -> None:
    first = await scene.send(MEMBER, "first")
    second = await scene.send(OTHER, "second")

    for message in (second, first):
        pinned = await scene.call(via, ADMIN, "message:pin", message)
        assert pinned.ok, pinned
        assert pinned.body == {"id": message, "conversationId": scene.conversation,
                               "pinned": True, "changed": True}
    again = await scene.call(via, OWNER, "message:pin", first)

    assert again.ok and again.body["changed"] is False
    told = await scene.clients[MEMBER].wait_for("message:pinned", count=2)
    assert [(p["id"], p["pinnedBy"]) for p in told] == [(second, ADMIN), (first, ADMIN)]
    late = await scene.server.client(OTHER)
    joined = await late.call("conversation:join", {"conversationId": scene.conversation})
    assert joined["pinned"] == [second, first]  # in the order they were pinned
    listed = await scene.rest.get("/conversations", user=MEMBER)
    assert [c["pinned"] for c in listed.body["conversations"]] == [[second, first]]

    unpinned = await scene.call(via, OWNER, "message:unpin", second)

    assert unpinned.ok and unpinned.body == {"id": second, "conversationId": scene.conversation,
                                             "pinned": False, "changed": True}
    [told_off] = await scene.clients[MEMBER].wait_for("message:unpinned")
    assert (told_off["id"], told_off["unpinnedBy"]) == (second, OWNER)
    assert (await scene.call(via, OWNER, "message:unpin", second)).body["changed"] is False
    assert await scene.server.chat.storage.changes.pinned_ids(scene.conversation) == [first]
    assert len(scene.clients[OTHER].received("message:pinned")) == 2  # the repeat told no one


async def test_the_join_answers_every_member_with_their_role_and_a_cursor(scene: Scene) -> None:
    joined = await scene.clients[OUTSIDER].call("conversation:join",
                                                {"conversationId": scene.conversation})
    assert joined["error"]["code"] == "FORBIDDEN"

    again = await scene.clients[MEMBER].call("conversation:join",
                                             {"conversationId": scene.conversation})

    assert again["members"] == [
        {"userId": OWNER, "name": "user1", "role": "owner"},
        {"userId": ADMIN, "name": "user2", "role": "admin"},
        {"userId": MEMBER, "name": "user3", "role": "member"},
        {"userId": OTHER, "name": "user4", "role": "member"},
    ]
    assert again["pinned"] == [] and again["cursor"].isdigit()
    assert "resync" not in again
    page = await scene.rest.get(f"/conversations/{scene.conversation}/messages", user=MEMBER)
    assert page.body["members"] == again["members"]


async def test_the_server_api_deletes_and_reads_versions(keyed: Rest) -> None:
    scene = await scene_on(keyed.server, keyed)
    message = await scene.send(MEMBER, "reported")
    assert (await scene.call("socket", MEMBER, "message:edit", message, text="reported!")).ok
    path = f"/conversations/{scene.conversation}/messages/{message}"

    versions = await keyed.server_call("GET", path + "/versions", SERVER_API_KEY)
    deleted = await keyed.server_call("DELETE", path, SERVER_API_KEY)

    assert versions.status == 200 and versions.body["text"] == "reported!"
    assert [v["text"] for v in versions.body["versions"]] == ["reported"]
    assert deleted.status == 200
    assert deleted.body == {"id": message, "conversationId": scene.conversation,
                            "deletedBy": None, "deletedAt": deleted.body["deletedAt"]}
    for user in (OWNER, ADMIN, MEMBER, OTHER):  # no socket acted: the whole room hears it
        assert await scene.clients[user].wait_for("message:deleted") == [deleted.body]
    refusals = [
        await keyed.server_call("DELETE", path, SERVER_API_KEY),
        await keyed.server_call("DELETE", f"/conversations/{scene.conversation}/messages/"
                                f"{10**12}", SERVER_API_KEY),
        await keyed.server_call("DELETE", path, None),
        await keyed.server_call("GET", path + "/versions", "wrong-key"),
    ]
    assert [(r.status, r.code) for r in refusals] == [
        (409, "CONFLICT"), (404, "NOT_FOUND"), (401, "UNAUTHENTICATED"), (401, "AUTH_FAILED")]


# -- refusals -----------------------------------------------------------------------------


async def test_every_refusal_carries_its_code_and_changes_nothing(
    scene: Scene, via: str,
) -> None:
    message = await scene.send(MEMBER, "mine")
    assert (await scene.call("socket", MEMBER, "message:edit", message, text="mine, edited")).ok
    gone = await scene.send(MEMBER, "gone")
    assert (await scene.call("socket", MEMBER, "message:delete", gone)).ok
    elsewhere = await scene.server.conversation(MEMBER, OTHER)
    foreign = (await scene.server.chat.storage.messages.store_message(
        elsewhere, MEMBER, "user3", "elsewhere", "elsewhere", 0)).message.id
    before = await scene.stored(message)
    for user in (OWNER, ADMIN, OTHER):  # (the setup's own events, all in before clearing)
        await scene.clients[user].wait_for("message:deleted")
        await scene.clients[user].wait_for("message:updated")
    for client in scene.clients.values():
        for event in CHANGE_EVENTS:
            client.events[event].clear()

    refusals = {
        "another's message to edit": (
            await scene.call(via, OTHER, "message:edit", message, text="x"), "FORBIDDEN"),
        "not even the owner edits it": (
            await scene.call(via, OWNER, "message:edit", message, text="x"), "FORBIDDEN"),
        "blank text": (
            await scene.call(via, MEMBER, "message:edit", message, text="  "), "INVALID_PAYLOAD"),
        "text over MAX_MESSAGE_LENGTH": (
            await scene.call(via, MEMBER, "message:edit", message, text="x" * 4001),
            "INVALID_PAYLOAD"),
        "no text": (await scene.call(via, MEMBER, "message:edit", message), "INVALID_PAYLOAD"),
        "a deleted message to edit": (
            await scene.call(via, MEMBER, "message:edit", gone, text="x"), "CONFLICT"),
        "no such message": (
            await scene.call(via, MEMBER, "message:edit", 10**12, text="x"), "NOT_FOUND"),
        "another conversation's message": (
            await scene.call(via, MEMBER, "message:edit", foreign, text="x"), "NOT_FOUND"),
        "a member deletes another's": (
            await scene.call(via, OTHER, "message:delete", message), "FORBIDDEN"),
        "deleted already": (await scene.call(via, OWNER, "message:delete", gone), "CONFLICT"),
        "versions for a member, the sender too": (
            await scene.call(via, MEMBER, "message:versions", message), "FORBIDDEN"),
        "a member of a group pins": (
            await scene.call(via, MEMBER, "message:pin", message), "FORBIDDEN"),
        "a member of a group unpins": (
            await scene.call(via, OTHER, "message:unpin", message), "FORBIDDEN"),
        "a deleted message to pin": (
            await scene.call(via, OWNER, "message:pin", gone), "CONFLICT"),
        "a deleted message to react to": (
            await react(scene, via, OTHER, gone), "CONFLICT"),
        "an outsider edits": (
            await scene.call(via, OUTSIDER, "message:edit", message, text="x"), "FORBIDDEN"),
        "an outsider deletes": (
            await scene.call(via, OUTSIDER, "message:delete", message), "FORBIDDEN"),
        "an outsider reads versions": (
            await scene.call(via, OUTSIDER, "message:versions", message), "FORBIDDEN"),
        "an outsider pins": (
            await scene.call(via, OUTSIDER, "message:pin", message), "FORBIDDEN"),
    }

    wrong = {why: outcome for why, (outcome, code) in refusals.items()
             if not outcome.refused(code)}
    assert wrong == {}
    assert await scene.stored(message) == before
    tombstone = await scene.stored(gone)
    assert tombstone is not None and tombstone.deleted
    assert await scene.server.chat.storage.changes.pinned_ids(scene.conversation) == []
    # Nobody was told of anything: a message sent now is the next thing they hear.
    last = await scene.send(OWNER, "after the refusals")
    for user in (ADMIN, MEMBER, OTHER):
        await scene.clients[user].wait_for("message:new", lambda m: m["id"] == last)
        assert scene.heard("message:updated", user)[user] == []
        assert all(scene.clients[user].received(event) == [] for event in CHANGE_EVENTS)


async def react(scene: Scene, via: str, user: UserId, message_id: int) -> Outcome:
    if via == "socket":
        reply = dict(await scene.clients[user].call("message:react", {
            "conversationId": scene.conversation, "messageId": message_id, "emoji": "👍"}))
        ok = reply.pop("ok")
        return Outcome(ok, None if ok else reply["error"]["code"], reply, None)
    answer = await scene.rest.post(
        f"/conversations/{scene.conversation}/messages/{message_id}/reactions",
        user=user, json={"emoji": "👍"})
    return Outcome(answer.status == 200, answer.code, answer.body, answer.status)


async def test_an_edit_past_the_window_is_a_conflict(scene: Scene, via: str) -> None:
    message = await scene.send(MEMBER, "typo")
    await scene.server.advance(899)
    assert (await scene.call(via, MEMBER, "message:edit", message, text="typo fixed")).ok
    await scene.server.advance(2)

    late = await scene.call(via, MEMBER, "message:edit", message, text="much later")

    assert late.refused("CONFLICT"), late
    stored = await scene.stored(message)
    assert stored is not None and stored.text == "typo fixed"
    deleted = await scene.call(via, MEMBER, "message:delete", message)  # no window for these
    assert deleted.ok, deleted


async def test_a_pin_past_max_pins_per_conversation_is_a_conflict(
    make_server: Any, session: Any, via: str,
) -> None:
    async with make_server(MAX_PINS_PER_CONVERSATION="1") as server:
        scene = await scene_on(server, Rest(server, session))
        first, second = await scene.send(MEMBER, "first"), await scene.send(MEMBER, "second")
        assert (await scene.call(via, OWNER, "message:pin", first)).ok

        refused = await scene.call(via, OWNER, "message:pin", second)

        assert refused.refused("CONFLICT"), refused
        assert await server.chat.storage.changes.pinned_ids(scene.conversation) == [first]


async def test_a_rest_body_cannot_redirect_a_call_to_another_message_than_its_path(
    scene: Scene,
) -> None:
    """PATCH .../messages/{a} acts on message a: a body's `id` (the socket's field
    for it) does not decide which message is edited."""
    named, other = await scene.send(MEMBER, "named"), await scene.send(MEMBER, "other")
    path = f"/api/messenger/conversations/{scene.conversation}/messages/{named}"

    edited = await scene.rest.request("PATCH", path, user=MEMBER,
                                      json={"text": "edited", "id": other})

    assert edited.status == 200 and edited.body["id"] == named
    named_now, other_now = await scene.stored(named), await scene.stored(other)
    assert named_now is not None and named_now.text == "edited"
    assert other_now is not None and other_now.text == "other"


# -- a send's replyTo and mentions ------------------------------------------------------------


async def send_with(scene: Scene, via: str, user: UserId, text: str, **extras: Any) -> Outcome:
    body = {"text": text, "messageId": f"{via}-{text}", **extras}
    if via == "socket":
        reply = dict(await scene.clients[user].call(
            "message:send", {"conversationId": scene.conversation, **body}))
        ok = reply.pop("ok")
        return Outcome(ok, None if ok else reply["error"]["code"], reply, None)
    answer = await scene.rest.post(f"/conversations/{scene.conversation}/messages",
                                   user=user, json=body)
    return Outcome(answer.status == 201, answer.code, answer.body, answer.status)


async def test_a_reply_with_mentions_reaches_the_room_and_history(scene: Scene, via: str) -> None:
    quoted = await scene.send(OTHER, "who takes Saturday?")

    reply = await send_with(scene, via, MEMBER, "I do", replyTo=quoted,
                            mentions=[OTHER, str(OWNER), OTHER])
    everyone = await send_with(scene, via, ADMIN, "all hands", mentionsEveryone=True)

    assert reply.ok and everyone.ok, (reply, everyone)
    [new] = await scene.clients[OWNER].wait_for("message:new",
                                                lambda m: m["id"] == reply.body["id"])
    preview = {"id": quoted, "userId": OTHER, "senderName": "user4",
               "excerpt": "who takes Saturday?"}
    assert (new["replyTo"], new["mentions"]) == (preview, [OTHER, OWNER])  # repeats once
    [called] = await scene.clients[OTHER].wait_for("message:new",
                                                  lambda m: m["id"] == everyone.body["id"])
    assert called["mentionsEveryone"] is True
    assert (await scene.call("socket", OTHER, "message:edit", quoted, text="Sunday?")).ok
    shown = (await history(scene))[reply.body["id"]]
    assert shown["replyTo"] == {**preview, "excerpt": "Sunday?"}  # as the quoted one is now
    assert (await scene.call("socket", OTHER, "message:delete", quoted)).ok
    shown = (await history(scene))[reply.body["id"]]
    assert shown["replyTo"] == {**preview, "excerpt": "", "deleted": True}


async def test_what_a_send_may_not_name_is_refused_and_nothing_is_stored(
    scene: Scene, via: str,
) -> None:
    elsewhere = await scene.server.conversation(MEMBER, OTHER)
    foreign = (await scene.server.chat.storage.messages.store_message(
        elsewhere, MEMBER, "user3", "elsewhere", "elsewhere", 0)).message.id
    gone = await scene.send(MEMBER, "gone")
    assert (await scene.call("socket", MEMBER, "message:delete", gone)).ok
    count = len(await history(scene))

    refusals = [
        (await send_with(scene, via, MEMBER, "a", mentions=[OTHER, OUTSIDER]), "INVALID_PAYLOAD"),
        (await send_with(scene, via, MEMBER, "b", mentions="everyone"), "INVALID_PAYLOAD"),
        (await send_with(scene, via, MEMBER, "c", mentionsEveryone=True), "FORBIDDEN"),
        (await send_with(scene, via, MEMBER, "d", mentionsEveryone="yes"), "INVALID_PAYLOAD"),
        (await send_with(scene, via, MEMBER, "e", replyTo=foreign), "NOT_FOUND"),
        (await send_with(scene, via, MEMBER, "f", replyTo=10**12), "NOT_FOUND"),
        (await send_with(scene, via, MEMBER, "g", replyTo=gone), "CONFLICT"),
        (await send_with(scene, via, MEMBER, "h", replyTo=0), "INVALID_PAYLOAD"),
        # past MAX_MENTIONS (50 by default), whoever they name
        (await send_with(scene, via, MEMBER, "i", mentions=[OTHER] * 51), "INVALID_PAYLOAD"),
    ]

    assert [(o.code, o.status) for o, _ in refusals] == [
        (code, None if via == "socket" else STATUS[code]) for _, code in refusals]
    assert len(await history(scene)) == count
    if via == "socket":  # the socket's failed ack, as for every refused send
        acks = scene.clients[MEMBER].received("message:ack")[-len(refusals):]
        assert [(a["status"], a["error"]["code"]) for a in acks] == [
            ("failed", code) for _, code in refusals]


# -- away and back -----------------------------------------------------------------------------


async def test_a_client_away_catches_up_on_every_change_by_its_cursor_socket_and_poll(
    scene: Scene,
) -> None:
    edited, deleted, pinned = [await scene.send(OWNER, f"m{n}") for n in range(3)]
    away = await scene.server.client(MEMBER)
    joined = await away.call("conversation:join", {"conversationId": scene.conversation})
    cursor = joined["cursor"]
    await scene.server.disconnect(away)

    # Meanwhile: an edit, a deletion, a pin and a rename (the owner's), and a new message.
    owner = scene.clients[OWNER]
    assert (await scene.call("socket", OWNER, "message:edit", edited, text="m0, edited")).ok
    assert (await scene.call("socket", OWNER, "message:delete", deleted)).ok
    assert (await scene.call("socket", OWNER, "message:pin", pinned)).ok
    renamed = await owner.call("conversation:update", {"conversationId": scene.conversation,
                                                       "title": "Night shift"})
    assert renamed["ok"] and renamed["changed"], renamed
    newest = await scene.send(ADMIN, "while you were away")
    admin = scene.clients[ADMIN]  # (in the room all along: what it heard live)
    [updated] = await admin.wait_for("message:updated")
    [deletion] = await admin.wait_for("message:deleted")
    [pin] = await admin.wait_for("message:pinned")
    [rename] = await admin.wait_for("conversation:updated")

    back = await scene.server.client(MEMBER)
    rejoined = await back.call("conversation:join", {"conversationId": scene.conversation,
                                                     "cursor": cursor})

    assert rejoined["ok"] and "resync" not in rejoined, rejoined
    expected = [("message:updated", updated), ("message:deleted", deletion),
                ("message:pinned", pin), ("conversation:updated", rename)]
    assert (updated["id"], updated["text"], updated["version"]) == (edited, "m0, edited", 2)
    assert (deletion["id"], deletion["deletedBy"], pin["id"]) == (deleted, OWNER, pinned)
    assert rename == {"conversationId": scene.conversation, "title": "Night shift",
                      "updatedBy": OWNER}
    replayed = [(event, back.received(event)) for event in
                ("message:updated", "message:deleted", "message:pinned", "conversation:updated")]
    assert replayed == [(event, [data]) for event, data in expected]
    [new] = back.received("message:new")
    assert (new["id"], new["text"]) == (newest, "while you were away")
    order = [event for event in back.sequence if event in dict(expected) or event == "message:new"]
    assert order == [*(event for event, _ in expected), "message:new"]  # as they happened
    assert rejoined["pinned"] == [pinned] and int(rejoined["cursor"]) > int(cursor)

    # The long-poll with the same cursor carries the same changes, the same way.
    polled = await scene.rest.poll(MEMBER, cursor)
    assert polled.status == 200
    changes = [(e["event"], e["data"]) for e in polled.body["events"]
               if e["event"] != "message:new"]
    assert changes == expected
    assert [e["data"]["id"] for e in polled.body["events"] if e["event"] == "message:new"] == [
        newest]
    # And a rejoin from the newest cursor replays nothing.
    quiet = await scene.server.client(MEMBER)
    assert (await quiet.call("conversation:join", {"conversationId": scene.conversation,
                                                   "cursor": rejoined["cursor"]}))["ok"]
    assert [event for event in quiet.sequence if event in dict(expected)] == []


async def test_a_join_with_a_cursor_the_server_never_gave_is_refused_outside_the_room(
    scene: Scene,
) -> None:
    stranger = await scene.server.client(MEMBER)
    ahead = str(await scene.server.chat.storage.events.event_log_last_id() + 1000)

    refusals = [await stranger.call("conversation:join", {"conversationId": scene.conversation,
                                                          "cursor": cursor})
                for cursor in (ahead, "-1", "x", 1.5, True, "9" * 30)]

    assert [r["error"]["code"] for r in refusals] == ["INVALID_PAYLOAD"] * 6
    sid = stranger.sio.get_sid()
    assert not scene.server.chat.fanout.in_room(sid, f"conversation:{scene.conversation}")
    assert scene.clients[OTHER].received("user:joined") == []


async def test_a_held_long_poll_is_woken_by_an_edit_a_deletion_and_a_pin(scene: Scene) -> None:
    messages = [await scene.send(MEMBER, f"m{n}") for n in range(3)]
    cursor = (await scene.rest.poll(OTHER)).body["cursor"]
    steps = [("message:edit", {"text": "edited"}, "message:updated"),
             ("message:pin", {}, "message:pinned"),
             ("message:delete", {}, "message:deleted")]
    for message, (operation, fields, told) in zip(messages, steps, strict=True):
        user = MEMBER if operation != "message:pin" else OWNER
        poll = await start_poll(scene.rest, OTHER, cursor)
        assert (await scene.call("socket", user, operation, message, **fields)).ok

        answer = await asyncio.wait_for(poll, 5)  # (the server's clock stands still)

        assert [e["event"] for e in answer.body["events"]] == [told]
        cursor = answer.body["cursor"]
