"""MessageChangeService and the send's extras, on the fake clock: who may edit,
delete, read versions and pin (docs/protocol.md, "Messages after they are
sent"), the edit window, the pin cap, and what a reply or mentions may name;
each refusal with its code and nothing written or told."""

from __future__ import annotations

from typing import Any

import pytest

from ecigdis_ws.domain import ChangedBy, StoredMessage, UserId
from ecigdis_ws.errors import ChatError, ErrorCode
from tests.services.conftest import ServiceHarness
from tests.support import set_role

OWNER, ADMIN, MEMBER, OTHER, OUTSIDER = 1, 2, 3, 4, 9


async def group(
    harness: ServiceHarness, ttl_s: float = 3600
) -> tuple[int, dict[UserId, str]]:
    """A conversation of four made over REST by OWNER, with ADMIN an admin; a
    socket per member (its token valid `ttl_s`), each in the room, and one of an
    outsider."""
    conversation = await harness.storage.conversations.create_conversation(
        "group", [OWNER, ADMIN, MEMBER, OTHER], harness.now_ms, ChangedBy(OWNER))
    await set_role(harness.storage, conversation, ADMIN, "admin")
    sockets = {}
    for user in (OWNER, ADMIN, MEMBER, OTHER, OUTSIDER):
        sockets[user] = await harness.socket()
        await harness.chat.sessions.authenticate(sockets[user], harness.token(user, ttl_s=ttl_s))
    await harness.join(conversation, *(sockets[u] for u in (OWNER, ADMIN, MEMBER, OTHER)))
    return conversation, sockets


async def sent(
    harness: ServiceHarness, sid: str, conversation: int, text: str = "hello"
) -> StoredMessage:
    return (await harness.send(sid, conversation, text, f"{text}-{harness.now_ms}")).message


async def refused(code: ErrorCode, work: Any) -> str:
    with pytest.raises(ChatError) as error:
        await work
    assert error.value.code == code, error.value
    return error.value.message


async def stored(harness: ServiceHarness, message: StoredMessage) -> StoredMessage:
    found = await harness.storage.changes.message(message.conversation_id, message.id)
    assert found is not None
    return found


# -- edits ----------------------------------------------------------------------------


async def test_the_sender_edits_within_the_window_and_the_room_hears_it(
    harness: ServiceHarness,
) -> None:
    conversation, sockets = await group(harness)
    message = await sent(harness, sockets[MEMBER], conversation, "see you at 9")
    await harness.advance(899)

    edited = await harness.chat.changes.edit(harness.actor(sockets[MEMBER]), conversation,
                                             message.id, "see you at 10")

    assert edited.changed and edited.message.text == "see you at 10"
    updated = {"id": message.id, "conversationId": conversation, "text": "see you at 10",
               "editedAt": edited.message.wire()["editedAt"], "version": 2}
    assert edited.wire() == {**updated, "changed": True}
    for user in (OWNER, ADMIN, OTHER):
        assert harness.received(sockets[user], "message:updated") == [updated]
    assert harness.received(sockets[MEMBER], "message:updated") == []  # it has the ack
    assert harness.received(sockets[OUTSIDER], "message:updated") == []


async def test_an_edit_after_the_window_is_a_conflict(harness: ServiceHarness) -> None:
    conversation, sockets = await group(harness)
    message = await sent(harness, sockets[MEMBER], conversation, "typo")
    await harness.advance(899)
    in_time = await harness.chat.changes.edit(harness.actor(sockets[MEMBER]), conversation,
                                              message.id, "typo fixed")
    assert in_time.changed
    await harness.advance(2)  # 901 s after sending: MESSAGE_EDIT_WINDOW_S is 900
    harness.forget_received()

    await refused(ErrorCode.CONFLICT, harness.chat.changes.edit(
        harness.actor(sockets[MEMBER]), conversation, message.id, "too late"))

    assert (await stored(harness, message)).text == "typo fixed"
    assert harness.received(sockets[OWNER], "message:updated") == []


