"""Broker high availability: a queue that exists with other arguments than the
configuration asks for stops the node (and ``submit``) with one line; with
``queue_type = "quorum"`` and every member's URL, two nodes on a private 3-node RabbitMQ
cluster lose and duplicate nothing while the member each one is connected to is stopped,
then killed, with certificates in flight; a hand-off that a quorum queue without a leader
rejects leaves its delivery unacked. The shared broker is only used for the first, on a
namespace of its own, and for the tests of one link over several URLs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import aio_pika
import orjson
import pytest
from aio_pika.abc import AbstractChannel
from structlog.testing import capture_logs

from eodes_node.adapters.amqp import BrokerLink, QueueProbe, Result, delivery_of, settle_batch
from eodes_node.adapters.amqp.cluster import ClusterConnection
from eodes_node.config import BrokerSection, RetrySection
from eodes_node.core.records import as_json_dict
from eodes_node.core.work import POSSIBLE_DUPLICATE
from eodes_node.errors import BrokerUnavailable
from eodes_node.ports import Publication
from eodes_node.rabbitmqctl import listed_arguments
from eodes_node.samples import SampleFactory
from eodes_node.testing import BROKER, NodePair, NodeProcess, Side
from eodes_node.testing.cluster import PrivateCluster
from eodes_node.testing.rabbit import PrivateRabbit, spare_ports
from tests.e2e.test_asyncapi import _concrete, _ctl, document
from tests.e2e.test_broker_faults import Copy, numbers, running, second_copies, until

pytestmark = pytest.mark.broker

VHOSTS = ("eodes-test-kr", "eodes-test-cn")
NAMED = re.compile(r'\{"connection_name","([^"]*)"\}')


async def _queue_on_shared_broker(vhost: str, queue: str, arguments: dict[str, Any]) -> None:
    connection = await aio_pika.connect(BROKER + vhost)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(queue, durable=True, arguments=arguments)


async def _delete_on_shared_broker(vhost: str, names: Iterable[str]) -> None:
    connection = await aio_pika.connect(BROKER + vhost)
    async with connection:
        for name in names:
            channel = await connection.channel()
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await channel.queue_delete(name)


def _all_names(side: Side) -> list[str]:
    t = side.topology
    return [*t.local_queues(), *(t.dead_letter(q) for q in t.local_queues())]


async def _eodes(*args: str, within: float = 60.0) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "eodes_node",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    out, err = await asyncio.wait_for(process.communicate(), within)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.mark.timeout(120)
async def test_a_queue_declared_quorum_stops_a_classic_node_and_submit_with_one_line(
    tmp_path: Path,
) -> None:
    pair = NodePair(tmp_path)
    kr = pair.kr
    inbound, records = kr.topology.inbound_queue, kr.topology.outbound_records
    quorum = {"x-queue-type": "quorum"}
    try:
        # What a cluster operator does: pre-declare the queues as quorum queues.
        await _queue_on_shared_broker(VHOSTS[0], inbound, quorum)
        await _queue_on_shared_broker(VHOSTS[0], records, quorum)
        config = kr.write_config()
        node = NodeProcess(config, tmp_path / "kr")
        with pytest.raises(AssertionError, match="did not start"):
            await node.start(within=30)
        assert node.process is not None
        code = await asyncio.wait_for(node.process.wait(), 30)
        output = (tmp_path / "kr.1.log").read_text().strip().splitlines()
        fix = (
            "drain and delete the queue so the node declares it anew, or set "
            "broker.queue_type (and broker.delivery_limit) to what the broker has"
        )
        assert (code, output) == (
            1,
            [
                f"Error: queue {inbound} exists on the broker with x-queue-type = 'quorum', "
                'but the configuration (broker.queue_type = "classic") declares it with '
                f"x-queue-type = not set: {fix}"
            ],
        )
        record = tmp_path / "record.json"
        certificate = SampleFactory("KCFTA", seed=3).certificates(1)[0]
        record.write_bytes(orjson.dumps(as_json_dict(certificate)))
        code, out, err = await _eodes("submit", "--config", str(config), str(record))
        assert code == 1, (out, err)
        assert "Traceback" not in err
        assert err.strip().splitlines() == [
            f"submit failed: queue {records} exists on the broker with x-queue-type = "
            "'quorum', but the configuration (broker.queue_type = \"classic\") declares it "
            f"with x-queue-type = not set: {fix}"
        ]
    finally:
        await _delete_on_shared_broker(VHOSTS[0], _all_names(kr))


# --- quorum queues on a private cluster ---------------------------------------------------


def _on_cluster(side: Side, cluster: PrivateCluster, partner_vhost: str) -> None:
    """The side's node given every member's URL of both vhosts, with quorum queues."""
    settings = side.config.broker.model_dump(
        exclude={"local_url", "partner_url", "local_urls", "partner_urls"}
    )
    broker = BrokerSection(
        **{
            **settings,
            "local_urls": cluster.urls(side.vhost),
            "partner_urls": cluster.urls(partner_vhost),
            "queue_type": "quorum",
        }
    )
    side.config = side.config.model_copy(update={"broker": broker})


class ClusterQueues:
    """The local systems on the cluster, each vhost on a connection that follows the
    members as the node's does; manual acks, so no copy in flight is lost to the count."""

    def __init__(self, cluster: PrivateCluster) -> None:
        self.cluster = cluster
        self.connections: dict[str, ClusterConnection] = {}

    async def __aenter__(self) -> ClusterQueues:
        for vhost in VHOSTS:
            connection = ClusterConnection(
                self.cluster.urls(vhost),
                reconnect_interval=0.5,
                client_properties={"connection_name": f"test queues {vhost}"},
            )
            await connection.connect(timeout=10)
            self.connections[vhost] = connection
        return self

    async def __aexit__(self, *exc: object) -> None:
        for connection in self.connections.values():
            await connection.close()

    async def count(self, vhost: str, queue: str) -> int:
        """Messages in ``queue``, or -1 while the cluster cannot say."""
        try:
            channel = await asyncio.wait_for(self.connections[vhost].channel(), 5)
            declared = await channel.declare_queue(queue, passive=True, timeout=5)
            await channel.close()
        except (aio_pika.exceptions.AMQPError, RuntimeError, OSError, TimeoutError):
            return -1
        return declared.declaration_result.message_count or 0

    async def quiet(self, places: list[tuple[str, str]], least: int, within: float) -> None:
        """Until nothing moves for 3 s and the first place holds ``least``."""
        deadline, last, since = time.monotonic() + within, None, time.monotonic()
        while time.monotonic() < deadline:
            now = [await self.count(vhost, queue) for vhost, queue in places]
            if now != last:
                last, since = now, time.monotonic()
            elif now[0] >= least and time.monotonic() - since >= 3.0:
                return
            await asyncio.sleep(0.2)
        raise AssertionError(f"{places} never settled at {least}+; last counts {last}")

    async def collect(
        self, place: tuple[str, str], enough: Callable[[list[Copy]], bool], within: float
    ) -> list[Copy]:
        """Drain ``place`` as copies come until they are ``enough`` and none has come for
        3 s (a late duplicate is collected too). After a member is killed, a node's settle
        can wait out its timeout for a quorum queue's new leader and go again after a pause:
        what has not moved for a few seconds is not necessarily done."""
        deadline, copies, since = time.monotonic() + within, [], time.monotonic()
        while time.monotonic() < deadline:
            with contextlib.suppress(aio_pika.exceptions.AMQPError, RuntimeError, OSError):
                if new := await self.drain_copies(*place):
                    copies += new
                    since = time.monotonic()
            if enough(copies) and time.monotonic() - since >= 3.0:
                return copies
            await asyncio.sleep(0.2)
        raise AssertionError(f"{place[1]}: not enough within {within} s ({len(copies)} copies)")

    async def drain_copies(self, vhost: str, queue: str) -> list[Copy]:
        channel = await self.connections[vhost].channel()
        declared = await channel.declare_queue(queue, passive=True)
        copies = []
        while (message := await declared.get(no_ack=False, fail=False)) is not None:
            flagged = (message.headers or {}).get(POSSIBLE_DUPLICATE) == "true"
            copies.append(Copy(message.message_id or "", flagged, orjson.loads(message.body)))
            await message.ack()
        await channel.close()
        return copies


