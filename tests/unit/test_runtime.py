"""The runtime on fakes: the lifecycle, the consumers and the background loops without a
broker or a database (the same over RabbitMQ is in tests/e2e)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import orjson
import pytest

from eodes_node.adapters.clock import SystemClock
from eodes_node.config import (
    BrokerSection,
    KeysSection,
    NodeConfig,
    NodeSection,
    RetrySection,
    StoreSection,
)
from eodes_node.core.jws import KeySet, PrivateKey
from eodes_node.core.records import as_json_dict
from eodes_node.runtime import Node
from eodes_node.samples import SampleFactory
from eodes_node.service import NodeIdentity, NodeService
from eodes_node.testing.fakes import FakeBroker, InMemoryStore
from eodes_node.topology import Topology


def _config(retry: RetrySection) -> NodeConfig:
    return NodeConfig(
        node=NodeSection(country="KR", partner="CN"),
        broker=BrokerSection(local_url="amqp://unused/", partner_url="amqp://unused/"),
        keys=KeysSection(private_key=Path("/unused"), partner_jwks=Path("/unused")),
        store=StoreSection(url="sqlite:///unused"),
        retry=retry,
    )


class Running:
    def __init__(self, retry: RetrySection) -> None:
        clock = SystemClock()
        key, partner = PrivateKey.generate(), PrivateKey.generate()
        identity = NodeIdentity(
            own="KR",
            partner="CN",
            key=key,
            partner_keys=KeySet({partner.kid: partner.public}, owner="CN"),
            topology=Topology("KR", "CN"),
        )
        config = _config(retry)
        self.store = InMemoryStore(clock)
        self.broker = FakeBroker()
        self.service = NodeService(
            identity, self.store, self.broker, clock, retry=retry, limits=config.limits
        )
        self.node = Node(config, self.service, store=self.store, broker=self.broker, clock=clock)
        self.topology = identity.topology
        self.stop = asyncio.Event()


@pytest.fixture
async def running() -> AsyncIterator[Callable[[RetrySection], Running]]:
    started: list[tuple[Running, asyncio.Task[None]]] = []

    def start(retry: RetrySection) -> Running:
        r = Running(retry)
        started.append((r, asyncio.create_task(r.node.run(r.stop))))
        return r

    yield start
    for r, task in started:
        r.stop.set()
        await asyncio.wait_for(task, 10)


async def until(predicate: Callable[[], bool], within: float, what: str) -> float:
    began = time.monotonic()
    while not predicate():
        if time.monotonic() - began > within:
            raise AssertionError(f"{what}: not within {within} s")
        await asyncio.sleep(0.01)
    return time.monotonic() - began


def record() -> bytes:
    return orjson.dumps(as_json_dict(SampleFactory("KCFTA", seed=3).certificate()))


async def test_a_new_send_is_resent_after_first_after_s_not_later(
    running: Callable[[RetrySection], Running],
) -> None:
    retry = RetrySection(first_after_s=0.3, multiplier=2.0, max_interval_s=10.0, max_attempts=5)
    r = running(retry)
    await asyncio.wait_for(r.node.ready.wait(), 5)
    r.broker.deliver(r.topology.outbound_records, record(), kind="coo")
    await until(lambda: len(r.broker.partner) == 1, 5, "first send")
    # Nothing was due when the loop last looked, so only the commit's wake-up can bring
    # the first resend this early (before, the loop slept up to 5 s).
    waited = await until(lambda: len(r.broker.partner) == 2, 2.5, "first resend")
    assert waited >= 0.2
    assert r.broker.partner[1].token == r.broker.partner[0].token


async def test_a_store_outage_pauses_consuming_and_nothing_is_lost(
    running: Callable[[RetrySection], Running],
) -> None:
    r = running(RetrySection())
    await asyncio.wait_for(r.node.ready.wait(), 5)
    r.store.fail_next_commits(4)
    r.broker.deliver(r.topology.outbound_records, record(), kind="coo")
    await until(lambda: len(r.broker.partner) == 1, 15, "send after the outage")
    consumer = r.broker.consumers[r.topology.outbound_records]
    assert consumer.deferred == 4
    # Four failures in a row: the pauses grew each time.
    assert r.service.gate.delay_s == 0.0


async def test_the_node_drains_and_stops_on_request(
    running: Callable[[RetrySection], Running],
) -> None:
    r = running(RetrySection())
    await asyncio.wait_for(r.node.ready.wait(), 5)
    assert r.broker.declared == 1
    assert set(r.broker.consumers) == {
        r.topology.inbound_queue,
        r.topology.outbound_records,
        r.topology.outbound_feedback,
    }
    r.stop.set()
    await until(lambda: not r.node.ready.is_set(), 10, "stop")


async def test_a_node_started_before_its_store_comes_up_when_the_store_does() -> None:
    from eodes_node.errors import StoreUnavailable

    r = Running(RetrySection())
    opened = r.store.open
    attempts: list[int] = []

    async def not_yet() -> None:
        attempts.append(1)
        if len(attempts) < 3:
            raise StoreUnavailable("connection refused")
        await opened()

    r.store.open = not_yet  # type: ignore[method-assign]
    task = asyncio.create_task(r.node.run(r.stop))
    try:
        await asyncio.wait_for(r.node.ready.wait(), 10)
        assert len(attempts) == 3
    finally:
        r.stop.set()
        await asyncio.wait_for(task, 10)
