"""The kit on the broker: it publishes to the tested node's inbound exchange as a partner
node would, and takes the node's answers from an inbound queue of its own vhost.

Plain aio-pika rather than the node's adapters: the kit must be able to send what a node
never would (unsigned, oversized, malformed), and stays independent of the code it tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

import aio_pika
from aio_pika.abc import AbstractConnection, AbstractIncomingMessage

from eodes_node.conformance.verdict import Answer, Arrival
from eodes_node.core.envelope import open_envelope
from eodes_node.core.jws import KeySet
from eodes_node.core.messages import Receipt
from eodes_node.errors import LocalError, PeerError
from eodes_node.topology import CLASSIC, QueueKind, Topology

_AMQP_ERRORS = (aio_pika.exceptions.AMQPError, ConnectionError, OSError, TimeoutError)


class KitError(LocalError):
    """The kit cannot run: a broker it cannot reach, a queue that is not there, a key."""


def safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


async def _connect(
    url: str, what: str, timeout_s: float, tls: ssl.SSLContext | None = None
) -> AbstractConnection:
    try:
        return await asyncio.wait_for(
            aio_pika.connect(
                url,
                client_properties={"connection_name": f"conformance {what}"},
                ssl_context=tls,
            ),
            timeout_s,
        )
    except _AMQP_ERRORS as exc:
        raise KitError(f"cannot connect to {what} at {safe_url(url)}: {exc!r}") from None


class Inbox:
    """Everything the node pushed to the kit, in order, verified, with a way to wait."""

    def __init__(self, node_keys: KeySet, own: str) -> None:
        self.node_keys = node_keys
        self.own = own
        self.arrivals: list[Arrival] = []
        self.answers: dict[str, list[Answer]] = {}
        self.changed = asyncio.Condition()

    def _arrival(self, message: AbstractIncomingMessage) -> Arrival:
        body = bytes(message.body)
        try:
            opened = open_envelope(body, self.node_keys, receiver=self.own, now=datetime.now(UTC))
        except PeerError as exc:
            opened, refusal = None, f"{exc.code}: {exc.reason}"
        else:
            refusal = ""
        mode = message.delivery_mode
        return Arrival(
            body,
            message.message_id,
            message.type,
            message.content_type,
            int(mode) if mode is not None else None,
            opened,
            refusal,
        )

    async def add(self, message: AbstractIncomingMessage) -> None:
        arrival = self._arrival(message)
        async with self.changed:
            self.arrivals.append(arrival)
            if arrival.opened is not None and isinstance(arrival.opened.message, Receipt):
                for entry in arrival.opened.message.entries:
                    self.answers.setdefault(entry.message_id, []).append((arrival.body, entry))
            self.changed.notify_all()

    def answers_for(self, message_id: str) -> list[Answer]:
        return self.answers.get(message_id, [])

    async def wait(self, predicate: Callable[[], bool], within: float) -> bool:
        """Until ``predicate`` holds or ``within`` seconds pass; whether it holds."""

        async def until() -> None:
            async with self.changed:
                await self.changed.wait_for(predicate)

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(until(), within)
        return predicate()

    async def first(
        self, match: Callable[[Arrival], bool], since: int, within: float
    ) -> tuple[int, Arrival] | None:
        """The first arrival at index ``since`` or later that ``match`` accepts."""

        def found() -> tuple[int, Arrival] | None:
            for index in range(since, len(self.arrivals)):
                if match(self.arrivals[index]):
                    return index, self.arrivals[index]
            return None

        await self.wait(lambda: found() is not None, within)
        return found()


class KitWire:
    """The kit's two connections, opened and closed together."""

    def __init__(
        self,
        *,
        local_url: str,
        partner_url: str,
        topology: Topology,
        inbox: Inbox,
        local_tls: ssl.SSLContext | None = None,
        partner_tls: ssl.SSLContext | None = None,
        queues: QueueKind = CLASSIC,
    ) -> None:
        self.local_url, self.partner_url = local_url, partner_url
        self.queues = queues  # as the kit's configuration declares a node's queues
        self.local_tls, self.partner_tls = local_tls, partner_tls
        self.topology = topology
        self.inbox = inbox
        self.timeout_s = 15.0
        self._local: AbstractConnection | None = None
        self._partner: AbstractConnection | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None

    async def open(self) -> int:
        """Declare and bind our inbound queue, drop what an earlier run left in it, and start
        listening; returns how many stale messages were dropped."""
        t = self.topology
        self._local = await _connect(
            self.local_url, "the kit's own broker", self.timeout_s, self.local_tls
        )
        self._partner = await _connect(
            self.partner_url, "the node's broker", self.timeout_s, self.partner_tls
        )
        try:
            channel = await self._local.channel()
            exchange = await channel.declare_exchange(
                t.inbound_exchange, aio_pika.ExchangeType.DIRECT, durable=True
            )
            queue = await channel.declare_queue(
                t.inbound_queue, durable=True, arguments=self.queues.arguments(t.inbound_queue)
            )
            await queue.bind(exchange, routing_key=t.partner)
            purged = await queue.purge()
            await queue.consume(self.inbox.add, no_ack=True)
            out = await self._partner.channel(publisher_confirms=True, on_return_raises=True)
            self._exchange = await out.get_exchange(t.inbound_exchange, ensure=True)
        except _AMQP_ERRORS as exc:
            raise KitError(
                f"cannot set up: {exc!r}; the node's broker must have the exchange "
                f"{t.inbound_exchange} (start the node first)"
            ) from None
        return int(purged.message_count or 0)

    async def send(self, token: bytes, *, message_id: str, kind: str) -> None:
        """Publish as a partner node: persistent, mandatory, confirmed."""
        assert self._exchange is not None, "open() first"
        message = aio_pika.Message(
            token,
            message_id=message_id,
            type=kind,
            content_type="application/jose",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            app_id="eodes-conformance",
        )
        try:
            await asyncio.wait_for(
                self._exchange.publish(message, routing_key=self.topology.own, mandatory=True),
                self.timeout_s,
            )
        except aio_pika.exceptions.DeliveryError:
            raise KitError(
                f"the node's broker routes nothing from {self.topology.inbound_exchange} with "
                f"routing key {self.topology.own}: is the node running with partner "
                f"{self.topology.own}?"
            ) from None
        except _AMQP_ERRORS as exc:
            raise KitError(f"cannot publish to the node's broker: {exc!r}") from None

    async def close(self) -> None:
        for connection in (self._partner, self._local):
            if connection is not None:
                with contextlib.suppress(*_AMQP_ERRORS):
                    await connection.close()


async def submit_to_node(url: str, queue: str, body: bytes, kind: str) -> None:
    """Put a record into the tested node's local queue, as its issuing or clearance system
    would (only when the tester gave the node's own broker)."""
    connection = await _connect(url, "the node's local broker", 15.0)
    try:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        await channel.default_exchange.publish(
            aio_pika.Message(body, type=kind, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=queue,
            mandatory=True,
        )
    except aio_pika.exceptions.DeliveryError:
        raise KitError(f"no queue {queue} at {safe_url(url)}: is the node running?") from None
    except _AMQP_ERRORS as exc:
        raise KitError(f"cannot submit to {queue}: {exc!r}") from None
    finally:
        with contextlib.suppress(*_AMQP_ERRORS):
            await connection.close()
