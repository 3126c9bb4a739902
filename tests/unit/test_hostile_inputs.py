"""Hostile and odd inputs end as clean refusals, never as an internal error.

At a local door a bad record is dead-lettered with its reason and a ``record_rejected``
event; at the partner door a bad message gets a signed rejection with a protocol code.
Each test here replays an input that once escaped as an unexpected exception or was
wrongly accepted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from eodes_node.cli import main
from eodes_node.config import load_config
from eodes_node.core.canonical import canonical_json
from eodes_node.core.decide import CertFacts, OutboundFacts
from eodes_node.core.envelope import open_envelope, seal
from eodes_node.core.jws import KeySet, PrivateKey, sign_compact
from eodes_node.core.messages import (
    CooIssued,
    Kind,
    Receipt,
    ReceiptEntry,
    ReceiptStatus,
    new_message_id,
)
from eodes_node.core.models import Certificate
from eodes_node.core.plan import feedback as feedback_plan
from eodes_node.core.plan import inbound as inbound_plan
from eodes_node.core.plan import records as records_plan
from eodes_node.core.plan.common import (
    DeadLetter,
    EnvelopeLimits,
    Identity,
    Notice,
    Plan,
    RetryPolicy,
)
from eodes_node.core.plan.receipts import settle
from eodes_node.core.records import as_json_dict, compose, parse_certificate
from eodes_node.core.state import Role, State
from eodes_node.core.work import Delivery, Facts
from eodes_node.errors import (
    ConfigError,
    InvalidMessage,
    InvalidRecord,
    Problem,
    RejectionCode,
)
from eodes_node.samples import SampleFactory
from eodes_node.testing.fakes import PartnerPublish
from eodes_node.testing.services import START, ServicePair
from fuzz.targets import TARGETS

NOW = START
KR, CN = PrivateKey.generate(), PrivateKey.generate()


def keys_of(key: PrivateKey, owner: str) -> KeySet:
    return KeySet({key.kid: key.public}, owner)


def sample(agreement: str = "KCFTA", **kw: Any) -> Certificate:
    return SampleFactory(agreement, seed=5, issue_date=NOW.date(), **kw).certificate()


def record(agreement: str = "KCFTA", **kw: Any) -> dict[str, Any]:
    return as_json_dict(sample(agreement, **kw))


def delivery(body: bytes, kind: str = "coo") -> Delivery:
    return Delivery(body, None, kind, {}, False)


def nested(depth: int, leaf: str = "null") -> bytes:
    """A JSON value ``depth`` arrays deep: the shape orjson and pydantic stop at."""
    return b"[" * depth + leaf.encode() + b"]" * depth


def refused_records(
    body: bytes, kind: str = "coo", own: str = "KR", partner: str = "CN"
) -> list[Problem]:
    """The problems a records-door batch of one is refused with (prepare, then plan)."""
    identity = Identity(own, partner, KR, keys_of(CN, partner))
    prepared = records_plan.prepare([delivery(body, kind)], identity, NOW, 512 * 1024)
    plan = records_plan.plan(prepared, Facts(), identity, NOW, RetryPolicy())
    assert plan.outbound == [], "a refused record is never sent"
    return rejected_problems(plan)


def refused_feedback(body: bytes) -> list[Problem]:
    prepared = feedback_plan.prepare([delivery(body, "feedback")], 512 * 1024)
    identity = Identity("CN", "KR", CN, keys_of(KR, "KR"))
    plan = feedback_plan.plan(prepared, Facts(), identity, NOW, RetryPolicy())
    assert plan.outbound == [], "refused feedback is never sent"
    return rejected_problems(plan)


def rejected_problems(plan: Plan) -> list[Problem]:
    """The problems of the one ``record_rejected`` event a plan publishes; the record
    itself goes to the door's dead letters."""
    assert [type(e) for e in plan.effects] == [DeadLetter, Notice]
    (event,) = [e for e in plan.effects if isinstance(e, Notice)]
    assert event.event == "record_rejected"
    return [Problem(p["path"], p["rule"], p["message"]) for p in event.items[0]["problems"]]


def partner_refusal(token: bytes, keys: KeySet, receiver: str = "CN") -> InvalidMessage:
    with pytest.raises(InvalidMessage) as caught:
        open_envelope(token, keys, receiver=receiver, now=NOW)
    return caught.value


# --- 13. a receipt does not re-settle a settled message the other way ----------------


