"""The polling → websocket upgrade of an Engine.IO v4 session: the probe, then UPGRADE.

A polling session that opens a websocket sends `2probe` over it, is answered
`3probe`, and its pending poll is ended with a NOOP; its `5` (UPGRADE) then hands
the session over to the websocket. Anything else, or silence past the heartbeat's
limit, and the websocket is dropped while the session stays on polling (whose
upgrade deadline, PollingSocket's, bounds the whole exchange).
"""

from __future__ import annotations

import aiohttp
from aiohttp import web
from engineio import packet as eio_packet

from ecigdis_ws.transport.socketio_overrides.polling import PollingSocket

_PROBE = "probe"


async def probe_upgrade(socket: PollingSocket, response: web.WebSocketResponse) -> bool:
    """The upgrade over `response`, the session's new websocket; False: it failed."""
    socket.upgrading = True
    try:
        probe = await _next_packet(socket, response)
        if probe is None or probe.packet_type != eio_packet.PING or probe.data != _PROBE:
            return False
        await response.send_str(eio_packet.Packet(eio_packet.PONG, data=_PROBE).encode())
        await socket.queue.put(eio_packet.Packet(eio_packet.NOOP))  # ends the pending poll
        upgrade = await _next_packet(socket, response)
        return upgrade is not None and upgrade.packet_type == eio_packet.UPGRADE
    except ConnectionError:  # (lost while aiohttp answered a PING frame)
        return False
    finally:
        socket.upgrading = False
        socket.upgrade_ended()


def _silence_limit_s(socket: PollingSocket) -> float:
    """A client that sends nothing, not even a pong, this long is gone."""
    return float(socket.server.ping_interval + socket.server.ping_timeout)


async def _next_packet(
    socket: PollingSocket, response: web.WebSocketResponse
) -> eio_packet.Packet | None:
    """The next frame of an upgrade (whose deadline, PollingSocket's, bounds the wait)."""
    try:
        message = await response.receive(timeout=_silence_limit_s(socket))
    except TimeoutError:
        return None
    if message.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
        return None
    return eio_packet.Packet(encoded_packet=message.data)
