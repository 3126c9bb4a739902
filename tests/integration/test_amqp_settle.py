"""The AMQP adapter's settle path against a real broker.

Settling is where "exactly once" is won or lost: a batch's local hand-offs and its acks
must take effect together or not at all, and a poison message must not take its
neighbours down with it. Every test uses queues of its own and deletes them afterwards.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import aiormq
import orjson
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection
from structlog.testing import capture_logs

from eodes_node.adapters.amqp import (
    AmqpBroker,
    BrokerLink,
    QueueProbe,
    Result,
    broker_errors,
    delivery_of,
    settle_batch,
)
from eodes_node.adapters.amqp.probe import FRESH_S
from eodes_node.errors import BrokerUnavailable, TransientError
from eodes_node.ports import BatchHandler, Delivery, Publication
from eodes_node.topology import Topology

pytestmark = pytest.mark.broker

VHOST = "eodes-test-kr"
VHOST_URL = f"amqp://guest:guest@127.0.0.1:5672/{VHOST}"
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


async def settle(
    channel: AbstractChannel,
    deliveries: Sequence[Delivery],
    publications: Sequence[Publication],
    *,
    ack: bool,
    select: bool = True,
) -> Result:
    underlay = await channel.get_underlay_channel()
    outcome = await settle_batch(
        underlay,
        deliveries,
        publications,
        ack=ack,
        timeout_s=TIMEOUT_S,
        probe=QueueProbe(TIMEOUT_S),
        select=select,
    )
    return outcome.result


async def test_settle_publishes_and_acks_in_one_transaction(broker: Broker) -> None:
    source, target = await broker.queues("source", "target")
    await broker.put(source, "m-1")
    channel = await broker.settling_channel()
    delivery = await broker.take(channel, source)

    assert await settle(channel, [delivery], [handoff(target)], ack=True) is Result.DONE

    await channel.close()  # an unacked delivery would now be back in its queue
    assert await broker.ready(source) == 0
    [handed] = await broker.take_all(target)
    assert (handed.message_id, handed.type, handed.body) == ("p-1", "event.test", BODY)


async def test_a_requeued_delivery_comes_back_redelivered(broker: Broker) -> None:
    [source] = await broker.queues("source")
    await broker.put(source, "m-1")
    channel = await broker.settling_channel()
    first = await broker.take(channel, source)

    assert await settle(channel, [first], [], ack=False) is Result.DONE

    again = await broker.take(channel, source)
    assert (again.message_id, first.redelivered, again.redelivered) == ("m-1", False, True)
    assert await settle(channel, [again], [], ack=True, select=False) is Result.DONE


async def test_settling_on_a_closed_channel_publishes_nothing(broker: Broker) -> None:
    source, target = await broker.queues("source", "target")
    await broker.put(source, "m-1")
    channel = await broker.settling_channel()
    delivery = await broker.take(channel, source)
    await channel.close()

    assert await settle(channel, [delivery], [handoff(target)], ack=True) is Result.GONE

    assert await broker.ready(target) == 0
    assert await broker.ready(source) == 1  # the broker redelivers it


async def test_deliveries_from_another_channel_are_left_alone(broker: Broker) -> None:
    source, target = await broker.queues("source", "target")
    await broker.put(source, "m-1")
    taken_on, settled_on = await broker.settling_channel(), await broker.settling_channel()
    delivery = await broker.take(taken_on, source)

    result = await settle(settled_on, [delivery], [handoff(target)], ack=True)

    assert result is Result.GONE
    assert await broker.ready(target) == 0
    await taken_on.close()
    assert await broker.ready(source) == 1


async def test_a_hand_off_to_a_missing_queue_is_rolled_back_and_requeued_at_once(
    broker: Broker,
) -> None:
    """In a transaction RabbitMQ returns an unroutable publish only with the commit, acks
    included: without a check first, the hand-off is lost and its delivery acked."""
    [source] = await broker.queues("source")
    missing = f"test.settle.{secrets.token_hex(4)}.missing"
    await broker.put(source, "m-1")
    channel = await broker.settling_channel()
    delivery = await broker.take(channel, source)

    assert await settle(channel, [delivery], [handoff(missing)], ack=True) is Result.REFUSED

    # Back in the queue now, on a channel still open: no prefetch slot held until it closes.
    assert await broker.ready(source) == 1
    again = await broker.take(channel, source)
    assert again.redelivered
    [target] = await broker.queues("target")
    assert await settle(channel, [again], [handoff(target)], ack=True) is Result.DONE
    assert [m.body for m in await broker.take_all(target)] == [BODY]
    await channel.close()
    assert await broker.ready(source) == 0


async def test_broker_errors_become_broker_unavailable_and_bugs_pass_through() -> None:
    closed = pytest.raises(BrokerUnavailable, match=r"publishing: .*CONNECTION_FORCED")
    with closed, broker_errors("publishing"):
        raise aiormq.exceptions.ConnectionClosed(320, "CONNECTION_FORCED")
    # A RuntimeError is a bug of ours (aio-pika's one legitimate use is checked before the
    # call): translated, it would be retried forever as if the broker were down.
    with pytest.raises(RuntimeError, match="a bug"), broker_errors("publishing"):
        raise RuntimeError("a bug")


async def test_concurrent_publishes_open_one_channel(broker: Broker) -> None:
    [target] = await broker.queues("target")
    name = f"test amqp link {secrets.token_hex(4)}"
    link = BrokerLink(VHOST_URL, name=name, timeout_s=TIMEOUT_S, reconnect_s=0.5)
    try:
        await asyncio.gather(
            *(link.publish("", target, BODY, message_id=f"p-{i}", kind="t") for i in range(20))
        )
        assert await broker.ready(target) == 20
        assert await channels_of(name) == [1], "publishes opened channels and leaked them"
    finally:
        await link.close()


async def channels_of(connection_name: str) -> list[int]:
    """The broker's count of open channels on each connection of that client-given name."""
    listed = await rabbitmqctl(
        "list_connections", "-p", VHOST, "client_properties", "channels", "--no-table-headers"
    )
    tag = f'{{"connection_name","{connection_name}"}}'
    return [int(line.rsplit("\t", 1)[1]) for line in listed.splitlines() if tag in line]