async def test_an_edit_window_of_zero_never_closes(make_harness: Any) -> None:
    async with make_harness(MESSAGE_EDIT_WINDOW_S="0") as harness:
        conversation, sockets = await group(harness, ttl_s=21 * 86400)
        message = await sent(harness, sockets[MEMBER], conversation, "old")
        await harness.advance(20 * 86400)

        edited = await harness.chat.changes.edit(harness.actor(sockets[MEMBER]), conversation,
                                                 message.id, "weeks later")

        assert edited.changed and edited.message.version == 2


async def test_only_the_sender_edits_not_even_the_owner(harness: ServiceHarness) -> None:
    conversation, sockets = await group(harness)
    message = await sent(harness, sockets[MEMBER], conversation, "mine")

    for user in (OWNER, ADMIN, OTHER):
        await refused(ErrorCode.FORBIDDEN, harness.chat.changes.edit(
            harness.actor(sockets[user]), conversation, message.id, "theirs"))
    await refused(ErrorCode.FORBIDDEN, harness.chat.changes.edit(
        harness.actor(sockets[OUTSIDER]), conversation, message.id, "theirs"))

    assert await stored(harness, message) == message
    assert harness.received(sockets[MEMBER], "message:updated") == []


async def test_the_same_text_again_changes_nothing_and_tells_no_one(
    harness: ServiceHarness,
) -> None:
    conversation, sockets = await group(harness)
    message = await sent(harness, sockets[MEMBER], conversation, "same")

    again = await harness.chat.changes.edit(harness.actor(sockets[MEMBER]), conversation,
                                            message.id, "same")

    assert not again.changed and again.message == message
    assert await harness.storage.changes.message_versions(message.id) == []
    assert harness.received(sockets[OWNER], "message:updated") == []


async def test_editing_an_unknown_or_deleted_message(harness: ServiceHarness) -> None:
    conversation, sockets = await group(harness)
    elsewhere = await harness.conversation(MEMBER, OTHER)
    await harness.join(elsewhere, sockets[MEMBER])
    other_conversations = await sent(harness, sockets[MEMBER], elsewhere, "there")
    message = await sent(harness, sockets[MEMBER], conversation, "here")
    await harness.chat.changes.delete(harness.actor(sockets[MEMBER]), conversation, message.id)
    actor = harness.actor(sockets[MEMBER])

    await refused(ErrorCode.NOT_FOUND, harness.chat.changes.edit(
        actor, conversation, other_conversations.id, "x"))
    await refused(ErrorCode.NOT_FOUND, harness.chat.changes.edit(
        actor, conversation, 10**12, "x"))
    await refused(ErrorCode.CONFLICT, harness.chat.changes.edit(
        actor, conversation, message.id, "x"))


# -- deletions --------------------------------------------------------------------------


async def test_the_sender_deletes_their_own_at_any_time_and_the_room_hears_it(
    harness: ServiceHarness,
) -> None:
    conversation, sockets = await group(harness, ttl_s=11 * 86400)
    message = await sent(harness, sockets[MEMBER], conversation, "card number")
    member = harness.actor(sockets[MEMBER])
    await harness.advance(10 * 86400)  # no window for deletions

    wire = await harness.chat.changes.delete(member, conversation, message.id)

    assert wire == {"id": message.id, "conversationId": conversation, "deletedBy": MEMBER,
                    "deletedAt": wire["deletedAt"]}
    for user in (OWNER, ADMIN, OTHER):
        assert harness.received(sockets[user], "message:deleted") == [wire]
    assert harness.received(sockets[MEMBER], "message:deleted") == []
    tombstone = await stored(harness, message)
    assert (tombstone.text, tombstone.deleted_by) == ("", MEMBER)
    await refused(ErrorCode.CONFLICT, harness.chat.changes.delete(
        member, conversation, message.id))  # deleted already


