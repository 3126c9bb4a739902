"""A robust connection to a broker cluster: one member at a time, the next one after a loss.

aio-pika's robust connection reconnects to the one URL it was made with, forever: with
that member dead, a node given a cluster would wait for it instead of moving on. Here
every reconnect attempt that fails, and every loss of an established connection, moves
the connection to the next member, round the list; channels, queues and consumers are
restored on whichever member answers, as aio-pika restores them on one broker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from aio_pika import RobustConnection
from yarl import URL

__all__ = ["ATTEMPT", "ClusterConnection"]

# aio-pika's one connection attempt, run for the first connect and each reconnect; the
# only place that sees an attempt fail. tests/unit/test_broker_cluster.py checks it exists.
ATTEMPT = "_RobustConnection__connect_transport"


class ClusterConnection(RobustConnection):
    """``RobustConnection`` over ``urls``, starting with member ``first``."""

    def __init__(self, urls: Sequence[str], first: int = 0, **kwargs: Any) -> None:
        if not urls:
            raise ValueError("a cluster connection needs at least one URL")
        self.members = [URL(url) for url in urls]
        self.member = first % len(self.members)
        super().__init__(self.members[self.member], **kwargs)

    @property
    def url(self) -> URL:
        """The member this connection is, or will next be, connected to."""
        return self.members[self.member]

    @url.setter
    def url(self, value: URL) -> None:
        # Set by aio-pika at construction and when a secret is updated: the member's URL.
        self.members[self.member] = URL(value)

    def next_member(self) -> None:
        self.member = (self.member + 1) % len(self.members)

    async def _RobustConnection__connect_transport(self) -> None:  # see ATTEMPT
        try:
            await getattr(super(), ATTEMPT)()
        except BaseException:
            self.next_member()
            raise

    async def _on_connection_close(self, closing: asyncio.Future[Any]) -> None:
        if self.connected.is_set() and not self.close_called:
            self.next_member()  # lost, not closed by us: that member may be gone
        await super()._on_connection_close(closing)