def _receipt(message_id: str, status: ReceiptStatus) -> Receipt:
    rejected = status is ReceiptStatus.REJECTED
    entry = ReceiptEntry(
        message_id=message_id,
        kind=Kind.COO,
        digest="A" * 43,
        status=status,
        code=RejectionCode.RULE_VIOLATION if rejected else None,
        text="refused" if rejected else "",
    )
    return Receipt(
        message_id=new_message_id(), sender="CN", receiver="KR", issued_at=NOW, entries=(entry,)
    )


def _settle(status: str, cert_state: State, answer: ReceiptStatus) -> tuple[Plan, str]:
    mid, number = new_message_id(), "KR2026KCFTA0000009"
    sent = {mid: OutboundFacts(mid, Kind.COO, number, status)}
    certs = {(Role.EXPORTER.value, number): CertFacts(number, Role.EXPORTER, cert_state, mid)}
    plan = Plan()
    settle(plan, _receipt(mid, answer), sent, certs, "CN")
    return plan, sent[mid].status


async def test_a_rejection_for_a_delivered_message_changes_nothing() -> None:
    pair = ServicePair()
    first = record()
    await pair.kr.submit([first])
    (envelope,) = pair.kr.transport.partner
    await pair.exchange()
    number = first["header"]["certificate_number"]
    assert pair.kr.store.certificate_state("exporter", number) == "delivered"
    contrary = _receipt(envelope.message_id, ReceiptStatus.REJECTED)
    await pair.kr.receive(
        [PartnerPublish(seal(contrary, pair.cn.key), contrary.message_id, "receipt")]
    )
    assert pair.kr.store.certificate_state("exporter", number) == "delivered"
    row = pair.kr.store.outbound_row(envelope.message_id)
    assert row is not None
    assert row.status == "delivered"
    assert pair.kr.events("rejected") == []


@pytest.mark.parametrize(
    ("status", "cert_state", "answer"),
    [
        ("delivered", State.DELIVERED, ReceiptStatus.REJECTED),
        ("rejected", State.REJECTED, ReceiptStatus.ACCEPTED),
    ],
)
def test_a_contradicting_receipt_entry_is_noted_not_applied(
    status: str, cert_state: State, answer: ReceiptStatus
) -> None:
    plan, after = _settle(status, cert_state, answer)
    assert after == status
    assert (plan.outbound_updates, plan.transitions, plan.effects) == ([], [], [])
    (note,) = plan.notes
    assert (note.level, note.event) == ("warning", "receipt_contradicts")
    assert note.message_id is not None
    assert note.certificate_number == "KR2026KCFTA0000009"
    assert note.fields["settled"] == status


@pytest.mark.parametrize(
    ("answer", "settled", "after"),
    [
        (ReceiptStatus.ACCEPTED, "delivered", State.DELIVERED),
        (ReceiptStatus.REJECTED, "rejected", State.REJECTED),
    ],
)
def test_a_late_receipt_still_settles_a_failed_message(
    answer: ReceiptStatus, settled: str, after: State
) -> None:
    plan, status = _settle("failed", State.FAILED, answer)
    assert status == settled
    assert [u.status for u in plan.outbound_updates] == [settled]
    assert [t.after for t in plan.transitions] == [after]


def test_a_repeated_identical_entry_is_a_no_op() -> None:
    plan, status = _settle("delivered", State.DELIVERED, ReceiptStatus.ACCEPTED)
    assert status == "delivered"
    assert (plan.outbound_updates, plan.transitions, plan.effects, plan.notes) == ([], [], [], [])


# --- 14. dates at the end of the calendar ---------------------------------------------


def _end_of_calendar() -> dict[str, Any]:
    doc = record()
    doc["header"]["issue_date"] = "9999-12-30"
    doc["header"]["valid_until"] = "9999-12-31"
    doc["certification"]["date"] = "9999-12-30"
    return doc


def test_a_certificate_at_the_end_of_the_calendar_is_a_date_range_problem() -> None:
    with pytest.raises(InvalidRecord) as caught:
        parse_certificate(orjson.dumps(_end_of_calendar()))
    (problem,) = [p for p in caught.value.problems if p.rule == "date_out_of_range"]
    assert problem.path == "header.issue_date"
    assert "9999-12-30" in problem.message


def test_the_records_door_refuses_it() -> None:
    rules = {p.rule for p in refused_records(orjson.dumps(_end_of_calendar()))}
    assert "date_out_of_range" in rules


