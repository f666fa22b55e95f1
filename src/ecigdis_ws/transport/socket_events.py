"""The Socket.IO transport: the connection's lifecycle, and each operation's
events mounted from its declaration (transport/chat_operations.py).

Every client event runs through the pipeline (transport/pipeline.py) after this
transport's own step — the socket's session, its RATE_LIMIT_EVENTS bucket and the
authentication rule — and a failure becomes the protocol's two replies: the
acknowledgement `{ ok: false, error }` and an `error` event.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import socketio

from ecigdis_ws import events
from ecigdis_ws.errors import ChatError, ErrorCode
from ecigdis_ws.observability.log_setup import get_logger
from ecigdis_ws.services.container import ChatServices
from ecigdis_ws.transport import validation as v
from ecigdis_ws.transport.acks import ACK_WANTED
from ecigdis_ws.transport.chat_operations import OPERATIONS
from ecigdis_ws.transport.connect_environ import client_address, handshake_token
from ecigdis_ws.transport.operations import Call, Operation, Reply, SocketEvent
from ecigdis_ws.transport.pipeline import Pipeline
from ecigdis_ws.transport.socketio_overrides.server import ChatSocketServer

log = get_logger(__name__)


# Every client event a declaration mounts, in the order declared.
CLIENT_EVENTS = tuple(event.name for operation in OPERATIONS for event in operation.events)


class SocketEvents:
    """The Socket.IO side: the connection's lifecycle, and every operation's socket
    events mounted from its declaration (transport/chat_operations.py)."""

    def __init__(
        self,
        sio: ChatSocketServer,
        chat: ChatServices,
        pipeline: Pipeline,
    ) -> None:
        self._sio = sio
        self._chat = chat
        self._pipeline = pipeline

    def register(self) -> None:
        self._sio.on_transport_open = self.on_transport_open
        self._sio.on_transport_close = self.on_transport_close
        self._sio.on("connect", self.on_connect)
        self._sio.on("disconnect", self.on_disconnect)
        self._sio.on("*", self.on_unknown)
        for operation in OPERATIONS:
            for event in operation.events:
                self._sio.on(event.name, self._mount(operation, event))

    # -- connection lifecycle -------------------------------------------------------

    def on_transport_open(self, eio_sid: str, environ: Mapping[str, Any]) -> None:
        chat = self._chat
        chat.admission.arrived(eio_sid, client_address(environ, chat.settings.trust_proxy))

    def on_transport_close(self, eio_sid: str) -> None:
        self._chat.admission.closed(eio_sid)

    async def on_connect(self, sid: str, environ: Mapping[str, Any], auth: Any = None) -> None:
        chat = self._chat
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
        self._chat.errors.count(error)
        return socketio.exceptions.ConnectionRefusedError(error.message, error.as_dict())

    async def _greet(self, sid: str, authenticated: bool) -> None:
        chat = self._chat
        await self._emit(events.CONNECTED, {
            "serverId": chat.server_id, "timestamp": int(chat.clock.now() * 1000)
        }, sid)
        session = chat.sessions.get(sid)
        if authenticated and session is not None and session.identity is not None:
            await self._emit(events.AUTHENTICATED, {
                "userId": session.identity.user_id, "name": session.identity.name
            }, sid)

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        await self._chat.sessions.close(sid)

    async def on_unknown(self, event: str, sid: str, *args: Any) -> Reply:
        self._pipeline.count("unknown")
        # Like the Node server, an unknown event is ignored; an ack still gets an answer.
        error = v.invalid(f"unknown event {event[:64]!r}")
        return {"ok": False, "error": error.as_dict()}

    # -- every operation's events ------------------------------------------------------

    def _mount(self, operation: Operation, event: SocketEvent) -> Callable[..., Awaitable[Reply]]:
        async def run(sid: str, *args: Any) -> Reply:
            chat = self._chat
            session = chat.sessions.get(sid)
            user_id = session.identity.user_id if session and session.identity else None
            data = operation.payload_for(event, args[0] if args else None)

            async def tell(name: str, payload: Any) -> None:
                await self._emit(name, payload, sid)

            async def admit() -> Call:
                if session is None:
                    raise ChatError(ErrorCode.UNAUTHENTICATED, "not connected")
                if not chat.sessions.allow_event(session):
                    raise ChatError(ErrorCode.RATE_LIMITED, "too many events")
                if operation.caller == "user":
                    session.actor()  # UNAUTHENTICATED until it is
                return Call(chat, data, "socket",
                            session.identity if session.authenticated else None, sid,
                            ACK_WANTED.get(), tell)

            call, answer = await self._pipeline.run(
                operation, event.name, admit, "event handler", sid, user_id
            )
            if not isinstance(answer, ChatError):
                return {"ok": True, **answer}
            await chat.errors.tell_socket(sid, answer, event.name)
            if operation.on_socket_failure is not None:
                await operation.on_socket_failure(
                    call or Call(chat, data, "socket", None, sid, True, tell), answer
                )
            return {"ok": False, "error": answer.as_dict()}

        return run

    async def _emit(self, event: str, data: Any, sid: str) -> None:
        await self._sio.emit_to_socket(event, data, sid)