async def rabbitmqctl(*args: str) -> str:
    """The shared broker's view; only reads here, nothing of anyone else's is touched."""
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl", "-q", *args, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, f"rabbitmqctl {' '.join(args)} exited {process.returncode}"
    return out.decode()


Bound = list[tuple[int, Publication]]


class Handler:
    """Records every batch; ``fail`` decides what, if anything, a batch raises, and
    ``local`` what it hands off."""

    def __init__(
        self,
        fail: Callable[[int, Sequence[Delivery]], Exception | None],
        local: Callable[[Sequence[Delivery]], Bound] = lambda _: [],
    ) -> None:
        self.fail = fail
        self.local = local
        self.batches: list[list[tuple[str | None, bool]]] = []

    async def __call__(self, batch: Sequence[Delivery]) -> Bound:
        self.batches.append([(d.message_id, d.redelivered) for d in batch])
        error = self.fail(len(self.batches), batch)
        if error is not None:
            raise error
        return self.local(batch)

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
    broker: Broker,
    adapter: AmqpBroker,
    queue: str,
    handler: BatchHandler,
    done: Callable[[], bool | Awaitable[bool]],
    published: Callable[[Sequence[int]], Awaitable[None]] | None = None,
) -> None:
    """Run a consumer on ``queue`` until ``done``, stop it once idle, and close the link
    (anything left unacked is then back in the queue)."""

    async def all_pushed_to_us() -> bool:
        return await broker.ready(queue) == 0

    consumer = await adapter.consume(queue, handler, published=published or _ignore_marks)
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

    with capture_logs() as logs:
        await consume_until(broker, adapter, queue, handler, neighbours_handled_alone)

    assert sorted(handler.batches[1]) == [("m-a", True), ("m-c", True), ("m-poison", True)]
    parked = await taken(broker, dead)
    assert [m.message_id for m in parked] == ["m-poison"]
    reason = parked[0].headers["x-eodes-reason"]
    assert reason == "internal error: ValueError('cannot handle this one')"
    assert await broker.ready(queue) == 0
    # The local systems are told, in the shape of every other event.
    [event] = await taken(broker, topology.events)
    assert event.type == "event.internal_error"
    body = orjson.loads(event.body)
    assert (body["event"], body["partner"], set(body)) == (
        "internal_error",
        "CN",
        {"event", "partner", "at", "items"},
    )
    [item] = body["items"]
    assert (item["message_id"], item["kind"], item["certificate_number"]) == (
        "m-poison",
        "test",
        None,
    )
    assert "ValueError('cannot handle this one')" in item["text"]
    assert dead in item["text"]
    [line] = [e for e in logs if e["event"] == "poison_message_dead_lettered"]
    assert (line["log_level"], line["message_id"], line["dead_letter_queue"]) == (
        "error",
        "m-poison",
        dead,
    )


async def taken(broker: Broker, queue: str) -> list[AbstractIncomingMessage]:
    """What ``queue`` holds, once something is there (a settle commits asynchronously)."""
    got: list[AbstractIncomingMessage] = []

    async def something() -> bool:
        got.extend(await broker.take_all(queue))
        return bool(got)

    await until(something)
    return got


