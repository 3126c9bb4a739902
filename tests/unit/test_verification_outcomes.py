"""Verification requests and answers whose messages end badly or collide: a partner
request under the id of one of ours, text with control characters, an answer or a request
the partner never took (two services back to back, in-memory store, manual clock)."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Any

import orjson
import pytest

from eodes_node.core.canonical import canonical_json
from eodes_node.core.decide import CertFacts, OutboundFacts, rejection_entry
from eodes_node.core.envelope import seal
from eodes_node.core.jws import KeySet, PrivateKey, digest, sign_compact
from eodes_node.core.messages import (
    Kind,
    Receipt,
    ReceiptEntry,
    ReceiptStatus,
    VerificationRequest,
    VerificationRequestBody,
    issued_now,
    new_message_id,
)
from eodes_node.core.plan.common import Identity, Plan, RetryPolicy
from eodes_node.core.plan.verification import (
    MAX_ANSWERS,
    answer_id,
    answer_key,
    parse_response,
    response_query,
)
from eodes_node.core.records import as_json_dict
from eodes_node.core.state import Role, State, VerificationState
from eodes_node.core.verification import VerificationFacts, reply_deadline
from eodes_node.core.work import Delivery, Facts
from eodes_node.errors import RejectionCode
from eodes_node.samples import SampleFactory
from eodes_node.testing.fakes import PartnerPublish
from eodes_node.testing.services import START, ServicePair, ServiceSide
from tests.unit.test_verification import (
    DUE,
    ISSUED,
    NUMBER,
    R1,
    ask,
    at_door,
    certificate_record,
    of_kind,
)

REQUEST, RESPONSE = Kind.VERIFICATION_REQUEST, Kind.VERIFICATION_RESPONSE


@pytest.fixture
async def delivered() -> tuple[ServicePair, str]:
    """A certificate KR sent and CN received."""
    pair = ServicePair()
    cert = certificate_record(41)
    await pair.kr.submit([cert])
    await pair.exchange()
    return pair, str(cert["header"]["certificate_number"])


def partner_request(
    pair: ServicePair, number: str, *, reference: str = "VR-K1", message_id: str | None = None
) -> PartnerPublish:
    """A verification request KR signs and sends CN."""
    message = VerificationRequest(
        message_id=message_id or new_message_id(),
        sender="KR",
        receiver="CN",
        issued_at=issued_now(pair.clock.now()),
        request=VerificationRequestBody(
            certificate_number=number,
            request_reference=reference,
            item_numbers=(1,),
            questions="Please confirm item 1.",
            reply_due=ISSUED + timedelta(days=30),
        ),
    )
    return PartnerPublish(seal(message, pair.kr.key), message.message_id, REQUEST.value)


def refused_by(side: ServiceSide, sent: PartnerPublish, number: str) -> PartnerPublish:
    """``side``'s receipt rejecting an envelope it was sent."""
    receipt = Receipt(
        message_id=new_message_id(),
        sender=side.own,
        receiver=side.partner,
        issued_at=issued_now(side.clock.now()),
        entries=(
            ReceiptEntry(
                message_id=sent.message_id,
                kind=Kind(sent.kind),
                digest=digest(sent.token),
                status=ReceiptStatus.REJECTED,
                code=RejectionCode.STATE_CONFLICT,
                text="refused",
                certificate_number=number,
            ),
        ),
    )
    return PartnerPublish(seal(receipt, side.key), receipt.message_id, Kind.RECEIPT.value)


async def lose_until_failed(pair: ServicePair, side: ServiceSide) -> set[str]:
    """Every send of ``side`` is lost until its retry budget is spent; the ids lost."""
    lost = set()
    for _ in range(12):
        lost |= {e.message_id for e in side.take_outgoing()}
        pair.clock.advance(5)
        await side.svc.resend_due()
    return lost | {e.message_id for e in side.take_outgoing()}


def answer_of(request: dict[str, Any], number: str, **changes: str) -> dict[str, Any]:
    return {
        "correlation_id": request["message_id"],
        "certificate_number": number,
        "request_reference": request["request"]["request_reference"],
        "result": "confirmed",
        "findings": "Confirmed by a visit to the producer.",
    } | changes


async def asked_of_kr(pair: ServicePair, number: str) -> dict[str, Any]:
    """CN asks about ``number``; the request KR's issuing system got."""
    await at_door(pair.cn, "feedback", ask(number), "verification-request")
    await pair.exchange()
    (asked,) = of_kind(pair.kr, pair.kr.topology.issuing, REQUEST.value)
    return asked


