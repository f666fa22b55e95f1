"""What the main site does through /api/server/*: post a message into a
conversation, add and remove members; and how every node applies a membership
change to its live sockets and waiting polls."""

from __future__ import annotations

import asyncio
from typing import Any

from ecigdis_ws import events
from ecigdis_ws.clock import Clock
from ecigdis_ws.domain import (
    Actor,
    ChangedBy,
    ClientMessageId,
    MembershipChange,
    SendResult,
    UserId,
)
from ecigdis_ws.errors import ChatError, ErrorCode
from ecigdis_ws.fanout.base import Fanout, conversation_room
from ecigdis_ws.observability.log_setup import get_logger
from ecigdis_ws.services.access import AccessPolicy
from ecigdis_ws.services.event_feed import EventFeed
from ecigdis_ws.services.member_rules import too_many_members
from ecigdis_ws.services.membership_events import tell_users, users_addressed
from ecigdis_ws.services.messages import MessageService
from ecigdis_ws.services.presence import PresenceService
from ecigdis_ws.services.tasks import BackgroundTasks
from ecigdis_ws.services.typing_indicators import TypingService
from ecigdis_ws.settings import UserIdType
from ecigdis_ws.storage.base import ConversationFull, ConversationRecords

log = get_logger(__name__)

# Stands in for a socket id where an action comes from no socket (REST, the main
# site): Engine.IO ids are 20 random characters, so it never skips a real socket.
NO_SOCKET = "no-socket"
SYSTEM_SENDER_NAME = "System"
# Events that say a conversation changed (wake its pollers), and membership changes.
# Every event the event log also records: its delivery wakes the long-polls.
CONVERSATION_EVENTS = frozenset({
    events.MESSAGE_NEW, events.READ_RECEIPT, events.REACTION, events.CONVERSATION_UPDATED,
    events.MESSAGE_UPDATED, events.MESSAGE_DELETED, events.MESSAGE_PINNED,
    events.MESSAGE_UNPINNED,
})
MEMBER_ADDED = events.MEMBER_ADDED
MEMBER_REMOVED = events.MEMBER_REMOVED
ROOM_PREFIX = conversation_room(0)[:-1]


def main_site_access(conversations: ConversationRecords, clock: Clock) -> AccessPolicy:
    """The server API's membership rule: any conversation that exists."""
    return ExistingConversation(conversations=conversations, mode="members", clock=clock)


def system_user_id(user_id_type: UserIdType) -> UserId:
    """The sender of the main site's messages: an id no token can carry with
    USER_ID_TYPE=int (ids are positive); "system" with string ids."""
    return 0 if user_id_type == "int" else "system"


class ExistingConversation(AccessPolicy):
    """The main site may post into any conversation that exists, member or not."""


    async def require_member(self, conversation_id: int, user_id: UserId) -> None:
        if not await self._conversations.conversation_exists(conversation_id):
            raise ChatError(ErrorCode.NOT_FOUND, "no such conversation")


