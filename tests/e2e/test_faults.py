"""Faults on one machine with the real broker: killed nodes and closed connections."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from aio_pika.abc import AbstractIncomingMessage

from eodes_node.core.records import as_json_dict
from eodes_node.samples import SampleFactory
from eodes_node.testing import NodePair, NodeProcess

pytestmark = pytest.mark.broker


def by_certificate(messages: list[AbstractIncomingMessage]) -> dict[str, set[str]]:
    ids: dict[str, set[str]] = defaultdict(set)
    for m in messages:
        body = orjson.loads(m.body)
        ids[body["certificate"]["header"]["certificate_number"]].add(body["message_id"])
    return ids


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
    finally:
        for process in (kr, cn):
            if process.process is not None and process.process.returncode is None:
                await process.terminate()
    seen = by_certificate(pair.cn.clearance.messages)
    assert set(seen) == {r["header"]["certificate_number"] for r in records}, "lost certificates"
    # Each certificate crossed under one message id (never re-minted) and reached the
    # clearance system exactly once, although both nodes died with work in flight.
    assert all(len(ids) == 1 for ids in seen.values())
    assert len(pair.cn.clearance.messages) == count, "a certificate was delivered twice"
    assert not [m for m in pair.kr.events.messages if m.type == "event.failed"]


@pytest.mark.timeout(180)
async def test_consumption_resumes_after_connections_are_closed(pair: NodePair) -> None:
    await pair.start()
    count = 100
    records = [as_json_dict(c) for c in SampleFactory("KCFTA", seed=23).certificates(count)]
    await pair.kr.submit(records)
    await pair.cn.clearance.wait_count(10, within=60)
    closer = await asyncio.create_subprocess_exec(
        "rabbitmqctl",
        "-q",
        "close_all_connections",
        "fault test",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert await asyncio.wait_for(closer.wait(), 60) == 0
    await pair.cn.clearance.wait_for(lambda ms: len(by_certificate(ms)) == count, within=90)
    await pair.kr.events.wait_for(
        lambda ms: len(pair.kr.events.certificates_with("delivered")) == count,
        within=90,
    )
    # And new work after the outage flows too: consumers were restored.
    more = [as_json_dict(c) for c in SampleFactory("KCFTA", seed=24).certificates(5)]
    await pair.kr.submit(more)
    await pair.cn.clearance.wait_for(lambda ms: len(by_certificate(ms)) == count + 5, within=60)
    assert all(len(ids) == 1 for ids in by_certificate(pair.cn.clearance.messages).values())
    assert len(pair.cn.clearance.messages) == count + 5
