"""Broker faults: a broker killed and restarted under traffic, connections closed by the
broker, a link cut, a hand-off queue deleted under a running node.

The shared broker is never stopped: a test that kills a broker starts a RabbitMQ node of
its own (``PrivateRabbit``), and a test on the shared broker closes only connections it
opened itself, found by their client-given name. Each test proves its fault happened.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections import Counter
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    MutableMapping,
    Sequence,
)
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import orjson
import pytest
from aio_pika.abc import AbstractRobustConnection
from structlog.testing import capture_logs

import eodes_node.testing.pair as pair_module
from eodes_node.adapters.amqp import AmqpBroker, BrokerLink
from eodes_node.core.records import as_json_dict
from eodes_node.core.work import POSSIBLE_DUPLICATE
from eodes_node.errors import BrokerUnavailable
from eodes_node.ports import Delivery, Publication
from eodes_node.samples import SampleFactory
from eodes_node.testing import BROKER, NodePair, NodeProcess
from eodes_node.testing.proxy import TcpProxy
from eodes_node.testing.rabbit import PrivateRabbit
from eodes_node.topology import Topology

pytestmark = pytest.mark.broker

VHOSTS = ("eodes-test-kr", "eodes-test-cn")
NAMED = re.compile(r'\{"connection_name","([^"]*)"\}')


async def until(condition: Callable[[], bool | Awaitable[bool]], within: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` once the deadline passed."""
    deadline = time.monotonic() + within
    while True:
        held = condition()
        if not isinstance(held, bool):
            held = await held
        if held:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within} s")
        await asyncio.sleep(0.05)


@pytest.fixture
async def rabbit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[PrivateRabbit]:
    async with PrivateRabbit(tmp_path / "rabbit") as node:
        for vhost in VHOSTS:
            await node.add_vhost(vhost)
        # NodePair builds every broker URL from this base: point it at the private node.
        monkeypatch.setattr(pair_module, "BROKER", node.url(""))
        yield node


@dataclass(frozen=True)
class Copy:
    """One message as a local system receives it."""

    message_id: str
    flagged: bool  # the node's possible-duplicate header
    body: Any


def second_copies(copies: list[Copy]) -> list[str]:
    """Copies a local system deduplicating by message id would still see twice: a repeat
    without the node's flag (the broker's own redeliveries do not reach a drain)."""
    seen: set[str] = set()
    extra = []
    for copy in copies:
        if copy.message_id in seen and not copy.flagged:
            extra.append(copy.message_id)
        seen.add(copy.message_id)
    return extra


