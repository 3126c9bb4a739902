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
import time
from collections.abc import Iterable
from dataclasses import dataclass

import aiormq
from aiormq.abc import AbstractChannel as Underlay

from eodes_node.adapters.amqp.calls import within

# How old a question asked ahead may be for its settle to take the answer. A queue deleted
# after the broker answered goes unseen until the commit; asked at the settle, that window
# was a round trip (1-7 ms under load), and this keeps it about as short. A batch of a few
# messages is decided and committed within it; a slower one is asked about again.
FRESH_S = 0.005


@dataclass(frozen=True, slots=True)
class _Question:
    queues: frozenset[str]
    connection: object
    asked_at: float
    task: asyncio.Task[list[str]]

    def answers(self, beside: Underlay, wanted: frozenset[str]) -> bool:
        return (
            wanted <= self.queues
            and self.connection is beside.connection
            and time.monotonic() - self.asked_at <= FRESH_S
        )


class QueueProbe:
    """Asks the broker which queues are missing; one per consumer, used by one at a time.

    ``ask_ahead`` sends the question for the queues the consumer's last hand-offs went to
    as soon as a batch is taken, so that its answer comes back while the batch is decided
    and committed, not after: at a few messages a second the question's round trip was a
    good part of a settle. The settle takes that answer only if the batch hands off to
    those queues and the question is at most ``FRESH_S`` old (a queue deleted after it was
    asked goes unseen until the commit); otherwise it asks again.
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._channel: Underlay | None = None
        self.usual: frozenset[str] = frozenset()  # where the last hand-offs went
        self._ahead: _Question | None = None

    async def ask_ahead(self, beside: Underlay) -> None:
        """Ask about the usual queues now, on the connection of ``beside``."""
        await self._drop_ahead()
        if not self.usual:
            return
        task = asyncio.ensure_future(self._ask(beside, self.usual))
        task.add_done_callback(_retrieved)
        self._ahead = _Question(self.usual, beside.connection, time.monotonic(), task)
        # Let the question reach the socket before the batch holds the loop (a small
        # batch's commit runs on it): the probe's task, aiormq's call task, its writer.
        for _ in range(3):
            await asyncio.sleep(0)

    async def missing(self, beside: Underlay, queues: Iterable[str]) -> list[str]:
        """The queues among ``queues`` that do not exist, asked on the connection of
        ``beside``; raises the broker library's errors when the broker cannot answer."""
        wanted = frozenset(queues)
        self.usual = wanted
        ahead = self._ahead
        if ahead is not None and ahead.answers(beside, wanted):
            self._ahead = None
            return [queue for queue in await ahead.task if queue in wanted]
        await self._drop_ahead()  # other queues, another connection, or too old
        return await self._ask(beside, wanted)

    async def _drop_ahead(self) -> None:
        """Wait out an answer no settle will use, whatever it is: the probe's channel is
        used by one question at a time."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            await asyncio.wait({ahead.task})

    async def _ask(self, beside: Underlay, queues: frozenset[str]) -> list[str]:
        absent = []
        for queue in sorted(queues):
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


def _retrieved(task: asyncio.Task[list[str]]) -> None:
    """An answer nobody used, or a question cut short at shutdown, is not a fault."""
    if not task.cancelled():
        task.exception()