def test_the_partner_door_refuses_it() -> None:
    doc = {
        "kind": "coo",
        "message_id": new_message_id(),
        "sender": "KR",
        "receiver": "CN",
        "issued_at": "2026-03-02T09:00:00Z",
        "certificate": _end_of_calendar(),
    }
    refusal = partner_refusal(
        sign_compact(canonical_json(doc), Kind.COO.typ, KR), keys_of(KR, "KR")
    )
    assert refusal.code is RejectionCode.RULE_VIOLATION
    assert "date_out_of_range" in refusal.reason


def test_validate_reports_it_without_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "late.json"
    path.write_bytes(orjson.dumps(_end_of_calendar()))
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "header.issue_date" in result.output
    assert "[date_out_of_range]" in result.output


# --- 15. a validly signed payload nested too deep -------------------------------------


def heap_breaker() -> bytes:
    """A fuzz finding: orjson 3.13 corrupts the heap encoding this (28 arrays 236 deep
    after a 100-byte string), below its own depth limit of 254. It must be refused
    before the encoder ever sees it."""
    chain = nested(233)
    return b'{"a":"' + b"x" * 100 + b'","items":[[[' + b",".join([chain] * 28) + b"]]]}"


@pytest.mark.parametrize("depth", [64, 200, 255, 600, 1024])
def test_a_signed_payload_nested_too_deep_is_schema_invalid(depth: int) -> None:
    payload = b'{"certificate":' + nested(depth) + b',"kind":"coo"}'
    refusal = partner_refusal(sign_compact(payload, Kind.COO.typ, KR), keys_of(KR, "KR"))
    assert refusal.code is RejectionCode.SCHEMA_INVALID
    assert "nested more than 64 levels of objects and arrays" in refusal.reason


def test_a_payload_at_the_depth_limit_meets_the_schema_instead() -> None:
    payload = b'{"certificate":' + nested(63) + b',"kind":"coo"}'
    refusal = partner_refusal(sign_compact(payload, Kind.COO.typ, KR), keys_of(KR, "KR"))
    assert refusal.code is RejectionCode.SCHEMA_INVALID
    assert "nested" not in refusal.reason


def test_the_payload_that_broke_the_encoder_is_refused_before_it() -> None:
    refusal = partner_refusal(sign_compact(heap_breaker(), Kind.COO.typ, KR), keys_of(KR, "KR"))
    assert refusal.code is RejectionCode.SCHEMA_INVALID
    assert "nested more than 64 levels" in refusal.reason


def test_the_inbound_planner_answers_a_deep_payload_with_a_rejection() -> None:
    payload = b'{"certificate":' + nested(300) + b',"kind":"coo"}'
    token = sign_compact(payload, Kind.COO.typ, KR)
    identity = Identity("CN", "KR", CN, keys_of(KR, "KR"))
    envelope = Delivery(token, new_message_id(), "coo", {}, False)
    opening = inbound_plan.prepare([envelope], identity, NOW, EnvelopeLimits())
    plan = inbound_plan.plan(opening, Facts(), identity, NOW)
    (receipt_row,) = plan.outbound
    assert receipt_row.kind is Kind.RECEIPT
    (refused,) = opening.refused
    assert refused[1].code is RejectionCode.SCHEMA_INVALID


# --- 16. a local record nested too deep ------------------------------------------------


@pytest.mark.parametrize("depth", [64, 230, 255, 300, 1024])
def test_deep_feedback_is_refused_at_the_feedback_door(depth: int) -> None:
    body = b'{"certificate_number":' + nested(depth) + b"}"
    (problem,) = refused_feedback(body)
    assert problem.rule == "too_deep"
    assert "nested too deeply" in problem.message


@pytest.mark.parametrize("depth", [64, 230, 254, 300, 1024])
def test_a_deep_record_is_refused_at_the_records_door(depth: int) -> None:
    body = b'{"header":' + nested(depth) + b"}"
    problems = refused_records(body)
    assert [p.rule for p in problems] == ["too_deep"]
    assert "nested too deeply" in problems[0].message


def test_the_record_that_broke_the_encoder_is_refused_at_both_doors() -> None:
    assert [p.rule for p in refused_feedback(heap_breaker())] == ["too_deep"]
    assert [p.rule for p in refused_records(heap_breaker())] == ["too_deep"]


def test_compose_names_a_record_too_deep_to_sign() -> None:
    body = orjson.loads(nested(254))
    with pytest.raises(InvalidRecord) as caught:
        compose(Kind.COO, body, sender="KR", receiver="CN", issued_at=NOW)
    assert [p.rule for p in caught.value.problems] == ["too_deep"]


