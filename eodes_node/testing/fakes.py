"""In-memory fakes of the node's ports: a manual clock, a recording transport, a store.

They let the service and the runtime be tested without a broker or a database, in
milliseconds. The store (in ``memory``) keeps the SQL store's observable rules, so a test
that passes against it says something about the real node.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from eodes_node.core.work import Delivery, Publication
from eodes_node.errors import BrokerUnavailable, TransientError
from eodes_node.ports import BatchHandler
from eodes_node.testing.memory import InMemoryStore
from eodes_node.testing.tables import HistoryRecord, StoredOutbound

__all__ = [
    "FakeBroker",
    "FakeConsumer",
    "HistoryRecord",
    "InMemoryStore",
    "LocalPublish",
    "ManualClock",
    "PartnerPublish",
    "RecordingTransport",
    "StoredOutbound",
]


class ManualClock:
    """A clock that moves only when the test says so: retries and expiry become exact."""

    def __init__(self, start: datetime) -> None:
        self._now = _aware(start)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> datetime:
        self._now += timedelta(seconds=seconds)
        return self._now

    def set(self, dt: datetime) -> None:
        self._now = _aware(dt)


def _aware(dt: datetime) -> datetime:
    # A naive time would turn into a timestamp through the machine's zone.
    if dt.tzinfo is None:
        raise ValueError("ManualClock needs a timezone-aware datetime")
    return dt.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class LocalPublish:
    queue: str
    body: bytes
    message_id: str
    kind: str
    headers: Mapping[str, str]
    content_type: str


@dataclass(frozen=True, slots=True)
class PartnerPublish:
    token: bytes
    message_id: str
    kind: str


class RecordingTransport:
    """The Transport port that keeps what was published, and fails when told to.

    Failed publications are not recorded: a test sees exactly what reached the "broker".
    """

    def __init__(self) -> None:
        self.local_published: list[LocalPublish] = []
        self.partner: list[PartnerPublish] = []
        self._local_failures: dict[str | None, int] = {}
        self._partner_failures = 0

    def local(self, queue: str | None = None) -> list[LocalPublish]:
        """What went to one local queue (or to every local queue), in publication order."""
        return [p for p in self.local_published if queue is None or p.queue == queue]

    def fail_local(self, times: int = 1, *, queue: str | None = None) -> None:
        """The next ``times`` local publications (to ``queue`` only, if given) fail."""
        self._local_failures[queue] = times

    def fail_partner(self, times: int = 1) -> None:
        self._partner_failures = times

    async def publish_local(
        self,
        queue: str,
        body: bytes,
        *,
        message_id: str,
        kind: str,
        headers: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        for key in (queue, None):
            if self._local_failures.get(key, 0) > 0:
                self._local_failures[key] -= 1
                raise BrokerUnavailable(f"injected failure publishing to {queue}")
        self.local_published.append(
            LocalPublish(queue, body, message_id, kind, dict(headers or {}), content_type)
        )

    async def publish_partner(self, token: bytes, *, message_id: str, kind: str) -> None:
        if self._partner_failures > 0:
            self._partner_failures -= 1
            raise BrokerUnavailable("injected failure publishing to the partner")
        self.partner.append(PartnerPublish(token, message_id, kind))


class FakeConsumer:
    """A queue of deliveries handed to the handler in batches, settled in memory.

    A batch whose handler raises ``TransientError`` goes back to the queue as redelivered,
    as the broker would return a requeued delivery.
    """

    def __init__(
        self,
        queue: str,
        handler: BatchHandler,
        published: Callable[[Sequence[int]], Awaitable[None]],
        *,
        batch_max: int = 64,
    ) -> None:
        self.queue = queue
        self.handler = handler
        self.published = published
        self.batch_max = batch_max
        self.settled: list[Publication] = []
        self.deferred = 0
        self._inbox: asyncio.Queue[Delivery] = asyncio.Queue()
        self._stopping = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    def put(self, delivery: Delivery) -> None:
        self._inbox.put_nowait(delivery)

    def stop(self) -> None:
        self._stopping.set()

    async def wait_idle(self) -> None:
        await self._idle.wait()

    async def _next_batch(self) -> list[Delivery]:
        getter = asyncio.ensure_future(self._inbox.get())
        stopper = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if not getter.done():
            getter.cancel()
            return []
        batch = [getter.result()]
        while len(batch) < self.batch_max and not self._inbox.empty():
            batch.append(self._inbox.get_nowait())
        return batch

    async def run(self) -> None:
        while not self._stopping.is_set():
            batch = await self._next_batch()
            if not batch:
                return
            self._idle.clear()
            try:
                await self._handle(batch)
            finally:
                self._idle.set()

    async def _handle(self, batch: list[Delivery]) -> None:
        try:
            bound = await self.handler(batch)
        except TransientError:
            self.deferred += 1
            for d in batch:
                self.put(Delivery(d.body, d.message_id, d.kind, d.headers, True, d.raw))
            return
        self.settled.extend(p for _, p in bound)
        await self.published([i for i, _ in bound])


class FakeBroker(RecordingTransport):
    """The Broker port in memory: the runtime's consumers read from in-memory queues."""

    def __init__(self) -> None:
        super().__init__()
        self.declared = 0
        self.consumers: dict[str, FakeConsumer] = {}

    async def declare(self) -> None:
        self.declared += 1

    async def consume(
        self,
        queue: str,
        handler: BatchHandler,
        *,
        published: Callable[[Sequence[int]], Awaitable[None]],
        unsettled: Callable[[Sequence[Publication]], None] | None = None,
    ) -> FakeConsumer:
        consumer = FakeConsumer(queue, handler, published)
        self.consumers[queue] = consumer
        return consumer

    def deliver(
        self, queue: str, body: bytes, *, kind: str | None = None, message_id: str | None = None
    ) -> None:
        self.consumers[queue].put(Delivery(body, message_id, kind, {}, False))

    async def stop_consuming(self) -> None:
        for consumer in self.consumers.values():
            consumer.stop()

    async def close(self) -> None:
        await self.stop_consuming()
