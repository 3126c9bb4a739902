"""The AMQP adapter's settle path against a real broker.

Settling is where "exactly once" is won or lost: a batch's local hand-offs and its acks
must take effect together or not at all, and a poison message must not take its
neighbours down with it. Every test uses queues of its own and deletes them afterwards.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection

from eodes_node.adapters.amqp import AmqpBroker, delivery_of, settle_batch
from eodes_node.errors import TransientError
from eodes_node.ports import Delivery, Publication
from eodes_node.topology import Topology

pytestmark = pytest.mark.broker

VHOST_URL = "amqp://guest:guest@127.0.0.1:5672/eodes-test-kr"
TIMEOUT_S = 5.0


async def until(condition: Callable[[], bool | Awaitable[bool]], within: float = 10.0) -> None:
    """Poll ``condition`` until it holds; fail once the deadline has passed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        held = condition()
        if not isinstance(held, bool):
            held = await held
        if held:
            return
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(0.02)


@dataclass
class Broker:
    """A connection to the test vhost that deletes every queue it was asked to name."""

    connection: AbstractRobustConnection
    names: list[str] = field(default_factory=list)

    async def queues(self, *what: str) -> list[str]:
        channel = await self.connection.channel()
        named = [f"test.settle.{secrets.token_hex(4)}.{w}" for w in what]
        for name in named:
            self.names.append(name)
            await channel.declare_queue(name, durable=False)
        await channel.close()
        return named

    async def put(self, queue: str, message_id: str) -> None:
        channel = await self.connection.channel(publisher_confirms=True)
        await channel.default_exchange.publish(
            aio_pika.Message(b"delivery", message_id=message_id, type="test"), routing_key=queue
        )
        await channel.close()

    async def ready(self, queue: str) -> int:
        """Messages waiting in ``queue``; unacked ones count once their channel is closed."""
        channel = await self.connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        await channel.close()
        count = declared.declaration_result.message_count
        assert count is not None
        return count

    async def take(self, channel: AbstractChannel, queue: str) -> Delivery:
        declared = await channel.get_queue(queue, ensure=False)
        got: list[AbstractIncomingMessage] = []

        async def one() -> bool:
            message = await declared.get(no_ack=False, fail=False, timeout=TIMEOUT_S)
            got.extend([message] if message else [])
            return bool(got)

        await until(one)
        return delivery_of(got[0])

    async def take_all(self, queue: str) -> list[AbstractIncomingMessage]:
        """Drain ``queue`` with auto-ack, for assertions on what it held."""
        channel = await self.connection.channel()
        declared = await channel.get_queue(queue, ensure=False)
        taken = []
        while (message := await declared.get(no_ack=True, fail=False)) is not None:
            taken.append(message)
        await channel.close()
        return taken

    async def settling_channel(self) -> AbstractChannel:
        # Settling runs in transactions, which a confirming channel refuses.
        return await self.connection.channel(publisher_confirms=False)


@pytest.fixture
async def broker() -> AsyncIterator[Broker]:
    connection = await aio_pika.connect_robust(
        VHOST_URL, client_properties={"connection_name": "test amqp settle"}
    )
    held = Broker(connection)
    try:
        yield held
    finally:
        channel = await connection.channel()
        for name in held.names:
            await channel.queue_delete(name)
        await connection.close()


BODY = b'{"handed": "off"}'


def handoff(queue: str) -> Publication:
    return Publication(queue, BODY, "p-1", "event.test", bound_to="m-1")


async def test_settle_publishes_and_acks_in_one_transaction(broker: Broker) -> None:
    source, target = await broker.queues("source", "target")
    await broker.put(source, "m-1")
    channel = await broker.settling_channel()
    delivery = await broker.take(channel, source)

    settled = await settle_batch(
        channel, [delivery], [handoff(target)], ack=True, timeout_s=TIMEOUT_S
    )

    assert settled
    await channel.close()  # an unacked delivery would now be back in its queue
    assert await broker.ready(source) == 0
    [handed] = await broker.take_all(target)
    assert (handed.message_id, handed.type, handed.body) == ("p-1", "event.test", BODY)


async def test_a_requeued_delivery_comes_back_redelivered(broker: Broker) -> None:
    [source] = await broker.queues("source")
    await broker.put(source, "m-1")
    channel = await broker.settling_channel()
    first = await broker.take(channel, source)

    assert await settle_batch(channel, [first], [], ack=False, timeout_s=TIMEOUT_S)

    again = await broker.take(channel, source)
    assert (again.message_id, first.redelivered, again.redelivered) == ("m-1", False, True)
    assert await settle_batch(channel, [again], [], ack=True, timeout_s=TIMEOUT_S, select=False)


async def test_settling_on_a_closed_channel_publishes_nothing(broker: Broker) -> None:
    source, target = await broker.queues("source", "target")
    await broker.put(source, "m-1")
    channel = await broker.settling_channel()
    delivery = await broker.take(channel, source)
    await channel.close()

    settled = await settle_batch(
        channel, [delivery], [handoff(target)], ack=True, timeout_s=TIMEOUT_S
    )

    assert not settled
    assert await broker.ready(target) == 0
    assert await broker.ready(source) == 1  # the broker redelivers it


