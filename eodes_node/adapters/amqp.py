"""The broker adapter: aio-pika robust connections, topology, confirmed publishing, consuming.

Every publish waits for the broker's confirm (``mandatory=True``; an unroutable return is an
error) within a timeout. aio-pika and aiormq exceptions become ``BrokerUnavailable`` here.
Deliveries reach the service as ``Delivery`` objects; settling them (ack or reject) is the
runtime's single decision point.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)

from eodes_node.errors import BrokerUnavailable
from eodes_node.ports import Delivery, Publication
from eodes_node.topology import Topology

_BROKER_ERRORS: tuple[type[Exception], ...] = (
    TimeoutError,
    aiormq.exceptions.AMQPError,
    aiormq.exceptions.ChannelInvalidStateError,
    ConnectionError,
    OSError,
    RuntimeError,
)

_SETTLE_ERRORS: tuple[type[Exception], ...] = (
    *_BROKER_ERRORS,
    aio_pika.exceptions.MessageProcessError,
)


def delivery_of(message: AbstractIncomingMessage) -> Delivery:
    return Delivery(
        body=message.body,
        message_id=message.message_id,
        kind=message.type,
        headers=dict(message.headers or {}),
        redelivered=bool(message.redelivered),
        raw=message,
    )


Handler = Callable[[AbstractIncomingMessage], None]


def _properties(
    *,
    message_id: str,
    kind: str,
    headers: Mapping[str, Any] | None,
    content_type: str,
) -> aiormq.spec.Basic.Properties:
    """The frame properties themselves: building an aio_pika.Message per publish cost more
    than the publish (3% of a node's CPU under load)."""
    return aiormq.spec.Basic.Properties(
        message_id=message_id,
        message_type=kind,
        headers=dict(headers or {}),
        content_type=content_type,
        delivery_mode=int(aio_pika.DeliveryMode.PERSISTENT),
        app_id="eodes-node",
    )


class BrokerLink:
    """One robust connection with a confirming publish channel."""

    def __init__(self, url: str, *, name: str, timeout_s: float, reconnect_s: float) -> None:
        self.url = url
        self.name = name
        self.timeout_s = timeout_s
        self.reconnect_s = reconnect_s
        self.connection: AbstractRobustConnection | None = None
        self._publish_channel: AbstractChannel | None = None
        self._lock = asyncio.Lock()

    async def connect(self) -> AbstractRobustConnection:
        async with self._lock:
            if self.connection is None or self.connection.is_closed:
                try:
                    self.connection = await asyncio.wait_for(
                        aio_pika.connect_robust(
                            self.url,
                            reconnect_interval=self.reconnect_s,
                            client_properties={"connection_name": self.name},
                            timeout=self.timeout_s,
                        ),
                        self.timeout_s,
                    )
                except _BROKER_ERRORS as exc:
                    raise BrokerUnavailable(f"{self.name}: cannot connect: {exc!r}") from None
                self._publish_channel = None
            return self.connection

    async def publish_channel(self) -> AbstractChannel:
        connection = await self.connect()
        if self._publish_channel is None or self._publish_channel.is_closed:
            try:
                self._publish_channel = await asyncio.wait_for(
                    connection.channel(publisher_confirms=True, on_return_raises=True),
                    self.timeout_s,
                )
            except _BROKER_ERRORS as exc:
                raise BrokerUnavailable(f"{self.name}: cannot open a channel: {exc!r}") from None
        return self._publish_channel

    async def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        *,
        message_id: str,
        kind: str,
        headers: Mapping[str, Any] | None = None,
        content_type: str = "application/json",
    ) -> None:
        """Publish and wait for the broker's confirm; raise BrokerUnavailable otherwise."""
        channel = await self.publish_channel()
        properties = _properties(
            message_id=message_id, kind=kind, headers=headers, content_type=content_type
        )
        try:
            underlay = await asyncio.wait_for(channel.get_underlay_channel(), self.timeout_s)
            await underlay.basic_publish(
                body,
                exchange=exchange,
                routing_key=routing_key,
                properties=properties,
                mandatory=True,
                timeout=self.timeout_s,
            )
        except aio_pika.exceptions.PublishError as exc:
            raise BrokerUnavailable(
                f"{self.name}: unroutable: nothing bound to {exchange or '(default)'}"
                f"/{routing_key} ({exc.__class__.__name__})"
            ) from None
        except _BROKER_ERRORS as exc:
            raise BrokerUnavailable(f"{self.name}: publish failed: {exc!r}") from None

    async def close(self) -> None:
        if self.connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.connection.close(), self.timeout_s)
            self.connection = None


