"""python-socketio's AsyncServer, with the one fix this server needs from it."""

from __future__ import annotations

from typing import Any

import engineio.payload
import socketio

from ecigdis_ws.observability.logging import get_logger
from ecigdis_ws.transport.limits import MAX_PACKETS_PER_POST, POLL_BODY, BufferedBody

log = get_logger(__name__)


# Names the Socket.IO protocol reserves, which a client may never send as an
# event (socket.io-parser refuses them); python-socketio would hand a client's
# "connect" or "disconnect" to the server's own lifecycle handlers. "*" is
# python-socketio's catch-all.
RESERVED_EVENTS = frozenset({
    "connect", "connect_error", "disconnect", "disconnecting", "newListener",
    "removeListener", "*",
})
# A polling client sends everything it buffered in one POST; socket.io-client
# has no cap, so this only guards against absurd batches (bytes are capped by
# MAX_PAYLOAD_BYTES, events by the rate limit).
engineio.payload.Payload.max_decode_packets = MAX_PACKETS_PER_POST


def well_formed_event(data: Any) -> bool:
    """[name, ...args] with a name a client may use."""
    return (
        isinstance(data, list)
        and len(data) >= 1
        and isinstance(data[0], str)
        and data[0] not in RESERVED_EVENTS
    )


class ChatSocketServer(socketio.AsyncServer):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A polling body already read (and bounded) by polling_limits_middleware is
        # handed to engineio from memory; its own copy of the driver table is
        # changed, never the module's.
        drivers = dict(self.eio._async)
        translate = drivers["translate_request"]

        def translate_request(request: Any) -> dict[str, Any]:
            environ: dict[str, Any] = translate(request)
            body = request.get(POLL_BODY)
            if body is not None:
                environ["wsgi.input"] = BufferedBody(body)
            return environ

        drivers["translate_request"] = translate_request
        self.eio._async = drivers

    async def drop_session(self, eio_sid: str) -> None:
        """Close one Engine.IO session at once, without waiting for its client."""
        socket = self.eio.sockets.get(eio_sid)
        if socket is not None:
            await socket.close(wait=False, abort=True, reason=self.eio.reason.TRANSPORT_ERROR)
            if socket.upgraded:
                socket.queue.put_nowait(None)  # the websocket writer closes on it
            # (a polling socket's waiting GET is answered by _handle_eio_disconnect)

    async def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        """A packet that does not decode closes its connection, as socket.io-parser
        does in Node; without this the client would wait for an ack for ever."""
        try:
            await super()._handle_eio_message(eio_sid, data)
        except (ValueError, TypeError, KeyError, RecursionError) as exc:
            log.warning("closing a connection that sent a malformed packet",
                        reason=type(exc).__name__)
            await self.drop_session(eio_sid)

    async def _handle_event(self, eio_sid: str, namespace: str | None, id: Any,
                            data: Any) -> None:
        if not well_formed_event(data):
            log.warning("closing a connection that sent a malformed or reserved event")
            await self.drop_session(eio_sid)
            return
        await super()._handle_event(eio_sid, namespace, id, data)

    def start_manager(self) -> None:
        """Start the client manager (the Redis listener) now, not on the first
        connection as python-socketio would: a fresh node must hear the others and
        answer /health truthfully before any client arrives."""
        initialized: bool = getattr(self, "manager_initialized", False)
        if not initialized:
            self.manager_initialized = True
            self.manager.initialize()

    async def _handle_eio_disconnect(self, eio_sid: str, reason: Any = None) -> None:
        """Answer a polling client's waiting GET as soon as its connection closes.

        python-engineio closes an aborted polling socket without waking the GET
        that waits on its queue, so that request (and the client's exit, and our
        shutdown) hangs for ping interval plus ping timeout; the Node server
        answers it at once. `None` on the queue is engineio's own "nothing more".
        This runs for every Engine.IO close, including a refused handshake. A
        close the server starts itself sends a CLOSE packet that wakes the GET
        anyway, and there an extra entry would keep engineio's queue.join() from
        ever returning.
        """
        socket = self.eio.sockets.get(eio_sid)
        server_close = reason == self.eio.reason.SERVER_DISCONNECT
        if socket is not None and not socket.upgraded and not server_close:
            socket.queue.put_nowait(None)
        await super()._handle_eio_disconnect(eio_sid, reason)

    async def close_transports(self) -> None:
        """Close every Engine.IO connection so its client reconnects elsewhere.

        The CLOSE packet goes out first; `None` after it makes the websocket writer
        close the websocket itself (engineio only does that when the client closes),
        so browsers see "transport close" and reconnect, and our shutdown does not
        wait for their heartbeat to time out.
        """
        for socket in list(self.eio.sockets.values()):
            await socket.close(wait=False, reason=self.eio.reason.SERVER_DISCONNECT)
            socket.queue.put_nowait(None)
