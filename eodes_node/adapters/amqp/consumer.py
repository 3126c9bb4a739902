"""Taking deliveries from one queue in batches, and the one place each is settled.

``AmqpConsumer._settle`` is the only code that acks or requeues a delivery. It runs after
the handler has committed what the batch caused, and acks in the same broker transaction
that publishes the batch's local hand-offs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import structlog
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from eodes_node.adapters.amqp.settle import settle_batch
from eodes_node.errors import TransientError
from eodes_node.ports import BatchHandler, Delivery, Publication

log = structlog.get_logger("eodes_node.adapters.amqp")


def delivery_of(message: AbstractIncomingMessage) -> Delivery:
    return Delivery(
        body=message.body,
        message_id=message.message_id,
        kind=message.type,
        headers=dict(message.headers or {}),
        redelivered=bool(message.redelivered),
        raw=message,
    )


def poison_publication(delivery: Delivery, dead_letter_queue: str, exc: Exception) -> Publication:
    """Parks a message the handler keeps failing on, with the reason, for a human to see."""
    return Publication(
        dead_letter_queue,
        delivery.body,
        delivery.message_id or "unknown",
        delivery.kind or "unknown",
        {"x-eodes-reason": f"internal error: {exc!r}"},
        "application/octet-stream",
        bound_to="poison",
    )


class AmqpConsumer:
    """Collects deliveries from one queue into batches and settles each one exactly once."""

    def __init__(
        self,
        queue: str,
        channel: AbstractChannel,
        handler: BatchHandler,
        *,
        published: Callable[[Sequence[int]], Awaitable[None]],
        dead_letter_queue: str,
        batch_max: int,
        batch_wait_s: float,
        timeout_s: float,
    ) -> None:
        self.queue = queue
        self.channel = channel
        self.handler = handler
        self.published = published
        self.dead_letter_queue = dead_letter_queue
        self.batch_max = batch_max
        self.batch_wait_s = batch_wait_s
        self.timeout_s = timeout_s
        self._tainted: object = None
        self._transactional: object = None  # the underlying channel already in tx mode
        self._buffer: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._stopping = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        # A coroutine: aio-pika runs a task per delivery either way, and for a plain
        # function it adds a wrapper and a DeprecationWarning on every delivery.
        self._buffer.put_nowait(message)

    def stop(self) -> None:
        self._stopping.set()

    async def wait_idle(self) -> None:
        await self._idle.wait()

    async def run(self) -> None:
        while not self._stopping.is_set():
            batch = await self._next_batch()
            if not batch:
                return
            self._idle.clear()
            try:
                await self._process([delivery_of(m) for m in batch])
            finally:
                self._idle.set()

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
            except Exception as exc:  # noqa: BLE001 - logged where it is given up on
                await self._give_up_or_retry(delivery, exc)
            else:
                await self._settle([delivery], local, ack=True)

    async def _give_up_or_retry(self, delivery: Delivery, exc: Exception) -> None:
        # A first failure may be a fluke; failing again on redelivery means it never works.
        if not delivery.redelivered:
            await self._settle([delivery], [], ack=False)
            return
        log.error(
            "poison_message_dead_lettered",
            queue=self.queue,
            message_id=delivery.message_id,
            exc_info=exc,
        )
        poison = poison_publication(delivery, self.dead_letter_queue, exc)
        await self._settle([delivery], [(0, poison)], ack=True)

    async def _settle(
        self,
        deliveries: Sequence[Delivery],
        local: Sequence[tuple[int, Publication]],
        *,
        ack: bool,
    ) -> None:
        try:
            underlay: object = await asyncio.wait_for(
                self.channel.get_underlay_channel(), self.timeout_s
            )
        except Exception:  # noqa: BLE001 - settle_batch reports the failure below
            underlay = None
        done = await settle_batch(
            self.channel,
            deliveries,
            [p for _, p in local],
            ack=ack,
            timeout_s=self.timeout_s,
            multiple=underlay is not None and underlay is not self._tainted,
            select=underlay is None or underlay is not self._transactional,
        )
        if not done:
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
        self._transactional = underlay
        await self._mark_published([i for i, _ in local if i])

    async def _mark_published(self, ids: list[int]) -> None:
        if not ids:
            return
        try:
            await self.published(ids)
        except TransientError as exc:
            # Harmless: bound publications are never relayed, only re-issued if their
            # delivery comes back, and it will not: it was acked with them.
            log.warning("mark_published_failed", error=str(exc))