class ServerApiService:
    def __init__(
        self,
        *,
        conversations: ConversationRecords,
        fanout: Fanout,
        access: AccessPolicy,
        presence: PresenceService,
        typing: TypingService,
        feed: EventFeed,
        clock: Clock,
        tasks: BackgroundTasks,
        # The socket's send path (store once, fan out, retry after UNAVAILABLE)
        # with "the conversation exists" in place of "the sender is a member":
        # built on `main_site_access` by the composition root.
        messages: MessageService,
        user_id_type: UserIdType,
        max_members: int,
    ) -> None:
        self._max_members = max_members
        self._conversations = conversations
        self._fanout = fanout
        self._access = access
        self._presence = presence
        self._typing = typing
        self._feed = feed
        self._clock = clock
        self._tasks = tasks
        self._system_user = system_user_id(user_id_type)
        self._messages = messages

    async def post_message(
        self,
        conversation_id: int,
        client_message_id: ClientMessageId,
        text: str,
        user_id: UserId | None,
        sender_name: str | None,
    ) -> SendResult:
        sender = self._system_user if user_id is None else user_id
        name = sender_name or (SYSTEM_SENDER_NAME if user_id is None else str(user_id))
        actor = Actor(NO_SOCKET, sender, name)
        return await self._messages.send(actor, conversation_id, text, client_message_id)

    async def _require_conversation(self, conversation_id: int) -> str:
        """The conversation's title; NOT_FOUND when there is no such conversation."""
        title = await self._conversations.conversation_title(conversation_id)
        if title is None:
            raise ChatError(ErrorCode.NOT_FOUND, "no such conversation")
        return title

    async def add_member(
        self, conversation_id: int, user_id: UserId, by: UserId | None = None
    ) -> bool:
        """True when the user was not a member before; the room hears member:added
        and the user's own sockets conversation:added (`addedBy`: `by`, None for
        the main site; services/member_admin.py checks a user's right first). Not
        a new member past MAX_CONVERSATION_MEMBERS: the main site is trusted with
        whom it adds, not with sizes the server cannot carry."""
        title = await self._require_conversation(conversation_id)
        try:
            added = await self._conversations.add_member(
                conversation_id, user_id, int(self._clock.now() * 1000), self._max_members,
                ChangedBy(by),
            )
        except ConversationFull:
            raise too_many_members(self._max_members) from None
        if added:
            await self._announce(MEMBER_ADDED, conversation_id, user_id, "addedBy", by)
            members = tuple(sorted(await self._conversations.member_ids(conversation_id), key=str))
            change = MembershipChange("added", conversation_id, by, title, members)
            await tell_users(self._fanout, change, [user_id])
        return added

    async def remove_member(
        self, conversation_id: int, user_id: UserId, by: UserId | None = None
    ) -> bool:
        """True when the user was a member. Either way the room (the user included)
        hears member:removed, the user's own sockets conversation:removed, and
        every node takes the user's sockets out of the room: the main site shares
        the database and may have deleted the row itself, calling this so that
        the change reaches the live sockets."""
        await self._require_conversation(conversation_id)
        removed = await self._conversations.remove_member(
            conversation_id, user_id, ChangedBy(by), int(self._clock.now() * 1000)
        )
        # Forgotten whether or not a row went: this node may have cached it anyway.
        self._access.memberships.forget(conversation_id, user_id)
        await self._announce(MEMBER_REMOVED, conversation_id, user_id, "removedBy", by)
        change = MembershipChange("removed", conversation_id, by)
        await tell_users(self._fanout, change, [user_id])
        return removed

    async def _announce(
        self, event: str, conversation_id: int, user_id: UserId, by_field: str,
        by: UserId | None,
    ) -> None:
        await self._fanout.emit(
            event,
            {"userId": user_id, "conversationId": conversation_id, by_field: by},
            room=conversation_room(conversation_id),
        )

    # -- on every node --------------------------------------------------------------

    def delivered(self, event: str, data: Any, room: str | list[str] | None) -> None:
        """Called for every event this node delivers to a room, whichever node
        emitted it (the Redis manager brings the others'): wakes the long-polls
        of that conversation and applies membership changes here. Never raises:
        it runs inside the delivery."""
        try:
            self._delivered(event, data, room)
        except Exception:  # a bug here must not fail the send that is delivering
            log.exception("delivery observer failed", delivered=event)

    def _delivered(self, event: str, data: Any, room: str | list[str] | None) -> None:
        if event in (events.CONVERSATION_ADDED, events.CONVERSATION_REMOVED):
            self._users_membership_delivered(event == events.CONVERSATION_ADDED, data, room)
            return
        # (a list of rooms addresses users, as presence does; a rename's list also
        # names its conversation's room)
        rooms = [room] if isinstance(room, str) else room or []
        conversation_rooms = [one for one in rooms if one.startswith(ROOM_PREFIX)]
        if len(conversation_rooms) != 1 or not isinstance(data, dict):
            return
        try:
            conversation_id = int(conversation_rooms[0][len(ROOM_PREFIX):])
        except ValueError:
            return
        if event in CONVERSATION_EVENTS:
            self._feed.conversation_changed(conversation_id)
        elif event in (MEMBER_ADDED, MEMBER_REMOVED) and isinstance(room, str):
            # (only as the server API sends them: to the conversation's room alone)
            user_id = data.get("userId")
            if isinstance(user_id, int | str):
                self._membership_changed(conversation_id, user_id, event == MEMBER_ADDED)

    def _users_membership_delivered(
        self, added: bool, data: Any, room: str | list[str] | None
    ) -> None:
        """conversation:added/removed went to these users' rooms: their long-polls
        here read the log again (and, when added, wake for that conversation from
        now on). A conversation created over REST has no member:added to say it."""
        conversation_id = data.get("conversationId") if isinstance(data, dict) else None
        if isinstance(conversation_id, int):
            self._feed.users_changed(conversation_id, users_addressed(room), added)

    def _membership_changed(self, conversation_id: int, user_id: UserId, member: bool) -> None:
        self._feed.membership_changed(conversation_id, user_id, member)
        if member:
            return
        self._access.memberships.forget(conversation_id, user_id)
        # Called as member:removed is being delivered: the user's sockets leave the
        # room right after it has gone out, so they hear it too.
        asyncio.get_running_loop().call_soon(self._leave_room, conversation_id, user_id)

    def _leave_room(self, conversation_id: int, user_id: UserId) -> None:
        room = conversation_room(conversation_id)
        for sid in self._presence.local_sockets(user_id):
            if self._fanout.in_room(sid, room):
                self._fanout.leave_room(sid, room)
                self._tasks.spawn(self._typing.socket_gone(sid, conversation_id))