class AmqpTransport:
    """The local broker (our queues) and the partner's broker (their inbound exchange)."""

    def __init__(
        self,
        topology: Topology,
        *,
        local_url: str,
        partner_url: str,
        prefetch: int,
        timeout_s: float,
        reconnect_s: float,
        node_name: str,
    ) -> None:
        self.topology = topology
        self.prefetch = prefetch
        self.timeout_s = timeout_s
        self.local = BrokerLink(
            local_url, name=f"{node_name} local", timeout_s=timeout_s, reconnect_s=reconnect_s
        )
        self.partner = BrokerLink(
            partner_url,
            name=f"{node_name} to partner",
            timeout_s=timeout_s,
            reconnect_s=reconnect_s,
        )
        self._consumers: list[tuple[AbstractQueue, str]] = []
        self._channels: list[AbstractChannel] = []

    async def declare(self) -> None:
        """Declare our exchanges and queues (idempotent)."""
        connection = await self.local.connect()
        t = self.topology
        try:
            channel = await asyncio.wait_for(connection.channel(), self.timeout_s)
            exchange = await channel.declare_exchange(
                t.inbound_exchange, aio_pika.ExchangeType.DIRECT, durable=True
            )
            for name in t.local_queues():
                await channel.declare_queue(name, durable=True)
                await channel.declare_queue(t.dead_letter(name), durable=True)
            inbound = await channel.declare_queue(t.inbound_queue, durable=True)
            await inbound.bind(exchange, routing_key=t.partner)
            await channel.close()
        except _BROKER_ERRORS as exc:
            raise BrokerUnavailable(f"cannot declare topology: {exc!r}") from None

    async def consume(self, queue_name: str, handler: Handler) -> AbstractChannel:
        """Consume on a channel of its own, without confirms: it settles in transactions."""
        connection = await self.local.connect()
        try:
            channel = await asyncio.wait_for(
                connection.channel(publisher_confirms=False), self.timeout_s
            )
            await channel.set_qos(prefetch_count=self.prefetch)
            queue = await channel.declare_queue(queue_name, durable=True)
            tag = await queue.consume(handler, no_ack=False)
        except _BROKER_ERRORS as exc:
            raise BrokerUnavailable(f"cannot consume {queue_name}: {exc!r}") from None
        self._channels.append(channel)
        self._consumers.append((queue, tag))
        return channel

    async def stop_consuming(self) -> None:
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

    One AMQP transaction on the channel the deliveries came from: either the local
    publications and the acks all take effect, or none does and the broker redelivers.
    Returns False when that did not happen (the channel is gone or the broker refused);
    deliveries from a channel that has since reconnected are left for redelivery.

    With ``multiple``, one ack of the highest delivery tag settles the whole batch; the
    caller allows it only on a channel where every earlier delivery has been settled.
    A channel stays transactional once selected, so ``select`` is needed once per channel.
    """
    try:
        underlay = await asyncio.wait_for(channel.get_underlay_channel(), timeout_s)
    except _SETTLE_ERRORS:
        return False
    current = [d for d in deliveries if d.raw.channel is underlay]
    if len(current) != len(deliveries):
        return False
    transaction = channel.transaction()
    try:
        if select:
            await transaction.select(timeout=timeout_s)
        for p in publications:
            await underlay.basic_publish(
                p.body,
                exchange="",
                routing_key=p.destination,
                properties=_properties(
                    message_id=p.message_id,
                    kind=p.kind,
                    headers=p.headers,
                    content_type=p.content_type,
                ),
                timeout=timeout_s,
            )
        if ack and multiple:
            last = max(current, key=lambda d: d.raw.delivery_tag or 0)
            await last.raw.ack(multiple=True)
        else:
            for d in current:
                if ack:
                    await d.raw.ack()
                else:
                    await d.raw.nack(requeue=True)
        await transaction.commit(timeout=timeout_s)
    except _SETTLE_ERRORS:
        with contextlib.suppress(Exception):
            await transaction.rollback(timeout=timeout_s)
        return False
    return True
