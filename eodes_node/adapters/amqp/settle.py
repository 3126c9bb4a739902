"""Settling a batch: its local hand-offs and its acks in one AMQP transaction.

Either the publications and the acks all take effect, or none does and the deliveries
go back to the broker; that is what makes each hand-off to the local systems happen
exactly once. A settle never leaves a delivery unacked on a live channel without saying
so: unsettled, it would hold a prefetch slot until the channel closes.

On quorum queues a transaction is no such promise: a publish the queue rejects is
dropped and the transaction still commits (rabbitmq-server#8966), and a channel that
cannot reach the queue's leader (a member just died, an election is on) rejects its
publishes that way. There a consumer's channel is in confirm mode instead: the
publications go first, each confirmed, then the acks. A settle that fails between the
two leaves its deliveries to the broker, and the hand-offs go again when they come back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import aiormq
from aiormq.abc import AbstractChannel as Underlay

from eodes_node.adapters.amqp.calls import (
    BROKER_ERRORS,
    LINK_FAILURES,
    reraise_cancellation,
    within,
)
from eodes_node.adapters.amqp.link import frame_properties
from eodes_node.adapters.amqp.probe import QueueProbe
from eodes_node.ports import Delivery, Publication


class Result(Enum):
    DONE = "done"  # published and settled as asked, committed
    GONE = "gone"  # the deliveries' channel closed: the broker has them back
    REFUSED = "refused"  # rolled back, and the deliveries requeued on the live channel
    STUCK = "stuck"  # rolled back, but could not requeue: the channel must be closed


@dataclass(frozen=True, slots=True)
class Outcome:
    result: Result
    reason: str = ""

    @property
    def done(self) -> bool:
        return self.result is Result.DONE


DONE = Outcome(Result.DONE)


class Unroutable(Exception):
    """A hand-off's queue does not exist: committing would drop it and ack its cause."""

    def __init__(self, queues: Sequence[str]) -> None:
        self.queues = tuple(queues)
        names = ", ".join(repr(q) for q in self.queues)
        super().__init__(f"no queue {names} to hand off to")


def channel_of(delivery: Delivery) -> Underlay | None:
    """The channel a delivery came on, or None once that channel has closed."""
    try:
        channel: Underlay = delivery.raw.channel
    except aiormq.exceptions.ChannelInvalidStateError:
        return None
    return channel


async def settle_batch(
    underlay: Underlay,
    deliveries: Sequence[Delivery],
    publications: Sequence[Publication],
    *,
    ack: bool,
    timeout_s: float,
    probe: QueueProbe,
    multiple: bool = False,
    select: bool = True,
    confirmed: bool = False,
) -> Outcome:
    """Publish what the deliveries caused locally and ack (or requeue) them, atomically.

    With ``multiple``, one ack of the highest delivery tag settles the whole batch; the
    caller allows it only on a channel where every earlier delivery has been settled.
    A channel stays transactional once selected, so ``select`` is needed once per channel.
    With ``confirmed`` (a channel in confirm mode, for quorum queues), the publications are
    confirmed before the acks go, and no transaction is used.
    """
    live = [d for d in deliveries if channel_of(d) is underlay]
    if len(live) < len(deliveries):
        # Their hand-offs cannot be told apart: all of the batch goes back.
        outcome = await requeue(
            underlay, live, timeout_s, "its channel closed under the batch", confirmed=confirmed
        )
        return Outcome(Result.GONE, outcome.reason) if outcome.result is Result.REFUSED else outcome
    try:
        if confirmed:
            await _confirm_then_ack(underlay, live, publications, ack, multiple, timeout_s, probe)
        else:
            await _commit(underlay, live, publications, ack, multiple, select, timeout_s, probe)
    except Unroutable as exc:
        return await requeue(underlay, live, timeout_s, str(exc), confirmed=confirmed)
    except aiormq.exceptions.DeliveryError as exc:
        # Confirm mode only: a nack (or a return) of a hand-off. A channel nacked once may go
        # on nacking: closing it gives the deliveries back, and a new one is opened.
        return Outcome(Result.STUCK, f"the broker did not take a hand-off: {exc!r}")
    except LINK_FAILURES as exc:
        reraise_cancellation(exc)
        if not confirmed:
            with contextlib.suppress(*BROKER_ERRORS):
                await within(timeout_s, underlay.tx_rollback())
        reason = f"settle failed: {exc!r}"
        return await requeue(underlay, live, timeout_s, reason, confirmed=confirmed)
    return DONE


