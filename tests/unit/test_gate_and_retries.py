"""Backing off while the store fails, and a retry budget that holds whatever fails."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from structlog.testing import capture_logs

from eodes_node.core.records import as_json_dict
from eodes_node.errors import StoreUnavailable
from eodes_node.samples import SampleFactory
from eodes_node.service.gate import StoreGate
from eodes_node.service.retries import ResendAlarm
from eodes_node.testing.services import START, ServicePair, ServiceSide


class Ticking:
    """A monotonic clock and a sleep that only advances it: pauses are exact."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds


def record(seed: int = 1) -> dict[str, Any]:
    return as_json_dict(SampleFactory("KCFTA", seed=seed, issue_date=START.date()).certificate())


async def test_the_gate_pauses_longer_after_each_failure_up_to_the_cap() -> None:
    t = Ticking()
    gate = StoreGate(first_s=0.5, cap_s=3.0, sleep=t.sleep, monotonic=t.monotonic)
    await gate.wait()
    assert t.slept == []
    delays = [gate.failed(StoreUnavailable("disk full")) for _ in range(5)]
    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0]
    await gate.wait()
    assert t.slept == [3.0]
    gate.succeeded()
    await gate.wait()
    assert t.slept == [3.0]


async def test_batches_wait_out_the_pause_after_a_store_failure() -> None:
    pair = ServicePair()
    t = Ticking()
    pair.kr.svc.gate = StoreGate(first_s=0.2, cap_s=1.0, sleep=t.sleep, monotonic=t.monotonic)
    pair.kr.store.fail_next_commits(3)
    for _ in range(3):
        with pytest.raises(StoreUnavailable):
            await pair.kr.submit([record()])
    await pair.kr.submit([record()])
    assert t.slept == [0.2, 0.4, 0.8]
    assert len(pair.kr.take_outgoing()) == 1


async def test_nothing_is_logged_as_done_when_its_commit_failed() -> None:
    pair = ServicePair()
    pair.kr.store.fail_next_commits(1)
    with capture_logs() as logs, pytest.raises(StoreUnavailable):
        await pair.kr.submit([record()])
    assert [e["event"] for e in logs if e["event"] == "record_accepted"] == []
    with capture_logs() as logs:
        await pair.kr.submit([record()])
    assert [e["event"] for e in logs].count("record_accepted") == 1


async def test_a_resend_whose_attempt_cannot_be_counted_is_not_sent() -> None:
    pair = ServicePair()
    await pair.kr.submit([record()])
    pair.kr.take_outgoing()
    budget = pair.kr.retry.max_attempts
    sends = 1
    # The store fails every other pass: each resend still spends one attempt.
    for i in range(budget * 4):
        if pair.kr.events("failed"):
            break
        pair.clock.advance(10)
        if i % 2 == 0:
            pair.kr.store.fail_next_commits(1)
            with pytest.raises(StoreUnavailable):
                await pair.kr.svc.resend_due()
            assert pair.kr.take_outgoing() == []
        else:
            await pair.kr.svc.resend_due()
            sends += len(pair.kr.take_outgoing())
    assert sends == budget
    assert pair.kr.events("failed")


class StaleReads:
    """The store as two instances of one link see it when both read what is due before
    either counts its resend (what the database's fencing keeps from happening, and
    what the count must survive anyway)."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.readers = 0
        self.both_read = asyncio.Event()

    async def due(self, now: float, limit: int) -> Any:
        rows = await self.store.due(now, limit)
        self.readers += 1
        if self.readers == 2:
            self.both_read.set()
        await asyncio.wait_for(self.both_read.wait(), 5)
        return rows

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


async def test_two_resends_from_one_stale_read_count_two_attempts() -> None:
    pair = ServicePair()
    await pair.kr.submit([record()])
    [first] = pair.kr.take_outgoing()
    shared = StaleReads(pair.kr.store)
    instances = []
    for _ in range(2):
        side = ServiceSide("KR", "CN", pair.clock, retry=pair.kr.retry, store=shared)
        side.reports = pair.kr.store
        side.connect(pair.cn.key)
        instances.append(side)
    pair.clock.advance(10)

    await asyncio.gather(*(side.svc.resend_due() for side in instances))

    resent = [p for side in instances for p in side.take_outgoing()]
    assert [p.message_id for p in resent] == [first.message_id] * 2
    row = pair.kr.store.outbound_row(first.message_id)
    assert row is not None
    assert row.attempts == 1 + len(resent)


def test_the_resend_alarm_rings_only_for_what_is_due_before_the_loop_looks() -> None:
    alarm = ResendAlarm()
    alarm.looking()
    alarm.sleeping_until(1_000.0)
    alarm.due(1_030.0)  # a new send whose first resend is later than the next look
    assert not alarm.rung.is_set()
    alarm.due(999.0)
    assert alarm.rung.is_set()


def test_what_is_scheduled_while_the_loop_looks_rings_it_if_due_before_its_next_look() -> None:
    # The pass may have read the schedule before these commits: only another pass sees them.
    alarm = ResendAlarm()
    alarm.looking()
    alarm.due(5_000.0)
    alarm.sleeping_until(4_000.0)
    assert not alarm.rung.is_set()  # the loop looks again before that anyway
    alarm.looking()
    alarm.due(3_000.0)
    alarm.due(6_000.0)
    alarm.sleeping_until(4_000.0)
    assert alarm.rung.is_set()
    alarm.looking()
    assert not alarm.rung.is_set()
