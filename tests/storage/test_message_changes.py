"""A message after it is sent, in storage (migration 8), on both engines: an edit
keeps the text it replaced and bumps the version, only over the version it read;
a deletion erases the text, its versions, mentions, reactions and pin, leaving a
tombstone, and leaves no trace of any of its texts in any table (nor, on SQLite,
in the database file or its write-ahead log); pins are capped and kept in the
order they were pinned; the event log a join's `cursor` replays shows each
message as it is now; a reply's preview follows the quoted message; and a
version-7 database upgrades with its rows readable and an owner per conversation.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ecigdis_ws.domain import ChangedBy, Mentions, ReplyPreview, StoredMessage, excerpt
from ecigdis_ws.storage import schema
from ecigdis_ws.storage.base import Storage
from ecigdis_ws.storage.message_changes import MessageDeleted, PinsFull
from ecigdis_ws.storage.migrations import MIGRATIONS
from ecigdis_ws.storage.sql import SqlStorage
from ecigdis_ws.storage.sqlite import sqlite_path
from tests.storage.conftest import Backend, OpenStorage, store_as_version_7

NOW_MS = 1_764_064_800_000  # 2025-11-25T10:00:00.000Z


async def send(
    storage: Storage, conversation: int, text: str, *, user: int = 1, client_id: str | None = None,
    at_ms: int = NOW_MS, reply_to: ReplyPreview | None = None, mentions: Mentions | None = None,
) -> StoredMessage:
    result = await storage.messages.store_message(
        conversation, user, f"user{user}", client_id or text[:60], text, at_ms,
        reply_to=reply_to, mentions=mentions or Mentions(),
    )
    return result.message


async def now(storage: Storage, message: StoredMessage) -> StoredMessage:
    """The message as it reads now (a tombstone once deleted)."""
    found = await storage.changes.message(message.conversation_id, message.id)
    assert found is not None
    return found


def preview(message: StoredMessage) -> ReplyPreview:
    """replyTo as the service checks it before storing a reply."""
    return ReplyPreview(message.id, message.user_id, message.sender_name, excerpt(message.text),
                        deleted=False)


# -- edits -------------------------------------------------------------------------


async def test_an_edit_keeps_the_text_it_replaced_and_bumps_the_version(
    storage: Storage,
) -> None:
    conversation = await storage.conversations.create_conversation("c", [1, 2], NOW_MS)
    sent = await send(storage, conversation, "the rota is on Monday")

    first = await storage.changes.edit_message(sent, "the rota is on Tuesday", NOW_MS + 10)
    assert first is not None
    second = await storage.changes.edit_message(first, "the rota is on Wednesday", NOW_MS + 20)
    assert second is not None

    assert (second.text, second.version, second.edited_at_ms) == (
        "the rota is on Wednesday", 3, NOW_MS + 20)
    assert (second.id, second.created_at_ms, second.client_message_id) == (
        sent.id, sent.created_at_ms, sent.client_message_id)  # same place, same message
    assert await now(storage, sent) == second
    versions = await storage.changes.message_versions(sent.id)
    assert [(v.version, v.text, v.written_at_ms, v.replaced_at_ms) for v in versions] == [
        (1, "the rota is on Monday", NOW_MS, NOW_MS + 10),
        (2, "the rota is on Tuesday", NOW_MS + 10, NOW_MS + 20),
    ]
    wire = second.wire()
    assert (wire["text"], wire["version"], wire["editedAt"]) == (
        "the rota is on Wednesday", 3, "2025-11-25T10:00:00.020Z")


async def test_an_edit_over_a_version_read_before_another_edit_writes_nothing(
    storage: Storage,
) -> None:
    conversation = await storage.conversations.create_conversation("c", [1, 2], NOW_MS)
    sent = await send(storage, conversation, "draft")
    winner = await storage.changes.edit_message(sent, "first edit", NOW_MS + 1)
    assert winner is not None
    last_event = await storage.events.event_log_last_id()

    stale = await storage.changes.edit_message(sent, "second edit, read before", NOW_MS + 2)

    assert stale is None
    assert await now(storage, sent) == winner
    assert [v.text for v in await storage.changes.message_versions(sent.id)] == ["draft"]
    assert await storage.events.event_log_last_id() == last_event  # nothing logged


async def test_a_deleted_message_cannot_be_edited(storage: Storage) -> None:
    conversation = await storage.conversations.create_conversation("c", [1, 2], NOW_MS)
    sent = await send(storage, conversation, "oops")
    assert await storage.changes.delete_message(sent, 1, NOW_MS + 1)

    assert await storage.changes.edit_message(sent, "resurrected", NOW_MS + 2) is None
    assert (await now(storage, sent)).text == ""
    assert await storage.changes.message_versions(sent.id) == []


# -- deletions ---------------------------------------------------------------------


async def test_a_deletion_erases_text_versions_mentions_reactions_and_pin_keeping_a_tombstone(
    storage: Storage,
) -> None:
    conversation = await storage.conversations.create_conversation("c", [1, 2, 3], NOW_MS)
    sent = await send(storage, conversation, "card 4111 1111 1111 1111",
                      mentions=Mentions((2,), everyone=True))
    kept = await send(storage, conversation, "unrelated")
    edited = await storage.changes.edit_message(sent, "card 4111 …", NOW_MS + 1)
    assert edited is not None
    await storage.reactions.toggle_reaction(sent.id, 2, "👍", NOW_MS + 2)
    await storage.reactions.toggle_reaction(kept.id, 2, "👍", NOW_MS + 2)
    assert await storage.changes.pin(edited, 1, NOW_MS + 3, max_pins=10)
    assert await storage.changes.pin(kept, 1, NOW_MS + 4, max_pins=10)

    assert await storage.changes.delete_message(edited, 3, NOW_MS + 5)
    again = await storage.changes.delete_message(edited, 3, NOW_MS + 6)

    assert not again
    tombstone = await now(storage, sent)
    assert (tombstone.text, tombstone.mentions, tombstone.deleted_at_ms, tombstone.deleted_by) == (
        "", Mentions(), NOW_MS + 5, 3)
    assert (tombstone.id, tombstone.user_id, tombstone.created_at_ms) == (
        sent.id, 1, sent.created_at_ms)  # its place, sender and time stay
    assert tombstone.wire() == {
        "id": sent.id, "messageId": sent.client_message_id, "conversationId": conversation,
        "userId": 1, "senderName": "user1", "text": "", "createdAt": "2025-11-25T10:00:00.000Z",
        "editedAt": "2025-11-25T10:00:00.001Z", "version": 2,
        "deleted": True, "deletedAt": "2025-11-25T10:00:00.005Z", "deletedBy": 3,
    }
    assert await storage.changes.message_versions(sent.id) == []
    assert list(await storage.reactions.reactions_of([sent.id, kept.id])) == [kept.id]
    assert await storage.changes.pinned_ids(conversation) == [kept.id]
    assert await now(storage, kept) == kept  # nothing else touched
    assert isinstance(storage, SqlStorage)
    logged = await storage.engine.fetch_all(
        f"SELECT message_id, emoji FROM {storage.tables.prefix}events "
        "WHERE kind = 'reaction' ORDER BY message_id")
    assert [tuple(row) for row in logged] == [(sent.id, None), (kept.id, "👍")]


async def test_a_deletion_by_the_server_api_names_no_one(storage: Storage) -> None:
    conversation = await storage.conversations.create_conversation("c", [1, 2], NOW_MS)
    sent = await send(storage, conversation, "spam")

    assert await storage.changes.delete_message(sent, None, NOW_MS + 1)

    tombstone = await now(storage, sent)
    assert (tombstone.deleted, tombstone.deleted_by) == (True, None)
    [deleted] = [e for e in await storage.events.conversation_events(conversation, 0, 100)
                 if e.kind == "deleted"]
    assert deleted.wire() == {"event": "message:deleted", "data": {
        "id": sent.id, "conversationId": conversation, "deletedBy": None,
        "deletedAt": "2025-11-25T10:00:00.001Z"}}


async def table_rows(storage: Storage) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table of this storage (its prefix), whatever the engine."""
    assert isinstance(storage, SqlStorage)
    engine, prefix = storage.engine, storage.tables.prefix
    if engine.dialect.name == "sqlite":
        listed = await engine.fetch_all("SELECT name FROM sqlite_master WHERE type = 'table'")
    else:
        listed = await engine.fetch_all(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()")
    names = sorted(str(row[0]) for row in listed if str(row[0]).startswith(prefix))
    quote = '"' if engine.dialect.name == "sqlite" else "`"
    return {name: list(await engine.fetch_all(f"SELECT * FROM {quote}{name}{quote}"))
            for name in names}


def found_in(rows: dict[str, list[tuple[object, ...]]], needles: list[str]) -> list[str]:
    """Where any needle is in any column of any row, as text or bytes."""
    hits = []
    for table, table_rows_ in rows.items():
        for row in table_rows_:
            for value in row:
                text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
                hits += [f"{table}: {needle[:20]}" for needle in needles if needle in text]
    return hits


async def test_after_a_deletion_no_table_holds_any_text_the_message_ever_had(
    storage: Storage, backend: Backend,
) -> None:
    """The promise of docs/security.md, "Deletion": read back from every table of
    the database (and on SQLite from the raw bytes of the file and its WAL), none
    of the texts the message had, its earlier versions included, is left."""
    conversation = await storage.conversations.create_conversation("c", [1, 2, 3], NOW_MS)
    texts = ["ORIGINAL-7f3a card 4111 1111 1111 1111",
             "FIRST-EDIT-7f3a " + "overflow page " * 400,  # longer than a page: its overflow too
             "LATEST-EDIT-7f3a my address is 12 Acacia Avenue"]
    before = [await send(storage, conversation, f"before {n}", user=2) for n in range(20)]
    sent = await send(storage, conversation, texts[0], client_id="c-1",
                      mentions=Mentions((2, 3)))
    message = sent
    for n, text in enumerate(texts[1:], start=1):
        edited = await storage.changes.edit_message(message, text, NOW_MS + n)
        assert edited is not None
        message = edited
    after = [await send(storage, conversation, f"after {n}", user=3) for n in range(20)]
    reply = await send(storage, conversation, "what?", user=2, reply_to=preview(message))
    await storage.reactions.toggle_reaction(sent.id, 2, "😮", NOW_MS + 5)
    assert await storage.changes.pin(message, 1, NOW_MS + 6, max_pins=10)
    needles = [text.split()[0] for text in texts] + texts
    assert len(found_in(await table_rows(storage), needles)) >= 3  # (the test can see them)
    if backend.name == "sqlite":
        assert texts[0].encode() in _sqlite_bytes(backend)

    assert await storage.changes.delete_message(message, 1, NOW_MS + 7)
    await storage.changes.scrub()

    assert found_in(await table_rows(storage), needles) == []
    if backend.name == "sqlite":
        raw = _sqlite_bytes(backend)
        assert [n for n in needles if n.encode() in raw] == []
    # Everything else is as it was.
    for other in [*before, *after, reply]:
        assert (await now(storage, other)).text == other.text
    quoting = await now(storage, reply)
    assert quoting.reply_to == ReplyPreview(sent.id, 1, "user1", "", deleted=True)


@pytest.mark.backends("sqlite")  # (MariaDB keeps no write-ahead log of its own to scrub)
async def test_deletions_scrubbing_at_once_share_one_checkpoint(
    storage: Storage, backend: Backend, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each deletion waits for a checkpoint begun after its commit; those asked for
    while one has not begun share it, so a burst of deletions holds the writer for
    one checkpoint, not one each."""
    conversation = await storage.conversations.create_conversation("c", [1, 2], NOW_MS)
    doomed = [await send(storage, conversation, f"SECRET-{n}", client_id=f"s{n}")
              for n in range(5)]
    for message in doomed:
        assert await storage.changes.delete_message(message, 1, NOW_MS + 1)
    writer = storage.engine._writer  # type: ignore[attr-defined]
    checkpoints: list[str] = []
    run = writer.fetch_one

    async def counted(sql: str, params: tuple[object, ...] = ()) -> object:
        checkpoints.append(sql)
        return await run(sql, params)

    monkeypatch.setattr(writer, "fetch_one", counted)
    async with asyncio.TaskGroup() as burst:
        for _ in doomed:
            burst.create_task(storage.changes.scrub())

    assert checkpoints == ["PRAGMA wal_checkpoint(TRUNCATE)"]
    raw = _sqlite_bytes(backend)
    assert [n for n in range(len(doomed)) if f"SECRET-{n}".encode() in raw] == []
    await storage.changes.scrub()  # one asked for later runs a checkpoint of its own
    assert len(checkpoints) == 2


def _sqlite_bytes(backend: Backend) -> bytes:
    """The database file and its write-ahead log, as they are on disk."""
    path = Path(sqlite_path(backend.settings().database_url))
    wal = path.with_name(path.name + "-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


# -- pins ------------------------------------------------------------------------------


async def test_pins_are_capped_and_listed_in_the_order_they_were_pinned(
    storage: Storage,
) -> None:
    conversation = await storage.conversations.create_conversation("c", [1, 2], NOW_MS)
    other = await storage.conversations.create_conversation("d", [1, 2], NOW_MS)
    first, second, third, fourth = [
        await send(storage, conversation, f"m{n}") for n in range(4)]
    elsewhere = await send(storage, other, "elsewhere")

    assert await storage.changes.pin(third, 1, NOW_MS + 1, max_pins=3)
    assert await storage.changes.pin(first, 2, NOW_MS + 2, max_pins=3)
    assert not await storage.changes.pin(first, 2, NOW_MS + 3, max_pins=3)  # pinned already
    assert await storage.changes.pin(second, 1, NOW_MS + 4, max_pins=3)
    last_event = await storage.events.event_log_last_id()
    with pytest.raises(PinsFull):
        await storage.changes.pin(fourth, 1, NOW_MS + 5, max_pins=3)
    assert await storage.events.event_log_last_id() == last_event  # nothing written
    assert await storage.changes.pin(elsewhere, 1, NOW_MS + 5, max_pins=3)  # per conversation

    assert await storage.changes.pinned_ids(conversation) == [third.id, first.id, second.id]
    assert await storage.changes.unpin(first, 1, NOW_MS + 6)
    assert not await storage.changes.unpin(first, 1, NOW_MS + 7)  # not pinned any more
    assert await storage.changes.pin(fourth, 1, NOW_MS + 8, max_pins=3)  # room again
    assert await storage.changes.pinned_ids(conversation) == [third.id, second.id, fourth.id]
    assert await storage.changes.pinned_ids(other) == [elsewhere.id]
    # Pins made in the same millisecond keep the order they were made in.
    assert await storage.changes.unpin(third, 1, NOW_MS + 9)
    assert await storage.changes.unpin(second, 1, NOW_MS + 9)
    for message in (third, first, second):
        assert await storage.changes.pin(message, 1, NOW_MS + 10, max_pins=4)
    assert await storage.changes.pinned_ids(conversation) == [
        fourth.id, third.id, first.id, second.id]
    [listed] = [c for c in await storage.summaries.list_conversations(1, 10)
                if c.id == conversation]
    assert listed.pinned == (fourth.id, third.id, first.id, second.id)


async def test_a_message_deleted_meanwhile_is_not_pinned(storage: Storage) -> None:
    """The service reads the message, then pins it: a deletion in between (another
    request) must not leave a pin on its tombstone."""
    conversation = await storage.conversations.create_conversation("c", [1, 2], NOW_MS)
    sent = await send(storage, conversation, "going")
    assert await storage.changes.delete_message(sent, 1, NOW_MS + 1)

    with pytest.raises(MessageDeleted):  # (CONFLICT in the service)
        await storage.changes.pin(sent, 2, NOW_MS + 2, max_pins=10)

    assert await storage.changes.pinned_ids(conversation) == []


# -- the event log as a join's `cursor` replays it -----------------------------------------


async def test_conversation_events_show_each_message_as_it_is_now(storage: Storage) -> None:
    conversation = await storage.conversations.create_conversation("c", [1, 2], NOW_MS)
    other = await storage.conversations.create_conversation("d", [1, 2], NOW_MS)
    cursor = await storage.events.event_log_last_id()
    kept = await send(storage, conversation, "kept, then edited")
    gone = await send(storage, conversation, "edited, then deleted")
    await send(storage, other, "another conversation's")
    edited = await storage.changes.edit_message(kept, "kept, edited once", NOW_MS + 1)
    assert edited is not None
    edited = await storage.changes.edit_message(edited, "kept, edited twice", NOW_MS + 2)
    assert edited is not None
    doomed = await storage.changes.edit_message(gone, "edited", NOW_MS + 3)
    assert doomed is not None
    await storage.reactions.toggle_reaction(gone.id, 2, "👍", NOW_MS + 4)
    await storage.reactions.toggle_reaction(kept.id, 2, "🎉", NOW_MS + 4)
    assert await storage.receipts.advance_read(conversation, 2, kept.id, NOW_MS + 4)
    assert await storage.changes.pin(edited, 1, NOW_MS + 5, max_pins=10)
    assert await storage.changes.delete_message(doomed, 1, NOW_MS + 6)
    assert await storage.conversations.rename_conversation(conversation, "Rota", 1, NOW_MS + 7)
    assert await storage.changes.unpin(edited, 2, NOW_MS + 8)

    replayed = await storage.events.conversation_events(conversation, cursor, 100)

    assert [(e.kind, e.message_id) for e in replayed] == [
        ("message", kept.id),
        ("message", gone.id),  # (its tombstone, below)
        ("edited", kept.id),
        ("edited", kept.id),
        # (the edit of the message deleted since is told by its deletion alone, and
        # the reaction on it went with it; a read position is not replayed)
        ("reaction", kept.id),
        ("pinned", kept.id),
        ("deleted", gone.id),
        ("renamed", 0),
        ("unpinned", kept.id),
    ]
    wires = [e.wire() for e in replayed]
    assert wires[0]["data"]["text"] == "kept, edited twice"  # as it is now
    assert wires[0]["data"]["version"] == 3
    assert [r["emoji"] for r in wires[0]["data"]["reactions"]] == ["🎉"]
    assert (wires[1]["data"]["text"], wires[1]["data"]["deleted"]) == ("", True)
    assert wires[2] == wires[3] == {"event": "message:updated", "data": {
        "id": kept.id, "conversationId": conversation, "text": "kept, edited twice",
        "editedAt": "2025-11-25T10:00:00.002Z", "version": 3}}
    assert wires[5] == {"event": "message:pinned", "data": {
        "id": kept.id, "conversationId": conversation, "pinnedBy": 1,
        "pinnedAt": "2025-11-25T10:00:00.005Z"}}
    assert wires[6]["data"] == {"id": gone.id, "conversationId": conversation,
                                "deletedBy": 1, "deletedAt": "2025-11-25T10:00:00.006Z"}
    assert wires[7] == {"event": "conversation:updated", "data": {
        "conversationId": conversation, "title": "Rota", "updatedBy": 1}}
    assert wires[8]["data"] == {"id": kept.id, "conversationId": conversation,
                                "unpinnedBy": 2, "unpinnedAt": "2025-11-25T10:00:00.008Z"}
    # Paged from any position in between, and capped.
    assert [e.id for e in await storage.events.conversation_events(
        conversation, replayed[3].id, 2)] == [replayed[4].id, replayed[5].id]
    # The long-poll reads the same rows (and the read position besides).
    polled = await storage.events.events_for_user(
        2, cursor, await storage.events.event_log_last_id(), 100)
    assert [e.wire() for e in polled if e.conversation_id == conversation and e.kind != "read"] \
        == wires


# -- replies -----------------------------------------------------------------------------


async def test_a_replys_preview_follows_the_quoted_messages_edit_and_deletion(
    storage: Storage,
) -> None:
    conversation = await storage.conversations.create_conversation("c", [1, 2], NOW_MS)
    quoted = await send(storage, conversation, "delivery at 9")
    reply = await send(storage, conversation, "ok", user=2, reply_to=preview(quoted))
    long_quoted = await send(storage, conversation, "é" * 200, client_id="long")
    long_reply = await send(storage, conversation, "long", user=2,
                            reply_to=preview(long_quoted))

    assert (await now(storage, reply)).reply_to == ReplyPreview(
        quoted.id, 1, "user1", "delivery at 9", deleted=False)
    assert reply.reply_to == (await now(storage, reply)).reply_to  # as the send returned it
    cut = (await now(storage, long_reply)).reply_to
    assert cut is not None and cut.excerpt == "é" * 119 + "…"
    edited = await storage.changes.edit_message(quoted, "delivery at 10", NOW_MS + 1)
    assert edited is not None
    assert (await now(storage, reply)).reply_to == ReplyPreview(
        quoted.id, 1, "user1", "delivery at 10", deleted=False)

    assert await storage.changes.delete_message(edited, 1, NOW_MS + 2)

    shown = await now(storage, reply)
    assert shown.reply_to == ReplyPreview(quoted.id, 1, "user1", "", deleted=True)
    assert shown.wire()["replyTo"] == {"id": quoted.id, "userId": 1, "senderName": "user1",
                                       "excerpt": "", "deleted": True}
    [page] = [m for m in await storage.messages.messages_after(conversation, 0, 10)
              if m.id == reply.id]
    assert page.reply_to == shown.reply_to  # history reads it the same way


# -- migration 8 ---------------------------------------------------------------------------


async def _at_version_7(open_unmigrated: OpenStorage, monkeypatch: pytest.MonkeyPatch) -> Storage:
    with monkeypatch.context() as at_version_7:
        at_version_7.setattr(schema, "MIGRATIONS", MIGRATIONS[:7])
        old = await open_unmigrated()
        assert await old.migrate() == [1, 2, 3, 4, 5, 6, 7]
    return old


async def test_migration_8_keeps_existing_rows_readable_and_makes_the_earliest_member_owner(
    open_unmigrated: OpenStorage, monkeypatch: pytest.MonkeyPatch,
) -> None:
    old = await _at_version_7(open_unmigrated, monkeypatch)
    first = await old.conversations.create_conversation("kept", [1, 2], NOW_MS)
    second = await old.conversations.create_conversation("pair", [4], NOW_MS + 5)
    await old.conversations.add_members(first, [3], NOW_MS + 10)  # joined later
    await old.conversations.add_members(second, [5], NOW_MS + 20)
    messages = [await store_as_version_7(old, first, 1, "Ann", f"m{n}", f"text {n}", NOW_MS + n)
                for n in range(3)]
    await old.reactions.toggle_reaction(messages[0].id, 2, "👍", NOW_MS + 30)

    assert await old.migrate() == [8]

    for message in messages:
        assert await old.changes.message(first, message.id) == message
    assert await old.messages.messages_after(first, 0, 10) == messages
    read_back = await old.changes.message(first, messages[0].id)
    assert read_back is not None and read_back.wire() == {  # the Node server's shape exactly
        "id": messages[0].id, "messageId": "m0", "conversationId": first, "userId": 1,
        "senderName": "Ann", "text": "text 0", "createdAt": "2025-11-25T10:00:00.000Z"}
    replayed = await old.events.conversation_events(first, 0, 100)
    assert [(e.kind, e.message) for e in replayed] == [
        *(("message", m) for m in messages), ("reaction", None)]
    # The earliest members own what existed before roles (both who joined first);
    # the rest are members.
    assert [(m.user_id, m.role) for m in await old.conversations.members(first)] == [
        (1, "owner"), (2, "owner"), (3, "member")]
    assert [(m.user_id, m.role) for m in await old.conversations.members(second)] == [
        (4, "owner"), (5, "member")]
    # And everything new works on the upgraded tables.
    edited = await old.changes.edit_message(messages[1], "text 1, edited", NOW_MS + 40)
    assert edited is not None and edited.version == 2
    assert await old.changes.delete_message(messages[0], None, NOW_MS + 50)
    assert await old.changes.pin(messages[2], 1, NOW_MS + 60, max_pins=5)
    assert await old.changes.pinned_ids(first) == [messages[2].id]
    made = await old.conversations.create_conversation("new", [1, 7], NOW_MS, ChangedBy(7))
    assert await old.conversations.role_of(made, 7) == "owner"
    assert await old.conversations.role_of(made, 1) == "member"
    assert await old.conversations.role_of(made, 9) is None