async def _commit(
    underlay: Underlay,
    deliveries: Sequence[Delivery],
    publications: Sequence[Publication],
    ack: bool,
    multiple: bool,
    select: bool,
    timeout_s: float,
    probe: QueueProbe,
) -> None:
    await _check_routable(underlay, publications, probe)
    if select:
        await within(timeout_s, underlay.tx_select())
    # No confirms inside a transaction: the commit is the broker's word for all of them.
    # ``mandatory`` still makes a return of a queue deleted since the probe visible.
    for p in publications:
        await _publish(underlay, p, timeout_s)
    await _ack_or_requeue(underlay, deliveries, ack=ack, multiple=multiple)
    await within(timeout_s, underlay.tx_commit())


async def _confirm_then_ack(
    underlay: Underlay,
    deliveries: Sequence[Delivery],
    publications: Sequence[Publication],
    ack: bool,
    multiple: bool,
    timeout_s: float,
    probe: QueueProbe,
) -> None:
    """On a confirm channel: every publication confirmed (a nack, or a return of one
    ``mandatory`` finds unroutable, raises), then the acks."""
    await _check_routable(underlay, publications, probe)
    confirms = await asyncio.gather(
        *(_publish(underlay, p, timeout_s) for p in publications), return_exceptions=True
    )
    for confirm in confirms:
        if isinstance(confirm, BaseException):
            raise confirm
    await _ack_or_requeue(underlay, deliveries, ack=ack, multiple=multiple)


async def _check_routable(
    underlay: Underlay, publications: Sequence[Publication], probe: QueueProbe
) -> None:
    if publications:
        missing = await probe.missing(underlay, (p.destination for p in publications))
        if missing:
            raise Unroutable(missing)


async def _publish(underlay: Underlay, p: Publication, timeout_s: float) -> None:
    """Publish ``p`` ``mandatory``; on a confirm channel, until the broker confirms it."""
    await within(
        timeout_s,
        underlay.basic_publish(
            p.body,
            exchange="",
            routing_key=p.destination,
            properties=frame_properties(
                message_id=p.message_id,
                kind=p.kind,
                headers=p.headers,
                content_type=p.content_type,
            ),
            mandatory=True,
        ),
    )


def _tags(deliveries: Sequence[Delivery]) -> list[int]:
    return [tag for d in deliveries if (tag := d.raw.delivery_tag) is not None]


async def _ack_or_requeue(
    underlay: Underlay, deliveries: Sequence[Delivery], *, ack: bool, multiple: bool
) -> None:
    tags = _tags(deliveries)
    if ack and multiple and tags:
        await underlay.basic_ack(max(tags), multiple=True)
        return
    for tag in tags:
        if ack:
            await underlay.basic_ack(tag)
        else:
            await underlay.basic_nack(tag, requeue=True)


async def requeue(
    underlay: Underlay,
    deliveries: Sequence[Delivery],
    timeout_s: float,
    reason: str,
    *,
    confirmed: bool = False,
) -> Outcome:
    """Give deliveries of a failed settle back to the broker now, in a transaction of
    their own (selecting again is harmless); on a confirm channel, which cannot select,
    without one."""
    if underlay.is_closed or not deliveries:
        return Outcome(Result.GONE, reason)
    try:
        if not confirmed:
            await within(timeout_s, underlay.tx_select())
        for tag in _tags(deliveries):
            await underlay.basic_nack(tag, requeue=True)
        if not confirmed:
            await within(timeout_s, underlay.tx_commit())
    except LINK_FAILURES as exc:
        reraise_cancellation(exc)
        gone = underlay.is_closed
        return Outcome(Result.GONE if gone else Result.STUCK, f"{reason}; requeue: {exc!r}")
    return Outcome(Result.REFUSED, reason)
