"""A small asyncio TCP proxy on loopback, for tests of link faults between a node and a
broker: cut the link (reset every connection, refuse new ones), hang it (connections
stay open and nothing passes), slow it, and restore it. No toxiproxy or netem here.

Point a client at ``proxy.port`` (``route`` rewrites a broker URL) instead of the
broker's; the counters let a test prove that its fault happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from dataclasses import dataclass, field
from enum import Enum
from urllib.parse import urlsplit, urlunsplit

__all__ = ["LinkState", "TcpProxy"]

CHUNK = 65536


class LinkState(Enum):
    OPEN = "open"
    CUT = "cut"  # connections reset, new ones reset on accept
    HUNG = "hung"  # connections accepted and kept, no byte passes either way


@dataclass(eq=False)  # kept in a set by identity
class _Pair:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    pumps: list[asyncio.Task[None]] = field(default_factory=list)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST, as a dropped link looks to the peer, not an orderly FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to ``target_host``:``target_port``."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.state = LinkState.OPEN
        self.latency_s = 0.0  # added before each chunk is passed on
        self.accepted = 0  # connections forwarded to the target
        self.refused = 0  # connections reset on accept while cut
        self.resets = 0  # live connections reset by ``cut``
        self._server: asyncio.Server | None = None
        self._pairs: set[_Pair] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the proxy is not started: no port yet")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def route(self, url: str) -> str:
        """``url`` (a broker URL) with its host and port replaced by the proxy's."""
        parts = urlsplit(url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@127.0.0.1:{self.port}" if userinfo else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def __aenter__(self) -> TcpProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def cut(self) -> int:
        """Reset every connection and refuse new ones; returns how many were reset."""
        self.state = LinkState.CUT
        self._flowing.set()  # hung pumps wake up and find their sockets gone
        pairs = list(self._pairs)
        for pair in pairs:
            self._drop(pair)
        self.resets += len(pairs)
        return len(pairs)

    def hang(self) -> None:
        """Keep every connection open but let nothing through, as a stalled peer would."""
        self.state = LinkState.HUNG
        self._flowing.clear()

    def restore(self) -> None:
        self.state = LinkState.OPEN
        self._flowing.set()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for pair in list(self._pairs):
                self._drop(pair)
            await self._server.wait_closed()
            self._server = None

    def _drop(self, pair: _Pair) -> None:
        self._pairs.discard(pair)
        for writer in (pair.client, pair.server):
            _reset(writer)
        for pump in pair.pumps:
            pump.cancel()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.state is LinkState.CUT:
            self.refused += 1
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            _reset(writer)
            return
        self.accepted += 1
        pair = _Pair(writer, up_writer)
        self._pairs.add(pair)
        pair.pumps = [
            asyncio.create_task(self._pump(reader, up_writer, pair)),
            asyncio.create_task(self._pump(up_reader, writer, pair)),
        ]
        await asyncio.gather(*pair.pumps, return_exceptions=True)

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pair: _Pair
    ) -> None:
        try:
            while chunk := await reader.read(CHUNK):
                await self._flowing.wait()
                if self.latency_s:
                    await asyncio.sleep(self.latency_s)
                if pair not in self._pairs:
                    return
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            if pair in self._pairs:  # one side ended: end the other the same way
                self._drop(pair)
