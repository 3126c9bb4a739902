"""Taking deliveries from one queue in batches, and the one place each is settled.

``AmqpConsumer._settle`` is the only code that acks or requeues a delivery. It runs after
the handler has committed what the batch caused, and acks in the same broker transaction
that publishes the batch's local hand-offs. Nothing a batch meets ends ``run``: a broker
or store failure leaves the batch to the broker, a bug is logged and the batch goes back
(or, failing again, to its dead-letter queue with an event).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence

import structlog
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from aiormq.abc import AbstractChannel as Underlay

from eodes_node import hops
from eodes_node.adapters.amqp.calls import (
    BROKER_ERRORS,
    LINK_FAILURES,
    cancelled_by_the_link,
    reraise_cancellation,
    within,
)
from eodes_node.adapters.amqp.poison import dead_letter, internal_error_event, reason_of
from eodes_node.adapters.amqp.probe import QueueProbe
from eodes_node.adapters.amqp.settle import Outcome, Result, channel_of, settle_batch
from eodes_node.errors import TransientError
from eodes_node.ports import BatchHandler, Delivery, Publication

log = structlog.get_logger("eodes_node.adapters.amqp")

# After a settle the broker refused, wait before the next batch: the same deliveries
# come straight back, and a missing queue is not re-declared in a millisecond.
PAUSE_FIRST_S = 0.25
PAUSE_MAX_S = 5.0


def delivery_of(message: AbstractIncomingMessage) -> Delivery:
    return Delivery(
        body=message.body,
        message_id=message.message_id,
        kind=message.type,
        headers=dict(message.headers or {}),
        redelivered=bool(message.redelivered),
        raw=message,
    )


def _ids(deliveries: Sequence[Delivery]) -> list[str | None]:
    return [d.message_id for d in deliveries]


class AmqpConsumer:
    """Collects deliveries from one queue into batches and settles each one exactly once."""

    def __init__(
        self,
        queue: str,
        channel: AbstractChannel,
        handler: BatchHandler,
        *,
        published: Callable[[Sequence[int]], Awaitable[None]],
        unsettled: Callable[[Sequence[Publication]], None] | None = None,
        dead_letter_queue: str,
        events_queue: str,
        partner: str,
        batch_max: int,
        batch_wait_s: float,
        timeout_s: float,
        confirmed: bool = False,
    ) -> None:
        self.queue = queue
        self.channel = channel
        self.handler = handler
        self.published = published
        self.unsettled = unsettled
        self.dead_letter_queue = dead_letter_queue
        self.events_queue = events_queue
        self.partner = partner
        self.batch_max = batch_max
        self.batch_wait_s = batch_wait_s
        self.timeout_s = timeout_s
        self.confirmed = confirmed  # a channel in confirm mode: see ``settle``
        self.probe = QueueProbe(timeout_s)
        self._selected: Underlay | None = None  # the underlying channel already in tx mode
        self._held: Underlay | None = None  # a live channel that may hold unsettled deliveries
        self._pause_s = 0.0
        # ``None`` in the buffer is the wake-up that ``stop`` leaves for a waiting ``run``.
        self._buffer: asyncio.Queue[AbstractIncomingMessage | None] = asyncio.Queue()
        self._stopping = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        # A coroutine: aio-pika runs a task per delivery either way, and for a plain
        # function it adds a wrapper and a DeprecationWarning on every delivery.
        self._buffer.put_nowait(message)

    @property
    def buffered(self) -> int:
        """Deliveries received and not yet taken into a batch (plus the wake-up, once
        stopped)."""
        return self._buffer.qsize()

    def stop(self) -> None:
        self._stopping.set()
        self._buffer.put_nowait(None)

    async def wait_idle(self) -> None:
        await self._idle.wait()

    async def run(self) -> None:
        while not self._stopping.is_set():
            batch = await self._next_batch()
            if not batch:
                return
            self._idle.clear()
            try:
                # Deliveries of a channel that closed meanwhile are the broker's again.
                live = [d for d in map(delivery_of, batch) if channel_of(d) is not None]
                if live:
                    await self._guarded(live)
            finally:
                self._idle.set()
            await self._pause()

    async def _guarded(self, deliveries: list[Delivery]) -> None:
        try:
            await self._process(deliveries)
        except asyncio.CancelledError:
            if not cancelled_by_the_link():
                raise
            log.warning("batch_interrupted", queue=self.queue, message_ids=_ids(deliveries))
        except Exception:
            log.exception("consumer_fault", queue=self.queue, message_ids=_ids(deliveries))
            # Some of the batch may be unsettled: closing the channel gives it all back.
            await self._reset_channel()

    async def _next_batch(self) -> list[AbstractIncomingMessage]:
        # One ``get`` per batch and no task beside it: at a few messages a second, each
        # batch is one message and what waits for it is a good part of its cost.
        first = await self._buffer.get()
        if first is None:
            return []
        if self.batch_wait_s and self._buffer.qsize() < self.batch_max - 1:
            # A short window lets a burst share one commit and one receipt.
            await asyncio.sleep(self.batch_wait_s)
        batch = [first]
        while len(batch) < self.batch_max and not self._buffer.empty():
            message = self._buffer.get_nowait()
            if message is None:
                self._buffer.put_nowait(None)  # ``run`` sees the stop after this batch
                break
            batch.append(message)
        return batch

    async def _pause(self) -> None:
        if self._pause_s:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._pause_s)

    async def _process(self, deliveries: list[Delivery]) -> None:
        if self.probe.usual:
            underlay = await self._underlay()
            if underlay is not None:
                await self.probe.ask_ahead(underlay)
        try:
            local = await self.handler(deliveries)
        except TransientError as exc:
            log.warning("batch_deferred", queue=self.queue, size=len(deliveries), error=str(exc))
            await self._settle(deliveries, [], ack=False)
            return
        except Exception:
            log.exception(
                "batch_failed", queue=self.queue, size=len(deliveries), message_ids=_ids(deliveries)
            )
            await self._isolate(deliveries)
            return
        await self._settle(deliveries, local, ack=True)
        if hops.TRACING:  # the settle transaction's commit is the broker's confirm of its publishes
            hops.stamp(
                "hop_settled", queue=self.queue, ids=hops.unique(d.message_id for d in deliveries)
            )

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
            log.warning(
                "message_failed_once",
                queue=self.queue,
                message_id=delivery.message_id,
                kind=delivery.kind,
                error=reason_of(exc),
                note="requeued for one more try",
            )
            await self._settle([delivery], [], ack=False)
            return
        log.error(
            "poison_message_dead_lettered",
            queue=self.queue,
            message_id=delivery.message_id,
            kind=delivery.kind,
            dead_letter_queue=self.dead_letter_queue,
            error=reason_of(exc),
            exc_info=exc,
        )
        event = internal_error_event(
            delivery,
            events_queue=self.events_queue,
            dead_letter_queue=self.dead_letter_queue,
            partner=self.partner,
            exc=exc,
        )
        parked = dead_letter(delivery, self.dead_letter_queue, exc)
        await self._settle([delivery], [(0, parked), (0, event)], ack=True)

    async def _underlay(self) -> Underlay | None:
        try:
            return await within(self.timeout_s, self.channel.get_underlay_channel())
        except LINK_FAILURES as exc:
            reraise_cancellation(exc)
            return None

    async def _settle(
        self,
        deliveries: Sequence[Delivery],
        local: Sequence[tuple[int, Publication]],
        *,
        ack: bool,
    ) -> None:
        underlay = await self._underlay()
        if underlay is None:
            outcome = Outcome(Result.GONE, "no channel to settle on")
        else:
            outcome = await settle_batch(
                underlay,
                deliveries,
                [p for _, p in local],
                ack=ack,
                timeout_s=self.timeout_s,
                probe=self.probe,
                multiple=underlay is not self._held,
                select=underlay is not self._selected,
                confirmed=self.confirmed,
            )
        if outcome.done:
            self._selected = underlay
            self._pause_s = 0.0
            await self._mark_published([i for i, _ in local if i])
            return
        if outcome.result is Result.GONE and self.unsettled is not None:
            # The transaction may or may not have committed: the service re-issues these
            # hand-offs if their message comes back, redelivered or resent.
            self.unsettled([p for _, p in local if p.bound_to is not None])
        await self._not_settled(deliveries, outcome, underlay, ack=ack)

    async def _not_settled(
        self,
        deliveries: Sequence[Delivery],
        outcome: Outcome,
        underlay: Underlay | None,
        *,
        ack: bool,
    ) -> None:
        log.warning(
            "settle_refused" if outcome.result is not Result.GONE else "settle_lost",
            queue=self.queue,
            count=len(deliveries),
            message_ids=_ids(deliveries),
            ack=ack,
            reason=outcome.reason,
            note="not settled: the broker redelivers, and dedup absorbs what was done",
        )
        if outcome.result is Result.GONE:
            return
        self._pause_s = min(max(self._pause_s * 2, PAUSE_FIRST_S), PAUSE_MAX_S)
        if outcome.result is Result.STUCK and underlay is not None:
            await self._reset_channel(underlay)

    async def _reset_channel(self, underlay: Underlay | None = None) -> None:
        """Close the underlying channel: the broker takes back what it holds unsettled,
        and the robust channel opens a new one and consumes again."""
        underlay = underlay or await self._underlay()
        if underlay is None or underlay.is_closed:
            return
        try:
            await asyncio.wait_for(underlay.close(), self.timeout_s)
        except BROKER_ERRORS as exc:
            # Left open with deliveries unsettled: no multiple ack may sweep them up.
            self._held = underlay
            log.warning("channel_reset_failed", queue=self.queue, error=repr(exc))

    async def _mark_published(self, ids: list[int]) -> None:
        if not ids:
            return
        try:
            await self.published(ids)
        except TransientError as exc:
            # Harmless: bound publications are never relayed, only re-issued if their
            # delivery comes back, and it will not: it was acked with them.
            log.warning("mark_published_failed", error=str(exc))
        except Exception:
            # Still harmless for the same reason, and no reason to stop consuming.
            log.exception("mark_published_failed", queue=self.queue, count=len(ids))
