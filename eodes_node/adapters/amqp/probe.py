"""Whether the queues a settle hands off to exist, asked before its commit.

Inside a transaction RabbitMQ routes the publishes only at commit: an unroutable
``mandatory`` publish is returned then, in the same commit as the acks (see "Semantics
of tx" in RabbitMQ's broker semantics), and aiormq drops a return on a channel without
confirms. A hand-off to a deleted queue would be lost with its delivery acked. A passive
declare answers before the commit; it is asked on a channel of its own, because the
broker closes the channel that asks about a missing queue.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import aiormq
from aiormq.abc import AbstractChannel as Underlay

from eodes_node.adapters.amqp.calls import within


class QueueProbe:
    """Asks the broker which queues are missing; one per consumer, used by one at a time."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._channel: Underlay | None = None

    async def missing(self, beside: Underlay, queues: Iterable[str]) -> list[str]:
        """The queues among ``queues`` that do not exist, asked on the connection of
        ``beside``; raises the broker library's errors when the broker cannot answer."""
        absent = []
        for queue in sorted(set(queues)):
            channel = await self._channel_beside(beside)
            try:
                await within(self.timeout_s, channel.queue_declare(queue, passive=True))
            except aiormq.exceptions.ChannelNotFoundEntity:
                absent.append(queue)
                self._channel = None  # the broker closed it with the answer
        return absent

    async def _channel_beside(self, beside: Underlay) -> Underlay:
        connection = beside.connection
        channel = self._channel
        if channel is not None and not channel.is_closed and channel.connection is connection:
            return channel
        if connection.is_closed:
            # aiormq would raise a bare RuntimeError; the link is what failed.
            raise ConnectionError("the connection closed before the probe")
        self._channel = await asyncio.wait_for(
            connection.channel(publisher_confirms=False, timeout=self.timeout_s),
            self.timeout_s,
        )
        return self._channel