async def test_a_hand_off_to_a_deleted_queue_holds_its_delivery_until_the_queue_is_back(
    broker: Broker, amqp: tuple[AmqpBroker, Topology]
) -> None:
    adapter, topology = amqp
    queue, clearance = topology.inbound_queue, topology.clearance
    channel = await broker.connection.channel()
    await channel.queue_delete(clearance)  # an operator's mistake, under a running node
    await broker.put(queue, "m-1")
    marks: list[Sequence[int]] = []

    async def published(ids: Sequence[int]) -> None:
        marks.append(ids)

    handler = Handler(lambda *_: None, lambda _: [(7, handoff(clearance))])

    async def handed_off() -> bool:
        if handler.seen("m-1", redelivered=True) >= 2 and not await_declared[0]:
            # Refused twice, never acked (an acked delivery does not come back): now the
            # queue is declared again, and the hand-off must arrive, once.
            await channel.declare_queue(clearance, durable=True)
            await_declared[0] = True
        return bool(marks)

    await_declared = [False]
    with capture_logs() as logs:
        await consume_until(broker, adapter, queue, handler, handed_off, published)

    assert [m.body for m in await taken(broker, clearance)] == [BODY]
    assert marks == [[7]]
    assert await broker.ready(queue) == 0
    refusals = [e for e in logs if e["event"] == "settle_refused"]
    assert len(refusals) >= 2
    assert all(e["log_level"] == "warning" for e in refusals)
    assert f"no queue '{clearance}'" in refusals[0]["reason"]
    assert refusals[0]["message_ids"] == ["m-1"]
    await channel.close()


async def m2_refused_after_clearance_went(
    broker: Broker, amqp: tuple[AmqpBroker, Topology], *, while_deciding: bool
) -> list[MutableMapping[str, Any]]:
    """m-1 is handed off to clearance; then clearance is deleted (an operator's mistake,
    under a running node), before m-2 is sent or ``while_deciding`` m-2's batch, which is
    then slower than an answer stays fresh. m-2's hand-off must be refused and m-2 stay in
    its queue; returns the logs."""
    adapter, topology = amqp
    queue, clearance = topology.inbound_queue, topology.clearance
    channel = await broker.connection.channel()
    await broker.put(queue, "m-1")
    marks: list[Sequence[int]] = []
    seen: list[tuple[str | None, bool]] = []
    sent = [False]

    async def published(ids: Sequence[int]) -> None:
        marks.append(ids)

    async def handler(batch: Sequence[Delivery]) -> Bound:
        seen.extend((d.message_id, d.redelivered) for d in batch)
        if while_deciding and seen[-1] == ("m-2", False):
            await channel.queue_delete(clearance)  # after the question went ahead
            await asyncio.sleep(3 * FRESH_S)  # the slow batch is the fault itself
        return [(len(seen), handoff(clearance))]

    async def m2_refused() -> bool:
        if marks == [[1]] and not sent[0]:
            sent[0] = True
            if not while_deciding:
                await channel.queue_delete(clearance)
            await broker.put(queue, "m-2")
        return ("m-2", True) in seen

    with capture_logs() as logs:
        await consume_until(broker, adapter, queue, handler, m2_refused, published)

    assert marks == [[1]]  # m-2's hand-off never went out
    assert await broker.ready(queue) == 1  # m-2, back in its queue
    await channel.declare_queue(clearance, durable=True)
    await channel.close()
    return logs


async def test_a_queue_deleted_after_a_hand_off_to_it_refuses_the_next_one(
    broker: Broker, amqp: tuple[AmqpBroker, Topology]
) -> None:
    """A consumer asks whether its last hand-offs' queues exist as soon as it takes the
    next batch (``QueueProbe.ask_ahead``): the answer is that batch's, not the last one's."""
    logs = await m2_refused_after_clearance_went(broker, amqp, while_deciding=False)

    refusals = [e for e in logs if e["event"] == "settle_refused"]
    assert refusals[0]["message_ids"] == ["m-2"]
    assert f"no queue '{amqp[1].clearance}'" in refusals[0]["reason"]


async def test_a_queue_deleted_while_a_slow_batch_is_decided_refuses_its_hand_off(
    broker: Broker, amqp: tuple[AmqpBroker, Topology]
) -> None:
    """The question sent ahead when the batch was taken is older than ``FRESH_S`` by the
    settle of a slow batch: the settle asks again, and finds the queue gone."""
    await m2_refused_after_clearance_went(broker, amqp, while_deciding=True)


async def test_a_failing_publication_mark_does_not_stop_the_consumer(
    broker: Broker, amqp: tuple[AmqpBroker, Topology]
) -> None:
    adapter, topology = amqp
    queue, target = topology.outbound_feedback, topology.issuing
    await broker.put(queue, "m-1")
    calls: list[Sequence[int]] = []

    async def published(ids: Sequence[int]) -> None:
        calls.append(ids)
        if len(calls) == 1:
            raise RuntimeError("the store's marks failed in a way nobody expected")
        await asyncio.sleep(0)

    async def second_handled() -> bool:
        if len(calls) == 1 and not sent[0]:
            sent[0] = True
            await broker.put(queue, "m-2")
        return len(calls) == 2

    sent = [False]
    handler = Handler(lambda *_: None, lambda batch: [(len(calls) + 1, handoff(target))])
    await consume_until(broker, adapter, queue, handler, second_handled, published)

    assert calls == [[1], [2]]
    assert len(await taken(broker, target)) == 2