async def _member_of(cluster: PrivateCluster, name: str, ask: PrivateRabbit) -> PrivateRabbit:
    """The member whose AMQP port the connection named ``name`` came in on (asked of a
    running member: the list is the whole cluster's)."""
    listed = await ask.ctl(
        "list_connections", "port", "client_properties", "--quiet", "--no-table-headers"
    )
    for line in listed.splitlines():
        port, _, properties = line.partition("\t")
        found = NAMED.search(properties)
        if found and found.group(1) == name:
            return cluster.member_on(int(port.strip()))
    raise AssertionError(f"no connection {name!r} on the cluster: {listed}")


async def _moved(
    cluster: PrivateCluster, name: str, away_from: PrivateRabbit, ask: PrivateRabbit
) -> PrivateRabbit:
    """The member ``name`` is connected to once it is not ``away_from``."""
    found: list[PrivateRabbit] = []

    async def elsewhere() -> bool:
        with contextlib.suppress(AssertionError):
            member = await _member_of(cluster, name, ask)
            if member is not away_from:
                found.append(member)
                return True
        return False

    await until(elsewhere, 60, f"{name} reconnected to another member")
    return found[-1]


def _log(process: NodeProcess) -> bytes:
    return process.log.with_suffix(f".{process.starts}.log").read_bytes()


