"""The broker as the runtime sees it: our topology, confirmed publishing, consumers.

Two links: the local broker holds our queues and is the only one we consume from; the
partner's broker receives our envelopes on its inbound exchange.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractQueue

from eodes_node.adapters.amqp.calls import broker_errors
from eodes_node.adapters.amqp.consumer import AmqpConsumer
from eodes_node.adapters.amqp.declare import declare_queue
from eodes_node.adapters.amqp.link import BrokerLink, open_channel
from eodes_node.broker_tls import LinkTls
from eodes_node.ports import BatchHandler, Publication
from eodes_node.topology import CLASSIC, QueueKind, Topology


class AmqpBroker:
    """Implements ``ports.Broker`` over aio-pika robust connections."""

    def __init__(
        self,
        topology: Topology,
        *,
        local_url: str | Sequence[str],
        partner_url: str | Sequence[str],
        prefetch: int,
        batch_max: int,
        batch_wait_s: float,
        timeout_s: float,
        reconnect_s: float,
        node_name: str,
        local_tls: LinkTls | None = None,
        partner_tls: LinkTls | None = None,
        queues: QueueKind = CLASSIC,
    ) -> None:
        self.topology = topology
        self.queues = queues
        self.prefetch = prefetch
        self.batch_max = batch_max
        self.batch_wait_s = batch_wait_s
        self.timeout_s = timeout_s
        self.local = BrokerLink(
            local_url,
            name=f"{node_name} local",
            timeout_s=timeout_s,
            reconnect_s=reconnect_s,
            tls=local_tls,
        )
        self.partner = BrokerLink(
            partner_url,
            name=f"{node_name} to partner",
            timeout_s=timeout_s,
            reconnect_s=reconnect_s,
            tls=partner_tls,
        )
        self._consumers: list[tuple[AbstractQueue, str]] = []
        self._channels: list[AbstractChannel] = []

    async def declare(self) -> None:
        """Declare our exchanges and queues (idempotent); ``BrokerRefused`` naming the queue
        when one exists with other arguments than ``queues`` gives it."""
        connection = await self.local.connect()
        t = self.topology
        what = "cannot declare topology"
        channel = await open_channel(connection, self.timeout_s, what=what)
        timeout = self.timeout_s
        try:
            with broker_errors(what):
                exchange = await channel.declare_exchange(
                    t.inbound_exchange, aio_pika.ExchangeType.DIRECT, durable=True, timeout=timeout
                )
                for name in t.local_queues():
                    # The .dead queue first: a quorum queue dead-letters into it.
                    for queue in (t.dead_letter(name), name):
                        await declare_queue(
                            channel, queue, self.queues, timeout_s=timeout, what=what
                        )
                inbound = await declare_queue(
                    channel, t.inbound_queue, self.queues, timeout_s=timeout, what=what
                )
                await inbound.bind(exchange, routing_key=t.partner, timeout=timeout)
        finally:
            with contextlib.suppress(Exception):  # left open, it would be restored for nothing
                await asyncio.wait_for(channel.close(), timeout)

    async def consume(
        self,
        queue: str,
        handler: BatchHandler,
        *,
        published: Callable[[Sequence[int]], Awaitable[None]],
        unsettled: Callable[[Sequence[Publication]], None] | None = None,
    ) -> AmqpConsumer:
        """Consume on a channel of its own, which settles in transactions; for quorum
        queues in confirm mode instead (see ``settle``)."""
        connection = await self.local.connect()
        what = f"cannot consume {queue}"
        confirmed = self.queues.queue_type == "quorum"
        channel = await open_channel(
            connection,
            self.timeout_s,
            what=what,
            publisher_confirms=confirmed,
            on_return_raises=confirmed,
        )
        self._channels.append(channel)
        with broker_errors(what):
            await channel.set_qos(prefetch_count=self.prefetch, timeout=self.timeout_s)
            declared = await declare_queue(
                channel, queue, self.queues, timeout_s=self.timeout_s, what=what
            )
            consumer = AmqpConsumer(
                queue,
                channel,
                handler,
                published=published,
                unsettled=unsettled,
                dead_letter_queue=self.topology.dead_letter(queue),
                events_queue=self.topology.events,
                partner=self.topology.partner,
                batch_max=self.batch_max,
                batch_wait_s=self.batch_wait_s,
                timeout_s=self.timeout_s,
                confirmed=confirmed,
            )
            tag = await declared.consume(consumer.on_message, no_ack=False, timeout=self.timeout_s)
        self._consumers.append((declared, tag))
        return consumer

    async def stop_consuming(self) -> None:
        """Cancel the consumers but keep their channels: in-flight batches still settle."""
        for queue, tag in self._consumers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(queue.cancel(tag), self.timeout_s)
        self._consumers.clear()

    async def publish_local(
        self,
        queue: str,
        body: bytes,
        *,
        message_id: str,
        kind: str,
        headers: Mapping[str, Any] | None = None,
        content_type: str = "application/json",
    ) -> None:
        await self.local.publish(
            "",
            queue,
            body,
            message_id=message_id,
            kind=kind,
            headers=headers,
            content_type=content_type,
        )

    async def publish_partner(self, token: bytes, *, message_id: str, kind: str) -> None:
        await self.partner.publish(
            self.topology.inbound_exchange,
            self.topology.routing_key_at_partner,
            token,
            message_id=message_id,
            kind=kind,
            content_type="application/jose",
        )

    async def close(self) -> None:
        await self.stop_consuming()
        for channel in self._channels:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(channel.close(), self.timeout_s)
        self._channels.clear()
        await self.partner.close()
        await self.local.close()