# -- a partner request under the id of one of ours ----------------------------------------


async def test_a_partner_request_under_the_id_of_our_own_request_is_refused_as_id_conflict(
    delivered: tuple[ServicePair, str],
) -> None:
    pair, kr_number = delivered
    theirs = as_json_dict(
        SampleFactory(
            "KCFTA", exporter="CN", importer="KR", seed=42, issue_date=ISSUED
        ).certificate()
    )
    cn_number = str(theirs["header"]["certificate_number"])
    await pair.cn.submit([theirs])
    await pair.exchange()
    ours = (await asked_of_kr(pair, kr_number))["message_id"]
    clash = partner_request(pair, cn_number, message_id=ours)
    fine = partner_request(pair, cn_number, reference="VR-K2")
    await pair.cn.receive([clash, fine])  # the store would refuse the row: no retry loop
    refused = pair.cn.store.inbound_row("KR", ours)
    assert refused is not None
    assert (refused.status, refused.code) == ("rejected", RejectionCode.ID_CONFLICT.value)
    taken = pair.cn.store.inbound_row("KR", fine.message_id)
    assert taken is not None
    assert taken.status == "accepted"
    (handed,) = of_kind(pair.cn, pair.cn.topology.issuing, REQUEST.value)
    assert handed["message_id"] == fine.message_id
    held, _, _ = pair.cn.store.verifications[ours]
    assert (held.role, held.number, held.state) == (
        Role.IMPORTER,
        kr_number,
        VerificationState.PENDING,
    )


async def test_the_memory_store_refuses_a_second_request_under_one_id_as_the_database_does(
    delivered: tuple[ServicePair, str],
) -> None:
    from eodes_node.core.verification import requested
    from eodes_node.core.work import UnitOfWork
    from eodes_node.errors import StoreUnavailable

    pair, number = delivered
    ours = (await asked_of_kr(pair, number))["message_id"]
    body = VerificationRequestBody.model_validate_json(orjson.dumps(ask(number, "VR-9")))
    again = UnitOfWork(verifications=[requested(Role.EXPORTER, ours, body)])
    with pytest.raises(StoreUnavailable, match="request_id"):
        await pair.cn.store.commit(again)


# -- control characters in text ----------------------------------------------------------


async def test_a_local_request_with_a_nul_in_its_reference_is_dead_lettered(
    delivered: tuple[ServicePair, str],
) -> None:
    pair, number = delivered
    await at_door(pair.cn, "feedback", ask(number, "VR\u00001"), "verification-request")
    (refused,) = pair.cn.events("record_rejected")
    assert refused["problems"] == [
        {
            "path": "request_reference",
            "rule": "control_character",
            "message": "'VR\\x001' holds the control character U+0000 at position 3; text "
            "may hold tabs and line breaks, no other control characters",
        }
    ]
    assert pair.cn.local(pair.cn.topology.dead_letter(pair.cn.topology.outbound_feedback))
    assert pair.cn.take_outgoing() == []


async def test_a_partner_request_with_a_nul_in_its_reference_is_schema_invalid(
    delivered: tuple[ServicePair, str],
) -> None:
    pair, number = delivered
    payload = orjson.loads(payload_of(partner_request(pair, number)))
    payload["request"]["request_reference"] = "VR\u00001"
    token = sign_compact(canonical_json(payload), REQUEST.typ, pair.kr.key)
    await pair.cn.receive([PartnerPublish(token, payload["message_id"], REQUEST.value)])
    (receipt,) = pair.cn.take_outgoing()
    (entry,) = orjson.loads(payload_of(receipt))["entries"]
    assert (entry["message_id"], entry["status"], entry["code"]) == (
        payload["message_id"],
        "rejected",
        RejectionCode.SCHEMA_INVALID.value,
    )
    assert "\x00" not in entry["text"]
    assert "control character U+0000" in entry["text"]
    assert pair.cn.local(pair.cn.topology.dead_letter(pair.cn.topology.inbound_queue))


def payload_of(sent: PartnerPublish) -> bytes:
    import base64

    part = sent.token.split(b".")[1]
    return base64.urlsafe_b64decode(part + b"=" * (-len(part) % 4))


@pytest.mark.parametrize("text", ["VR\t1", "line one\r\nline two"])
def test_tabs_and_line_breaks_are_text(text: str) -> None:
    body = VerificationRequestBody.model_validate_json(orjson.dumps(ask("KR2026X0001", text)))
    assert body.request_reference == text