def _logged_from_now(process: NodeProcess, event: str) -> Callable[[], bool]:
    """Whether ``process`` has logged ``event`` since this call."""
    marker = f'"event":"{event}"'.encode()
    before = _log(process).count(marker)
    return lambda: _log(process).count(marker) > before


async def _counted(queues: ClusterQueues, place: tuple[str, str], least: int) -> int:
    """The count of ``place``, which only grows, once the cluster says at least ``least``:
    while a quorum queue has no leader, RabbitMQ reports it empty."""
    counts: list[int] = []

    async def known() -> bool:
        counts.append(await queues.count(*place))
        return counts[-1] >= least

    await until(known, 60, f"a count of {place[1]} of {least}+ (last {counts[-1:]})")
    return counts[-1]


def _events(process: NodeProcess) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in _log(process).splitlines() if line.startswith(b"{")]


# Certificates KR's local system keeps between itself and CN's (put, not yet cleared), as
# the local systems of a busy pair would: a fault comes while dozens are in flight, not in
# a lull between two bursts (the nodes clear a burst in a tenth of a second when idle).
WINDOW = 50


class Feeder:
    """KR's local system putting records into the outbound queue from ``start`` until
    ``stop``, keeping ``WINDOW`` of them in flight: traffic flows when a fault comes, however
    long ``rabbitmqctl`` takes to deliver it. (On two loaded cores each call takes seconds,
    and a stop_app once came only after the nodes had cleared the whole wave of 1,500 put at
    once, leaving nothing to clear after it.)

    It puts over a connection of its own on a member the fault spares, so no put is lost
    with the member."""

    def __init__(
        self,
        cluster: PrivateCluster,
        vhost: str,
        queue: str,
        bodies: list[bytes],
        cleared: Callable[[], Awaitable[int]],
    ) -> None:
        self.cluster = cluster
        self.vhost = vhost
        self.queue = queue
        self.bodies = bodies
        self.cleared = cleared
        self.fed = 0
        self._enough = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self, spare: PrivateRabbit) -> None:
        self._enough = asyncio.Event()
        self._task = asyncio.create_task(self._feed(spare))

    def check(self) -> None:
        """Raise what ended the feeding early, if anything did."""
        if self._task is not None and self._task.done():
            self._task.result()

    async def stop(self) -> None:
        self._enough.set()
        if self._task is not None:
            await self._task

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _feed(self, spare: PrivateRabbit) -> None:
        connection = ClusterConnection(
            self.cluster.urls(self.vhost),
            self.cluster.members.index(spare),
            reconnect_interval=0.5,
            client_properties={"connection_name": "test feeder"},
        )
        await connection.connect(timeout=10)
        try:
            channel: AbstractChannel = await connection.channel(publisher_confirms=True)
            while not self._enough.is_set():
                cleared = await self.cleared()  # -1 while the cluster cannot say: wait
                wanted = WINDOW - (self.fed - cleared) if cleared >= 0 else 0
                if wanted > 0:
                    if self.fed + wanted > len(self.bodies):
                        raise AssertionError(f"all {len(self.bodies)} records put, more wanted")
                    step = self.bodies[self.fed : self.fed + wanted]
                    channel = await self._put(connection, channel, step)
                    self.fed += wanted
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._enough.wait(), 0.05)
        finally:
            await connection.close()

    async def _put(
        self, connection: ClusterConnection, channel: AbstractChannel, bodies: list[bytes]
    ) -> AbstractChannel:
        """Put ``bodies`` at once, waiting for their confirms together; those the broker
        nacked (a quorum queue that lost its leader does not take them), again on a new
        channel, since a channel nacked once may go on nacking."""
        persistent = aio_pika.DeliveryMode.PERSISTENT
        while bodies:
            confirms = await asyncio.gather(
                *(
                    channel.default_exchange.publish(
                        aio_pika.Message(body, type="coo", delivery_mode=persistent),
                        self.queue,
                        timeout=60,
                    )
                    for body in bodies
                ),
                return_exceptions=True,
            )
            for confirm in confirms:
                if isinstance(confirm, BaseException) and not isinstance(
                    confirm, aio_pika.exceptions.DeliveryError
                ):
                    raise confirm
            bodies = [b for b, c in zip(bodies, confirms, strict=True) if isinstance(c, Exception)]
            if bodies:
                await channel.close()
                channel = await connection.channel(publisher_confirms=True)
        return channel


