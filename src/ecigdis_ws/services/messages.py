"""message:send: store first, then fan out; idempotent per (user, client message id)."""

from __future__ import annotations

import time

from ecigdis_ws.clock import Clock
from ecigdis_ws.domain import Actor, ClientMessageId, SendResult
from ecigdis_ws.fanout.base import Fanout, conversation_room
from ecigdis_ws.observability.metrics import Metrics
from ecigdis_ws.services.access import AccessPolicy
from ecigdis_ws.services.typing import TypingService
from ecigdis_ws.storage.base import Storage


class MessageService:
    def __init__(
        self,
        storage: Storage,
        fanout: Fanout,
        access: AccessPolicy,
        typing: TypingService,
        clock: Clock,
        metrics: Metrics,
    ) -> None:
        self._storage = storage
        self._fanout = fanout
        self._access = access
        self._typing = typing
        self._clock = clock
        self._metrics = metrics

    async def send(
        self, actor: Actor, conversation_id: int, text: str, client_message_id: ClientMessageId
    ) -> SendResult:
        received = time.perf_counter()
        await self._access.require_member(conversation_id, actor.user_id)
        result = await self._storage.store_message(
            conversation_id,
            actor.user_id,
            actor.name,
            str(client_message_id),
            text,
            int(self._clock.now() * 1000),
        )
        if result.duplicate:
            return result
        self._metrics.messages_stored.inc()
        await self._fanout.emit(
            "message:new",
            result.message.wire(client_message_id),
            room=conversation_room(result.message.conversation_id),
            skip_sid=actor.sid,
        )
        self._metrics.send_latency.observe(time.perf_counter() - received)
        await self._typing.end(actor, conversation_id)
        return result