def test_a_rejection_never_carries_a_control_character_to_the_partner() -> None:
    entry = rejection_entry(
        new_message_id(), REQUEST, "A" * 43, RejectionCode.SCHEMA_INVALID, "field a\x00b\x1f\tc"
    )
    assert entry.text == "field a\\x00b\\x1f\tc"


# -- an answer the partner never took ----------------------------------------------------


async def test_an_answer_that_failed_is_sent_again_when_the_record_comes_again(
    delivered: tuple[ServicePair, str],
) -> None:
    pair, number = delivered
    asked = await asked_of_kr(pair, number)
    answer = answer_of(asked, number)
    await at_door(pair.kr, "records", answer, RESPONSE.value)
    (lost,) = await lose_until_failed(pair, pair.kr)
    first = pair.kr.store.outbound_row(lost)
    assert first is not None
    assert first.status == "failed"
    await at_door(pair.kr, "records", answer, RESPONSE.value)
    await pair.exchange()
    (answered,) = of_kind(pair.cn, pair.cn.topology.clearance, RESPONSE.value)
    assert answered["message_id"] != lost
    for side in (pair.kr, pair.cn):
        held, _, response_id = side.store.verifications[asked["message_id"]]
        assert (held.state, response_id) == (VerificationState.ANSWERED, answered["message_id"])


async def test_a_corrected_answer_replaces_one_the_partner_rejected_and_then_it_counts(
    delivered: tuple[ServicePair, str],
) -> None:
    pair, number = delivered
    asked = await asked_of_kr(pair, number)
    await at_door(pair.kr, "records", answer_of(asked, number), RESPONSE.value)
    (lost,) = pair.kr.take_outgoing()
    await pair.kr.receive([refused_by(pair.cn, lost, number)])
    first = pair.kr.store.outbound_row(lost.message_id)
    assert first is not None
    assert first.status == "rejected"
    corrected = answer_of(asked, number, result="not_confirmed", findings="No records kept.")
    await at_door(pair.kr, "records", corrected, RESPONSE.value)
    await pair.exchange()
    (answered,) = of_kind(pair.cn, pair.cn.topology.clearance, RESPONSE.value)
    assert answered["response"]["result"] == "not_confirmed"
    assert pair.kr.events("record_rejected") == []
    # The corrected answer was taken: it is the answer now, and a third is refused.
    await at_door(pair.kr, "records", corrected, RESPONSE.value)
    await at_door(pair.kr, "records", answer_of(asked, number), RESPONSE.value)
    (refused,) = pair.kr.events("record_rejected")
    assert refused["problems"][0]["rule"] == "already_answered"
    assert pair.kr.take_outgoing() == []
    (report,) = await pair.kr.store.report(number)
    events = [line.event for line in report.history]
    assert events.count("verification_answered") == 2


# -- a request the partner never took ----------------------------------------------------


@pytest.mark.parametrize("ending", ["rejected", "failed"])
async def test_a_request_the_partner_never_took_is_closed_without_an_overdue_notice(
    delivered: tuple[ServicePair, str], ending: str
) -> None:
    pair, number = delivered
    due = ISSUED + timedelta(days=1)
    await at_door(pair.cn, "feedback", ask(number, due=due), "verification-request")
    if ending == "rejected":
        (lost,) = pair.cn.take_outgoing()
        await pair.cn.receive([refused_by(pair.kr, lost, number)])
    else:
        await lose_until_failed(pair, pair.cn)
    (request_id,) = list(pair.cn.store.verifications)
    sent = pair.cn.store.outbound_row(request_id)
    assert sent is not None
    assert sent.status == ending
    assert pair.cn.events(ending)
    pair.clock.set(reply_deadline(due))
    await pair.cn.svc.resend_due()
    await pair.cn.svc.resend_due()
    assert pair.cn.events("overdue") == []
    held, _, _ = pair.cn.store.verifications[request_id]
    assert held.state is not VerificationState.PENDING
    assert await pair.cn.store.next_due_at() is None
    (report,) = await pair.cn.store.report(number)
    assert "verification_overdue" not in [line.event for line in report.history]


async def test_a_request_still_being_sent_at_its_due_date_is_overdue(
    delivered: tuple[ServicePair, str],
) -> None:
    pair, number = delivered
    due = ISSUED + timedelta(days=1)
    await at_door(pair.cn, "feedback", ask(number, due=due), "verification-request")
    pair.cn.take_outgoing()  # lost, not yet given up on
    pair.clock.set(reply_deadline(due) - timedelta(seconds=1))
    await pair.cn.svc.resend_due()  # one more send, which is lost as well
    pair.cn.take_outgoing()
    pair.clock.set(reply_deadline(due))
    await pair.cn.svc.resend_due()
    assert [e["code"] for e in pair.cn.events("overdue")] == ["REPLY_OVERDUE"]


