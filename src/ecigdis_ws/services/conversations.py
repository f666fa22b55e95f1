"""Joining and leaving conversation rooms, with gap-free replay on join.

A replay is bounded: at most REPLAY_MAX_MESSAGES messages per join, read and sent
in pages with a turn of the event loop between them (so other sockets' events and
this socket's PONGs are handled meanwhile), and stopped once the socket is gone.
Past the bound the join's answer says `resync: true` and `replayedUpTo`, and the
client pages the rest from history (as Centrifugo answers `recovered: false`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from ecigdis_ws import events
from ecigdis_ws.clock import Clock
from ecigdis_ws.domain import (
    Actor,
    Member,
    OnlineUser,
    ReadPosition,
    UserId,
    conversation_updated_wire,
    reads_wire,
    with_reactions,
)
from ecigdis_ws.errors import ChatError, ErrorCode
from ecigdis_ws.fanout.base import Fanout, conversation_room, user_room
from ecigdis_ws.services.access import AccessPolicy
from ecigdis_ws.services.event_feed import EventFeed
from ecigdis_ws.services.presence import PresenceService
from ecigdis_ws.services.roles import Roles
from ecigdis_ws.services.typing_indicators import TypingService
from ecigdis_ws.storage.base import (
    ConversationRecords,
    EventRecords,
    MessageChangeRecords,
    MessageRecords,
    ReactionRecords,
)

# Replay reads this many messages per query, so a long absence costs no huge read,
# and lets the loop run after each page (about 60 KB of frames at most in one go).
REPLAY_PAGE_SIZE = 200


@dataclass(frozen=True)
class ConversationLimits:
    max_rooms_per_socket: int  # 0: no cap
    presence_list_max: int
    replay_max_messages: int = 1000  # messages one join replays at most


@dataclass
class _Replay:
    """One join's replay: the last id sent (a message id after `since`, an event id
    after `cursor`), how much it may still send, and whether more was there than
    it was allowed to send."""

    after_id: int
    budget: int
    cut: bool = False


@dataclass(frozen=True)
class PresenceList:
    """presence:request's answer: at most PRESENCE_LIST_MAX users, and whether
    more were online than it lists."""

    users: list[OnlineUser]
    truncated: bool

    def wire(self) -> dict[str, object]:
        return {
            "users": [user.wire() for user in self.users],
            "count": len(self.users),
            "truncated": self.truncated,
        }


@dataclass(frozen=True)
class JoinResult:
    """conversation:join's answer: who is online, every member (name, role) and
    where each has read to, the pinned messages, and the cursor to rejoin from;
    `replayed_up_to` (the last id replayed) only when a `since` replay stopped at
    its cap, `resync` when a `cursor` replay did or its cursor was pruned."""

    online_user_ids: list[UserId]
    members: list[Member]
    pinned: list[int]
    cursor: int
    replayed_up_to: int | None = None
    resync: bool = False

    @property
    def reads(self) -> list[ReadPosition]:
        """Every member's read position (None for one who has read nothing)."""
        return [member.read for member in self.members]

    def wire(self, conversation_id: int) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "conversationId": conversation_id,
            "onlineUserIds": self.online_user_ids,
            "reads": reads_wire(self.reads),
            "members": [member.wire() for member in self.members],
            "pinned": self.pinned,
            "cursor": str(self.cursor),
        }
        if self.replayed_up_to is not None or self.resync:  # (absent otherwise)
            answer["resync"] = True
        if self.replayed_up_to is not None:
            answer["replayedUpTo"] = self.replayed_up_to
        return answer


