"""python-socketio's AsyncServer, with the one fix this server needs from it."""

from __future__ import annotations

from typing import Any

import socketio


class ChatSocketServer(socketio.AsyncServer):  # type: ignore[misc]
    async def _handle_eio_disconnect(self, eio_sid: str, reason: Any = None) -> None:
        """Answer a polling client's waiting GET as soon as its connection closes.

        python-engineio closes an aborted polling socket without waking the GET
        that waits on its queue, so that request (and the client's exit, and our
        shutdown) hangs for ping interval plus ping timeout; the Node server
        answers it at once. `None` on the queue is engineio's own "nothing more".
        This runs for every Engine.IO close, including a refused handshake.
        """
        socket = self.eio.sockets.get(eio_sid)
        if socket is not None and not socket.upgraded:
            socket.queue.put_nowait(None)
        await super()._handle_eio_disconnect(eio_sid, reason)
