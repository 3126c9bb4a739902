"""Paired KR and CN nodes exchanging e-COs, receipts and feedback over the real broker."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from eodes_node.adapters.clock import SystemClock
from eodes_node.adapters.sql import SqlStore
from eodes_node.adapters.sql.tokens import unpacked
from eodes_node.config import RetrySection
from eodes_node.core.envelope import open_envelope, seal
from eodes_node.core.jws import KeySet
from eodes_node.core.messages import CooIssued, Receipt, new_message_id
from eodes_node.core.records import as_json_dict
from eodes_node.samples import SampleFactory
from eodes_node.testing import NodePair, Side

pytestmark = pytest.mark.broker


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[NodePair]:
    async with NodePair(tmp_path) as nodes:
        await nodes.start()
        yield nodes


def records(count: int, seed: int = 1) -> list[dict[str, Any]]:
    return [as_json_dict(c) for c in SampleFactory("KCFTA", seed=seed).certificates(count)]


def number(record: dict[str, Any]) -> str:
    return str(record["header"]["certificate_number"])


async def state(side: Side, cert: str) -> dict[str, str]:
    store = SqlStore(side.config.store.url, clock=SystemClock(), exclusive=False)
    await store.open()
    try:
        return {r.role: r.state for r in await store.report(cert)}
    finally:
        await store.close()


def feedback(record: dict[str, Any], denied: dict[int, str] | None = None) -> dict[str, Any]:
    denied = denied or {}
    items = [
        {"item_number": i["item_number"], "granted": i["item_number"] not in denied}
        | ({"reason": denied[i["item_number"]]} if i["item_number"] in denied else {})
        for i in record["items"]
    ]
    granted = sum(1 for i in items if i["granted"])
    decision = "granted" if granted == len(items) else "denied" if not granted else "partial"
    return {
        "certificate_number": number(record),
        "decision": decision,
        "import_declaration": {"reference": "IMP-1", "date": record["header"]["issue_date"]},
        "items": items,
    }


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


async def test_happy_path_delivers_receipts_and_grants(pair: NodePair) -> None:
    batch = records(5)
    await pair.kr.submit(batch)
    cleared = await pair.cn.clearance.wait_count(5)
    assert sorted(
        orjson.loads(m.body)["certificate"]["header"]["certificate_number"] for m in cleared
    ) == sorted(number(r) for r in batch)
    assert {m.type for m in cleared} == {"coo"}
    await pair.kr.events.wait_for(lambda ms: len(pair.kr.events.event_items("delivered")) >= 5)
    assert pair.kr.events.certificates_with("delivered") == {number(r) for r in batch}
    for record in batch:
        await pair.cn.submit_feedback(feedback(record))
    decisions = await pair.kr.issuing.wait_count(5)
    assert {orjson.loads(m.body)["feedback"]["decision"] for m in decisions} == {"granted"}
    for record in batch:
        assert await state(pair.kr, number(record)) == {"exporter": "granted"}
        assert await state(pair.cn, number(record)) == {"importer": "granted"}


async def test_denial_and_partial_reach_the_issuing_system(pair: NodePair) -> None:
    one, two = records(2, seed=5)
    two["items"] = [two["items"][0], dict(two["items"][0], item_number=2)]
    await pair.kr.submit([one, two])
    await pair.cn.clearance.wait_count(2)
    denied_all = {i["item_number"]: "ORIGIN_NOT_MET" for i in one["items"]}
    await pair.cn.submit_feedback(feedback(one, denied_all))
    await pair.cn.submit_feedback(feedback(two, {2: "QUANTITY_EXCEEDED"}))
    decisions = {
        orjson.loads(m.body)["feedback"]["certificate_number"]: orjson.loads(m.body)["feedback"]
        for m in await pair.kr.issuing.wait_count(2)
    }
    assert decisions[number(one)]["decision"] == "denied"
    assert {i["reason"] for i in decisions[number(one)]["items"]} == {"ORIGIN_NOT_MET"}
    assert decisions[number(two)]["decision"] == "partial"
    assert decisions[number(two)]["items"][1] == {
        "item_number": 2,
        "granted": False,
        "reason": "QUANTITY_EXCEEDED",
        "remark": "",
    }
    assert await state(pair.kr, number(one)) == {"exporter": "denied"}
    assert await state(pair.kr, number(two)) == {"exporter": "partial"}


async def test_replacement_makes_the_old_certificate_unusable(pair: NodePair) -> None:
    (original,) = records(1, seed=8)
    await pair.kr.submit([original])
    await pair.cn.clearance.wait_count(1)
    replacement = as_json_dict(SampleFactory("KCFTA", seed=9).certificate())
    replacement["back_reference"] = {
        "kind": "replaces",
        "certificate_number": number(original),
        "issue_date": original["header"]["issue_date"],
        "reason": "consignee address corrected",
    }
    await pair.kr.submit([replacement], kind="coo-replacement")
    cleared = await pair.cn.clearance.wait_count(2)
    assert cleared[1].type == "coo-replacement"
    assert await state(pair.cn, number(original)) == {"importer": "replaced"}
    assert await state(pair.cn, number(replacement)) == {"importer": "available"}
    assert await state(pair.kr, number(original)) == {"exporter": "replaced"}

    await pair.cn.submit_feedback(feedback(original))
    await pair.cn.events.wait_for(lambda ms: any(m.type == "event.record_rejected" for m in ms))
    (item,) = pair.cn.events.event_items("record_rejected")
    assert item["problems"][0]["rule"] == "certificate_withdrawn"
    assert "replaced" in item["text"]
    await pair.cn.dead[pair.cn.topology.outbound_feedback].wait_count(1)
    assert pair.kr.issuing.messages == []


async def test_cancellation_tells_clearance_and_blocks_feedback(pair: NodePair) -> None:
    (record,) = records(1, seed=12)
    await pair.kr.submit([record])
    await pair.cn.clearance.wait_count(1)
    cancellation = {
        "certificate_number": number(record),
        "issuing_authority": record["header"]["issuing_authority"],
        "cancelled_on": record["header"]["issue_date"],
        "reason": "exporter withdrew the application",
    }
    await pair.kr.submit([cancellation], kind="coo-cancellation")
    cleared = await pair.cn.clearance.wait_count(2)
    assert cleared[1].type == "coo-cancellation"
    assert await state(pair.cn, number(record)) == {"importer": "cancelled"}
    await pair.cn.submit_feedback(feedback(record))
    await pair.cn.dead[pair.cn.topology.outbound_feedback].wait_count(1)
    assert await state(pair.cn, number(record)) == {"importer": "cancelled"}


async def test_invalid_local_record_is_dead_lettered_with_reasons(pair: NodePair) -> None:
    bad, good = records(2, seed=3)
    bad["items"][0]["hs_code"] = "12.34"
    await pair.kr.submit([bad, good])
    await pair.kr.publish(pair.kr.topology.outbound_records, b"{not json", kind="coo")
    dead = await pair.kr.dead[pair.kr.topology.outbound_records].wait_count(2)
    reasons = [str(m.headers["x-eodes-reason"]) for m in dead]
    assert any("items[0].hs_code: HS code must be 6 to 10 digits" in r for r in reasons)
    assert any("not valid JSON" in r for r in reasons)
    await pair.kr.events.wait_for(
        lambda ms: sum(m.type == "event.record_rejected" for m in ms) >= 2
    )
    rejected = pair.kr.events.event_items("record_rejected")
    assert any(e["problems"][0]["path"] == "items[0].hs_code" for e in rejected)
    cleared = await pair.cn.clearance.wait_count(1)
    assert orjson.loads(cleared[0].body)["certificate"]["header"]["certificate_number"] == number(
        good
    )


async def test_tampered_message_is_refused_with_a_signed_rejection(pair: NodePair) -> None:
    message = CooIssued(
        message_id=new_message_id(),
        sender="KR",
        receiver="CN",
        issued_at=_now().replace(microsecond=0),
        certificate=SampleFactory("KCFTA", seed=21).certificate(),
    )
    token = bytearray(seal(message, pair.kr.key))
    middle = token.index(b".") + 40
    token[middle] = ord("A") if token[middle] != ord("A") else ord("B")
    await pair.cn.inject(bytes(token), kind="coo", message_id=message.message_id)
    dead = await pair.cn.dead[pair.cn.topology.inbound_queue].wait_count(1)
    assert "BAD_SIGNATURE" in str(dead[0].headers["x-eodes-reason"])
    # The rejection travels back to KR as a signed receipt naming the message.
    await pair.kr.wiretap.wait_count(1)
    keys = KeySet({pair.cn.key.kid: pair.cn.key.public}, "CN")
    receipt = open_envelope(
        pair.kr.wiretap.messages[0].body, keys, receiver="KR", now=_now()
    ).message
    assert isinstance(receipt, Receipt)
    assert receipt.entries[0].message_id == message.message_id
    assert receipt.entries[0].status == "rejected"
    assert receipt.entries[0].code == "BAD_SIGNATURE"
    assert pair.cn.clearance.messages == []


async def test_message_signed_by_a_stranger_is_refused(pair: NodePair) -> None:
    from eodes_node.core.jws import PrivateKey

    stranger = PrivateKey.generate("Ed25519")
    message = CooIssued(
        message_id=new_message_id(),
        sender="KR",
        receiver="CN",
        issued_at=_now().replace(microsecond=0),
        certificate=SampleFactory("KCFTA", seed=2).certificate(),
    )
    await pair.cn.inject(seal(message, stranger), kind="coo", message_id=message.message_id)
    dead = await pair.cn.dead[pair.cn.topology.inbound_queue].wait_count(1)
    assert "UNKNOWN_KEY" in str(dead[0].headers["x-eodes-reason"])
    assert pair.cn.clearance.messages == []


async def test_duplicates_and_replays_get_the_identical_receipt_once_delivered(
    pair: NodePair,
) -> None:
    (record,) = records(1, seed=4)
    await pair.kr.submit([record])
    await pair.cn.clearance.wait_count(1)
    first = await pair.kr.wiretap.wait_count(1)
    token = _sent_token(pair.kr, number(record))
    message_id = orjson.loads(pair.cn.clearance.messages[0].body)["message_id"]
    # The same envelope again, twice: a resend after a lost receipt, then a replay.
    await pair.cn.inject(token, kind="coo", message_id=message_id)
    await pair.cn.inject(token, kind="coo", message_id=message_id)
    wire = await pair.kr.wiretap.wait_count(3)
    assert wire[1].body == wire[2].body == first[0].body
    assert len(pair.cn.clearance.messages) == 1
    # The submission itself repeated by the issuing system is not sent again: counted on
    # the wire, since CN would refuse a second copy anyway. A resend reuses the first
    # message id; a second send of the record would carry a new one.
    await pair.kr.submit([record])
    (later,) = records(1, seed=99)
    await pair.kr.submit([later])
    await pair.cn.clearance.wait_count(2)
    await pair.cn.wiretap.wait_for(lambda ms: number(later) in _numbers_on_wire(ms))
    ids = {
        m.message_id
        for m in pair.cn.wiretap.messages
        if m.type == "coo" and _number_of_envelope(m.body) == number(record)
    }
    assert ids == {message_id}
    assert len(pair.cn.clearance.messages) == 2


def _number_of_envelope(token: bytes) -> str:
    import base64

    part = token.split(b".")[1]
    payload = orjson.loads(base64.urlsafe_b64decode(part + b"=" * (-len(part) % 4)))
    return str(payload["certificate"]["header"]["certificate_number"])


def _numbers_on_wire(messages: list[Any]) -> set[str]:
    return {_number_of_envelope(m.body) for m in messages if m.type == "coo"}


async def test_same_id_with_other_content_is_refused(pair: NodePair) -> None:
    (record,) = records(1, seed=31)
    await pair.kr.submit([record])
    cleared = await pair.cn.clearance.wait_count(1)
    message_id = orjson.loads(cleared[0].body)["message_id"]
    other = CooIssued(
        message_id=message_id,
        sender="KR",
        receiver="CN",
        issued_at=_now().replace(microsecond=0),
        certificate=SampleFactory("KCFTA", seed=77).certificate(),
    )
    await pair.cn.inject(seal(other, pair.kr.key), kind="coo", message_id=message_id)
    dead = await pair.cn.dead[pair.cn.topology.inbound_queue].wait_count(1)
    assert "ID_CONFLICT" in str(dead[0].headers["x-eodes-reason"])
    assert len(pair.cn.clearance.messages) == 1


def _sent_token(side: Side, cert: str) -> bytes:
    path = side.config.store.url[len("sqlite:///") :]
    with sqlite3.connect(path) as db:
        row = db.execute(
            "select token from outbound_messages where certificate_number = ? and kind = 'coo'",
            (cert,),
        ).fetchone()
    return unpacked(row[0])  # as the node keeps it: compressed


async def test_feedback_for_an_unknown_certificate_is_refused(pair: NodePair) -> None:
    (record,) = records(1, seed=41)
    await pair.cn.submit_feedback(feedback(record))
    dead = await pair.cn.dead[pair.cn.topology.outbound_feedback].wait_count(1)
    assert "no certificate" in str(dead[0].headers["x-eodes-reason"])


async def test_partner_down_then_back_delivers_after_recovery(tmp_path: Path) -> None:
    """The partner's broker out of KR's reach: each publish fails, the outbox keeps it,
    and the relay sends it once the link is back, once."""
    import asyncio
    import time

    from structlog.testing import capture_logs

    from eodes_node.ports import PARTNER
    from eodes_node.testing.proxy import TcpProxy

    # No resend within the test: the relay is the only way left for a deferred envelope.
    retry = RetrySection(first_after_s=600, multiplier=1.0, max_interval_s=600, max_attempts=8)
    async with TcpProxy(5672) as proxy, NodePair(tmp_path, retry=retry) as pair:
        broker = pair.kr.config.broker
        through = broker.model_copy(update={"partner_url": proxy.route(broker.partner_url)})
        pair.kr.config = pair.kr.config.model_copy(update={"broker": through})
        await pair.start()
        await pair.kr.submit(records(1, seed=50))  # KR's partner link is up, via the proxy
        await pair.cn.clearance.wait_count(1)
        assert proxy.cut() >= 1, "KR's partner link did not go through the proxy"
        batch = records(3, seed=51)
        with capture_logs() as logs:
            await pair.kr.submit(batch)

            def deferred() -> set[str]:
                return {
                    e["message_id"]
                    for e in logs
                    if e["event"] == "publish_deferred" and e["destination"] == PARTNER
                }

            deadline = time.monotonic() + 30
            while len(deferred()) < 3:
                assert time.monotonic() < deadline, f"publishes did not fail: {deferred()}"
                await asyncio.sleep(0.05)
            assert len(pair.cn.wiretap.messages) == 1  # nothing got through meanwhile
            proxy.restore()
            await pair.cn.clearance.wait_count(4)
            await pair.kr.events.wait_for(
                lambda ms: len(pair.kr.events.certificates_with("delivered")) == 4
            )
        assert sum(e["published"] for e in logs if e["event"] == "outbox_relayed") >= 3
        # Quiet for 3 s before counting, so that a copy sent late is counted too.
        still, last, deadline = time.monotonic(), -1, time.monotonic() + 60
        while time.monotonic() - still < 3:
            now = len(pair.cn.wiretap.messages) + len(pair.cn.clearance.messages)
            still, last = (still, last) if now == last else (time.monotonic(), now)
            assert time.monotonic() < deadline, "still moving"
            await asyncio.sleep(0.1)
        # Sent once each (the wiretap sees what was sent, not what CN accepted), cleared once.
        sent = [m.message_id for m in pair.cn.wiretap.messages]
        assert len(sent) == len(set(sent)) == 4
        assert deferred() <= set(sent)
        cleared = {orjson.loads(m.body)["message_id"] for m in pair.cn.clearance.messages}
        assert len(pair.cn.clearance.messages) == len(cleared) == 4


async def test_retry_budget_exhausted_then_late_receipt(tmp_path: Path) -> None:
    retry = RetrySection(first_after_s=0.3, multiplier=1.0, max_interval_s=0.3, max_attempts=3)
    async with NodePair(tmp_path, retry=retry) as pair:
        await pair.start()
        await pair.cn.stop()
        (record,) = records(1, seed=61)
        await pair.kr.submit([record])
        await pair.kr.events.wait_for(lambda ms: any(m.type == "event.failed" for m in ms))
        (item,) = pair.kr.events.event_items("failed")
        assert item["certificate_number"] == number(record)
        assert item["code"] == "RETRIES_EXHAUSTED"
        assert await state(pair.kr, number(record)) == {"exporter": "failed"}
        # The partner comes back, finds the copies queued, answers: late receipt wins.
        await pair.cn.start()
        await pair.kr.events.wait_for(lambda ms: any(m.type == "event.delivered" for m in ms))
        assert await state(pair.kr, number(record)) == {"exporter": "delivered"}
        assert len(pair.cn.clearance.messages) == 1
