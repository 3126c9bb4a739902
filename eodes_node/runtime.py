"""Lifecycle: start under a TaskGroup, consume in batches, settle deliveries, drain on stop.

``BatchConsumer._settle_all`` is the one place that acks or requeues a delivery, and it
runs only after the service has committed and the broker has confirmed what the batch
caused.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable, Sequence

import structlog
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from eodes_node.adapters.amqp import AmqpTransport, delivery_of, settle_batch
from eodes_node.config import NodeConfig
from eodes_node.errors import TransientError
from eodes_node.ports import Delivery, NodeStore, Publication
from eodes_node.service import NodeService

log = structlog.get_logger("eodes_node.runtime")

BatchHandler = Callable[[Sequence[Delivery]], Awaitable[list[tuple[int, Publication]]]]


class BatchConsumer:
    """Collects deliveries from one queue into batches and settles each one exactly once.

    ``_settle`` is the one place a delivery is acked or requeued. It runs after the
    service has committed what the batch caused, and acks in the same broker transaction
    that publishes the batch's local effects.
    """

    def __init__(
        self,
        queue: str,
        handler: BatchHandler,
        *,
        batch_max: int,
        batch_wait_s: float,
        io_timeout_s: float,
        published: Callable[[Sequence[int]], Awaitable[None]],
        dead_letter_queue: str,
    ) -> None:
        self.queue = queue
        self.handler = handler
        self.batch_max = batch_max
        self.batch_wait_s = batch_wait_s
        self.io_timeout_s = io_timeout_s
        self.published = published
        self.dead_letter_queue = dead_letter_queue
        self.channel: AbstractChannel | None = None
        self._tainted: object = None
        self._transactional: object = None  # the channel already in tx mode
        self._buffer: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._stopping = asyncio.Event()
        self.idle = asyncio.Event()
        self.idle.set()

    def on_message(self, message: AbstractIncomingMessage) -> None:
        # Not a coroutine: aio-pika then calls it without a task per delivery.
        self._buffer.put_nowait(message)

    def stop(self) -> None:
        self._stopping.set()

    async def _next_batch(self) -> list[AbstractIncomingMessage]:
        getter = asyncio.ensure_future(self._buffer.get())
        stopper = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        if not getter.done():
            getter.cancel()
            return []
        batch = [getter.result()]
        if self.batch_wait_s and self._buffer.qsize() < self.batch_max - 1:
            # A short window lets a burst share one commit and one receipt.
            await asyncio.sleep(self.batch_wait_s)
        while len(batch) < self.batch_max and not self._buffer.empty():
            batch.append(self._buffer.get_nowait())
        return batch

    async def run(self) -> None:
        while not self._stopping.is_set():
            batch = await self._next_batch()
            if not batch:
                return
            self.idle.clear()
            try:
                await self._process([delivery_of(m) for m in batch])
            finally:
                self.idle.set()

    async def _process(self, deliveries: list[Delivery]) -> None:
        try:
            local = await self.handler(deliveries)
        except TransientError as exc:
            log.warning("batch_deferred", queue=self.queue, size=len(deliveries), error=str(exc))
            await self._settle(deliveries, [], ack=False)
            return
        except Exception:
            log.exception("batch_failed", queue=self.queue, size=len(deliveries))
            await self._isolate(deliveries)
            return
        await self._settle(deliveries, local, ack=True)

    async def _isolate(self, deliveries: list[Delivery]) -> None:
        """Retry one by one so a poison message cannot take its neighbours down with it."""
        for delivery in deliveries:
            try:
                local = await self.handler([delivery])
            except TransientError:
                await self._settle([delivery], [], ack=False)
                continue
            except Exception as exc:
                if not delivery.redelivered:
                    await self._settle([delivery], [], ack=False)
                    continue
                log.exception(
                    "poison_message_dead_lettered", queue=self.queue, message_id=delivery.message_id
                )
                poison = Publication(
                    self.dead_letter_queue,
                    delivery.body,
                    delivery.message_id or "unknown",
                    delivery.kind or "unknown",
                    {"x-eodes-reason": f"internal error: {exc!r}"},
                    "application/octet-stream",
                    bound_to="poison",
                )
                await self._settle([delivery], [(0, poison)], ack=True)
                continue
            await self._settle([delivery], local, ack=True)

    async def _settle(
        self,
        deliveries: Sequence[Delivery],
        local: Sequence[tuple[int, Publication]],
        *,
        ack: bool,
    ) -> None:
        assert self.channel is not None
        try:
            underlay: object = await asyncio.wait_for(
                self.channel.get_underlay_channel(), self.io_timeout_s
            )
        except Exception:  # noqa: BLE001 - settle_batch reports the failure below
            underlay = None
        done = await settle_batch(
            self.channel,
            deliveries,
            [p for _, p in local],
            ack=ack,
            timeout_s=self.io_timeout_s,
            multiple=underlay is not None and underlay is not self._tainted,
            select=underlay is None or underlay is not self._transactional,
        )
        if done:
            self._transactional = underlay
        else:
            # Deliveries left unsettled on a live channel must not be swept up by a later
            # multiple ack: their local hand-offs were rolled back with the transaction.
            self._tainted = underlay
            log.warning(
                "settle_lost",
                queue=self.queue,
                count=len(deliveries),
                ack=ack,
                note="not settled; the broker redelivers and dedup absorbs it",
            )
            return
        ids = [i for i, _ in local if i]
        if ids:
            try:
                await self.published(ids)
            except TransientError as exc:
                # Harmless: bound publications are never relayed, only re-issued if their
                # delivery comes back, and it will not: it was acked with them.
                log.warning("mark_published_failed", error=str(exc))


class Node:
    """One node: the service wired to its broker and store, with its lifecycle."""

    def __init__(
        self, config: NodeConfig, service: NodeService, store: NodeStore, transport: AmqpTransport
    ) -> None:
        self.config = config
        self.service = service
        self.store = store
        self.transport = transport
        self.ready = asyncio.Event()
        self.consumers: list[BatchConsumer] = []

    def _consumer(self, queue: str, handler: BatchHandler) -> BatchConsumer:
        broker = self.config.broker
        consumer = BatchConsumer(
            queue,
            handler,
            batch_max=broker.batch_max,
            batch_wait_s=broker.batch_wait_ms / 1000,
            io_timeout_s=broker.io_timeout_s,
            published=self.service.published,
            dead_letter_queue=self.service.topology.dead_letter(queue),
        )
        self.consumers.append(consumer)
        return consumer

    async def _start_consuming(self, stop: asyncio.Event) -> bool:
        """Connect and declare, retrying with backoff until it works or we are told to stop."""
        delay = 0.5
        while not stop.is_set():
            try:
                await self.transport.declare()
                topo = self.service.topology
                for queue, handler in (
                    (topo.inbound_queue, self.service.handle_inbound),
                    (topo.outbound_records, self.service.handle_records),
                    (topo.outbound_feedback, self.service.handle_feedback),
                ):
                    consumer = self._consumer(queue, handler)
                    consumer.channel = await self.transport.consume(queue, consumer.on_message)
                return True
            except TransientError as exc:
                log.warning("broker_unavailable", error=str(exc), retry_in_s=delay)
                await self.transport.stop_consuming()
                self.consumers.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(delay * 2, 30.0)
        return False

    async def _every(self, stop: asyncio.Event, work: Callable[[], Awaitable[float]]) -> None:
        """Run ``work`` until stopped; it returns how long to wait before the next run."""
        while not stop.is_set():
            try:
                wait = await work()
            except TransientError as exc:
                log.warning("background_deferred", error=str(exc))
                wait = 2.0
            except Exception:
                log.exception("background_failed")
                wait = 5.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(wait, 0.05))

    async def _retry_pass(self) -> float:
        next_due = await self.service.resend_due()
        if next_due is None:
            return 5.0
        return min(max(next_due - time.time(), 0.05), 5.0)

    async def _flush_marks(self, stop: asyncio.Event) -> None:
        """Persist publication marks soon after each settle: a crash then loses at most a
        moment's worth, which keeps re-issues after a restart exact."""
        wanted = self.service.flush_wanted
        while not stop.is_set():
            waiter = asyncio.ensure_future(wanted.wait())
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            stopper.cancel()
            wanted.clear()
            try:
                await self.store.flush_published()
            except TransientError as exc:
                log.warning("flush_deferred", error=str(exc))

    async def _relay_pass(self) -> float:
        remaining = await self.service.relay_outbox()
        return 0.2 if remaining else 1.0

    async def run(self, shutdown: asyncio.Event | None = None) -> None:
        """Run until ``shutdown`` is set (or SIGTERM/SIGINT when none is given)."""
        stop = shutdown or self._signal_event()
        structlog.contextvars.bind_contextvars(
            node=self.config.node.country, partner=self.config.node.partner
        )
        await self.store.open()
        try:
            if not await self._start_consuming(stop):
                return
            await self.service.relay_outbox()
            log.info("node_started", own=self.config.node.country, partner=self.config.node.partner)
            self.ready.set()
            async with asyncio.TaskGroup() as group:
                for consumer in self.consumers:
                    group.create_task(consumer.run())
                group.create_task(self._every(stop, self._retry_pass))
                group.create_task(self._every(stop, self._relay_pass))
                group.create_task(self._flush_marks(stop))
                await stop.wait()
                await self._drain()
        finally:
            self.ready.clear()
            await self.transport.close()
            with contextlib.suppress(TransientError):
                await self.store.flush_published()
            await self.store.close()
            log.info("node_stopped")

    async def _drain(self) -> None:
        """Stop taking work, let in-flight batches finish within the bound."""
        log.info("draining", bound_s=self.config.limits.drain_timeout_s)
        await self.transport.stop_consuming()
        for consumer in self.consumers:
            consumer.stop()
        try:
            await asyncio.wait_for(
                asyncio.gather(*(c.idle.wait() for c in self.consumers)),
                self.config.limits.drain_timeout_s,
            )
        except TimeoutError:
            log.error(
                "drain_timeout", note="unfinished deliveries stay unacked and are redelivered"
            )
        await self.service.finish_background(self.config.limits.drain_timeout_s)

    @staticmethod
    def _signal_event() -> asyncio.Event:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        return stop