def test_validate_names_a_deep_record_too() -> None:
    with pytest.raises(InvalidRecord) as caught:
        parse_certificate(b'{"header":' + nested(300) + b"}")
    assert [p.rule for p in caught.value.problems] == ["too_deep"]


# --- 17. a certificate not meant for this link ----------------------------------------


def test_the_sender_refuses_a_certificate_for_another_importing_country() -> None:
    kcfta_to_cn = orjson.dumps(record("KCFTA"))
    found = {(p.path, p.rule) for p in refused_records(kcfta_to_cn, own="KR", partner="VN")}
    assert ("consignee.country", "wrong_importing_country") in found
    assert ("header.agreement", "agreement_not_for_link") in found


def test_the_sender_refuses_a_certificate_exported_from_elsewhere() -> None:
    from_vn = orjson.dumps(record("KR-VN-FTA", exporter="VN", importer="KR"))
    problems = refused_records(from_vn, own="KR", partner="VN")
    found = {(p.path, p.rule) for p in problems}
    assert ("exporter.country", "wrong_exporting_country") in found
    assert ("consignee.country", "wrong_importing_country") in found
    assert any("exported from KR to VN" in p.message for p in problems)


def test_the_sender_refuses_an_agreement_that_does_not_cover_the_link() -> None:
    rcep = record("RCEP", exporter="KR", importer="CN")
    rcep["header"]["agreement"] = "KSFTA"  # KR and SG only
    found = {(p.path, p.rule) for p in refused_records(orjson.dumps(rcep))}
    assert ("header.agreement", "agreement_not_for_link") in found


def test_the_receiver_refuses_a_certificate_for_another_link() -> None:
    message = CooIssued(
        message_id=new_message_id(),
        sender="KR",
        receiver="VN",
        issued_at=NOW,
        certificate=sample("KCFTA"),
    )
    refusal = partner_refusal(seal(message, KR), keys_of(KR, "KR"), receiver="VN")
    assert refusal.code is RejectionCode.NOT_FOR_THIS_LINK
    assert "consignee" in refusal.reason
    assert "KCFTA" in refusal.reason


def test_a_certificate_for_this_link_still_passes() -> None:
    message = CooIssued(
        message_id=new_message_id(),
        sender="KR",
        receiver="VN",
        issued_at=NOW,
        certificate=sample("KR-VN-FTA", exporter="KR", importer="VN"),
    )
    opened = open_envelope(seal(message, KR), keys_of(KR, "KR"), receiver="VN", now=NOW)
    assert opened.message == message


# --- the fuzz targets themselves ------------------------------------------------------


@pytest.mark.parametrize("name", [n for n in TARGETS if n != "config"])
def test_every_fuzz_seed_is_accepted_or_refused_as_documented(name: str) -> None:
    """The seeds `make fuzz` starts from pass through their target: the harness speaks
    the planners' current language, so a run reports findings, not its own breakage."""
    target = TARGETS[name]
    for seed in target.seeds():
        target.run(seed)


FINDINGS = Path(__file__).resolve().parents[2] / "fuzz" / "findings"


def _findings() -> list[Path]:
    return sorted(FINDINGS.glob("*.bin"))


@pytest.mark.parametrize("finding", _findings(), ids=lambda p: p.stem)
def test_every_saved_fuzz_finding_is_now_refused_cleanly(finding: Path) -> None:
    """Inputs `make fuzz` found escaping as internal errors (OverflowError, TypeError,
    library wording in a refusal): each now passes its target's checks."""
    (name,) = [n for n in TARGETS if finding.stem.startswith(f"{n}-")]
    TARGETS[name].run(finding.read_bytes())


# --- the configuration file: inputs `make fuzz` found escaping as other exceptions ---


@pytest.mark.parametrize(
    "text",
    [
        b"\xff",  # not UTF-8: UnicodeDecodeError
        b'keys = "private_key"',  # a section that is a string: TypeError
        b'store = "sqlite"',  # AttributeError
        b'[keys]\nprivate_key = "a\\u0000b"',  # a NUL in a path: ValueError
        b'[keys]\nprivate_key = "~no-such-user/k.pem"',  # RuntimeError from expanduser
    ],
)
def test_a_hostile_config_file_is_a_config_error(tmp_path: Path, text: bytes) -> None:
    path = tmp_path / "node.toml"
    path.write_bytes(text)
    with pytest.raises(ConfigError):
        load_config(path, environ={})
