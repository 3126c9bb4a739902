"""Broker high availability: a queue that exists with other arguments than the
configuration asks for stops the node (and ``submit``) with one line; with
``queue_type = "quorum"`` and every member's URL, two nodes on a private 3-node RabbitMQ
cluster lose and duplicate nothing while the member each one is connected to is stopped,
then killed. The shared broker is only used for the first, on a namespace of its own."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import sys
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aio_pika
import orjson
import pytest
from structlog.testing import capture_logs

from eodes_node.adapters.amqp import BrokerLink
from eodes_node.adapters.amqp.cluster import ClusterConnection
from eodes_node.config import BrokerSection, RetrySection
from eodes_node.core.records import as_json_dict
from eodes_node.core.work import POSSIBLE_DUPLICATE
from eodes_node.errors import BrokerUnavailable
from eodes_node.rabbitmqctl import listed_arguments
from eodes_node.samples import SampleFactory
from eodes_node.testing import BROKER, NodePair, NodeProcess, Side
from eodes_node.testing.cluster import PrivateCluster
from eodes_node.testing.rabbit import PrivateRabbit, spare_ports
from tests.e2e.test_asyncapi import _concrete, _ctl, document
from tests.e2e.test_broker_faults import Copy, logged, numbers, running, second_copies, until

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

    async def put(self, vhost: str, queue: str, bodies: Iterable[bytes]) -> None:
        channel = await self.connections[vhost].channel(publisher_confirms=True)
        persistent = aio_pika.DeliveryMode.PERSISTENT
        for body in bodies:
            message = aio_pika.Message(body, type="coo", delivery_mode=persistent)
            await channel.default_exchange.publish(message, routing_key=queue)
        await channel.close()

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


@pytest.mark.timeout(900)
@pytest.mark.skipif(
    os.environ.get("EODES_CLUSTER_TESTS") != "1",
    reason="a three-node cluster under traffic: `make test-cluster` (once timed out in CI "
    "at 'clearing after stop_app' under the whole suite's load; not yet understood)",
)
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
        count = 3000  # in two waves, each still flowing when its fault comes
        wave = count // 2
        records = [as_json_dict(c) for c in SampleFactory("KCFTA", seed=31).certificates(count)]
        clearance = (VHOSTS[1], pair.cn.topology.clearance)
        events = (VHOSTS[0], pair.kr.topology.events)
        async with ClusterQueues(cluster) as queues:
            await cn.start()
            await kr.start()
            try:
                outbound = pair.kr.topology.outbound_records
                await queues.put(VHOSTS[0], outbound, map(orjson.dumps, records[:wave]))

                async def cleared(least: int) -> bool:
                    return await queues.count(*clearance) >= least

                await until(lambda: cleared(20), 90, "first certificates cleared")
                assert await queues.count(*clearance) < wave, "nothing was left in flight"
                # 1. stop_app of the member KR's node consumes from.
                kr_local = "eodes-node KR->CN local"
                stopped = await _member_of(cluster, kr_local, cluster.first)
                ask = next(m for m in cluster.members if m is not stopped)
                lost_before = _log(kr).count(b'"event":"broker_connection_lost"')
                await stopped.stop_app()
                await until(
                    lambda: _log(kr).count(b'"event":"broker_connection_lost"') > lost_before,
                    60,
                    "KR lost its member",
                )
                assert await _moved(cluster, kr_local, stopped, ask) is not stopped
                progress = await queues.count(*clearance)
                await until(lambda: cleared(progress + 20), 120, "clearing after stop_app")
                await stopped.start_app()
                await cluster.wait_running(3, time.monotonic() + 60)
                await queues.put(VHOSTS[0], outbound, map(orjson.dumps, records[wave:]))
                await until(lambda: cleared(wave + 20), 90, "the second wave cleared")
                assert await queues.count(*clearance) < count, "all cleared before the kill"
                # 2. kill -9 of the member CN's node is connected to now.
                cn_local = "eodes-node CN->KR local"
                killed = await _member_of(cluster, cn_local, cluster.first)
                ask = next(m for m in cluster.members if m is not killed)
                lost_before = _log(cn).count(b'"event":"broker_connection_lost"')
                await killed.kill()
                await until(
                    lambda: _log(cn).count(b'"event":"broker_connection_lost"') > lost_before,
                    60,
                    "CN lost its member",
                )
                assert await _moved(cluster, cn_local, killed, ask) is not killed
                await logged(cn, "broker_reconnected")
                await queues.quiet([clearance, events], count, within=400)
                assert running(kr), "KR died"
                assert running(cn), "CN died"
            finally:
                codes = [await p.terminate() for p in (kr, cn) if p.process is not None]
            assert codes == [0, 0]
            cleared_copies = await queues.drain_copies(*clearance)
            events_seen = await queues.drain_copies(*events)
    assert second_copies(cleared_copies) == [], "a hand-off published twice without the flag"
    assert second_copies(events_seen) == [], "an event published twice without the flag"
    first = {c.message_id: c.body for c in reversed(cleared_copies)}
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
