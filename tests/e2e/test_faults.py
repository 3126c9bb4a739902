"""Faults on one machine with the real broker: killed nodes and closed connections.

Each test proves its fault happened (the process really died, the connections really
were replaced), and counts at the local queues after a quiet period, so that a
duplicate arriving late is counted too.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from aio_pika.abc import AbstractIncomingMessage

import eodes_node.testing.pair as pair_module
from eodes_node.core.records import as_json_dict
from eodes_node.samples import SampleFactory
from eodes_node.testing import NodePair, NodeProcess, Seen
from eodes_node.testing.rabbit import PrivateRabbit

pytestmark = pytest.mark.broker

NAMED = re.compile(r'\{"connection_name","([^"]*)"\}')


def by_certificate(messages: list[AbstractIncomingMessage]) -> dict[str, set[str]]:
    ids: dict[str, set[str]] = defaultdict(set)
    for m in messages:
        body = orjson.loads(m.body)
        ids[body["certificate"]["header"]["certificate_number"]].add(body["message_id"])
    return ids


def delivered_counts(events: Seen) -> Counter[str]:
    """How many `delivered` event items each certificate got; a copy the broker
    redelivered to the test itself is no duplicate."""
    return Counter(
        str(item["certificate_number"])
        for m in events.messages
        if m.type == "event.delivered" and not m.redelivered
        for item in orjson.loads(m.body)["items"]
    )


async def quiet(*seen: Seen, within: float, still_s: float = 3.0) -> None:
    """Until nothing arrives at any of ``seen`` for ``still_s``: what moves late counts."""
    deadline = time.monotonic() + within
    last, since = [-1], time.monotonic()
    while time.monotonic() < deadline:
        now = [len(s.messages) for s in seen]
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= still_s:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"still moving after {within} s: {last}")


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[NodePair]:
    async with NodePair(tmp_path, batch_max=16) as nodes:
        yield nodes


@pytest.mark.timeout(240)
async def test_nodes_killed_mid_flight_lose_nothing_and_send_nothing_twice(
    pair: NodePair,
) -> None:
    kr, cn = (
        NodeProcess(side.write_config(), side.dir / "node.log") for side in (pair.kr, pair.cn)
    )
    await cn.start()
    await kr.start()
    count = 150
    records = [as_json_dict(c) for c in SampleFactory("KCFTA", seed=17).certificates(count)]
    try:
        await pair.kr.submit(records)
        await pair.cn.clearance.wait_count(30, within=60)
        await kr.kill()
        await kr.start()
        await pair.cn.clearance.wait_count(90, within=60)
        await cn.kill()
        await cn.start()
        await pair.cn.clearance.wait_for(lambda ms: len(by_certificate(ms)) == count, within=90)
        await pair.kr.events.wait_for(
            lambda ms: len(pair.kr.events.certificates_with("delivered")) == count,
            within=90,
        )
        await quiet(pair.cn.clearance, pair.kr.events, within=60)
    finally:
        for process in (kr, cn):
            if process.process is not None and process.process.returncode is None:
                await process.terminate()
    # Each node really died once: SIGKILL, not a clean stop.
    assert (kr.starts, cn.starts) == (2, 2)
    seen = by_certificate(pair.cn.clearance.messages)
    assert set(seen) == {r["header"]["certificate_number"] for r in records}, "lost certificates"
    # Each certificate crossed under one message id (never re-minted) and reached the
    # clearance system exactly once, although both nodes died with work in flight.
    assert all(len(ids) == 1 for ids in seen.values())
    assert len(pair.cn.clearance.messages) == count, "a certificate was delivered twice"
    delivered = delivered_counts(pair.kr.events)
    assert set(delivered) == set(seen)
    assert [n for n, times in delivered.items() if times > 1] == [], "delivered told twice"
    assert not [m for m in pair.kr.events.messages if m.type == "event.failed"]


@pytest.fixture
async def private_pair(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[NodePair, PrivateRabbit]]:
    """Paired nodes on a RabbitMQ node of the test's own: closing connections on the
    shared broker would reach other people's, and closing the nodes' alone by name
    would too, since every KR-CN pair names its connections the same."""
    async with PrivateRabbit(tmp_path / "rabbit") as rabbit:
        for vhost in ("eodes-test-kr", "eodes-test-cn"):
            await rabbit.add_vhost(vhost)
        monkeypatch.setattr(pair_module, "BROKER", rabbit.url(""))
        async with NodePair(tmp_path / "nodes", batch_max=16) as nodes:
            yield nodes, rabbit


async def node_connections(rabbit: PrivateRabbit) -> dict[str, str]:
    """The nodes' connections, by broker pid: the local systems' are left alone."""
    listed = await rabbit.ctl(
        "list_connections", "pid", "client_properties", "--quiet", "--no-table-headers"
    )
    named = {}
    for line in listed.splitlines():
        pid, _, properties = line.partition("\t")
        found = NAMED.search(properties)
        if found and found.group(1).startswith("eodes-node"):
            named[pid.strip()] = found.group(1)
    return named


@pytest.mark.timeout(240)
async def test_consumption_resumes_after_connections_are_closed(
    private_pair: tuple[NodePair, PrivateRabbit],
) -> None:
    pair, rabbit = private_pair
    await pair.start()
    count = 100
    records = [as_json_dict(c) for c in SampleFactory("KCFTA", seed=23).certificates(count)]
    await pair.kr.submit(records)
    await pair.cn.clearance.wait_count(10, within=60)
    before = await node_connections(rabbit)
    assert {"eodes-node KR->CN local", "eodes-node CN->KR local"} <= set(before.values())
    for pid in before:
        await rabbit.ctl("close_connection", pid, "fault test")
    # The fault happened: every one of those connections is gone, replaced by a new one.
    deadline = time.monotonic() + 60
    while True:
        after = await node_connections(rabbit)
        if not set(after) & set(before) and set(after.values()) >= set(before.values()):
            break
        assert time.monotonic() < deadline, f"not reconnected: {before} then {after}"
        await asyncio.sleep(0.2)
    await pair.cn.clearance.wait_for(lambda ms: len(by_certificate(ms)) == count, within=90)
    await pair.kr.events.wait_for(
        lambda ms: len(pair.kr.events.certificates_with("delivered")) == count,
        within=90,
    )
    # And new work after the outage flows too: consumers were restored.
    more = [as_json_dict(c) for c in SampleFactory("KCFTA", seed=24).certificates(5)]
    await pair.kr.submit(more)
    await pair.cn.clearance.wait_for(lambda ms: len(by_certificate(ms)) == count + 5, within=60)
    await quiet(pair.cn.clearance, pair.kr.events, within=60)
    assert all(len(ids) == 1 for ids in by_certificate(pair.cn.clearance.messages).values())
    assert len(pair.cn.clearance.messages) == count + 5
    assert [n for n, times in delivered_counts(pair.kr.events).items() if times > 1] == []
