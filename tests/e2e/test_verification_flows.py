"""Retrospective verification between paired KR and CN nodes over the real broker: CN's
clearance system asks through its feedback door, KR's issuing system answers through its
records door, and CN reports a request left unanswered past its due date."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from eodes_node.adapters.clock import SystemClock
from eodes_node.adapters.sql import SqlStore
from eodes_node.core.records import as_json_dict
from eodes_node.samples import SampleFactory
from eodes_node.testing import NodePair, Side

pytestmark = pytest.mark.broker


class ShiftedClock:
    """The real clock, moved on by ``offset``: days pass for one node in a moment."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[NodePair]:
    async with NodePair(tmp_path) as nodes:
        nodes.cn.clock = ShiftedClock()
        await nodes.start()
        yield nodes


async def delivered(pair: NodePair, seed: int) -> str:
    """A certificate KR issued and CN's clearance holds; its number."""
    record = as_json_dict(SampleFactory("KCFTA", seed=seed).certificate())
    await pair.kr.submit([record])
    await pair.cn.clearance.wait_count(1)
    return str(record["header"]["certificate_number"])


async def ask(side: Side, number: str, due_in_days: int) -> None:
    request = {
        "certificate_number": number,
        "request_reference": f"VR-{number}",
        "item_numbers": [1],
        "questions": "Please confirm that item 1 meets the origin criterion declared.",
        "reply_due": (datetime.now(UTC).date() + timedelta(days=due_in_days)).isoformat(),
    }
    await side.publish(
        side.topology.outbound_feedback, orjson.dumps(request), kind="verification-request"
    )


async def history(side: Side, number: str) -> list[str]:
    store = SqlStore(side.config.store.url, clock=SystemClock(), exclusive=False)
    await store.open()
    try:
        (report,) = await store.report(number)
        return [line.event for line in report.history]
    finally:
        await store.close()


async def received_request(side: Side) -> dict[str, Any]:
    (message,) = await side.issuing.wait_for(
        lambda ms: any(m.type == "verification-request" for m in ms)
    )
    assert message.type == "verification-request"
    body: dict[str, Any] = orjson.loads(message.body)
    assert message.message_id == body["message_id"]
    return body


async def test_request_answer_reaches_clearance(pair: NodePair) -> None:
    number = await delivered(pair, seed=41)
    await ask(pair.cn, number, due_in_days=30)
    asked = await received_request(pair.kr)
    assert asked["request"]["certificate_number"] == number
    answer = {
        "correlation_id": asked["message_id"],
        "certificate_number": number,
        "request_reference": asked["request"]["request_reference"],
        "result": "confirmed",
        "findings": "Origin confirmed by a visit to the producer.",
    }
    await pair.kr.publish(
        pair.kr.topology.outbound_records, orjson.dumps(answer), kind="verification-response"
    )
    cleared = await pair.cn.clearance.wait_for(
        lambda ms: any(m.type == "verification-response" for m in ms)
    )
    (response,) = [orjson.loads(m.body) for m in cleared if m.type == "verification-response"]
    assert response["correlation_id"] == asked["message_id"]
    assert response["response"]["result"] == "confirmed"
    await pair.kr.events.wait_for(
        lambda _: any(
            i["kind"] == "verification-response" for i in pair.kr.events.event_items("delivered")
        )
    )
    assert (await history(pair.cn, number))[-2:] == [
        "verification_requested",
        "verification_answered",
    ]
    assert (await history(pair.kr, number))[-2:] == [
        "verification_requested",
        "verification_answered",
    ]


async def test_an_unanswered_request_is_reported_overdue(pair: NodePair) -> None:
    number = await delivered(pair, seed=42)
    await ask(pair.cn, number, due_in_days=1)
    asked = await received_request(pair.kr)
    await pair.cn.events.wait_for(
        lambda _: any(
            i["message_id"] == asked["message_id"] for i in pair.cn.events.event_items("delivered")
        )
    )
    assert pair.cn.events.event_items("overdue") == []
    clock = pair.cn.clock
    assert isinstance(clock, ShiftedClock)
    assert pair.cn.node is not None
    clock.offset = timedelta(days=2)  # the due day is over at CN
    pair.cn.node.service.resend_alarm.ring()  # the shifted clock: look at the schedule now
    await pair.cn.events.wait_for(lambda _: bool(pair.cn.events.event_items("overdue")), 20)
    (late,) = pair.cn.events.event_items("overdue")
    assert (late["message_id"], late["certificate_number"], late["code"]) == (
        asked["message_id"],
        number,
        "REPLY_OVERDUE",
    )
    assert (await history(pair.cn, number)).count("verification_overdue") == 1
