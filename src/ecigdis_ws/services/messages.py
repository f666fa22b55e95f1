"""message:send: store first, then fan out; idempotent per (user, client message id)."""

from __future__ import annotations

import time
from collections import OrderedDict

from ecigdis_ws import events
from ecigdis_ws.clock import Clock
from ecigdis_ws.domain import (
    NO_MENTIONS,
    Actor,
    ClientMessageId,
    Mentions,
    ReplyPreview,
    SendResult,
    UserId,
)
from ecigdis_ws.errors import ChatError, ErrorCode, StorageUnavailable
from ecigdis_ws.fanout.base import Fanout, conversation_room
from ecigdis_ws.observability.metrics import Metrics
from ecigdis_ws.services.access import AccessPolicy
from ecigdis_ws.services.rate_limit import RateLimiter
from ecigdis_ws.services.send_extras import SendExtras
from ecigdis_ws.services.typing_indicators import TypingService
from ecigdis_ws.storage.base import MessageRecords

# Sends whose store failed in a way that may still have committed, remembered so
# that the client's retry fans the message out if it did; oldest forgotten first.
UNCERTAIN_SENDS_KEPT = 10_000


class MessageService:
    def __init__(
        self,
        *,
        messages: MessageRecords,
        fanout: Fanout,
        access: AccessPolicy,
        typing: TypingService,
        clock: Clock,
        metrics: Metrics,
        deadline_s: float,
        limiter: RateLimiter | None = None,  # None: nobody's sends are limited
        extras: SendExtras | None = None,  # None: no replies or mentions (the server API)
    ) -> None:
        self._extras = extras
        self._deadline_s = deadline_s
        self._limiter = limiter
        self._uncertain: OrderedDict[tuple[UserId, str], None] = OrderedDict()
        self._messages = messages
        self._fanout = fanout
        self._access = access
        self._typing = typing
        self._clock = clock
        self._metrics = metrics

    async def post(
        self,
        actor: Actor,
        conversation_id: int,
        text: str,
        client_message_id: ClientMessageId,
        reply_to_id: int | None = None,
        mentions: tuple[UserId, ...] = (),
        mention_everyone: bool = False,
    ) -> SendResult:
        """A user's send, over the socket or REST: within RATE_LIMIT_MESSAGES (one
        bucket per user, whichever way the message comes), its reply and mentions
        checked against the conversation, then `send`."""
        if self._limiter is not None and not self._limiter.allow(actor.user_id):
            raise ChatError(ErrorCode.RATE_LIMITED, "too many messages")
        reply_to: ReplyPreview | None = None
        called = NO_MENTIONS
        if reply_to_id is not None or mentions or mention_everyone:
            # (a plain send reads nothing more: these cost only the sends that have them)
            assert self._extras is not None, "a user's sends have their extras checked"
            await self._access.require_member(conversation_id, actor.user_id)
            if reply_to_id is not None:
                reply_to = await self._extras.reply_preview(conversation_id, reply_to_id)
            called = await self._extras.mentions(conversation_id, actor.user_id, mentions,
                                                 mention_everyone)
        return await self.send(actor, conversation_id, text, client_message_id, reply_to, called)

    async def send(
        self,
        actor: Actor,
        conversation_id: int,
        text: str,
        client_message_id: ClientMessageId,
        reply_to: ReplyPreview | None = None,
        mentions: Mentions = NO_MENTIONS,
    ) -> SendResult:
        """Store, then fan out. (The server API's messages come here directly: the
        main site is not rate-limited as a user is.)"""
        received = time.perf_counter()
        key = (actor.user_id, str(client_message_id))
        # One deadline (DB_TIMEOUT_MS) for the whole send, not one per query: a
        # membership read (only when not cached) is bounded by the engine's own
        # timeout, and the store gets what is left of the deadline, kept by the
        # group commit's one timer rather than an asyncio.timeout per message.
        deadline = self._clock.monotonic() + self._deadline_s
        try:
            await self._access.require_member(conversation_id, actor.user_id)
            result = await self._messages.store_message(
                conversation_id,
                actor.user_id,
                actor.name,
                key[1],
                text,
                int(self._clock.now() * 1000),
                deadline,
                reply_to,
                mentions,
            )
        except (StorageUnavailable, TimeoutError) as exc:
            # The COMMIT may have reached the database with its answer lost.
            self._remember_uncertain(key)
            raise StorageUnavailable("message not confirmed stored") from exc
        if result.duplicate and key not in self._uncertain:
            return result  # the first send announced it already
        # (A duplicate of an attempt that answered UNAVAILABLE was stored but never
        # announced: this retry is the first to learn it, and announces it.)
        self._uncertain.pop(key, None)
        self._metrics.messages_stored.inc()
        await self._fanout.emit(
            events.MESSAGE_NEW,
            result.message.wire(client_message_id),
            room=conversation_room(result.message.conversation_id),
            skip_sid=actor.sid,
        )
        self._metrics.send_latency.observe(time.perf_counter() - received)
        await self._typing.end(actor, conversation_id)
        return result

    def _remember_uncertain(self, key: tuple[UserId, str]) -> None:
        self._uncertain[key] = None
        self._uncertain.move_to_end(key)
        while len(self._uncertain) > UNCERTAIN_SENDS_KEPT:
            self._uncertain.popitem(last=False)
