"""Retrospective verification: the state rows, the pure decisions, and both local doors
on two services back to back (in-memory store, manual clock)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
import pytest

from eodes_node.core.decide import CertFacts, Local, decide_inbound
from eodes_node.core.decide_local import (
    decide_local_verification_request,
    decide_local_verification_response,
)
from eodes_node.core.envelope import Opened, open_envelope, seal
from eodes_node.core.jws import KeySet, PrivateKey
from eodes_node.core.messages import (
    MessageBase,
    VerificationRequest,
    VerificationRequestBody,
    VerificationResponse,
    VerificationResponseBody,
    VerificationResponseRecord,
    VerificationResult,
    new_message_id,
)
from eodes_node.core.plan.verification import plan_overdue
from eodes_node.core.records import as_json_dict, parse_model
from eodes_node.core.state import (
    TRANSITIONS,
    Event,
    IllegalTransition,
    IllegalVerificationStep,
    Role,
    State,
    VerificationState,
    next_state,
    next_verification_state,
)
from eodes_node.core.verification import VerificationFacts, answered, reply_deadline
from eodes_node.core.work import Delivery, Facts
from eodes_node.errors import InvalidMessage, InvalidRecord, RejectionCode
from eodes_node.samples import SampleFactory
from eodes_node.testing.services import START, ServicePair, ServiceSide

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
KR, CN = PrivateKey.generate(), PrivateKey.generate()
KR_KEYS, CN_KEYS = KeySet({KR.kid: KR.public}, "KR"), KeySet({CN.kid: CN.public}, "CN")
NUMBER = "KR2026KCFTA0000001"
DUE = date(2026, 6, 1)
R1 = "00000000-0000-4000-8000-000000000001"


# -- the tables ------------------------------------------------------------------------


@pytest.mark.parametrize("role", list(Role))
def test_verification_rows_never_change_the_certificates_state(role: Role) -> None:
    steps = {Event.VERIFICATION_REQUESTED, Event.VERIFICATION_ANSWERED, Event.VERIFICATION_OVERDUE}
    for state, moves in TRANSITIONS[role].items():
        for event in steps & set(moves):
            assert moves[event] is state, f"{role}: {state} --{event}--> {moves[event]}"


def test_a_certificate_under_verification_can_still_be_decided_on_and_withdrawn() -> None:
    asked = next_state(Role.IMPORTER, State.AVAILABLE, Event.VERIFICATION_REQUESTED)
    assert next_state(Role.IMPORTER, asked, Event.GRANTED) is State.GRANTED
    assert next_state(Role.IMPORTER, asked, Event.CANCELLED) is State.CANCELLED
    # A withdrawn certificate is not verified any more, but an open request is answered.
    with pytest.raises(IllegalTransition):
        next_state(Role.IMPORTER, State.CANCELLED, Event.VERIFICATION_REQUESTED)
    assert next_state(Role.IMPORTER, State.CANCELLED, Event.VERIFICATION_ANSWERED) is (
        State.CANCELLED
    )
    assert next_state(Role.EXPORTER, State.CANCELLED, Event.VERIFICATION_ANSWERED) is (
        State.CANCELLED
    )
    # The partner never took a rejected certificate: nothing to verify.
    with pytest.raises(IllegalTransition):
        next_state(Role.EXPORTER, State.REJECTED, Event.VERIFICATION_REQUESTED)


def test_a_request_is_answered_once_and_late_is_still_an_answer() -> None:
    pending = next_verification_state(None, Event.VERIFICATION_REQUESTED)
    assert pending is VerificationState.PENDING
    late = next_verification_state(pending, Event.VERIFICATION_OVERDUE)
    assert next_verification_state(late, Event.VERIFICATION_ANSWERED) is (
        VerificationState.ANSWERED
    )
    with pytest.raises(IllegalVerificationStep) as caught:
        next_verification_state(VerificationState.ANSWERED, Event.VERIFICATION_ANSWERED)
    assert str(caught.value) == "verification_answered is not allowed for a request answered"
    with pytest.raises(IllegalVerificationStep, match="a new verification request"):
        next_verification_state(None, Event.VERIFICATION_OVERDUE)


def test_a_reply_is_due_by_the_end_of_its_due_day_utc() -> None:
    assert reply_deadline(date(2026, 6, 1)) == datetime(2026, 6, 2, tzinfo=UTC)


# -- inbound decisions -----------------------------------------------------------------


def _opened(message: MessageBase, key: PrivateKey, keys: KeySet, receiver: str) -> Opened:
    return open_envelope(seal(message, key), keys, receiver=receiver, now=NOW)


def request(reference: str = "VR-1") -> VerificationRequest:
    return VerificationRequest(
        message_id=new_message_id(),
        sender="CN",
        receiver="KR",
        issued_at=NOW,
        request=VerificationRequestBody(
            certificate_number=NUMBER,
            request_reference=reference,
            item_numbers=(1,),
            questions="Please confirm item 1.",
            reply_due=DUE,
        ),
    )


def response(request_id: str, reference: str = "VR-1") -> VerificationResponse:
    return VerificationResponse(
        message_id=new_message_id(),
        sender="KR",
        receiver="CN",
        issued_at=NOW,
        correlation_id=request_id,
        response=VerificationResponseBody(
            certificate_number=NUMBER,
            request_reference=reference,
            result=VerificationResult.CONFIRMED,
            findings="Confirmed at the producer.",
        ),
    )


def asked_facts(
    request_id: str, role: Role, state: VerificationState = VerificationState.PENDING
) -> VerificationFacts:
    return VerificationFacts(request_id, role, NUMBER, "VR-1", DUE, state)


def test_a_request_about_a_certificate_we_sent_goes_to_issuing() -> None:
    asked = request()
    ours = CertFacts(NUMBER, Role.EXPORTER, State.GRANTED, "m0")
    decision = decide_inbound(_opened(asked, CN, CN_KEYS, "KR"), prior=None, certificate=ours)
    assert decision.deliver_to is Local.ISSUING
    (moved,) = decision.transitions
    assert (moved.before, moved.after, moved.event) == (
        State.GRANTED,
        State.GRANTED,
        Event.VERIFICATION_REQUESTED,
    )
    (step,) = decision.verifications
    assert (step.role, step.after, step.request_id) == (
        Role.EXPORTER,
        VerificationState.PENDING,
        asked.message_id,
    )


def test_a_request_about_a_certificate_we_never_sent_is_refused() -> None:
    with pytest.raises(InvalidMessage) as caught:
        decide_inbound(_opened(request(), CN, CN_KEYS, "KR"), prior=None, certificate=None)
    assert caught.value.code is RejectionCode.UNKNOWN_CERTIFICATE


def _answer(
    answer: VerificationResponse, asked: VerificationFacts | None, cert: CertFacts | None
) -> Any:
    return decide_inbound(
        _opened(answer, KR, KR_KEYS, "CN"), prior=None, certificate=cert, verification=asked
    )


def test_a_response_to_our_request_goes_to_clearance_and_answers_it() -> None:
    cert = CertFacts(NUMBER, Role.IMPORTER, State.GRANTED, "m0")
    decision = _answer(response(R1), asked_facts(R1, Role.IMPORTER), cert)
    assert decision.deliver_to is Local.CLEARANCE
    (step,) = decision.verifications
    assert (step.before, step.after, step.result) == (
        VerificationState.PENDING,
        VerificationState.ANSWERED,
        "confirmed",
    )


@pytest.mark.parametrize(
    ("asked", "reference", "code"),
    [
        (None, "VR-1", RejectionCode.UNKNOWN_CERTIFICATE),
        (asked_facts(R1, Role.EXPORTER), "VR-1", RejectionCode.UNKNOWN_CERTIFICATE),
        (asked_facts(R1, Role.IMPORTER), "VR-OTHER", RejectionCode.UNKNOWN_CERTIFICATE),
        (
            asked_facts(R1, Role.IMPORTER, VerificationState.ANSWERED),
            "VR-1",
            RejectionCode.STATE_CONFLICT,
        ),
    ],
    ids=["no-request", "request-we-were-asked", "other-reference", "answered-twice"],
)
def test_a_response_that_answers_no_open_request_of_ours_is_refused(
    asked: VerificationFacts | None, reference: str, code: RejectionCode
) -> None:
    cert = CertFacts(NUMBER, Role.IMPORTER, State.GRANTED, "m0")
    with pytest.raises(InvalidMessage) as caught:
        _answer(response(R1, reference), asked, cert)
    assert caught.value.code is code


# -- local decisions -------------------------------------------------------------------


def _problems(call: Any) -> list[tuple[str, str]]:
    with pytest.raises(InvalidRecord) as caught:
        call()
    return [(p.path, p.rule) for p in caught.value.problems]


def test_a_local_request_needs_a_received_usable_certificate_and_a_future_due_date() -> None:
    body = request().request
    available = CertFacts(NUMBER, Role.IMPORTER, State.AVAILABLE, "m0")
    today = DUE - timedelta(days=1)
    moved, step = decide_local_verification_request(body, available, "q1", today)
    assert (moved.event, step.after) == (Event.VERIFICATION_REQUESTED, VerificationState.PENDING)
    assert _problems(lambda: decide_local_verification_request(body, available, "q1", DUE)) == [
        ("reply_due", "due_date_not_in_future")
    ]
    assert _problems(lambda: decide_local_verification_request(body, None, "q1", today)) == [
        ("certificate_number", "unknown_certificate")
    ]
    cancelled = CertFacts(NUMBER, Role.IMPORTER, State.CANCELLED, "m0")
    assert _problems(lambda: decide_local_verification_request(body, cancelled, "q", today)) == [
        ("certificate_number", "certificate_withdrawn")
    ]


def record(request_id: str, **changes: str) -> VerificationResponseRecord:
    fields = {
        "correlation_id": request_id,
        "certificate_number": NUMBER,
        "request_reference": "VR-1",
        "result": VerificationResult.NOT_CONFIRMED,
        "findings": "The producer kept no records.",
    } | changes
    return VerificationResponseRecord.model_validate(fields)


def test_a_local_response_must_answer_an_open_request_from_the_partner() -> None:
    rid = new_message_id()
    ours = CertFacts(NUMBER, Role.EXPORTER, State.DELIVERED, "m0")
    asked = asked_facts(rid, Role.EXPORTER)
    moved, step = decide_local_verification_response(record(rid), asked, ours, "a1")
    assert (moved.event, step.after, step.result) == (
        Event.VERIFICATION_ANSWERED,
        VerificationState.ANSWERED,
        "not_confirmed",
    )
    assert _problems(lambda: decide_local_verification_response(record(rid), None, ours, "a")) == [
        ("correlation_id", "unknown_request")
    ]
    other = record(rid, certificate_number="KR2026KCFTA0000002", request_reference="X")
    assert _problems(lambda: decide_local_verification_response(other, asked, ours, "a")) == [
        ("certificate_number", "request_mismatch"),
        ("request_reference", "request_mismatch"),
    ]
    done = asked_facts(rid, Role.EXPORTER, VerificationState.ANSWERED)
    assert _problems(lambda: decide_local_verification_response(record(rid), done, ours, "a")) == [
        ("correlation_id", "already_answered")
    ]
    assert _problems(lambda: decide_local_verification_response(record(rid), asked, None, "a")) == [
        ("certificate_number", "unknown_certificate")
    ]
    rejected = CertFacts(NUMBER, Role.EXPORTER, State.REJECTED, "m0")
    assert _problems(
        lambda: decide_local_verification_response(record(rid), asked, rejected, "a")
    ) == [("certificate_number", "state_conflict")]


def test_a_response_record_names_the_request_by_a_message_id() -> None:
    with pytest.raises(ValueError, match="correlation_id"):
        record("VR-1")


def test_items_of_a_request_are_named_once_and_the_problem_names_the_field() -> None:
    message = orjson.loads(request().model_dump_json())
    message["request"]["item_numbers"] = [1, 2, 1, 3, 2]
    with pytest.raises(InvalidRecord) as caught:
        parse_model(VerificationRequest, orjson.dumps(message))
    assert [(p.path, p.rule, p.message) for p in caught.value.problems] == [
        (
            "request.item_numbers",
            "repeated_item",
            "item 1, 2 named more than once; name each item once",
        )
    ]
    schema = VerificationRequestBody.model_json_schema()
    assert schema["properties"]["item_numbers"]["uniqueItems"] is True


# -- the overdue plan ------------------------------------------------------------------


def test_an_overdue_request_moves_once_and_an_answered_one_is_left_alone() -> None:
    late, answered_meanwhile = asked_facts(R1, Role.IMPORTER), asked_facts("r2", Role.IMPORTER)
    cert = CertFacts(NUMBER, Role.IMPORTER, State.GRANTED, "m0")
    facts = Facts(
        certificates={(Role.IMPORTER.value, NUMBER): cert},
        verifications={"r2": answered(answered_meanwhile, "a2", "confirmed").facts()},
    )
    plan = plan_overdue([late, answered_meanwhile], facts)
    (step,) = plan.verifications
    assert (step.request_id, step.after) == (R1, VerificationState.OVERDUE)
    (moved,) = plan.transitions
    assert (moved.event, moved.after) == (Event.VERIFICATION_OVERDUE, State.GRANTED)
    (notice,) = plan.effects
    assert getattr(notice, "event") == "overdue"  # noqa: B009 - a Notice
    assert [i["message_id"] for i in getattr(notice, "items")] == [R1]  # noqa: B009
    assert plan_overdue([answered_meanwhile], facts).effects == []


# -- both doors, two services ----------------------------------------------------------


ISSUED = START.date()


def certificate_record(seed: int) -> dict[str, Any]:
    factory = SampleFactory("KCFTA", seed=seed, issue_date=ISSUED)
    return as_json_dict(factory.certificate())


def ask(number: str, reference: str = "VR-1", due: date | None = None) -> dict[str, Any]:
    return {
        "certificate_number": number,
        "request_reference": reference,
        "item_numbers": [1],
        "questions": "Please confirm that item 1 meets the origin criterion declared.",
        "reply_due": (due or ISSUED + timedelta(days=30)).isoformat(),
    }


async def at_door(side: ServiceSide, door: str, body: Any, kind: str | None) -> None:
    """One delivery at a local door, settled as the consumer would."""
    delivery = Delivery(orjson.dumps(body), None, kind, {}, False)
    handle = side.svc.handle_feedback if door == "feedback" else side.svc.handle_records
    bound = await handle([delivery])
    await side.svc.published([i for i, _ in bound])
    side.settled.extend(p for _, p in bound)
    await side.svc.finish_background(5.0)


def of_kind(side: ServiceSide, queue: str, kind: str) -> list[dict[str, Any]]:
    return [orjson.loads(p.body) for p in side.local(queue) if p.kind == kind]


@pytest.fixture
async def delivered() -> tuple[ServicePair, str]:
    """A certificate KR sent and CN received."""
    pair = ServicePair()
    cert = certificate_record(31)
    await pair.kr.submit([cert])
    await pair.exchange()
    return pair, str(cert["header"]["certificate_number"])


async def test_request_and_answer_travel_through_both_doors(
    delivered: tuple[ServicePair, str],
) -> None:
    pair, number = delivered
    await at_door(pair.cn, "feedback", ask(number), "verification-request")
    await at_door(pair.cn, "feedback", ask(number), "verification-request")  # once only
    await pair.exchange()
    (asked,) = of_kind(pair.kr, pair.kr.topology.issuing, "verification-request")
    assert asked["request"]["request_reference"] == "VR-1"
    answer = {
        "correlation_id": asked["message_id"],
        "certificate_number": number,
        "request_reference": "VR-1",
        "result": "confirmed",
        "findings": "Confirmed by a visit to the producer.",
    }
    await at_door(pair.kr, "records", answer, "verification-response")
    await at_door(pair.kr, "records", answer, "verification-response")  # once only
    await pair.exchange()
    (answered_,) = of_kind(pair.cn, pair.cn.topology.clearance, "verification-response")
    assert answered_["correlation_id"] == asked["message_id"]
    assert answered_["response"]["result"] == "confirmed"
    for side, role in ((pair.cn, "importer"), (pair.kr, "exporter")):
        held, _, response_id = side.store.verifications[asked["message_id"]]
        assert (held.role.value, held.state) == (role, VerificationState.ANSWERED)
        assert response_id == answered_["message_id"]
        (report,) = await side.store.report(number)
        events = [line.event for line in report.history]
        assert events[-2:] == ["verification_requested", "verification_answered"]
    # A different second answer is refused at the door, with its reason.
    await at_door(pair.kr, "records", answer | {"result": "not_confirmed"}, "verification-response")
    (refused,) = pair.kr.events("record_rejected")
    assert refused["kind"] == "verification-response"
    assert refused["problems"][0]["rule"] == "already_answered"
    assert pair.kr.local(pair.kr.topology.dead_letter(pair.kr.topology.outbound_records))
    # Receipts settled every message and the request is answered: nothing is due.
    assert await pair.cn.store.next_due_at() is None


async def test_requests_and_answers_the_node_cannot_take_are_refused_with_reasons(
    delivered: tuple[ServicePair, str],
) -> None:
    pair, number = delivered
    cn, kr = pair.cn, pair.kr
    await at_door(cn, "feedback", ask("CN2026UNKNOWN01"), "verification-request")
    await at_door(cn, "feedback", ask(number, due=ISSUED), "verification-request")
    await at_door(cn, "feedback", {"certificate_number": number}, "verification-request")
    await at_door(cn, "feedback", ask(number), "coo")
    await at_door(cn, "feedback", ask(number, "VR-2"), "verification-request")
    await at_door(cn, "feedback", ask(number, "VR-2") | {"questions": "Other?"}, None)
    rejected = cn.events("record_rejected")
    assert [(e["kind"], e["problems"][0]["rule"]) for e in rejected] == [
        ("verification-request", "unknown_certificate"),
        ("verification-request", "due_date_not_in_future"),
        ("verification-request", "missing"),
        ("coo", "unknown_type"),
        ("feedback", "missing"),  # no type is feedback, as ever: not a decision
    ]
    dead = cn.local(cn.topology.dead_letter(cn.topology.outbound_feedback))
    assert len(dead) == len(rejected)
    await at_door(
        cn, "feedback", ask(number, "VR-2") | {"questions": "Other?"}, "verification-request"
    )
    assert cn.events("record_rejected")[-1]["problems"][0]["rule"] == "reference_in_use"
    stray = {
        "correlation_id": new_message_id(),
        "certificate_number": number,
        "request_reference": "VR-2",
        "result": "confirmed",
        "findings": "Confirmed.",
    }
    await at_door(kr, "records", stray, "verification-response")
    (refused,) = kr.events("record_rejected")
    assert refused["problems"][0]["rule"] == "unknown_request"
    await pair.exchange()
    assert len(of_kind(kr, kr.topology.issuing, "verification-request")) == 1


async def test_an_unanswered_request_is_reported_overdue_once_and_a_late_answer_counts(
    delivered: tuple[ServicePair, str],
) -> None:
    pair, number = delivered
    due = ISSUED + timedelta(days=1)
    await at_door(pair.cn, "feedback", ask(number, due=due), "verification-request")
    await pair.exchange()
    (asked,) = of_kind(pair.kr, pair.kr.topology.issuing, "verification-request")
    deadline = reply_deadline(due).timestamp()
    assert await pair.cn.store.next_due_at() == deadline
    pair.clock.set(reply_deadline(due) - timedelta(seconds=1))
    await pair.cn.svc.resend_due()
    assert pair.cn.events("overdue") == []
    pair.clock.set(reply_deadline(due))
    assert await pair.cn.svc.resend_due() is None
    await pair.cn.svc.resend_due()
    (late,) = pair.cn.events("overdue")
    assert (late["message_id"], late["certificate_number"], late["code"]) == (
        asked["message_id"],
        number,
        "REPLY_OVERDUE",
    )
    (report,) = await pair.cn.store.report(number)
    assert report.history[-1].event == "verification_overdue"
    await pair.exchange()  # a late answer is still delivered and answers the request
    answer = {
        "correlation_id": asked["message_id"],
        "certificate_number": number,
        "request_reference": "VR-1",
        "result": "not_confirmed",
        "findings": "The producer kept no records.",
    }
    await at_door(pair.kr, "records", answer, "verification-response")
    await pair.exchange()
    assert of_kind(pair.cn, pair.cn.topology.clearance, "verification-response")
    held, _, _ = pair.cn.store.verifications[asked["message_id"]]
    assert held.state is VerificationState.ANSWERED


async def test_the_overdue_scan_pages_through_many_late_requests(
    delivered: tuple[ServicePair, str],
) -> None:
    pair, number = delivered
    due = ISSUED + timedelta(days=1)
    for reference in ("VR-1", "VR-2", "VR-3"):
        await at_door(pair.cn, "feedback", ask(number, reference, due), "verification-request")
    await pair.exchange()
    pair.clock.set(reply_deadline(due))
    now = pair.clock.now().timestamp()
    assert await pair.cn.svc.resend_due(limit=2) == now  # more may wait: look again now
    await pair.cn.svc.resend_due(limit=2)
    assert len(pair.cn.events("overdue")) == 3


def test_submit_checks_verification_records_and_sends_requests_to_the_feedback_door() -> None:
    from eodes_node.submitting import CLEARANCE_KINDS, SUBMIT_KINDS, check

    request_kind, response_kind = (
        SUBMIT_KINDS["verification-request"],
        SUBMIT_KINDS["verification-response"],
    )
    assert request_kind in CLEARANCE_KINDS
    assert response_kind not in CLEARANCE_KINDS
    good = orjson.dumps(ask(NUMBER))
    assert check(request_kind, good, max_bytes=65536, now=NOW).problems == []
    bad = orjson.dumps(ask(NUMBER) | {"reply_due": "soon"})
    (problem,) = check(request_kind, bad, max_bytes=65536, now=NOW).problems
    assert problem.path == "reply_due"
    answer = orjson.dumps(record(R1).model_dump(mode="json"))
    assert check(response_kind, answer, max_bytes=65536, now=NOW).problems == []
    (problem,) = check(response_kind, orjson.dumps({}), max_bytes=65536, now=NOW).problems[:1]
    assert problem.rule == "missing"