# -- submit checks the due date as the node does ------------------------------------------


def test_submit_refuses_a_request_whose_reply_due_date_has_come() -> None:
    from datetime import UTC, datetime

    from eodes_node.submitting import SUBMIT_KINDS, check

    now = datetime(2026, 3, 2, 23, 30, tzinfo=UTC)
    kind = SUBMIT_KINDS["verification-request"]

    def problems(due: date) -> list[tuple[str, str]]:
        raw = orjson.dumps(ask("KR2026KCFTA0000001", due=due))
        return [(p.path, p.rule) for p in check(kind, raw, max_bytes=65536, now=now).problems]

    assert problems(date(2026, 3, 2)) == [("reply_due", "due_date_not_in_future")]
    assert problems(date(2026, 3, 1)) == [("reply_due", "due_date_not_in_future")]
    assert problems(date(2026, 3, 3)) == []


# -- answers, planned against facts --------------------------------------------------------


def _plan_answer(facts: Facts, record: dict[str, Any]) -> Plan:
    from eodes_node.core.plan import records

    me = PrivateKey.generate()
    identity = Identity("KR", "CN", me, KeySet({me.kid: me.public}, "CN"))
    delivery = Delivery(orjson.dumps(record), None, RESPONSE.value, {}, False)
    prepared = records.prepare([delivery], identity, START, 65536)
    return records.plan(prepared, facts, identity, START, RetryPolicy())


def _answered_facts(request_id: str, ended: list[str]) -> Facts:
    """A request from the partner, answered ``len(ended)`` times, each ending so."""
    asked = VerificationFacts(
        request_id, Role.EXPORTER, NUMBER, "VR-1", DUE, VerificationState.ANSWERED
    )
    return Facts(
        certificates={
            (Role.EXPORTER.value, NUMBER): CertFacts(NUMBER, Role.EXPORTER, State.DELIVERED, "m0")
        },
        verifications={request_id: asked},
        local_keys={
            answer_key(request_id, n): (answer_id(request_id, n), "digest")
            for n in range(1, len(ended) + 1)
        },
        outbound={
            answer_id(request_id, n): OutboundFacts(
                answer_id(request_id, n), RESPONSE, NUMBER, status
            )
            for n, status in enumerate(ended, start=1)
        },
    )


def test_each_answer_to_a_request_has_an_id_of_its_own_that_the_store_is_asked_about() -> None:
    ids = {answer_id(R1, n) for n in range(1, MAX_ANSWERS + 1)}
    assert len(ids) == MAX_ANSWERS
    assert all(i == str(uuid.UUID(i)) for i in ids)  # lower-case UUIDs, as every id
    query = response_query(
        [
            parse_response(
                Delivery(orjson.dumps(answer_record()), None, RESPONSE.value, {}, False), 65536
            )
        ]
    )
    assert set(query.outbound_ids) == ids
    assert answer_key(R1, 1) == f"verification-response:{R1}"
    assert answer_key(R1, 1) in query.local_keys


def answer_record(**changes: str) -> dict[str, Any]:
    return {
        "correlation_id": R1,
        "certificate_number": NUMBER,
        "request_reference": "VR-1",
        "result": "confirmed",
        "findings": "Confirmed.",
    } | changes


@pytest.mark.parametrize(
    ("ended", "rule"),
    [
        (["delivered"], "already_answered"),
        (["pending"], "already_answered"),
        (["rejected", "delivered"], "already_answered"),
        (["failed"] * MAX_ANSWERS, "too_many_answers"),
    ],
)
def test_an_answer_is_refused_while_an_earlier_one_stands(ended: list[str], rule: str) -> None:
    plan = _plan_answer(_answered_facts(R1, ended), answer_record())
    assert plan.outbound == []
    (notice,) = [e for e in plan.effects if getattr(e, "event", None) == "record_rejected"]
    assert [p["rule"] for p in getattr(notice, "items")[0]["problems"]] == [rule]  # noqa: B009


def test_the_next_answer_takes_the_place_of_one_the_partner_never_took() -> None:
    plan = _plan_answer(_answered_facts(R1, ["failed", "rejected"]), answer_record())
    (sent,) = plan.outbound
    assert (sent.message_id, sent.local_key) == (answer_id(R1, 3), answer_key(R1, 3))
    (step,) = plan.verifications
    assert (step.before, step.after, step.message_id) == (
        VerificationState.ANSWERED,
        VerificationState.ANSWERED,
        answer_id(R1, 3),
    )
