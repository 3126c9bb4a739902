"""The simulated local systems around the two nodes, on the private broker.

KR's issuing system submits records and reads decisions and events; CN's clearance
system reads certificates, answers each with a decision, and reads its events. Both
use robust connections and ack by hand, so a broker kill or a closed connection loses
nothing on their side: unacked deliveries come back flagged ``redelivered``, and a
publication is repeated, byte for byte, until the broker confirms it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
import orjson
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection

from eodes_node.core.work import POSSIBLE_DUPLICATE
from eodes_node.topology import Topology
from soak.tally import Tally
from soak.traffic import Records, decide

PUBLISH_TIMEOUT_S = 10.0
RETRY_S = 0.5
AMQP_ERRORS = (aio_pika.exceptions.AMQPError, RuntimeError, ConnectionError, TimeoutError)
Handler = Callable[[AbstractIncomingMessage], Awaitable[None]]


def reissued(message: AbstractIncomingMessage) -> bool:
    """The node published this hand-off again, not knowing whether the first got through."""
    return (message.headers or {}).get(POSSIBLE_DUPLICATE) == "true"


class LocalSystems:
    def __init__(
        self, urls: dict[str, str], topo: dict[str, Topology], tally: Tally, seed: int
    ) -> None:
        self.urls, self.topo, self.tally, self.seed = urls, topo, tally, seed
        self.connections: dict[str, AbstractRobustConnection] = {}
        self.channels: dict[str, AbstractChannel] = {}
        self.feedback: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.expected: dict[str, str] = {}
        self.publish_retries = 0

    async def connect(self) -> None:
        for country, url in self.urls.items():
            self.connections[country] = await aio_pika.connect_robust(
                url,
                client_properties={"connection_name": f"soak {country} local systems"},
                reconnect_interval=0.5,
                timeout=10,
            )
            self.channels[country] = await self.connections[country].channel(
                publisher_confirms=True
            )
        kr, cn = self.topo["KR"], self.topo["CN"]
        await self._consume("KR", kr.issuing, self.on_issuing)
        await self._consume("KR", kr.events, self.on_event("KR"))
        await self._consume("CN", cn.clearance, self.on_clearance)
        await self._consume("CN", cn.events, self.on_event("CN"))
        for country, t in self.topo.items():
            for queue in (t.inbound_queue, t.outbound_records, t.outbound_feedback):
                await self._consume(country, t.dead_letter(queue), self.on_dead(country))

    async def _consume(self, country: str, queue: str, handler: Handler) -> None:
        channel = await self.connections[country].channel()
        await channel.set_qos(prefetch_count=256)
        declared = await channel.declare_queue(queue, durable=True)
        await declared.consume(handler)

    async def close(self) -> None:
        for connection in self.connections.values():
            with contextlib.suppress(*AMQP_ERRORS):
                await asyncio.wait_for(connection.close(), 10)

    # --- publishing --------------------------------------------------------------------

    async def publish(self, country: str, queue: str, body: bytes, kind: str) -> None:
        """Publish until the broker confirms; the same bytes each time."""
        while True:
            try:
                await asyncio.wait_for(self._publish_once(country, queue, body, kind), 15)
                return
            except AMQP_ERRORS:
                self.publish_retries += 1
                await asyncio.sleep(RETRY_S)

    async def _publish_once(self, country: str, queue: str, body: bytes, kind: str) -> None:
        channel = self.channels[country]
        if channel.is_closed and not self.connections[country].is_closed:
            channel = await self.connections[country].channel(publisher_confirms=True)
            self.channels[country] = channel
        message = aio_pika.Message(
            body,
            type=kind,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        await channel.default_exchange.publish(
            message, routing_key=queue, timeout=PUBLISH_TIMEOUT_S
        )

    async def submit(self, records: Records, pace: Callable[[int], Awaitable[None]]) -> None:
        """KR's issuing system submits every record, paced by ``pace``."""
        queue = self.topo["KR"].outbound_records
        for index, number in enumerate(records.numbers):
            await pace(index)
            await self.publish("KR", queue, records.body(index), "coo")
            self.tally.submit(number)

    async def answer(self) -> None:
        """CN's clearance system: one decision per certificate it received (runs forever)."""
        queue = self.topo["CN"].outbound_feedback
        while True:
            certificate = await self.feedback.get()
            record = decide(self.seed, certificate)
            self.expected[record["certificate_number"]] = record["decision"]
            await self.publish("CN", queue, orjson.dumps(record), "feedback")

    # --- consuming ---------------------------------------------------------------------

    async def _ack(self, message: AbstractIncomingMessage) -> None:
        # A failed ack means the channel died: the broker redelivers, flagged.
        with contextlib.suppress(*AMQP_ERRORS):
            await message.ack()

    async def on_clearance(self, message: AbstractIncomingMessage) -> None:
        certificate = orjson.loads(message.body)["certificate"]
        number = certificate["header"]["certificate_number"]
        arrivals = self.tally.arrivals("CN clearance")
        news = arrivals.first_time(
            message.message_id or number,
            bool(message.redelivered),
            number,
            reissued=reissued(message),
        )
        if news and self.tally.clear(number):
            self.feedback.put_nowait(certificate)
        await self._ack(message)

    async def on_issuing(self, message: AbstractIncomingMessage) -> None:
        feedback = orjson.loads(message.body)["feedback"]
        number = feedback["certificate_number"]
        arrivals = self.tally.arrivals("KR issuing")
        if arrivals.first_time(
            message.message_id or number,
            bool(message.redelivered),
            number,
            reissued=reissued(message),
        ):
            self.tally.decide(number)
            if feedback["decision"] != self.expected.get(number):
                self.tally.wrong.append(
                    f"KR issuing: {number} decided {feedback['decision']!r}, "
                    f"CN sent {self.expected.get(number)!r}"
                )
        await self._ack(message)

    def on_event(self, country: str) -> Handler:
        counts = self.tally.receipts if country == "KR" else self.tally.feedback_receipts

        async def handle(message: AbstractIncomingMessage) -> None:
            body = orjson.loads(message.body)
            arrivals = self.tally.arrivals(f"{country} events")
            news = arrivals.first_time(
                message.message_id or "",
                bool(message.redelivered),
                "event",
                reissued=reissued(message),
            )
            for item in body["items"] if news else ():
                number = str(item.get("certificate_number"))
                if body["event"] == "delivered":
                    counts[number] += 1
                else:
                    self.tally.note(
                        f"{country} event {body['event']}: {item.get('kind')} {number}: "
                        f"{item.get('code', '')} {item.get('text', '')}"
                    )
            await self._ack(message)

        return handle

    def on_dead(self, country: str) -> Handler:
        async def handle(message: AbstractIncomingMessage) -> None:
            if not message.redelivered:
                reason = (message.headers or {}).get("x-eodes-reason", "")
                self.tally.note(
                    f"{country} dead-lettered a {message.type} message {message.message_id} "
                    f"on {message.routing_key}: {str(reason)[:300]}"
                )
            await self._ack(message)

        return handle
