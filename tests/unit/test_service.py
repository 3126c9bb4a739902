"""The service on in-memory fakes: KR and CN back to back, no broker, no database.

Each test pushes batches through real planners and a real ``NodeService`` and asserts on
what was committed and published. The same flows run over RabbitMQ in tests/e2e.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import orjson
import pytest

from eodes_node.core.envelope import seal
from eodes_node.core.messages import (
    Kind,
    Receipt,
    ReceiptEntry,
    ReceiptStatus,
    new_message_id,
)
from eodes_node.core.records import as_json_dict
from eodes_node.core.work import POSSIBLE_DUPLICATE, Delivery
from eodes_node.errors import RejectionCode, StoreUnavailable
from eodes_node.samples import SampleFactory
from eodes_node.service import NodeService
from eodes_node.testing.fakes import PartnerPublish, RecordingTransport
from eodes_node.testing.services import START, ServicePair, ServiceSide

ISSUED = START.date()


def records(count: int, seed: int = 1) -> list[dict[str, Any]]:
    factory = SampleFactory("KCFTA", seed=seed, issue_date=ISSUED)
    return [as_json_dict(c) for c in factory.certificates(count)]


def number(record: dict[str, Any]) -> str:
    return str(record["header"]["certificate_number"])


def feedback(record: dict[str, Any], *, denied: int | None = None) -> dict[str, Any]:
    items = [
        {"item_number": i["item_number"], "granted": i["item_number"] != denied}
        | ({"reason": "ORIGIN_NOT_MET"} if i["item_number"] == denied else {})
        for i in record["items"]
    ]
    granted = sum(1 for i in items if i["granted"])
    decision = "granted" if granted == len(items) else "denied" if not granted else "partial"
    return {
        "certificate_number": number(record),
        "decision": decision,
        "import_declaration": {"reference": "IMP-1", "date": ISSUED.isoformat()},
        "items": items,
    }


def cancellation(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "certificate_number": number(record),
        "issuing_authority": record["header"]["issuing_authority"],
        "cancelled_on": record["header"]["issue_date"],
        "reason": "exporter withdrew the application",
    }


def state(side: ServiceSide, role: str, cert: str) -> str | None:
    return side.store.certificate_state(role, cert)


def receipts_sent(side: ServiceSide) -> list[Receipt]:
    return [
        Receipt.model_validate_json(_payload(p.token))
        for p in side.transport.partner
        if p.kind == "receipt"
    ]


def _payload(token: bytes) -> bytes:
    import base64

    part = token.split(b".")[1]
    return base64.urlsafe_b64decode(part + b"=" * (-len(part) % 4))


@pytest.fixture
def pair() -> ServicePair:
    return ServicePair()


async def test_a_certificate_travels_is_receipted_and_decided(pair: ServicePair) -> None:
    (record,) = records(1)
    await pair.kr.submit([record])
    assert [p.kind for p in pair.kr.transport.partner] == ["coo"]
    await pair.exchange()
    (cleared,) = pair.cn.local(pair.cn.topology.clearance)
    assert orjson.loads(cleared.body)["certificate"]["header"]["certificate_number"] == number(
        record
    )
    assert cleared.headers["x-eodes-certificate"] == number(record)
    assert state(pair.cn, "importer", number(record)) == "available"
    assert state(pair.kr, "exporter", number(record)) == "delivered"
    assert [e["certificate_number"] for e in pair.kr.events("delivered")] == [number(record)]

    await pair.cn.submit_feedback([feedback(record, denied=1)])
    await pair.exchange()
    assert state(pair.cn, "importer", number(record)) in {"denied", "partial"}
    assert state(pair.kr, "exporter", number(record)) == state(pair.cn, "importer", number(record))
    (decision,) = pair.kr.local(pair.kr.topology.issuing)
    assert decision.kind == "feedback"
    assert await pair.kr.store.verify_audit_chain() > 0
    assert await pair.cn.store.verify_audit_chain() > 0


async def test_copies_inside_one_batch_get_one_entry_and_one_hand_off(pair: ServicePair) -> None:
    (record,) = records(1)
    await pair.kr.submit([record])
    (envelope,) = pair.kr.take_outgoing()
    await pair.cn.receive([envelope, envelope, envelope])
    assert len(pair.cn.local(pair.cn.topology.clearance)) == 1
    (receipt,) = receipts_sent(pair.cn)
    assert [e.message_id for e in receipt.entries] == [envelope.message_id]


async def test_a_duplicate_in_a_later_batch_gets_the_same_receipt_bytes(
    pair: ServicePair,
) -> None:
    (record,) = records(1)
    await pair.kr.submit([record])
    (envelope,) = pair.kr.take_outgoing()
    await pair.cn.receive([envelope])
    first = pair.cn.take_outgoing()
    await pair.cn.receive([envelope])
    again = pair.cn.take_outgoing()
    assert [p.token for p in again] == [p.token for p in first]
    assert len(pair.cn.local(pair.cn.topology.clearance)) == 1


async def test_a_redelivered_duplicate_reissues_its_unpublished_hand_off(
    pair: ServicePair,
) -> None:
    (record,) = records(1)
    await pair.kr.submit([record])
    (envelope,) = pair.kr.take_outgoing()
    # The batch commits, then the node dies before its broker transaction: the hand-off
    # stays unpublished in the outbox and the delivery comes back.
    bound = await pair.cn.svc.handle_inbound(
        [_delivery(envelope)],
    )
    (first,) = [p for _, p in bound if p.destination == pair.cn.topology.clearance]
    assert POSSIBLE_DUPLICATE not in first.headers
    reissued = await pair.cn.svc.handle_inbound([_delivery(envelope, redelivered=True)])
    (again,) = [p for _, p in reissued if p.destination == pair.cn.topology.clearance]
    # The same message, flagged: the clearance system may already hold the first copy.
    assert (again.message_id, again.body) == (first.message_id, first.body)
    assert again.headers == {**first.headers, POSSIBLE_DUPLICATE: "true"}
    # Once published with the ack, a later redelivery re-issues nothing.
    await pair.cn.svc.published([i for i, _ in reissued])
    await pair.cn.svc.store.flush_published()
    later = await pair.cn.svc.handle_inbound([_delivery(envelope, redelivered=True)])
    assert later == []


def _delivery(envelope: PartnerPublish, *, redelivered: bool = False) -> Any:
    from eodes_node.core.work import Delivery

    return Delivery(envelope.token, envelope.message_id, envelope.kind, {}, redelivered)


async def test_one_receipt_settles_several_messages(pair: ServicePair) -> None:
    batch = records(3, seed=4)
    await pair.kr.submit(batch)
    await pair.exchange()
    (receipt,) = receipts_sent(pair.cn)
    assert len(receipt.entries) == 3
    assert {e["certificate_number"] for e in pair.kr.events("delivered")} == {
        number(r) for r in batch
    }
    for r in batch:
        assert state(pair.kr, "exporter", number(r)) == "delivered"


async def test_a_late_receipt_after_failure_still_delivers(pair: ServicePair) -> None:
    (record,) = records(1, seed=5)
    await pair.kr.submit([record])
    lost = pair.kr.take_outgoing()
    for _ in range(pair.kr.retry.max_attempts):
        pair.clock.advance(10)
        await pair.kr.svc.resend_due()
    assert state(pair.kr, "exporter", number(record)) == "failed"
    (failed,) = pair.kr.events("failed")
    assert failed["code"] == "RETRIES_EXHAUSTED"
    resent = pair.kr.take_outgoing()
    # Every send counts: the first and the resends, max_attempts in all.
    assert len(lost) + len(resent) == pair.kr.retry.max_attempts
    assert {e.token for e in resent} == {lost[0].token}
    await pair.cn.receive(lost)
    await pair.kr.receive(pair.cn.take_outgoing())
    assert state(pair.kr, "exporter", number(record)) == "delivered"


async def test_resends_follow_the_backoff_and_stop_at_the_receipt(pair: ServicePair) -> None:
    (record,) = records(1, seed=6)
    await pair.kr.submit([record])
    pair.kr.take_outgoing()
    pair.clock.advance(0.5)
    assert await pair.kr.svc.resend_due() is not None
    assert pair.kr.take_outgoing() == []  # not due before first_after_s
    pair.clock.advance(0.6)
    await pair.kr.svc.resend_due()
    (resent,) = pair.kr.take_outgoing()
    await pair.cn.receive([resent])
    await pair.kr.receive(pair.cn.take_outgoing())
    pair.clock.advance(60)
    assert await pair.kr.svc.resend_due() is None
    assert pair.kr.take_outgoing() == []


async def test_a_rejected_receipt_marks_the_certificate_rejected(pair: ServicePair) -> None:
    (record,) = records(1, seed=7)
    await pair.kr.submit([record])
    (envelope,) = pair.kr.take_outgoing()
    receipt = _receipt(pair, envelope, ReceiptStatus.REJECTED, code="RULE_VIOLATION")
    await pair.kr.receive([receipt])
    assert state(pair.kr, "exporter", number(record)) == "rejected"
    (item,) = pair.kr.events("rejected")
    assert item["code"] == "RULE_VIOLATION"


def _receipt(
    pair: ServicePair, envelope: PartnerPublish, status: ReceiptStatus, code: str | None = None
) -> PartnerPublish:
    entry = ReceiptEntry(
        message_id=envelope.message_id,
        kind=Kind(envelope.kind),
        digest="A" * 43,
        status=status,
        code=RejectionCode(code) if code else None,
        text="refused" if code else "",
    )
    receipt = Receipt(
        message_id=new_message_id(),
        sender="CN",
        receiver="KR",
        issued_at=pair.clock.now(),
        entries=(entry,),
    )
    return PartnerPublish(seal(receipt, pair.cn.key), receipt.message_id, "receipt")


async def test_an_envelope_that_fails_verification_is_refused_and_dead_lettered(
    pair: ServicePair,
) -> None:
    (record,) = records(1, seed=8)
    await pair.kr.submit([record])
    (envelope,) = pair.kr.take_outgoing()
    forged = PartnerPublish(envelope.token[:-4] + b"AAAA", envelope.message_id, "coo")
    await pair.cn.receive([forged])
    (dead,) = pair.cn.local(pair.cn.topology.dead_letter(pair.cn.topology.inbound_queue))
    assert dead.headers["x-eodes-reason"].startswith("BAD_SIGNATURE")
    (receipt,) = receipts_sent(pair.cn)
    assert receipt.entries[0].code is not None
    assert receipt.entries[0].code.value == "BAD_SIGNATURE"
    assert pair.cn.local(pair.cn.topology.clearance) == []


async def test_garbage_without_a_message_id_is_dead_lettered_without_an_answer(
    pair: ServicePair,
) -> None:
    await pair.cn.receive([PartnerPublish(b"not a jws", "x", "coo")])
    assert len(pair.cn.local(pair.cn.topology.dead_letter(pair.cn.topology.inbound_queue))) == 1
    assert receipts_sent(pair.cn) == []


async def test_an_id_reused_for_other_content_is_refused(pair: ServicePair) -> None:
    first, second = records(2, seed=9)
    await pair.kr.submit([first])
    (envelope,) = pair.kr.take_outgoing()
    await pair.cn.receive([envelope])
    pair.cn.take_outgoing()
    other = _resealed(pair, second, message_id=envelope.message_id)
    await pair.cn.receive([other])
    (receipt,) = receipts_sent(pair.cn)[1:]
    assert receipt.entries[0].code is not None
    assert receipt.entries[0].code.value == "ID_CONFLICT"


def _resealed(pair: ServicePair, record: dict[str, Any], *, message_id: str) -> PartnerPublish:
    from eodes_node.core.records import compose

    composed = compose(Kind.COO, record, sender="KR", receiver="CN", issued_at=pair.clock.now())
    message = composed.message.model_copy(update={"message_id": message_id})
    return PartnerPublish(seal(message, pair.kr.key), message_id, "coo")


async def test_a_second_copy_of_a_certificate_under_a_new_id_conflicts(
    pair: ServicePair,
) -> None:
    (record,) = records(1, seed=10)
    await pair.kr.submit([record])
    await pair.exchange()
    again = _resealed(pair, record, message_id=new_message_id())
    await pair.cn.receive([again])
    last = receipts_sent(pair.cn)[-1]
    assert last.entries[0].code is not None
    assert last.entries[0].code.value == "STATE_CONFLICT"
    assert len(pair.cn.local(pair.cn.topology.clearance)) == 1


async def test_cancellation_reaches_clearance_and_blocks_feedback(pair: ServicePair) -> None:
    (record,) = records(1, seed=11)
    await pair.kr.submit([record])
    await pair.exchange()
    await pair.kr.submit([cancellation(record)], kind="coo-cancellation")
    await pair.exchange()
    assert [p.kind for p in pair.cn.local(pair.cn.topology.clearance)] == [
        "coo",
        "coo-cancellation",
    ]
    assert state(pair.cn, "importer", number(record)) == "cancelled"
    assert state(pair.kr, "exporter", number(record)) == "cancelled"
    await pair.cn.submit_feedback([feedback(record)])
    (item,) = pair.cn.events("record_rejected")
    assert item["problems"][0]["rule"] == "certificate_withdrawn"
    assert pair.cn.take_outgoing() == []


async def test_replacement_withdraws_the_original_on_both_sides(pair: ServicePair) -> None:
    (original,) = records(1, seed=12)
    await pair.kr.submit([original])
    await pair.exchange()
    (replacement,) = records(1, seed=13)
    replacement["back_reference"] = {
        "kind": "replaces",
        "certificate_number": number(original),
        "issue_date": original["header"]["issue_date"],
        "reason": "consignee address corrected",
    }
    await pair.kr.submit([replacement], kind="coo-replacement")
    await pair.exchange()
    assert state(pair.kr, "exporter", number(original)) == "replaced"
    assert state(pair.cn, "importer", number(original)) == "replaced"
    assert state(pair.cn, "importer", number(replacement)) == "available"


@pytest.mark.parametrize(
    ("body", "kind", "rule"),
    [
        (b"{not json", "coo", "json_invalid"),
        (b"{}", "coo-amendment", "unknown_type"),
        (b"x" * (600 * 1024), "coo", "too_large"),
    ],
)
async def test_a_bad_record_is_dead_lettered_with_its_reason(
    pair: ServicePair, body: bytes, kind: str, rule: str
) -> None:
    await pair.kr.submit([body], kind=kind)
    (item,) = pair.kr.events("record_rejected")
    assert item["problems"][0]["rule"] == rule
    (dead,) = pair.kr.local(pair.kr.topology.dead_letter(pair.kr.topology.outbound_records))
    assert dead.body == body
    assert pair.kr.take_outgoing() == []


async def test_a_record_breaking_a_rule_names_the_field(pair: ServicePair) -> None:
    (record,) = records(1, seed=14)
    record["items"][0]["hs_code"] = "12.34"
    await pair.kr.submit([record])
    (item,) = pair.kr.events("record_rejected")
    assert item["problems"][0]["path"] == "items[0].hs_code"


async def test_a_resubmitted_record_is_ignored_and_a_changed_one_refused(
    pair: ServicePair,
) -> None:
    first, second = records(2, seed=15)
    await pair.kr.submit([first, first])
    assert len(pair.kr.take_outgoing()) == 1
    await pair.kr.submit([first])
    assert pair.kr.take_outgoing() == []
    changed = dict(second, header=dict(second["header"], certificate_number=number(first)))
    await pair.kr.submit([changed])
    assert pair.kr.take_outgoing() == []
    (item,) = pair.kr.events("record_rejected")
    assert item["problems"][0]["rule"] == "number_in_use"


async def test_cancelling_an_unknown_certificate_is_refused(pair: ServicePair) -> None:
    (record,) = records(1, seed=16)
    await pair.kr.submit([cancellation(record)], kind="coo-cancellation")
    (item,) = pair.kr.events("record_rejected")
    assert item["problems"][0]["rule"] == "unknown_certificate"


async def test_feedback_for_an_unknown_certificate_is_refused(pair: ServicePair) -> None:
    (record,) = records(1, seed=17)
    await pair.cn.submit_feedback([feedback(record)])
    (item,) = pair.cn.events("record_rejected")
    assert item["problems"][0]["rule"] == "unknown_certificate"
    await pair.cn.submit_feedback([b"[]"])
    assert len(pair.cn.events("record_rejected")) == 2


async def test_resubmitted_feedback_is_sent_once(pair: ServicePair) -> None:
    (record,) = records(1, seed=18)
    await pair.kr.submit([record])
    await pair.exchange()
    await pair.cn.submit_feedback([feedback(record)])
    await pair.cn.submit_feedback([feedback(record)])
    assert [p.kind for p in pair.cn.take_outgoing()] == ["feedback"]


async def test_feedback_that_correlates_to_another_message_is_refused(
    pair: ServicePair,
) -> None:
    (record,) = records(1, seed=19)
    await pair.kr.submit([record])
    await pair.exchange()
    await pair.cn.submit_feedback([feedback(record)])
    (sent,) = pair.cn.take_outgoing()
    from eodes_node.core.envelope import open_envelope

    opened = open_envelope(
        sent.token, pair.kr.svc.id.partner_keys, receiver="KR", now=pair.clock.now()
    )
    wrong = opened.message.model_copy(
        update={"message_id": new_message_id(), "correlation_id": new_message_id()}
    )
    await pair.kr.receive([PartnerPublish(seal(wrong, pair.cn.key), wrong.message_id, "feedback")])
    last = receipts_sent(pair.kr)[-1]
    assert last.entries[0].code is not None
    assert last.entries[0].code.value == "UNKNOWN_CERTIFICATE"


async def test_verification_request_goes_to_issuing_and_response_to_clearance(
    pair: ServicePair,
) -> None:
    (record,) = records(1, seed=20)
    await pair.kr.submit([record])
    await pair.exchange()
    ask = {
        "certificate_number": number(record),
        "request_reference": "VR-1",
        "questions": "Please confirm the origin of item 1.",
        "reply_due": date(2026, 6, 1).isoformat(),
    }
    bound = await pair.cn.svc.handle_feedback(
        [Delivery(orjson.dumps(ask), None, "verification-request", {}, False)]
    )
    assert bound == []
    await pair.cn.svc.finish_background(5.0)
    await pair.exchange()
    (asked,) = pair.kr.local(pair.kr.topology.issuing)
    assert asked.kind == "verification-request"
    request_id = orjson.loads(asked.body)["message_id"]
    answer = {
        "correlation_id": request_id,
        "certificate_number": number(record),
        "request_reference": "VR-1",
        "result": "confirmed",
        "findings": "Origin confirmed by a visit to the producer.",
    }
    await pair.kr.submit([answer], kind="verification-response")
    await pair.exchange()
    (answered,) = [
        p for p in pair.cn.local(pair.cn.topology.clearance) if p.kind == "verification-response"
    ]
    assert orjson.loads(answered.body)["correlation_id"] == request_id


async def test_a_stale_decision_is_refused_and_decided_again_on_fresh_facts(
    pair: ServicePair,
) -> None:
    (record,) = records(1, seed=21)
    await pair.kr.submit([record])
    (envelope,) = pair.kr.take_outgoing()
    await pair.cn.receive([envelope])
    receipt = pair.cn.take_outgoing()
    # A second writer on the same store (a second instance of the link) moves the
    # certificate after this batch read its facts: the commit must refuse.
    kr = pair.kr.svc
    other = NodeService(
        kr.id,
        pair.kr.store,
        RecordingTransport(),
        pair.clock,
        retry=pair.kr.retry,
        limits=kr.limits,
    )
    real_facts = pair.kr.store.facts
    moved: list[bool] = []

    async def stale_then_moved(query: Any) -> Any:
        facts = await real_facts(query)
        if not moved:
            moved.append(True)
            await other.handle_inbound([_delivery(e) for e in receipt])
        return facts

    pair.kr.store.facts = stale_then_moved  # type: ignore[method-assign]
    # The commit refuses the stale decision; the batch is decided again on fresh facts.
    await kr.handle_inbound([_delivery(_receipt(pair, envelope, ReceiptStatus.ACCEPTED))])
    assert moved
    assert state(pair.kr, "exporter", number(record)) == "delivered"
    [report] = await pair.kr.store.report(number(record))
    assert [line.event for line in report.history].count("receipt_accepted") == 1


async def test_a_store_outage_fails_the_batch_and_a_retry_succeeds(pair: ServicePair) -> None:
    (record,) = records(1, seed=22)
    pair.kr.store.fail_next_commits(1)
    with pytest.raises(StoreUnavailable):
        await pair.kr.submit([record])
    assert pair.kr.take_outgoing() == []
    assert pair.kr.events("record_rejected") == []
    await pair.kr.submit([record])
    assert len(pair.kr.take_outgoing()) == 1


async def test_a_failed_partner_publish_stays_in_the_outbox_until_relayed(
    pair: ServicePair,
) -> None:
    (record,) = records(1, seed=23)
    pair.kr.transport.fail_partner(1)
    await pair.kr.submit([record])
    assert pair.kr.take_outgoing() == []
    assert await pair.kr.svc.relay_outbox() == 0
    assert [p.kind for p in pair.kr.take_outgoing()] == ["coo"]
    assert await pair.kr.svc.relay_outbox() == 0
    assert pair.kr.take_outgoing() == []


async def test_a_resend_after_a_settle_that_died_reissues_the_hand_off(
    pair: ServicePair,
) -> None:
    """Found by make soak: the broker was killed during CN's settle transaction; the
    original delivery never came back and the hand-off was lost with the broker, then
    KR's resend (not a redelivery) arrived as a duplicate."""
    (record,) = records(1, seed=30)
    await pair.kr.submit([record])
    (envelope,) = pair.kr.take_outgoing()
    bound = await pair.cn.svc.handle_inbound([_delivery(envelope)])
    handoffs = [p for _, p in bound if p.destination == pair.cn.topology.clearance]
    assert len(handoffs) == 1
    pair.cn.svc.unsettled([p for _, p in bound])  # the settle's outcome is unknown
    again = await pair.cn.svc.handle_inbound([_delivery(envelope)])
    assert [p.message_id for _, p in again if p.destination == pair.cn.topology.clearance] == [
        envelope.message_id
    ]


async def test_a_resend_after_a_settled_delivery_reissues_nothing(pair: ServicePair) -> None:
    (record,) = records(1, seed=31)
    await pair.kr.submit([record])
    (envelope,) = pair.kr.take_outgoing()
    await pair.cn.receive([envelope])
    again = await pair.cn.svc.handle_inbound([_delivery(envelope)])
    assert [p for _, p in again if p.destination == pair.cn.topology.clearance] == []
    assert len(pair.cn.local(pair.cn.topology.clearance)) == 1
