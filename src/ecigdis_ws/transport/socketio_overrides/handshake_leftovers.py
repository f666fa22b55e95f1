"""What the websocket handshake leaves per connection, dropped once it is open.

aiohttp keeps a websocket's request (and the response that answered it) for the
connection's life: its request handler holds them until the websocket ends. Of
what they hold, these are only ever read during the handshake, and at 10,000
connections each costs a few megabytes:

- the request's cache of parsed values (`reify`: the query, the path, the peer's
  address ...), which aiohttp computes again from the request itself if asked;
- the 101 answer's headers, written already;
- the connection's HTTP parser (about 0.8 KiB): once aiohttp has accepted the
  upgrade, every byte goes to the websocket's reader instead, and aiohttp 3.14
  only touches the HTTP parser again where it checks that it is still there (to
  read a request after an upgrade it declined, which this one was not).

The request's parsed head itself (its headers, raw headers and URL) cannot go:
aiohttp's connection loop holds the parsed message in a local variable of its own
coroutine until the request is done.
"""

from __future__ import annotations

from aiohttp import web


def drop_handshake(request: web.Request, response: web.WebSocketResponse) -> None:
    """Forget what `request` and its `response` (prepared: the 101 is written)
    keep only for the handshake."""
    request._cache.clear()
    response.headers.clear()
    protocol = request.protocol
    if protocol._upgraded and protocol._payload_parser is not None:  # (accepted)
        protocol._parser = None
