"""The operator's view of the broker: dead-letter replay, readiness, reconnect counts.

Kept apart from the hot path: it uses the node's local link to open short-lived channels
of its own, and only reads what the link and the consumers expose.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable, Sequence
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from eodes_node.adapters.amqp.broker import AmqpBroker
from eodes_node.adapters.amqp.calls import BROKER_ERRORS, broker_errors
from eodes_node.adapters.amqp.link import BrokerLink, is_up
from eodes_node.adapters.amqp.link import open_channel as open_link_channel
from eodes_node.errors import BrokerUnavailable

REASON = "x-eodes-reason"
REPLAYED = "x-eodes-replayed"


class BrokerAdmin:
    """Implements ``ports.DeadLetters``; also says what is not ready and counts reconnects."""

    def __init__(self, broker: AmqpBroker, *, reconnected: Callable[[str], None]) -> None:
        self.broker = broker
        self._reconnected = reconnected
        self._watched: set[int] = set()

    async def _channel(self, *, confirms: bool) -> AbstractChannel:
        link = self.broker.local
        connection = await link.connect()
        return await open_link_channel(
            connection, link.timeout_s, what="broker admin", publisher_confirms=confirms
        )

    async def count(self, queue: str) -> int:
        channel = await self._channel(confirms=False)
        try:
            with broker_errors(f"cannot inspect {queue}"):
                declared = await channel.declare_queue(
                    queue, passive=True, timeout=self.broker.timeout_s
                )
            return int(declared.declaration_result.message_count or 0)
        finally:
            await _close(channel, self.broker.timeout_s)

    async def replay(self, dead_letter_queue: str, to_queue: str, limit: int) -> int:
        """Publish (confirmed) then ack, one by one: a crash in between leaves a copy in
        both queues, which the door's deduplication absorbs."""
        channel = await self._channel(confirms=True)
        timeout = self.broker.timeout_s
        moved = 0
        try:
            with broker_errors(f"cannot replay {dead_letter_queue}"):
                dead = await channel.declare_queue(dead_letter_queue, passive=True, timeout=timeout)
                # Only what is there now: a message refused again comes back behind them.
                waiting = min(limit, int(dead.declaration_result.message_count or 0))
                for _ in range(waiting):
                    message = await dead.get(no_ack=False, fail=False, timeout=timeout)
                    if message is None:
                        break
                    await channel.default_exchange.publish(
                        _again(message, to_queue),
                        routing_key=to_queue,
                        mandatory=True,
                        timeout=timeout,
                    )
                    await message.ack()
                    moved += 1
        finally:
            await _close(channel, timeout)
        return moved

    # -- readiness ------------------------------------------------------------------------

    def _links(self) -> tuple[tuple[str, BrokerLink], ...]:
        return (("local", self.broker.local), ("partner", self.broker.partner))

    async def connect_partner(self) -> None:
        """The partner link connects on first publish; readiness wants it up before."""
        with contextlib.suppress(BrokerUnavailable):
            await self.broker.partner.connect()
        self.watch()

    def watch(self) -> None:
        """Count each reconnect of the links' current connections."""
        for name, link in self._links():
            connection = link.connection
            if connection is not None and id(connection) not in self._watched:
                self._watched.add(id(connection))
                connection.reconnect_callbacks.add(functools.partial(self._on_reconnect, name))

    def _on_reconnect(self, name: str, *_: object) -> None:
        self._reconnected(name)

    async def not_ready(self, consumers: Sequence[Any], queues: Sequence[str]) -> list[str]:
        """What is down: a link, a consumer channel, or a door queue without a consumer."""
        self.watch()
        down = []
        for name, link in self._links():
            if link.connection is None or link.connection.is_closed:
                down.append(f"{name} broker link not connected")
            elif not is_up(link.connection):
                down.append(f"{name} broker link down, reconnecting")
        for consumer in consumers:
            channel = getattr(consumer, "channel", None)
            if channel is None or channel.is_closed:
                down.append(f"consumer of {consumer.queue} has no open channel")
        if not down:
            down += await self._unconsumed(queues)
        return down

    async def _unconsumed(self, queues: Sequence[str]) -> list[str]:
        try:
            channel = await self._channel(confirms=False)
        except BrokerUnavailable as exc:
            return [f"cannot inspect queues: {exc}"]
        try:
            found = []
            for queue in queues:
                declared = await channel.declare_queue(
                    queue, passive=True, timeout=self.broker.timeout_s
                )
                if not declared.declaration_result.consumer_count:
                    found.append(f"no consumer on {queue}")
            return found
        except BROKER_ERRORS as exc:
            return [f"cannot inspect queues: {exc!r}"]
        finally:
            await _close(channel, self.broker.timeout_s)


def _again(message: AbstractIncomingMessage, to_queue: str) -> aio_pika.Message:
    headers = {k: v for k, v in (message.headers or {}).items() if k != REASON}
    previous = headers.get(REPLAYED, 0)
    headers[REPLAYED] = (previous if isinstance(previous, int) else 0) + 1
    jose = to_queue.endswith(".inbound")
    return aio_pika.Message(
        message.body,
        headers=headers,
        message_id=message.message_id,
        # The node names a dead letter's missing type "unknown": it had none.
        type=None if message.type in (None, "unknown") else message.type,
        content_type="application/jose" if jose else "application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        app_id="eodes-node replay",
    )


async def _close(channel: AbstractChannel, within_s: float) -> None:
    with contextlib.suppress(*BROKER_ERRORS):
        await asyncio.wait_for(channel.close(), within_s)