def _delivered(copies: list[Copy]) -> Counter[str]:
    """Certificate numbers in the delivered events among ``copies``, once per event id."""
    return Counter(
        item["certificate_number"]
        for event in {c.message_id: c.body for c in copies}.values()
        if event["event"] == "delivered"
        for item in event["items"]
    )


def _in_flight_at_loss(kr: NodeProcess, lost: NodeProcess) -> int:
    """Certificates KR had accepted and not yet had a receipt for when ``lost`` last logged
    the loss of its member: what the fault could lose or duplicate (the two processes
    share the machine's clock)."""
    at = max(e["timestamp"] for e in _events(lost) if e["event"] == "broker_connection_lost")
    before = Counter(e["event"] for e in _events(kr) if e["timestamp"] < at)
    return before["record_accepted"] - before["receipt_received"]


@pytest.mark.timeout(900)
async def test_quorum_queues_on_a_cluster_lose_and_duplicate_nothing_when_members_fail(
    tmp_path: Path,
) -> None:
    async with PrivateCluster(tmp_path / "cluster") as cluster:
        for vhost in VHOSTS:
            await cluster.add_vhost(vhost)
        pair = NodePair(tmp_path / "nodes", batch_max=16)
        _on_cluster(pair.kr, cluster, VHOSTS[1])
        _on_cluster(pair.cn, cluster, VHOSTS[0])
        kr, cn = (NodeProcess(s.write_config(), s.dir / "node.log") for s in (pair.kr, pair.cn))
        # More than the nodes clear while the feeder waits for two faults to come and pass.
        records = [as_json_dict(c) for c in SampleFactory("KCFTA", seed=31).certificates(8000)]
        clearance = (VHOSTS[1], pair.cn.topology.clearance)
        events = (VHOSTS[0], pair.kr.topology.events)
        async with ClusterQueues(cluster) as queues:
            bodies = [orjson.dumps(r) for r in records]
            feeder = Feeder(
                cluster,
                VHOSTS[0],
                pair.kr.topology.outbound_records,
                bodies,
                lambda: queues.count(*clearance),
            )

            async def cleared(least: int) -> bool:
                feeder.check()
                return await queues.count(*clearance) >= least

            await cn.start()
            await kr.start()
            try:
                # 1. stop_app of the member KR's node consumes from, found before the
                # traffic starts (the node stays on it until the fault).
                kr_local = "eodes-node KR->CN local"
                stopped = await _member_of(cluster, kr_local, cluster.first)
                spared = next(m for m in cluster.members if m is not stopped)
                kr_lost = _logged_from_now(kr, "broker_connection_lost")
                feeder.start(spared)
                await until(lambda: cleared(20), 90, "first certificates cleared")
                before = await queues.count(*clearance)
                await stopped.stop_app()
                await until(kr_lost, 60, "KR lost its member")
                progress = await _counted(queues, clearance, before)
                await until(lambda: cleared(progress + 20), 120, "clearing after stop_app")
                await feeder.stop()
                in_flight = _in_flight_at_loss(kr, kr)
                assert in_flight > 0, "nothing in flight when KR lost its member"
                assert await _moved(cluster, kr_local, stopped, spared) is not stopped
                await stopped.start_app()
                await cluster.wait_running(3, time.monotonic() + 60)
                # 2. kill -9 of the member CN's node is connected to now, found before the
                # traffic starts again.
                cn_local = "eodes-node CN->KR local"
                killed = await _member_of(cluster, cn_local, cluster.first)
                spared = next(m for m in cluster.members if m is not killed)
                cn_lost = _logged_from_now(cn, "broker_connection_lost")
                cn_back = _logged_from_now(cn, "broker_reconnected")
                so_far = feeder.fed
                feeder.start(spared)
                await until(lambda: cleared(so_far + 20), 90, "clearing again")
                before = await queues.count(*clearance)
                await killed.kill()
                await until(cn_lost, 60, "CN lost its member")
                progress = await _counted(queues, clearance, before)
                await until(cn_back, 60, "CN reconnected")
                await until(lambda: cleared(progress + 20), 120, "clearing after kill -9")
                await feeder.stop()
                in_flight = _in_flight_at_loss(kr, cn)
                assert in_flight > 0, "nothing in flight when CN lost its member"
                assert await _moved(cluster, cn_local, killed, spared) is not killed
                fed = numbers(records[: feeder.fed])
                await queues.quiet([clearance], feeder.fed, within=400)
                events_seen = await queues.collect(
                    events, lambda copies: fed <= set(_delivered(copies)), within=400
                )
                assert running(kr), "KR died"
                assert running(cn), "CN died"
            finally:
                await feeder.close()
                codes = [await p.terminate() for p in (kr, cn) if p.process is not None]
            assert codes == [0, 0]
            cleared_copies = await queues.drain_copies(*clearance)
            events_seen += await queues.drain_copies(*events)
    assert second_copies(cleared_copies) == [], "a hand-off published twice without the flag"
    assert second_copies(events_seen) == [], "an event published twice without the flag"
    first = {c.message_id: c.body for c in reversed(cleared_copies)}
    by_number = Counter(c["certificate"]["header"]["certificate_number"] for c in first.values())
    assert set(by_number) == fed, "lost certificates"
    assert [n for n, seen in by_number.items() if seen > 1] == [], "one certificate, two ids"
    delivered = _delivered(events_seen)
    assert set(delivered) == fed, "a delivered event lost"
    assert [n for n, seen in delivered.items() if seen > 1] == [], "delivered twice"


