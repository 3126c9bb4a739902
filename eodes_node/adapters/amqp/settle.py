"""Settling a batch: its local hand-offs and its acks in one AMQP transaction.

Either the publications and the acks all take effect, or none does and the broker
redelivers; that is what makes each hand-off to the local systems happen exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from aio_pika.abc import AbstractChannel
from aiormq.abc import AbstractChannel as Underlay

from eodes_node.adapters.amqp.link import SETTLE_ERRORS, frame_properties
from eodes_node.ports import Delivery, Publication


async def settle_batch(
    channel: AbstractChannel,
    deliveries: Sequence[Delivery],
    publications: Sequence[Publication],
    *,
    ack: bool,
    timeout_s: float,
    multiple: bool = False,
    select: bool = True,
) -> bool:
    """Publish what the deliveries caused locally and ack (or requeue) them, atomically.

    Returns False when that did not happen (the channel is gone or the broker refused);
    deliveries from a channel that has since reconnected are left for redelivery.

    With ``multiple``, one ack of the highest delivery tag settles the whole batch; the
    caller allows it only on a channel where every earlier delivery has been settled.
    A channel stays transactional once selected, so ``select`` is needed once per channel.
    """
    try:
        underlay = await asyncio.wait_for(channel.get_underlay_channel(), timeout_s)
        # A delivery's channel raises once closed: the delivery is the broker's again.
        stale = any(d.raw.channel is not underlay for d in deliveries)
    except SETTLE_ERRORS:
        return False
    if stale:
        return False
    transaction = channel.transaction()
    try:
        if select:
            await transaction.select(timeout=timeout_s)
        await _publish(underlay, publications, timeout_s)
        await _ack_or_requeue(deliveries, ack=ack, multiple=multiple)
        await transaction.commit(timeout=timeout_s)
    except SETTLE_ERRORS:
        with contextlib.suppress(Exception):
            await transaction.rollback(timeout=timeout_s)
        return False
    return True


async def _publish(
    underlay: Underlay, publications: Sequence[Publication], timeout_s: float
) -> None:
    # No confirms inside a transaction: the commit is the broker's word for all of them.
    for p in publications:
        await underlay.basic_publish(
            p.body,
            exchange="",
            routing_key=p.destination,
            properties=frame_properties(
                message_id=p.message_id,
                kind=p.kind,
                headers=p.headers,
                content_type=p.content_type,
            ),
            timeout=timeout_s,
        )


async def _ack_or_requeue(deliveries: Sequence[Delivery], *, ack: bool, multiple: bool) -> None:
    if ack and multiple:
        last = max(deliveries, key=lambda d: d.raw.delivery_tag or 0)
        await last.raw.ack(multiple=True)
        return
    for d in deliveries:
        if ack:
            await d.raw.ack()
        else:
            await d.raw.nack(requeue=True)
