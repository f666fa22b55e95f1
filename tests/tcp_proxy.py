"""A small asyncio TCP proxy that injects network faults, the way Toxiproxy is used.

The server under test connects to the proxy instead of the database; the test
then breaks the path between them while the server runs:

- `cut("refuse")`: every live connection is closed and the listening socket too,
  so new connections are refused by the kernel (ECONNREFUSED), as when the
  database host is up but nothing listens on the port.
- `cut("blackhole")`: every live connection is closed; new connections are
  accepted but nothing is ever forwarded either way, which is what a hung
  network or a frozen database host looks like to a client.
- `stall(...)`: live connections stay open but stop forwarding (optionally only
  from the moment a given request passes), new connections are blackholed: the
  network hangs mid-conversation.
- `sever()`: the upstream half of every live connection goes away without the
  client being told; the client finds out (a reset) only when it next sends, as
  after a failover or a NAT that dropped the connection. New connections work.
- `delay(seconds)`: every forwarded chunk, in both directions, is held that long
  (latency, not a throughput limit: chunks are timestamped as they arrive).
- `restore()`: forwarding resumes for new connections; connections that lost
  data or never reached the upstream are closed, as a real peer would have
  given up on them.

Used as `async with TcpProxy(upstream_port=3306) as proxy:`, it listens on
127.0.0.1 on a free port (`proxy.port`) and closes everything on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from dataclasses import dataclass
from types import TracebackType
from typing import Literal

CutMode = Literal["refuse", "blackhole"]
CHUNK_BYTES = 65536


@dataclass(eq=False)
class _Link:
    """One accepted client connection and, when forwarding, its upstream connection."""

    client_reader: asyncio.StreamReader
    client_writer: asyncio.StreamWriter
    upstream_writer: asyncio.StreamWriter | None = None
    # Data was dropped (stalled) or never forwarded (blackholed): the stream is
    # no longer intact, so restore() closes the link instead of resuming it.
    broken: bool = False
    # The upstream half is gone; the client is reset when it next sends.
    severed: bool = False
    to_upstream: asyncio.Task[None] | None = None
    to_client: asyncio.Task[None] | None = None

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        return [task for task in (self.to_upstream, self.to_client) if task is not None]

    def close(self) -> None:
        for writer in (self.client_writer, self.upstream_writer):
            if writer is not None:
                writer.close()

    def reset_client(self) -> None:
        """Close the client's connection with a TCP reset, as a host that lost it would."""
        sock = self.client_writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.client_writer.transport.abort()


@dataclass(frozen=True)
class _Chunk:
    due: float  # loop time at which it may be forwarded
    data: bytes
    # The request that set off stall(..., forward_trigger=True): delivered anyway.
    past_hang: bool


@dataclass(frozen=True)
class _StallTrigger:
    """Hang once a client-to-upstream chunk containing `pattern` is seen."""

    pattern: bytes
    forward_trigger: bool