class Queues:
    """The local systems' side on the private broker, with manual acks: a count must not
    depend on a delivery in flight to the test when the broker dies."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.connections: dict[str, AbstractRobustConnection] = {}

    async def __aenter__(self) -> Queues:
        for vhost in VHOSTS:
            self.connections[vhost] = await aio_pika.connect_robust(
                self.base + vhost,
                client_properties={"connection_name": f"test queues {vhost}"},
                reconnect_interval=0.5,
            )
        return self

    async def __aexit__(self, *exc: object) -> None:
        for connection in self.connections.values():
            await connection.close()

    async def put(self, vhost: str, queue: str, bodies: Iterable[bytes]) -> None:
        channel = await self.connections[vhost].channel(publisher_confirms=True)
        persistent = aio_pika.DeliveryMode.PERSISTENT
        for body in bodies:
            message = aio_pika.Message(body, type="coo", delivery_mode=persistent)
            await channel.default_exchange.publish(message, routing_key=queue)
        await channel.close()

    async def count(self, vhost: str, queue: str) -> int:
        """Messages in ``queue``, or -1 while the broker cannot say."""
        try:
            channel = await asyncio.wait_for(self.connections[vhost].channel(), 5)
            declared = await channel.declare_queue(queue, passive=True, timeout=5)
            await channel.close()
        except (aio_pika.exceptions.AMQPError, RuntimeError, OSError, TimeoutError):
            return -1
        return declared.declaration_result.message_count or 0

    async def drain(self, vhost: str, queue: str) -> list[Any]:
        return [copy.body for copy in await self.drain_copies(vhost, queue)]

    async def drain_copies(self, vhost: str, queue: str) -> list[Copy]:
        channel = await self.connections[vhost].channel()
        declared = await channel.declare_queue(queue, passive=True)
        copies = []
        while (message := await declared.get(no_ack=True, fail=False)) is not None:
            flagged = (message.headers or {}).get(POSSIBLE_DUPLICATE) == "true"
            copies.append(Copy(message.message_id or "", flagged, orjson.loads(message.body)))
        await channel.close()
        return copies

    async def quiet(self, places: list[tuple[str, str]], least: int, within: float) -> None:
        """Until nothing moves for 3 s and the first place holds ``least``: a duplicate
        that comes late is counted too."""
        deadline, last, since = time.monotonic() + within, None, time.monotonic()
        while time.monotonic() < deadline:
            now = [await self.count(vhost, queue) for vhost, queue in places]
            if now != last:
                last, since = now, time.monotonic()
            elif now[0] >= least and time.monotonic() - since >= 3.0:
                return
            await asyncio.sleep(0.2)
        raise AssertionError(f"{places} never settled at {least}+; last counts {last}")


def log_of(process: NodeProcess) -> Path:
    return process.log.with_suffix(f".{process.starts}.log")


def events_in(process: NodeProcess) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in log_of(process).read_bytes().splitlines()]


async def logged(process: NodeProcess, event: str, within: float = 60) -> None:
    marker = f'"event":"{event}"'.encode()
    await until(lambda: marker in log_of(process).read_bytes(), within, f"{event} logged")


def running(process: NodeProcess) -> bool:
    return process.process is not None and process.process.returncode is None


def numbers(records: list[dict[str, Any]]) -> set[str]:
    return {r["header"]["certificate_number"] for r in records}


@pytest.mark.timeout(300)
async def test_nodes_outlive_a_broker_killed_under_traffic_and_deliver_each_once(
    rabbit: PrivateRabbit, tmp_path: Path
) -> None:
    pair = NodePair(tmp_path / "nodes", batch_max=16)
    kr, cn = (NodeProcess(s.write_config(), s.dir / "node.log") for s in (pair.kr, pair.cn))
    count = 1000
    records = [as_json_dict(c) for c in SampleFactory("KCFTA", seed=29).certificates(count)]
    clearance = ("eodes-test-cn", pair.cn.topology.clearance)
    events = ("eodes-test-kr", pair.kr.topology.events)
    async with Queues(rabbit.url("")) as queues:
        await cn.start()
        await kr.start()
        try:
            await queues.put(
                "eodes-test-kr", pair.kr.topology.outbound_records, map(orjson.dumps, records)
            )
            await until(lambda: _holds(queues, clearance, 30), 60, "first certificates cleared")
            assert await queues.count(*clearance) < count, "nothing was left in flight"
            await rabbit.kill()
            # The fault happened and neither node went with it: each says its link is lost.
            await logged(kr, "broker_connection_lost")
            await logged(cn, "broker_connection_lost")
            assert running(kr)
            assert running(cn)
            await rabbit.restart()
            await queues.quiet([clearance, events], count, within=180)
            assert running(kr), "KR died"
            assert running(cn), "CN died"
        finally:
            codes = [await p.terminate() for p in (kr, cn) if p.process is not None]
        assert codes == [0, 0]
        cleared = await queues.drain_copies(*clearance)
        events_seen = await queues.drain_copies(*events)
    # A broker killed mid-commit may leave the node unsure whether a hand-off got through:
    # it publishes it again under the same message id, flagged. Anything else seen twice
    # by a local system that deduplicates by message id is a duplicate.
    assert second_copies(cleared) == [], "a hand-off published twice without the flag"
    assert second_copies(events_seen) == [], "an event published twice without the flag"
    first = {c.message_id: c.body for c in reversed(cleared)}
    by_number = Counter(c["certificate"]["header"]["certificate_number"] for c in first.values())
    assert set(by_number) == numbers(records), "lost certificates"
    assert [n for n, seen in by_number.items() if seen > 1] == [], "one certificate, two ids"
    delivered = Counter(
        item["certificate_number"]
        for event in {c.message_id: c.body for c in events_seen}.values()
        if event["event"] == "delivered"
        for item in event["items"]
    )
    assert set(delivered) == numbers(records), "a delivered event lost"
    assert [n for n, seen in delivered.items() if seen > 1] == [], "delivered twice"


async def close_connections(rabbit: PrivateRabbit, prefix: str, reason: str) -> list[str]:
    """Close, on the broker, the connections whose client-given name starts with
    ``prefix``; returns their names."""
    listed = await rabbit.ctl(
        "list_connections", "pid", "client_properties", "--quiet", "--no-table-headers"
    )
    closed = []
    for line in listed.splitlines():
        pid, _, properties = line.partition("\t")
        name = NAMED.search(properties)
        if name and name.group(1).startswith(prefix):
            await rabbit.ctl("close_connection", pid.strip(), reason)
            closed.append(name.group(1))
    return closed


@pytest.mark.timeout(240)
async def test_every_line_a_node_writes_is_json_and_a_reconnect_is_a_warning_with_its_cause(
    rabbit: PrivateRabbit, tmp_path: Path
) -> None:
    pair = NodePair(tmp_path / "nodes")
    kr, cn = (NodeProcess(s.write_config(), s.dir / "node.log") for s in (pair.kr, pair.cn))
    records = [as_json_dict(c) for c in SampleFactory("KCFTA", seed=31).certificates(10)]
    clearance = ("eodes-test-cn", pair.cn.topology.clearance)
    records_queue = pair.kr.topology.outbound_records
    async with Queues(rabbit.url("")) as queues:
        await cn.start()
        await kr.start()
        try:
            await queues.put("eodes-test-kr", records_queue, map(orjson.dumps, records[:5]))
            await until(lambda: _holds(queues, clearance, 5), 60, "5 certificates cleared")
            closed = await close_connections(rabbit, "eodes-node", "eodes fault test")
            assert {"eodes-node KR->CN local", "eodes-node CN->KR local"} <= set(closed)
            await logged(kr, "broker_reconnected")
            await logged(cn, "broker_reconnected")
            await queues.put("eodes-test-kr", records_queue, map(orjson.dumps, records[5:]))
            await until(lambda: _holds(queues, clearance, 10), 60, "consumption resumed")
        finally:
            codes = [await p.terminate() for p in (kr, cn) if p.process is not None]
    assert codes == [0, 0]
    for process in (kr, cn):
        for number, line in enumerate(log_of(process).read_bytes().splitlines(), 1):
            try:
                orjson.loads(line)
            except orjson.JSONDecodeError:
                raise AssertionError(f"{log_of(process)}:{number} is not JSON: {line!r}") from None
        lines = events_in(process)
        assert [e for e in lines if e["level"] in ("error", "critical")] == []
        lost = [e for e in lines if e["event"] == "broker_connection_lost"]
        assert lost, "the node did not say that its links were lost"
        assert all(e["level"] == "warning" for e in lost)
        assert all("CONNECTION_FORCED - eodes fault test" in e["cause"] for e in lost)
        library = [e for e in lines if e.get("logger", "").startswith(("aiormq", "aio_pika"))]
        assert library, "the AMQP client said nothing about the closed connection"
        assert all("exception" not in e for e in library), "a traceback for an expected drop"
        assert any("CONNECTION_FORCED" in e.get("cause", "") for e in library)


async def _holds(queues: Queues, place: tuple[str, str], least: int) -> bool:
    return await queues.count(*place) >= least


@pytest.mark.timeout(120)
async def test_publishing_while_the_link_is_cut_fails_at_once_and_resumes_after() -> None:
    async with TcpProxy(5672) as proxy:
        link = BrokerLink(
            proxy.route(BROKER + VHOSTS[0]),
            name=f"test link {secrets.token_hex(4)}",
            timeout_s=5.0,
            reconnect_s=0.2,
        )
        queue = f"test.link.{secrets.token_hex(4)}"
        connection = await aio_pika.connect(BROKER + VHOSTS[0])
        channel = await connection.channel()
        await channel.declare_queue(queue, auto_delete=False)

        async def publish(message_id: str) -> None:
            await link.publish("", queue, b"x", message_id=message_id, kind="t")

        try:
            await publish("before")
            assert proxy.cut() >= 1  # the link's connection was reset
            began = time.monotonic()
            with pytest.raises(BrokerUnavailable):
                await publish("during")  # never a bare RuntimeError, never a hang
            assert time.monotonic() - began < 5.0
            proxy.restore()

            async def published_again() -> bool:
                try:
                    await publish("after")
                except BrokerUnavailable:
                    return False
                return True

            await until(published_again, 30, "publishing after the link is back")
            assert proxy.accepted >= 2, "no new connection was made"
        finally:
            await link.close()
            await channel.queue_delete(queue)
            await connection.close()


class Adapter:
    """The AMQP adapter alone on the shared broker, on queues of its own, with a handler
    the test controls; deletes what it declared."""

    def __init__(self, url: str, **options: Any) -> None:
        self.topology = Topology("KR", "CN", f"test-faults-{secrets.token_hex(4)}")
        self.name = f"test broker faults {secrets.token_hex(4)}"
        settings: dict[str, Any] = {"prefetch": 32, "batch_max": 16, "timeout_s": 5.0}
        settings.update(options)
        self.broker = AmqpBroker(
            self.topology,
            local_url=url,
            partner_url=url,
            batch_wait_s=0.0,
            reconnect_s=0.2,
            node_name=self.name,
            **settings,
        )
        self.seen: list[tuple[str | None, bool]] = []
        self.release = asyncio.Event()

    async def handle(self, batch: Sequence[Delivery]) -> list[tuple[int, Publication]]:
        """Each delivery hands one message off to the clearance queue, bound to it."""
        self.seen.extend((d.message_id, d.redelivered) for d in batch)
        await self.release.wait()
        return [
            (0, Publication(self.topology.clearance, b"{}", f"h-{d.message_id}", "coo"))
            for d in batch
        ]

    async def __aenter__(self) -> Adapter:
        self.connection = await aio_pika.connect(BROKER + VHOSTS[0])
        await self.broker.declare()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.broker.close()
        channel = await self.connection.channel()
        t = self.topology
        for name in (*t.local_queues(), *map(t.dead_letter, t.local_queues())):
            await channel.queue_delete(name)
        await channel.exchange_delete(t.inbound_exchange)
        await self.connection.close()

    async def put(self, queue: str, *message_ids: str) -> None:
        channel = await self.connection.channel(publisher_confirms=True)
        for message_id in message_ids:
            message = aio_pika.Message(b"{}", message_id=message_id, type="coo")
            await channel.default_exchange.publish(message, routing_key=queue)
        await channel.close()

    async def handed_off(self) -> list[str]:
        channel = await self.connection.channel()
        declared = await channel.declare_queue(self.topology.clearance, passive=True)
        ids = []
        while (message := await declared.get(no_ack=True, fail=False)) is not None:
            ids.append(str(message.message_id))
        await channel.close()
        return ids

    async def held(self, queue: str) -> int:
        """Messages in ``queue``, ready or not; an unacked one is back once its consumer
        is gone, so this is read after the adapter closed."""
        channel = await self.connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        await channel.close()
        return declared.declaration_result.message_count or 0


async def _no_marks(ids: Sequence[int]) -> None:
    return None


@pytest.mark.timeout(120)
async def test_a_consumer_outlives_a_stuck_connection_and_handles_its_batch_again() -> None:
    """aiormq closes a stuck connection with a CancelledError that it hands to every call
    pending on it: the settle in flight must take it as the link failing, not as the end
    of the consumer."""
    async with TcpProxy(5672) as proxy:
        url = proxy.route(BROKER + VHOSTS[0]) + "?heartbeat=1"
        async with Adapter(url, timeout_s=15.0) as adapter:
            queue = adapter.topology.outbound_records
            await adapter.put(queue, "m-1")
            consumer = await adapter.broker.consume(queue, adapter.handle, published=_no_marks)
            running = asyncio.create_task(consumer.run())
            try:
                with capture_logs() as logs:
                    await until(lambda: bool(adapter.seen), 30, "m-1 handled")
                    proxy.hang()  # the settle that follows waits on a link that says nothing
                    adapter.release.set()
                    await until(
                        lambda: any(e["event"] == "broker_connection_lost" for e in logs),
                        30,
                        "the stuck connection closed",
                    )
                proxy.restore()
                await until(lambda: ("m-1", True) in adapter.seen, 60, "m-1 handled again")
                assert not running.done(), "the consumer stopped"
            finally:
                consumer.stop()
                await asyncio.wait_for(running, 10)
            await adapter.broker.close()
            assert await adapter.held(queue) == 0


async def shared_ctl(*args: str) -> str:
    """``rabbitmqctl`` on the shared broker: reads, and closes only connections of ours."""
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl", "-q", *args, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, f"rabbitmqctl {args[0]} exited {process.returncode}"
    return out.decode()


async def close_on_shared_broker(name: str, reason: str) -> int:
    """Close the shared broker's connections of exactly this client-given name (ours
    alone: the name carries a random token); returns how many."""
    listed = await shared_ctl("list_connections", "-p", VHOSTS[0], "pid", "client_properties")
    pids = [
        line.partition("\t")[0]
        for line in listed.splitlines()
        if (found := NAMED.search(line)) and found.group(1) == name
    ]
    for pid in pids:
        await shared_ctl("close_connection", pid, reason)
    return len(pids)


async def held_on_shared_broker(vhost: str, queue: str) -> int:
    """Messages in ``queue``, ready and unacked: what the broker still holds for it."""
    listed = await shared_ctl("list_queues", "-p", vhost, "name", "messages")
    counts = dict(line.split("\t") for line in listed.splitlines() if "\t" in line)
    return int(counts[queue])


@pytest.mark.timeout(120)
async def test_after_a_reconnect_no_delivery_is_left_unsettled_on_the_new_channel() -> None:
    """Deliveries of the closed channel still wait in memory when the new channel's
    arrive: a batch that mixes them must not leave the new ones unacked, holding their
    prefetch slots for as long as the channel lives."""
    async with Adapter(BROKER + VHOSTS[0], prefetch=3, batch_max=2) as adapter:
        queue = adapter.topology.outbound_records
        ids = [f"m-{i}" for i in range(6)]
        await adapter.put(queue, *ids)
        consumer = await adapter.broker.consume(queue, adapter.handle, published=_no_marks)
        await until(lambda: consumer.buffered == 3, 30, "a prefetch's worth pushed")
        running = asyncio.create_task(consumer.run())
        try:
            await until(lambda: len(adapter.seen) == 2, 30, "the first batch taken")
            assert await close_on_shared_broker(f"{adapter.name} local", "fault test") == 1
            # m-2 of the closed channel, then m-0..m-2 again on the new one.
            await until(lambda: consumer.buffered >= 4, 30, "redelivered on the new channel")
            adapter.release.set()
            await until(lambda: {i for i, _ in adapter.seen} == set(ids), 30, "all handled")
        finally:
            consumer.stop()
            await asyncio.wait_for(running, 10)
        await adapter.broker.close()
        assert await adapter.held(queue) == 0, "a delivery was handled and never settled"
        # And none was acked without its hand-off (a multiple ack must not sweep it up).
        assert sorted(await adapter.handed_off()) == sorted(f"h-{i}" for i in ids)


async def drop_topology(url: str, topology: Topology) -> None:
    connection = await aio_pika.connect(url)
    channel = await connection.channel()
    for name in (*topology.local_queues(), *map(topology.dead_letter, topology.local_queues())):
        await channel.queue_delete(name)
    await channel.exchange_delete(topology.inbound_exchange)
    await connection.close()


@pytest.mark.timeout(180)
async def test_a_deleted_clearance_queue_holds_the_certificate_until_it_is_back(
    tmp_path: Path,
) -> None:
    # Not entered: the local systems' robust channels would declare the queue again.
    pair = NodePair(tmp_path)
    inbound, clearance = pair.cn.topology.inbound_queue, pair.cn.topology.clearance
    (record,) = [as_json_dict(c) for c in SampleFactory("KCFTA", seed=37).certificates(1)]
    try:
        async with Queues(BROKER) as queues:
            with capture_logs() as logs:
                await pair.start()
                channel = await queues.connections[VHOSTS[1]].channel()
                await channel.queue_delete(clearance)  # an operator's mistake, under the node
                outbound = pair.kr.topology.outbound_records
                await queues.put(VHOSTS[0], outbound, [orjson.dumps(record)])

                def refused() -> list[MutableMapping[str, Any]]:
                    return [
                        e for e in logs if e["event"] == "settle_refused" and e["queue"] == inbound
                    ]

                # Verified and stored, but not handed off: rolled back and requeued, again.
                await until(lambda: len(refused()) >= 2, 60, "the hand-off refused twice")
                assert await held_on_shared_broker(VHOSTS[1], inbound) == 1, "it was acked"
                assert all(e["log_level"] == "warning" for e in refused())
                assert f"no queue '{clearance}'" in refused()[0]["reason"]
                await channel.declare_queue(clearance, durable=True)

                async def acked() -> bool:
                    return await held_on_shared_broker(VHOSTS[1], inbound) == 0

                await until(acked, 60, "the certificate handed off and its delivery acked")
            handed = await queues.drain(VHOSTS[1], clearance)
    finally:
        await pair.kr.stop()
        await pair.cn.stop()
        await drop_topology(BROKER + VHOSTS[0], pair.kr.topology)
        await drop_topology(BROKER + VHOSTS[1], pair.cn.topology)
    assert [m["certificate"]["header"]["certificate_number"] for m in handed] == [
        record["header"]["certificate_number"]
    ]
