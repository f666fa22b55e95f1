"""systemd's notify protocol, by hand: one datagram to $NOTIFY_SOCKET per state change.

A `Type=notify` unit counts the service started when it receives READY=1, and the
server sends it only once it listens and its database answered (see cli.py). The
socket is a path, or an abstract-namespace name when it starts with '@'. Outside
systemd NOTIFY_SOCKET is unset and nothing is sent.
"""

from __future__ import annotations

import socket

from ecigdis_ws.observability.log_setup import get_logger

log = get_logger(__name__)


def notify(address: str | None, *states: str) -> bool:
    """Send `states` (e.g. "READY=1") as one datagram; True when it was sent.

    Never raises: a service manager that went away must not take the server with it.
    """
    if not address or not states:
        return False
    if address.startswith("@"):
        target = "\0" + address[1:]
    elif address.startswith("/"):
        target = address
    else:
        log.warning("NOTIFY_SOCKET is neither a path nor @abstract: not notifying",
                    notify_socket=address)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(target)
            sock.sendall("\n".join(states).encode())
    except OSError as exc:
        log.warning("cannot notify systemd", notify_socket=address, error=str(exc))
        return False
    return True