class TcpProxy:
    """Forward 127.0.0.1:<port> to an upstream TCP address, with faults on demand."""

    def __init__(
        self,
        upstream_port: int = 3306,
        upstream_host: str = "127.0.0.1",
        listen_host: str = "127.0.0.1",
    ) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.listen_host = listen_host
        self._port = 0
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._blackhole = False
        self._hung = False
        self._trigger: _StallTrigger | None = None
        self._delay_s = 0.0
        self._accepted = 0

    # -- lifecycle ------------------------------------------------------------------

    async def __aenter__(self) -> TcpProxy:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Listen (on a free port the first time, on the same port afterwards)."""
        if self._server is not None:
            return
        self._server = await asyncio.start_server(
            self._accept, self.listen_host, self._port, reuse_address=True
        )
        self._port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop listening, close every connection and wait for the proxy's tasks."""
        self._close_listener()
        await self._close_links(list(self._links))
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    # -- what tests read ------------------------------------------------------------

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("the proxy has not been started")
        return self._port

    @property
    def accepted(self) -> int:
        """How many client connections the proxy has accepted so far."""
        return self._accepted

    @property
    def open_links(self) -> int:
        """Client connections currently open through the proxy (in any state)."""
        return len(self._links)

    # -- faults ---------------------------------------------------------------------

    async def cut(self, mode: CutMode = "refuse") -> None:
        """Close every live connection; refuse or blackhole the new ones until restore()."""
        if mode == "refuse":
            self._close_listener()
        else:
            self._blackhole = True
        await self._close_links(list(self._links))

    def stall(self, when_sent: bytes | None = None, *, forward_trigger: bool = False) -> None:
        """Hang the network without closing anything.

        Without `when_sent`, live connections stop forwarding at once. With it,
        traffic flows until a client-to-upstream chunk containing `when_sent`
        arrives: with `forward_trigger` that chunk still reaches the upstream
        (the request is executed, its answer is lost), without it the chunk is
        dropped too (the request is lost). Either way everything after hangs, and
        new connections are blackholed until restore().
        """
        if when_sent is None:
            self._hang()
        else:
            self._trigger = _StallTrigger(when_sent, forward_trigger)

    async def sever(self) -> int:
        """Drop the upstream half of every live connection, telling the client nothing.

        The upstream sees its connection closed; the client's stays open and
        silent until the client sends, which is answered with a reset. Returns
        how many connections were severed.
        """
        severed = [link for link in self._links if link.upstream_writer and not link.severed]
        for link in severed:
            link.severed = True
            if link.to_client is not None:
                link.to_client.cancel()
            assert link.upstream_writer is not None
            link.upstream_writer.close()
        await asyncio.gather(*(link.to_client for link in severed if link.to_client),
                             return_exceptions=True)
        return len(severed)

    def delay(self, seconds: float) -> None:
        """Hold every chunk forwarded from now on for `seconds` (0 removes the delay)."""
        if seconds < 0:
            raise ValueError("delay must not be negative")
        self._delay_s = seconds

    async def restore(self) -> None:
        """Forward normally again; close connections that a fault left broken."""
        self._blackhole = False
        self._hung = False
        self._trigger = None
        self._delay_s = 0.0
        await self._close_links([link for link in self._links if link.broken])
        await self.start()

    # -- internals ------------------------------------------------------------------

    def _hang(self) -> None:
        self._hung = True
        self._trigger = None

    def _close_listener(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    async def _close_links(self, links: list[_Link]) -> None:
        tasks: list[asyncio.Task[None]] = []
        for link in links:
            link.close()
            tasks.extend(link.tasks)
        # Wait for the pumps, so a cut is complete (the peers' sockets are
        # closed) when this returns.
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for link in links:
            self._links.discard(link)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer))
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._accepted += 1
        link = _Link(reader, writer)
        self._links.add(link)
        try:
            if self._blackhole or self._hung:
                link.broken = True
                await self._swallow(reader)
                return
            try:
                upstream_reader, link.upstream_writer = await asyncio.open_connection(
                    self.upstream_host, self.upstream_port
                )
            except OSError:
                return
            upstream_socket = link.upstream_writer.get_extra_info("socket")
            upstream_socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            link.to_upstream = asyncio.ensure_future(
                self._pump(link, reader, link.upstream_writer, to_upstream=True)
            )
            link.to_client = asyncio.ensure_future(
                self._pump(link, upstream_reader, writer, to_upstream=False)
            )
            # Either direction ending (EOF, error, cut) ends the link; once severed,
            # only the client's next send (or its close) does.
            await asyncio.wait(link.tasks, return_when=asyncio.FIRST_COMPLETED)
            if link.severed:
                await asyncio.wait([link.to_upstream])
        finally:
            link.close()
            for task in link.tasks:
                task.cancel()
            self._links.discard(link)

    @staticmethod
    async def _swallow(reader: asyncio.StreamReader) -> None:
        """Read and discard until the peer gives up (a blackhole answers nothing)."""
        with contextlib.suppress(OSError):
            while await reader.read(CHUNK_BYTES):
                pass

    async def _pump(
        self,
        link: _Link,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        *,
        to_upstream: bool,
    ) -> None:
        """Copy one direction, each chunk held for the delay in force when it arrived."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[_Chunk | None] = asyncio.Queue()
        writer = asyncio.ensure_future(self._write_out(link, queue, sink))
        try:
            with contextlib.suppress(OSError):
                while data := await source.read(CHUNK_BYTES):
                    if link.severed:
                        link.reset_client()
                        return
                    if self._hung:
                        link.broken = True
                        continue
                    trigger = self._trigger if to_upstream else None
                    if trigger is not None and trigger.pattern in data:
                        self._hang()
                        link.broken = True
                        if not trigger.forward_trigger:
                            continue
                    queue.put_nowait(_Chunk(loop.time() + self._delay_s, data, self._hung))
            if self._hung:
                # A hung network does not pass the close on: wait to be cut or restored.
                link.broken = True
                await loop.create_future()
            queue.put_nowait(None)
            await writer
        finally:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)

    async def _write_out(
        self, link: _Link, queue: asyncio.Queue[_Chunk | None], sink: asyncio.StreamWriter
    ) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(OSError):
            while (chunk := await queue.get()) is not None:
                if (wait := chunk.due - loop.time()) > 0:
                    await asyncio.sleep(wait)
                if self._hung and not chunk.past_hang:
                    link.broken = True
                    continue
                sink.write(chunk.data)
                await sink.drain()