@pytest.mark.timeout(120)
async def test_a_quorum_node_declares_what_the_asyncapi_document_lists_for_quorum(
    tmp_path: Path,
) -> None:
    namespace = "t" + secrets.token_hex(5)
    retry = RetrySection(first_after_s=1.0, max_attempts=3)
    # The KR side only provides the key the CN node pins; it never runs.
    Side("KR", "CN", VHOSTS[0], VHOSTS[1], namespace, tmp_path, retry=retry)
    cn = Side("CN", "KR", VHOSTS[1], VHOSTS[0], namespace, tmp_path, retry=retry)
    broker = BrokerSection(**{**dict(cn.config.broker), "queue_type": "quorum"})
    cn.config = cn.config.model_copy(update={"broker": broker})
    await cn.start()
    try:
        rows = await _ctl("list_queues", "-p", VHOSTS[1], "name", "arguments")
    finally:
        await cn.stop()
        await _delete_on_shared_broker(VHOSTS[1], _all_names(cn))
        connection = await aio_pika.connect(BROKER + VHOSTS[1])
        async with connection:
            channel = await connection.channel()
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await channel.exchange_delete(cn.topology.inbound_exchange)
    live = {
        row["name"]: listed_arguments(row)
        for row in rows
        if str(row["name"]).startswith(f"{namespace}.")
    }

    def concrete(value: Any) -> Any:
        return _concrete(value, namespace, "CN", "KR") if isinstance(value, str) else value

    listed = {
        concrete(channel["address"]): {
            key: concrete(value) for key, value in channel["x-eodes-arguments"]["quorum"].items()
        }
        for channel in document()["channels"].values()
        if channel["bindings"]["amqp"]["is"] == "queue"
    }
    assert live == listed
    assert live[cn.topology.inbound_queue]["x-queue-type"] == "quorum"


# --- one link over several URLs, on the shared broker --------------------------------------


@pytest.mark.timeout(60)
async def test_a_link_connects_to_the_first_member_that_answers() -> None:
    nothing = spare_ports(1)[0]  # a port nothing listens on
    urls = [f"amqp://guest:guest@127.0.0.1:{nothing}/{VHOSTS[0]}", BROKER + VHOSTS[0]]
    link = BrokerLink(urls, name=f"test ha {secrets.token_hex(3)}", timeout_s=5, reconnect_s=0.5)
    with capture_logs() as logs:
        try:
            connection = await link.connect()
            assert isinstance(connection, ClusterConnection)
            assert connection.url.port == 5672
        finally:
            await link.close()
    skipped = [e for e in logs if e["event"] == "broker_member_unavailable"]
    assert len(skipped) == 1
    assert f"127.0.0.1:{nothing}" in skipped[0]["error"]
    assert "guest:guest" not in skipped[0]["error"]