async def test_deliveries_from_another_channel_are_left_alone(broker: Broker) -> None:
    source, target = await broker.queues("source", "target")
    await broker.put(source, "m-1")
    taken_on, settled_on = await broker.settling_channel(), await broker.settling_channel()
    delivery = await broker.take(taken_on, source)

    settled = await settle_batch(
        settled_on, [delivery], [handoff(target)], ack=True, timeout_s=TIMEOUT_S
    )

    assert not settled
    assert await broker.ready(target) == 0
    await taken_on.close()
    assert await broker.ready(source) == 1


class Handler:
    """Records every batch; ``fail`` decides what, if anything, a batch raises."""

    def __init__(self, fail: Callable[[int, Sequence[Delivery]], Exception | None]) -> None:
        self.fail = fail
        self.batches: list[list[tuple[str | None, bool]]] = []

    async def __call__(self, batch: Sequence[Delivery]) -> list[tuple[int, Publication]]:
        self.batches.append([(d.message_id, d.redelivered) for d in batch])
        error = self.fail(len(self.batches), batch)
        if error is not None:
            raise error
        return []

    def seen(self, message_id: str, *, redelivered: bool) -> int:
        return sum(entry == (message_id, redelivered) for b in self.batches for entry in b)


@pytest.fixture
async def amqp(broker: Broker) -> AsyncIterator[tuple[AmqpBroker, Topology]]:
    topology = Topology("KR", "CN", f"test-settle-{secrets.token_hex(4)}")
    adapter = AmqpBroker(
        topology,
        local_url=VHOST_URL,
        partner_url=VHOST_URL,
        prefetch=32,
        batch_max=16,
        batch_wait_s=0.2,
        timeout_s=TIMEOUT_S,
        reconnect_s=0.5,
        node_name="test amqp settle",
    )
    await adapter.declare()
    local = topology.local_queues()
    broker.names.extend([*local, *map(topology.dead_letter, local)])
    try:
        yield adapter, topology
    finally:
        await adapter.close()
        channel = await broker.connection.channel()
        await channel.exchange_delete(topology.inbound_exchange)
        await channel.close()


async def consume_until(
    broker: Broker, adapter: AmqpBroker, queue: str, handler: Handler, done: Callable[[], bool]
) -> None:
    """Run a consumer on ``queue`` until ``done``, stop it once idle, and close the link
    (anything left unacked is then back in the queue)."""

    async def all_pushed_to_us() -> bool:
        return await broker.ready(queue) == 0

    consumer = await adapter.consume(queue, handler, published=_ignore_marks)
    # Everything is pushed to us before the first batch starts: the batch is then all of it.
    await until(all_pushed_to_us)
    running = asyncio.create_task(consumer.run())
    try:
        await until(done)
        await adapter.stop_consuming()
        consumer.stop()
        await asyncio.wait_for(consumer.wait_idle(), TIMEOUT_S)
        await asyncio.wait_for(running, TIMEOUT_S)
    finally:
        running.cancel()
        await adapter.close()


async def _ignore_marks(ids: Sequence[int]) -> None:
    return None


async def test_a_transient_failure_requeues_the_whole_batch(
    broker: Broker, amqp: tuple[AmqpBroker, Topology]
) -> None:
    adapter, topology = amqp
    queue = topology.outbound_records
    ids = [f"m-{i}" for i in range(5)]
    for message_id in ids:
        await broker.put(queue, message_id)
    handler = Handler(lambda n, _: TransientError("store busy") if n == 1 else None)

    await consume_until(
        broker, adapter, queue, handler, lambda: all(handler.seen(i, redelivered=True) for i in ids)
    )

    assert handler.batches[0] == [(i, False) for i in ids]
    assert all(handler.seen(i, redelivered=True) == 1 for i in ids)
    assert await broker.ready(queue) == 0


async def test_a_redelivered_poison_message_is_dead_lettered_and_its_neighbours_acked(
    broker: Broker, amqp: tuple[AmqpBroker, Topology]
) -> None:
    adapter, topology = amqp
    queue, dead = topology.outbound_records, topology.dead_letter(topology.outbound_records)
    for message_id in ("m-a", "m-poison", "m-c"):
        await broker.put(queue, message_id)

    def fail(n: int, batch: Sequence[Delivery]) -> Exception | None:
        if n == 1:
            return TransientError("first time round: requeue them all")
        if any(d.message_id == "m-poison" for d in batch):
            return ValueError("cannot handle this one")
        return None

    handler = Handler(fail)

    def neighbours_handled_alone() -> bool:
        return all(handler.seen(m, redelivered=True) >= 2 for m in ("m-a", "m-c"))

    await consume_until(broker, adapter, queue, handler, neighbours_handled_alone)

    assert sorted(handler.batches[1]) == [("m-a", True), ("m-c", True), ("m-poison", True)]
    parked: list[AbstractIncomingMessage] = []

    async def dead_lettered() -> bool:
        parked.extend(await broker.take_all(dead))
        return bool(parked)

    await until(dead_lettered)
    assert [m.message_id for m in parked] == ["m-poison"]
    reason = parked[0].headers["x-eodes-reason"]
    assert reason == "internal error: ValueError('cannot handle this one')"
    assert await broker.ready(queue) == 0
