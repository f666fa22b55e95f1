"""python-socketio's AsyncServer, with the one fix this server needs from it."""

from __future__ import annotations

from typing import Any

import socketio


class ChatSocketServer(socketio.AsyncServer):  # type: ignore[misc]
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