async def test_the_room_hears_a_deletion_before_its_scrub_and_the_answer_after(
    harness: ServiceHarness, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The scrub (on SQLite a checkpoint that waits for the writer) delays neither
    the room's `message:deleted` nor, since it is shared, other deletions much; the
    caller's answer still waits for it, so a deletion answered is off the disk."""
    conversation, sockets = await group(harness)
    message = await sent(harness, sockets[MEMBER], conversation, "card number")
    heard_at_scrub: list[int] = []
    scrub = harness.storage.changes.scrub

    async def watched() -> None:
        heard_at_scrub.append(len(harness.received(sockets[OWNER], "message:deleted")))
        await scrub()

    monkeypatch.setattr(harness.storage.changes, "scrub", watched)
    await harness.chat.changes.delete(harness.actor(sockets[MEMBER]), conversation, message.id)

    assert heard_at_scrub == [1]


@pytest.mark.parametrize("moderator", [OWNER, ADMIN])
async def test_an_owner_or_admin_deletes_what_others_posted(
    harness: ServiceHarness, moderator: int,
) -> None:
    conversation, sockets = await group(harness)
    message = await sent(harness, sockets[MEMBER], conversation, "abuse")

    wire = await harness.chat.changes.delete(harness.actor(sockets[moderator]), conversation,
                                             message.id)

    assert wire["deletedBy"] == moderator
    assert harness.received(sockets[MEMBER], "message:deleted") == [wire]
    assert (await stored(harness, message)).deleted_by == moderator


async def test_a_member_cannot_delete_what_others_posted(harness: ServiceHarness) -> None:
    conversation, sockets = await group(harness)
    message = await sent(harness, sockets[OWNER], conversation, "the owner's")

    await refused(ErrorCode.FORBIDDEN, harness.chat.changes.delete(
        harness.actor(sockets[MEMBER]), conversation, message.id))
    await refused(ErrorCode.FORBIDDEN, harness.chat.changes.delete(
        harness.actor(sockets[OUTSIDER]), conversation, message.id))

    assert await stored(harness, message) == message
    assert harness.received(sockets[OTHER], "message:deleted") == []


async def test_the_server_api_deletes_anyones_message_naming_no_one(
    harness: ServiceHarness,
) -> None:
    conversation, sockets = await group(harness)
    message = await sent(harness, sockets[OWNER], conversation, "reported")

    wire = await harness.chat.changes.delete(None, conversation, message.id)

    assert wire["deletedBy"] is None
    for user in (OWNER, ADMIN, MEMBER, OTHER):  # no socket acted: everyone in the room hears
        assert harness.received(sockets[user], "message:deleted") == [wire]
    assert (await stored(harness, message)).deleted_by is None
    await refused(ErrorCode.NOT_FOUND, harness.chat.changes.delete(None, conversation, 10**12))


# -- versions ---------------------------------------------------------------------------


async def test_versions_are_for_owners_admins_and_the_server_api(
    harness: ServiceHarness,
) -> None:
    conversation, sockets = await group(harness)
    message = await sent(harness, sockets[MEMBER], conversation, "you are wonderful")
    await harness.advance(5)
    await harness.chat.changes.edit(harness.actor(sockets[MEMBER]), conversation, message.id,
                                    "nothing to see")

    for reader in (harness.actor(sockets[OWNER]), harness.actor(sockets[ADMIN]), None):
        now, earlier = await harness.chat.changes.versions(reader, conversation, message.id)
        assert (now.text, now.version) == ("nothing to see", 2)
        assert [(v.version, v.text) for v in earlier] == [(1, "you are wonderful")]
    for user in (MEMBER, OTHER, OUTSIDER):  # the sender too: they know what they wrote
        await refused(ErrorCode.FORBIDDEN, harness.chat.changes.versions(
            harness.actor(sockets[user]), conversation, message.id))
    await refused(ErrorCode.NOT_FOUND, harness.chat.changes.versions(None, conversation, 10**12))


# -- pins ---------------------------------------------------------------------------------


async def test_owners_and_admins_pin_and_unpin_and_the_room_hears_it(
    harness: ServiceHarness,
) -> None:
    conversation, sockets = await group(harness)
    message = await sent(harness, sockets[MEMBER], conversation, "the rota")

    assert await harness.chat.changes.pin(harness.actor(sockets[ADMIN]), conversation,
                                          message.id, True)
    assert not await harness.chat.changes.pin(harness.actor(sockets[OWNER]), conversation,
                                              message.id, True)  # pinned already: told no one
    at = harness.received(sockets[MEMBER], "message:pinned")[0]["pinnedAt"]
    for user in (OWNER, MEMBER, OTHER):
        assert harness.received(sockets[user], "message:pinned") == [
            {"id": message.id, "conversationId": conversation, "pinnedBy": ADMIN, "pinnedAt": at}]
    assert harness.received(sockets[ADMIN], "message:pinned") == []
    assert await harness.storage.changes.pinned_ids(conversation) == [message.id]
    joined = await harness.chat.conversations.join(harness.actor(sockets[OTHER]), conversation,
                                                   None)
    assert joined.pinned == [message.id]

    assert await harness.chat.changes.pin(harness.actor(sockets[OWNER]), conversation,
                                          message.id, False)
    assert [u["unpinnedBy"] for u in harness.received(sockets[ADMIN], "message:unpinned")] == [
        OWNER]
    assert await harness.storage.changes.pinned_ids(conversation) == []


async def test_a_member_of_a_group_cannot_pin_either_member_of_a_pair_can(
    harness: ServiceHarness,
) -> None:
    conversation, sockets = await group(harness)
    message = await sent(harness, sockets[MEMBER], conversation, "group")
    pair = await harness.conversation(MEMBER, OTHER)  # (made by the main site: no owner)
    await harness.join(pair, sockets[MEMBER], sockets[OTHER])
    between = await sent(harness, sockets[MEMBER], pair, "pair")

    await refused(ErrorCode.FORBIDDEN, harness.chat.changes.pin(
        harness.actor(sockets[MEMBER]), conversation, message.id, True))
    await refused(ErrorCode.FORBIDDEN, harness.chat.changes.pin(
        harness.actor(sockets[OUTSIDER]), pair, between.id, True))
    assert await harness.storage.changes.pinned_ids(conversation) == []

    assert await harness.chat.changes.pin(harness.actor(sockets[OTHER]), pair, between.id, True)
    assert await harness.chat.changes.pin(harness.actor(sockets[MEMBER]), pair, between.id, False)
    # (and a pair renames, which a member of a group may not)
    assert await harness.chat.conversations.rename(harness.actor(sockets[OTHER]), pair, "us")
    await refused(ErrorCode.FORBIDDEN, harness.chat.conversations.rename(
        harness.actor(sockets[MEMBER]), conversation, "ours"))


async def test_pins_past_the_cap_are_a_conflict(make_harness: Any) -> None:
    async with make_harness(MAX_PINS_PER_CONVERSATION="2") as harness:
        conversation, sockets = await group(harness)
        owner = harness.actor(sockets[OWNER])
        messages = [await sent(harness, sockets[MEMBER], conversation, f"m{n}") for n in range(3)]
        for message in messages[:2]:
            await harness.advance(1)
            assert await harness.chat.changes.pin(owner, conversation, message.id, True)

        message = await refused(ErrorCode.CONFLICT, harness.chat.changes.pin(
            owner, conversation, messages[2].id, True))

        assert "2" in message
        assert await harness.storage.changes.pinned_ids(conversation) == [
            messages[0].id, messages[1].id]
        assert len(harness.received(sockets[MEMBER], "message:pinned")) == 2


async def test_a_deleted_message_cannot_be_pinned_reacted_to_or_deleted_again(
    harness: ServiceHarness,
) -> None:
    conversation, sockets = await group(harness)
    message = await sent(harness, sockets[MEMBER], conversation, "gone")
    await harness.chat.reactions.toggle(harness.actor(sockets[OTHER]), conversation, message.id,
                                        "👍")
    await harness.chat.changes.delete(harness.actor(sockets[OWNER]), conversation, message.id)
    harness.forget_received()

    await refused(ErrorCode.CONFLICT, harness.chat.changes.pin(
        harness.actor(sockets[OWNER]), conversation, message.id, True))
    await refused(ErrorCode.CONFLICT, harness.chat.reactions.toggle(
        harness.actor(sockets[OTHER]), conversation, message.id, "👍"))
    await refused(ErrorCode.CONFLICT, harness.chat.changes.delete(
        harness.actor(sockets[ADMIN]), conversation, message.id))

    assert await harness.storage.reactions.reactions_of([message.id]) == {}
    assert await harness.storage.changes.pinned_ids(conversation) == []
    assert harness.received(sockets[MEMBER]) == []


# -- what a send may carry beside its text ---------------------------------------------------


async def post(
    harness: ServiceHarness, sid: str, conversation: int, text: str, *,
    reply_to: int | None = None, mentions: tuple[UserId, ...] = (), everyone: bool = False,
) -> StoredMessage:
    result = await harness.chat.messages.post(
        harness.actor(sid), conversation, text, f"{text}-{harness.now_ms}", reply_to, mentions,
        everyone)
    return result.message


async def test_a_reply_and_mentions_of_members_are_stored_and_fanned_out(
    harness: ServiceHarness,
) -> None:
    conversation, sockets = await group(harness)
    quoted = await sent(harness, sockets[OTHER], conversation, "who takes Saturday?")

    reply = await post(harness, sockets[MEMBER], conversation, "I do", reply_to=quoted.id,
                       mentions=(OTHER, OWNER))
    called = await post(harness, sockets[ADMIN], conversation, "all hands", everyone=True)

    [new, everyone] = harness.received(sockets[OWNER], "message:new")[-2:]
    assert new["replyTo"] == {"id": quoted.id, "userId": OTHER, "senderName": "user4",
                              "excerpt": "who takes Saturday?"}
    assert new["mentions"] == [OTHER, OWNER]
    assert everyone["mentionsEveryone"] is True and "mentions" not in everyone
    assert (await stored(harness, reply)).reply_to == reply.reply_to
    assert (await stored(harness, called)).mentions.everyone


async def test_what_a_send_may_not_carry_is_refused_and_nothing_is_stored(
    make_harness: Any,
) -> None:
    async with make_harness(RATE_LIMIT_MESSAGES="0") as harness:
        await refusals_of_a_send(harness)


async def refusals_of_a_send(harness: ServiceHarness) -> None:
    conversation, sockets = await group(harness)
    elsewhere = await harness.conversation(MEMBER, OTHER)
    await harness.join(elsewhere, sockets[MEMBER])
    foreign = await sent(harness, sockets[MEMBER], elsewhere, "in another conversation")
    deleted = await sent(harness, sockets[MEMBER], conversation, "deleted")
    await harness.chat.changes.delete(harness.actor(sockets[MEMBER]), conversation, deleted.id)
    before = await harness.storage.messages.messages_after(conversation, 0, 100)
    harness.forget_received()
    member = sockets[MEMBER]

    message = await refused(ErrorCode.INVALID_PAYLOAD, post(
        harness, member, conversation, "hey", mentions=(OTHER, OUTSIDER)))
    assert str(OUTSIDER) in message
    await refused(ErrorCode.FORBIDDEN, post(harness, member, conversation, "all", everyone=True))
    await refused(ErrorCode.NOT_FOUND, post(harness, member, conversation, "re",
                                            reply_to=foreign.id))
    await refused(ErrorCode.NOT_FOUND, post(harness, member, conversation, "re", reply_to=10**12))
    await refused(ErrorCode.CONFLICT, post(harness, member, conversation, "re",
                                           reply_to=deleted.id))
    await refused(ErrorCode.FORBIDDEN, post(harness, sockets[OUTSIDER], conversation, "re",
                                            reply_to=deleted.id))  # membership first

    assert await harness.storage.messages.messages_after(conversation, 0, 100) == before
    assert harness.received(sockets[OWNER], "message:new") == []