class ConversationService:
    def __init__(
        self,
        *,
        conversations: ConversationRecords,
        messages: MessageRecords,
        reactions: ReactionRecords,
        changes: MessageChangeRecords,
        events: EventRecords,
        feed: EventFeed,
        fanout: Fanout,
        access: AccessPolicy,
        roles: Roles,
        presence: PresenceService,
        typing: TypingService,
        clock: Clock,
        limits: ConversationLimits,
    ) -> None:
        self._changes = changes
        self._events = events
        self._feed = feed
        self._roles = roles
        self._clock = clock
        self._limits = limits
        self._conversations = conversations
        self._messages = messages
        self._reactions = reactions
        self._fanout = fanout
        self._access = access
        self._presence = presence
        self._typing = typing

    async def join(
        self, actor: Actor, conversation_id: int, since: int | None, cursor: int | None = None
    ) -> JoinResult:
        """Enter the room, replay the messages after `since` and the changes after
        `cursor` (with `cursor` alone, new messages among them), each at most
        REPLAY_MAX_MESSAGES; return the members online,
        every member with their read position, the pins and the cursor to rejoin
        from. UNAVAILABLE if the socket left meanwhile."""
        room = conversation_room(conversation_id)
        self._check_room_cap(actor.sid, room)  # (before open access makes a member)
        await self._access.require_member(conversation_id, actor.user_id)
        budget = self._limits.replay_max_messages
        if cursor is not None:  # (refused before the socket is put in the room)
            await self._require_known_cursor(cursor)
        # The messages come from the messages table whenever `since` is given: a
        # message stored without an event row (by hand, by the main site's own SQL)
        # is replayed all the same; the cursor then brings the other changes.
        replay = None if since is None else _Replay(since, budget)
        if replay is not None:
            await self._replay(actor.sid, conversation_id, replay)
        # Nothing is awaited from this check to entering the room: a socket gone
        # during the replay never enters one (python-socketio raises for a gone sid).
        self._require_open(actor.sid)
        newly_in_room = not self._fanout.in_room(actor.sid, room)
        self._fanout.enter_room(actor.sid, room)
        await self._fanout.entered(room)  # other nodes' emits reach this node from here
        if replay is not None and not replay.cut:
            # Anything stored between the replay and entering the room is sent now;
            # what is fanned out live from here on may repeat it, and the client
            # drops repeats by id. So there is no gap. (A replay cut at its cap
            # leaves all of it to the client's history pages.)
            await self._replay(actor.sid, conversation_id, replay)
        # Every event up to here is committed: the cursor to rejoin from (taken
        # after entering the room, so all after it is live or replayed below).
        position = await self._feed.settled(fresh=False)
        changes = None if cursor is None else await self._replay_changes(
            actor.sid, conversation_id, cursor, budget, with_messages=since is None
        )
        if newly_in_room:
            await self._fanout.emit(
                events.USER_JOINED,
                {"userId": actor.user_id, "conversationId": conversation_id},
                room=room,
                skip_sid=actor.sid,
            )
        # The members, their roles and read positions in one query.
        members = await self._conversations.members(conversation_id)
        online = [user.user_id for user in
                  await self._presence.online([member.user_id for member in members])]
        if actor.user_id not in online:
            online.append(actor.user_id)
        cut_at = replay.after_id if replay is not None and replay.cut else None
        return JoinResult(online, members, await self._changes.pinned_ids(conversation_id),
                          position, cut_at, resync=changes is not None and changes.cut)

    async def _require_known_cursor(self, cursor: int) -> None:
        """INVALID_PAYLOAD for a cursor ahead of the event log (another database's).
        The log's last id is read through the writer only for a cursor past what
        this node has seen settle, which a client's own cursor never is."""
        if cursor > await self._feed.settled(fresh=False) and (
            cursor > await self._events.event_log_last_id()
        ):
            raise ChatError(ErrorCode.INVALID_PAYLOAD,
                            "cursor is ahead of the event log: join again without one")

    async def _replay_changes(
        self, sid: str, conversation_id: int, cursor: int, budget: int, with_messages: bool
    ) -> _Replay:
        """Send every change of the conversation after the event-log `cursor` (the
        join's and the long-poll's one cursor): messages as they are now, edits,
        deletions, pins, renames and reactions, oldest first, a page at a time, at
        most `budget`; cut when more were there, or when the cursor is older than
        the event log keeps (EVENT_LOG_RETENTION_S): then nothing is sent and the
        client pages history, which shows each message as it is now."""
        replay = _Replay(cursor, budget)
        if await self._events.event_log_pruned_through() > cursor:
            replay.cut = True
            return replay
        while True:
            self._require_open(sid)
            limit = min(REPLAY_PAGE_SIZE, replay.budget + 1)
            page = await self._events.conversation_events(conversation_id, replay.after_id, limit,
                                                          with_messages)
            if len(page) > replay.budget:
                page, replay.cut = page[:replay.budget], True
            for change in page:
                wire = change.wire()
                await self._fanout.emit(wire["event"], wire["data"], room=sid)
            if page:
                replay.after_id = page[-1].id
            replay.budget -= len(page)
            if replay.cut or len(page) < limit:
                return replay
            await asyncio.sleep(0)  # other sockets' work and this one's PONGs, in between

    def _check_room_cap(self, sid: str, room: str) -> None:
        """Each room a socket is in costs memory, and a disconnect walks every room
        of the node: past MAX_ROOMS_PER_SOCKET a new room is refused."""
        cap = self._limits.max_rooms_per_socket
        if cap and not self._fanout.in_room(sid, room) and (
            self._fanout.conversation_rooms(sid) >= cap
        ):
            raise ChatError(
                ErrorCode.RATE_LIMITED,
                f"this socket is in {cap} conversations already: leave one first",
            )

    def _require_open(self, sid: str) -> None:
        """A socket that left mid-join gets no more work: a quiet UNAVAILABLE (the
        answer reaches nobody; no traceback, it is no bug)."""
        if not self._fanout.is_open(sid):
            raise ChatError(ErrorCode.UNAVAILABLE, "the socket closed during the join")

    async def _replay(self, sid: str, conversation_id: int, replay: _Replay) -> None:
        """Send the messages after `replay.after_id` to one socket, oldest first, at
        most `replay.budget` of them, a page at a time; `replay.cut` when more were
        there. Each page reads one more than the budget allows, to know."""
        while True:
            self._require_open(sid)
            limit = min(REPLAY_PAGE_SIZE, replay.budget + 1)
            page = await self._messages.messages_after(conversation_id, replay.after_id, limit)
            if len(page) > replay.budget:
                page, replay.cut = page[:replay.budget], True
            reactions = await self._reactions.reactions_of([message.id for message in page])
            for message in page:
                await self._fanout.emit(
                    events.MESSAGE_NEW,
                    with_reactions(message, reactions.get(message.id, ())),
                    room=sid,
                )
            if page:
                replay.after_id = page[-1].id
            replay.budget -= len(page)
            if replay.cut or len(page) < limit:
                return
            await asyncio.sleep(0)  # other sockets' work and this one's PONGs, in between

    async def leave(self, actor: Actor, conversation_id: int) -> None:
        room = conversation_room(conversation_id)
        if not self._fanout.in_room(actor.sid, room):
            return
        self._fanout.leave_room(actor.sid, room)
        await self._typing.socket_gone(actor.sid, conversation_id)
        await self._fanout.emit(
            events.USER_LEFT, {"userId": actor.user_id, "conversationId": conversation_id},
            room=room,
        )

    async def rename(self, actor: Actor | None, conversation_id: int, title: str) -> bool:
        """conversation:update: an owner or admin renames it, or either member of a
        conversation of two, or (actor None) the server API (docs/protocol.md,
        Roles); True when the title changed, and then every other socket joined to
        it hears `conversation:updated` (the caller's other tabs too; the caller has
        the ack) and every member's long-poll carries it. The same title again
        changes nothing and tells no one."""
        if actor is None:
            if not await self._conversations.conversation_exists(conversation_id):
                raise ChatError(ErrorCode.NOT_FOUND, "no such conversation")
        else:
            await self._access.require_member(conversation_id, actor.user_id)
            await self._roles.require_admin_or_pair(conversation_id, actor.user_id,
                                                    "rename the conversation")
        by = None if actor is None else actor.user_id
        changed = await self._conversations.rename_conversation(
            conversation_id, title, "" if by is None else by, int(self._clock.now() * 1000)
        )
        if changed:
            # To the room and to every member's own sockets, joined or not: the
            # conversation list shows the title too. (Each socket hears it once.)
            members = await self._conversations.member_ids(conversation_id)
            await self._fanout.emit(
                events.CONVERSATION_UPDATED,
                conversation_updated_wire(conversation_id, title, by),
                room=[conversation_room(conversation_id), *map(user_room, members)],
                skip_sid=None if actor is None else actor.sid,
            )
        return changed

    async def online_members(self, actor: Actor, conversation_id: int | None) -> list[OnlineUser]:
        """presence:request: the online users the actor may see (everyone, or under
        PRESENCE_SCOPE=contacts only those sharing a conversation with them), or
        one conversation's members online."""
        if conversation_id is None:
            return await self._presence.visible_to(actor.user_id)
        await self._access.require_member(conversation_id, actor.user_id)
        members = await self._conversations.member_ids(conversation_id)
        return await self._presence.online(members)

    async def presence_list(self, actor: Actor, conversation_id: int | None) -> PresenceList:
        """online_members cut at PRESENCE_LIST_MAX: a 25-byte request must not buy
        the whole online list of a busy cluster."""
        users = await self.online_members(actor, conversation_id)
        cap = self._limits.presence_list_max
        return PresenceList(users[:cap], len(users) > cap)
