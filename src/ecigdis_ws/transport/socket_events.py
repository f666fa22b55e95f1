"""Socket.IO event handlers: validate the payload, call one service, reply.

Every client event goes through `_dispatch`, which applies the per-socket rate
limit and the authentication rule, and turns failures into the protocol's two
replies: the acknowledgement `{ ok: false, error }` and an `error` event.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import socketio
from prometheus_client import Counter

from ecigdis_ws.errors import ChatError, ErrorCode
from ecigdis_ws.observability.log_setup import EVENT_CONTEXT, get_logger
from ecigdis_ws.services.container import ChatServices
from ecigdis_ws.services.sessions import Session
from ecigdis_ws.transport import validation as v
from ecigdis_ws.transport.acks import ACK_WANTED
from ecigdis_ws.transport.connect_environ import client_address, handshake_token
from ecigdis_ws.transport.drain import InFlight
from ecigdis_ws.transport.socketio_overrides.server import ChatSocketServer

log = get_logger(__name__)

Reply = dict[str, Any]
Handler = Callable[[Session, Any], Awaitable[Reply]]
FailureHook = Callable[[str, Any, ChatError], Awaitable[None]]

CLIENT_EVENTS = (
    "authenticate",
    "conversation:join",
    "conversation:leave",
    "message:send",
    "typing:start",
    "typing:stop",
    "message:read",
    "message:react",
    "presence:request",
)


class SocketEvents:
    def __init__(
        self,
        sio: ChatSocketServer,
        services: Callable[[], ChatServices],
        in_flight: InFlight | None = None,
    ) -> None:
        self._sio = sio
        self._services = services
        # Shared with the REST API (app.py), so one drain waits for both.
        self.in_flight = in_flight or InFlight()

    def register(self) -> None:
        self._sio.on_transport_open = self.on_transport_open
        self._sio.on_transport_close = self.on_transport_close
        self._sio.on("connect", self.on_connect)
        self._sio.on("disconnect", self.on_disconnect)
        self._sio.on("*", self.on_unknown)
        handlers: dict[str, tuple[Handler, bool, FailureHook | None]] = {
            "authenticate": (self.authenticate, False, None),
            "conversation:join": (self.join, True, None),
            "conversation:leave": (self.leave, True, None),
            "message:send": (self.send, True, self._send_failed),
            "typing:start": (self.typing_start, True, None),
            "typing:stop": (self.typing_stop, True, None),
            "message:read": (self.read, True, None),
            "message:react": (self.react, True, None),
            "presence:request": (self.presence, True, None),
        }
        for event, (handler, needs_auth, on_failure) in handlers.items():
            self._sio.on(event, self._dispatch(event, handler, needs_auth, on_failure))

    # -- connection lifecycle -------------------------------------------------------

    def on_transport_open(self, eio_sid: str, environ: Mapping[str, Any]) -> None:
        chat = self._services()
        chat.admission.arrived(eio_sid, client_address(environ, chat.settings.trust_proxy))

    def on_transport_close(self, eio_sid: str) -> None:
        self._services().admission.closed(eio_sid)

    async def on_connect(self, sid: str, environ: Mapping[str, Any], auth: Any = None) -> None:
        chat = self._services()
        token = handshake_token(environ, auth)
        chat.sessions.open(sid, self._sio.manager.eio_sid_from_sid(sid, "/") or "")
        authenticated = None
        if token is not None:
            try:
                authenticated = await chat.sessions.authenticate(sid, token)
            except Exception as exc:
                # A refused handshake never reaches on_disconnect: whatever went
                # wrong, the session opened above must not stay counted.
                await chat.sessions.close(sid)
                error = chat.errors.translate(exc, "handshake authentication")
                raise self._refused(error) from None
        # Sent once the CONNECT packet is out, as the Node server's io.on('connection') does.
        chat.tasks.spawn(self._greet(sid, authenticated is not None))

    def _refused(self, error: ChatError) -> socketio.exceptions.ConnectionRefusedError:
        """The handshake refusal: socket.io-client shows `data` as connect_error's."""
        self._services().errors.count(error)
        return socketio.exceptions.ConnectionRefusedError(error.message, error.as_dict())

    async def _greet(self, sid: str, authenticated: bool) -> None:
        chat = self._services()
        await self._emit("connected", {
            "serverId": chat.server_id, "timestamp": int(chat.clock.now() * 1000)
        }, sid)
        session = chat.sessions.get(sid)
        if authenticated and session is not None and session.identity is not None:
            await self._emit("authenticated", {
                "userId": session.identity.user_id, "name": session.identity.name
            }, sid)

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        await self._services().sessions.close(sid)

    async def on_unknown(self, event: str, sid: str, *args: Any) -> Reply:
        chat = self._services()
        chat.metrics.events_received.labels("unknown").inc()
        # Like the Node server, an unknown event is ignored; an ack still gets an answer.
        error = v.invalid(f"unknown event {event[:64]!r}")
        return {"ok": False, "error": error.as_dict()}

    # -- dispatch -------------------------------------------------------------------

    def _dispatch(
        self, event: str, handler: Handler, needs_auth: bool, on_failure: FailureHook | None
    ) -> Callable[..., Awaitable[Reply]]:
        received: Counter | None = None  # bound to its label once, not per event

        async def run(sid: str, *args: Any) -> Reply:
            nonlocal received
            chat = self._services()
            if received is None:
                received = chat.metrics.events_received.labels(event)
            received.inc()
            data = args[0] if args else None
            session = chat.sessions.get(sid)
            user_id = session.identity.user_id if session and session.identity else None
            context = EVENT_CONTEXT.set((sid, user_id, event))
            try:
                self.in_flight.admit()
                if session is None:
                    raise ChatError(ErrorCode.UNAUTHENTICATED, "not connected")
                if not chat.sessions.allow_event(session):
                    raise ChatError(ErrorCode.RATE_LIMITED, "too many events")
                if needs_auth:
                    session.actor()
                with self.in_flight:
                    return {"ok": True, **await handler(session, data)}
            except Exception as exc:
                error = chat.errors.translate(exc, "event handler")
            finally:
                EVENT_CONTEXT.reset(context)
            return await self._fail(sid, event, data, error, on_failure)

        return run

    async def _fail(
        self, sid: str, event: str, data: Any, error: ChatError, on_failure: FailureHook | None
    ) -> Reply:
        await self._services().errors.tell_socket(sid, error, event)
        if on_failure is not None:
            await on_failure(sid, data, error)
        return {"ok": False, "error": error.as_dict()}

    async def _emit(self, event: str, data: Any, sid: str) -> None:
        await self._sio.emit_to_socket(event, data, sid)

    # -- events ---------------------------------------------------------------------

    async def authenticate(self, session: Session, data: Any) -> Reply:
        token = v.payload(data).get("token")
        identity = await self._services().sessions.authenticate(session.sid, token)
        reply = {"userId": identity.user_id, "name": identity.name}
        await self._emit("authenticated", reply, session.sid)
        return reply

    async def join(self, session: Session, data: Any) -> Reply:
        conversation_id = v.conversation_id(data)
        since = v.since_id(data)
        joined = await self._services().conversations.join(
            session.actor(), conversation_id, since
        )
        return joined.wire(conversation_id)

    async def leave(self, session: Session, data: Any) -> Reply:
        conversation_id = v.conversation_id(data)
        await self._services().conversations.leave(session.actor(), conversation_id)
        return {"conversationId": conversation_id}

    async def send(self, session: Session, data: Any) -> Reply:
        fields = v.payload(data)
        conversation_id = v.conversation_id(fields)
        chat = self._services()
        client_id, text = v.outgoing_message(fields, chat.settings.max_message_length)
        result = await chat.messages.post(session.actor(), conversation_id, text, client_id)
        ack = result.message.ack(result.duplicate, client_id)
        await self._emit("message:ack", ack, session.sid)
        return ack

    async def _send_failed(self, sid: str, data: Any, error: ChatError) -> None:
        message_id = data.get("messageId") if isinstance(data, dict) else None
        if isinstance(message_id, bool) or not isinstance(
            message_id, str | int
        ) or not v.echoable_message_id(message_id):
            message_id = None  # echo the client's id only when it is one
        await self._emit(
            "message:ack",
            {"messageId": message_id, "status": "failed", "error": error.as_dict()},
            sid,
        )

    async def typing_start(self, session: Session, data: Any) -> Reply:
        conversation_id = v.conversation_id(data)
        await self._services().typing.start(session.actor(), conversation_id)
        return {"conversationId": conversation_id}

    async def typing_stop(self, session: Session, data: Any) -> Reply:
        conversation_id = v.conversation_id(data)
        await self._services().typing.stop(session.actor(), conversation_id)
        return {"conversationId": conversation_id}

    async def read(self, session: Session, data: Any) -> Reply:
        fields = v.payload(data)
        conversation_id = v.conversation_id(fields)
        message_id = v.positive_id(fields, "messageId")
        assert message_id is not None
        advanced = await self._services().receipts.mark_read(
            session.actor(), conversation_id, message_id
        )
        return {"advanced": advanced}

    async def react(self, session: Session, data: Any) -> Reply:
        fields = v.payload(data)
        conversation_id = v.conversation_id(fields)
        message_id = v.positive_id(fields, "messageId")
        assert message_id is not None
        emoji = v.emoji(fields)
        action = await self._services().reactions.toggle(
            session.actor(), conversation_id, message_id, emoji
        )
        return {"action": action}

    async def presence(self, session: Session, data: Any) -> Reply:
        """Answered once: in the ack when the client asked for one, else as the
        presence:list event (the Node server sent both, twice the bytes)."""
        conversation_id = v.optional_conversation_id(data)
        listing = (await self._services().conversations.presence_list(
            session.actor(), conversation_id
        )).wire()
        if not ACK_WANTED.get():
            await self._emit("presence:list", listing, session.sid)
        return listing