@pytest.mark.timeout(60)
async def test_a_nacked_publish_is_unavailable_and_the_next_one_takes_a_new_channel() -> None:
    queue = f"t{secrets.token_hex(5)}.nack"
    # A queue that holds one message and refuses the next: the broker nacks it.
    full = {"x-max-length": 1, "x-overflow": "reject-publish"}
    await _queue_on_shared_broker(VHOSTS[0], queue, full)
    link = BrokerLink(BROKER + VHOSTS[0], name="test ha nack", timeout_s=5, reconnect_s=0.5)
    try:
        await link.publish("", queue, b"1", message_id="m1", kind="coo")
        first = await link.publish_channel()
        with pytest.raises(BrokerUnavailable, match="did not take the message"):
            await link.publish("", queue, b"2", message_id="m2", kind="coo")
        assert first.is_closed
        assert await link.publish_channel() is not first
    finally:
        await link.close()
        await _delete_on_shared_broker(VHOSTS[0], [queue])


# --- a hand-off a quorum queue cannot take, on a private cluster ---------------------------


async def _settle_one(
    url: str, source: str, target: str, *, confirmed: bool
) -> tuple[Result, str | None]:
    """Take one delivery from ``source`` and settle it with one hand-off to ``target``, on
    a channel in confirm mode or in a transaction; the outcome, and the delivery's id."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=confirmed, on_return_raises=confirmed)
        message = await (await channel.get_queue(source, ensure=False)).get(no_ack=False)
        delivery = delivery_of(message)
        underlay = await channel.get_underlay_channel()
        handoff = Publication(target, b'{"handed": "off"}', f"of-{message.message_id}", "event")
        outcome = await settle_batch(
            underlay,
            [delivery],
            [handoff],
            ack=True,
            timeout_s=5,
            probe=QueueProbe(5),
            confirmed=confirmed,
        )
    return outcome.result, message.message_id


@pytest.mark.timeout(600)  # a cluster's start takes minutes on two loaded cores
async def test_a_hand_off_a_quorum_queue_cannot_take_leaves_its_delivery_unacked(
    tmp_path: Path,
) -> None:
    """A quorum queue without a leader rejects a publish; RabbitMQ still commits the
    transaction carrying it, so a settle in a transaction drops the hand-off and acks its
    cause (rabbitmq-server#8966). On a channel in confirm mode, as the node settles quorum
    queues, the broker nacks the hand-off and the delivery stays in its queue."""
    async with PrivateCluster(tmp_path / "cluster") as cluster:
        for vhost in VHOSTS:
            await cluster.add_vhost(vhost)
        vhost = VHOSTS[0]
        home = cluster.members[-1]
        source, target = f"t{secrets.token_hex(4)}.source", f"t{secrets.token_hex(4)}.target"
        # A queue's leader is on the member its declaration came in on. The source's is on
        # the first member, with replicas on all three; the hand-off queue's one replica is
        # on ``home``: stopping ``home`` leaves the hand-off queue no leader, the source its.
        quorum: dict[str, Any] = {"x-queue-type": "quorum"}
        for member, queue, arguments in (
            (cluster.first, source, quorum),
            (home, target, {**quorum, "x-quorum-initial-group-size": 1}),
        ):
            connection = await aio_pika.connect(member.url(vhost))
            async with connection:
                channel = await connection.channel(publisher_confirms=True)
                await channel.declare_queue(queue, durable=True, arguments=arguments)
                if queue == source:
                    for body, message_id in ((b"1", "in-transaction"), (b"2", "confirmed")):
                        message = aio_pika.Message(body, message_id=message_id, delivery_mode=2)
                        await channel.default_exchange.publish(message, routing_key=source)
        async with ClusterQueues(cluster) as queues:
            await home.stop_app()
            url = cluster.first.url(vhost)
            in_transaction = await _settle_one(url, source, target, confirmed=False)
            confirmed = await _settle_one(url, source, target, confirmed=True)
            await home.start_app()
            await cluster.wait_running(3, time.monotonic() + 60)
            left = [c.message_id for c in await queues.drain_copies(vhost, source)]
            handed = await queues.drain_copies(vhost, target)
    # The fault: committed, the delivery acked away, and its hand-off nowhere.
    assert in_transaction == (Result.DONE, "in-transaction")
    assert "in-transaction" not in left
    # The node's way: not settled, and the delivery is still there to be handled again.
    assert confirmed[0] is not Result.DONE
    assert left == ["confirmed"]
    assert handed == []
