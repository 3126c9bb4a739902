"""What docs/protocol.md answers for partners, pinned: the typ and alg a receiver takes,
the issued_at forms, null versus absent members, the AMQP properties it reads, the
resend schedule, and feedback that does not list every item.

The envelopes are built from the published test vectors (docs/vectors), so each case
changes one thing of a message the node is known to accept.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from nacl.signing import SigningKey

from eodes_node import vectors
from eodes_node.config import RetrySection
from eodes_node.core.canonical import canonical_json
from eodes_node.core.decide import CertFacts
from eodes_node.core.envelope import Opened, open_envelope
from eodes_node.core.jws import KeySet, b64url, digest, sign_compact
from eodes_node.core.messages import Kind, Receipt, ReceiptStatus
from eodes_node.core.plan import EnvelopeLimits, Identity, RetryPolicy, ToPartner
from eodes_node.core.plan import feedback as feedback_plan
from eodes_node.core.plan import inbound as inbound_plan
from eodes_node.core.plan import records as records_plan
from eodes_node.core.records import compose
from eodes_node.core.state import Role, State
from eodes_node.core.work import Delivery, Facts
from eodes_node.errors import ConfigError, PeerError, RejectionCode
from eodes_node.testing.services import START, ServicePair

VECTORS = Path(__file__).resolve().parents[2] / "docs" / "vectors"
NOW = vectors.RECEIVED_AT
KR_KEY = vectors.kr_key()
KR_PINNED = vectors.pinned(KR_KEY, "KR")


def committed(name: str) -> bytes:
    return (VECTORS / name).read_bytes()


def coo_payload() -> dict[str, Any]:
    value = orjson.loads(committed(vectors.COO_PAYLOAD_FILE))
    assert isinstance(value, dict)
    return value


def record() -> dict[str, Any]:
    return vectors.read_record(VECTORS / vectors.RECORD_FILE)


def signed(payload: dict[str, Any], typ: str = Kind.COO.typ) -> bytes:
    return sign_compact(canonical_json(payload), typ, KR_KEY)


def open_at_cn(token: bytes) -> Opened:
    return open_envelope(token, KR_PINNED, receiver="CN", now=NOW)


def refused(token: bytes) -> PeerError:
    with pytest.raises(PeerError) as caught:
        open_at_cn(token)
    return caught.value


# --- typ ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "typ",
    [
        "eodes-coo-amendment+jws",  # no such kind
        "JWT",
        "application/eodes-coo+jws",  # RFC 7515's long form is not taken
        "EODES-COO+JWS",  # compared exactly, case included
        "",
    ],
)
def test_an_unknown_typ_is_a_type_mismatch(typ: str) -> None:
    error = refused(signed(coo_payload(), typ))
    assert error.code is RejectionCode.TYPE_MISMATCH
    assert "is not expected here" in error.reason


# --- alg ----------------------------------------------------------------------------


def hand_made(alg: str, payload: bytes, typ: str = Kind.COO.typ) -> bytes:
    """A compact JWS built with a bare Ed25519 library: what a partner whose JOSE library
    predates RFC 9864 can do instead."""
    header = b64url(orjson.dumps({"alg": alg, "kid": KR_KEY.kid, "typ": typ}))
    signing_input = header + b"." + b64url(payload)
    signature = SigningKey(vectors.KR_SECRET).sign(signing_input).signature
    return signing_input + b"." + b64url(signature)


def test_the_node_emits_the_fully_specified_ed25519() -> None:
    header = committed(vectors.COO_ENVELOPE_FILE).split(b".")[0]
    assert header == b64url(
        b'{"alg":"Ed25519","kid":"%s","typ":"eodes-coo+jws"}' % KR_KEY.kid.encode()
    )


def test_eddsa_in_the_header_is_refused_even_with_a_valid_signature() -> None:
    payload = canonical_json(coo_payload())
    error = refused(hand_made("EdDSA", payload))
    assert error.code is RejectionCode.ALGORITHM_NOT_ALLOWED
    assert "'EdDSA' is not accepted" in error.reason


def test_the_same_ed25519_signature_under_alg_ed25519_is_accepted() -> None:
    payload = canonical_json(coo_payload())
    opened = open_at_cn(hand_made("Ed25519", payload))
    assert opened.message.message_id == vectors.COO_MESSAGE_ID


def test_a_header_in_another_member_order_and_spacing_is_accepted() -> None:
    header = b64url(
        b'{ "typ": "eodes-coo+jws", "kid": "%s", "alg": "Ed25519" }' % KR_KEY.kid.encode()
    )
    signing_input = header + b"." + b64url(canonical_json(coo_payload()))
    token = signing_input + b"." + b64url(KR_KEY.sign(signing_input))
    assert open_at_cn(token).message.message_id == vectors.COO_MESSAGE_ID


@pytest.mark.parametrize(("alg", "words"), [("EdDSA", "got 'EdDSA'"), (None, "got None")])
def test_a_pinned_key_labelled_eddsa_or_unlabelled_is_refused(alg: str | None, words: str) -> None:
    (jwk,) = KR_PINNED.to_jwks()["keys"]
    jwk = {k: v for k, v in jwk.items() if k != "alg"} | ({"alg": alg} if alg else {})
    with pytest.raises(ConfigError, match=words):
        KeySet.from_jwks(orjson.dumps({"keys": [jwk]}), owner="KR")


# --- issued_at ----------------------------------------------------------------------


def with_issued_at(value: str) -> bytes:
    return signed(coo_payload() | {"issued_at": value})


@pytest.mark.parametrize(
    ("value", "instant"),
    [
        ("2026-03-02T09:30:00Z", vectors.ISSUED_AT),
        ("2026-03-02T09:30:00+00:00", vectors.ISSUED_AT),
        ("2026-03-02T09:30:00.5Z", vectors.ISSUED_AT + timedelta(milliseconds=500)),
        ("2026-03-02T09:30:00.123456Z", vectors.ISSUED_AT + timedelta(microseconds=123456)),
        ("2026-03-02T09:30:00.1234567Z", vectors.ISSUED_AT + timedelta(microseconds=123456)),
        ("2026-03-02T18:30:00+09:00", vectors.ISSUED_AT),
        ("2026-03-02T04:30:00-05:00", vectors.ISSUED_AT),
    ],
)
def test_issued_at_with_any_offset_and_fraction_is_accepted(value: str, instant: datetime) -> None:
    opened = open_at_cn(with_issued_at(value))
    assert opened.message.issued_at == instant
    # The payload handed on is the one signed: the receiver does not rewrite the time.
    assert f'"issued_at":"{value}"'.encode() in opened.payload


@pytest.mark.parametrize("value", ["2026-03-02T09:30:00", "2026-03-02", "yesterday"])
def test_issued_at_without_an_offset_or_a_time_is_schema_invalid(value: str) -> None:
    error = refused(with_issued_at(value))
    assert error.code is RejectionCode.SCHEMA_INVALID
    assert "issued_at" in error.reason


def test_the_skew_window_compares_instants_whatever_the_offset() -> None:
    # NOW is 09:30:01Z: 18:34+09:00 is under 5 minutes ahead, 18:40+09:00 is not.
    assert open_at_cn(with_issued_at("2026-03-02T18:34:00+09:00"))
    assert refused(with_issued_at("2026-03-02T18:40:00+09:00")).code is RejectionCode.CLOCK_SKEW


def test_the_node_writes_issued_at_in_whole_seconds_with_z() -> None:
    identity = Identity("KR", "CN", KR_KEY, vectors.pinned(vectors.cn_key(), "CN"))
    now = datetime(2026, 3, 2, 9, 30, 0, 987654, tzinfo=UTC)
    delivery = Delivery(orjson.dumps(record()), None, "coo", {}, False)
    (ready,) = records_plan.prepare([delivery], identity, now, 512 * 1024).ready
    assert orjson.loads(ready.payload)["issued_at"] == "2026-03-02T09:30:00Z"
    receipt = committed(vectors.RECEIPT_PAYLOAD_FILE)
    assert b'"issued_at":"2026-03-02T09:30:01Z"' in receipt


# --- null versus absent -------------------------------------------------------------


def with_exporter(**members: Any) -> dict[str, Any]:
    payload = coo_payload()
    exporter = {k: v for k, v in payload["certificate"]["exporter"].items() if k != "tax_id"}
    payload["certificate"]["exporter"] = exporter | members
    return payload


def test_null_and_absent_are_the_same_for_a_member_without_a_default() -> None:
    absent = open_at_cn(signed(with_exporter()))
    null = open_at_cn(signed(with_exporter(tax_id=None)))
    assert absent.message.certificate.exporter.tax_id is None  # type: ignore[attr-defined]
    assert null.message.certificate.exporter.tax_id is None  # type: ignore[attr-defined]
    # The receiver hands on the signed bytes: the null stays for the clearance system.
    assert b'"tax_id":null' in null.payload
    assert b'"tax_id"' not in absent.payload.split(b'"exporter"')[1].split(b"}")[0]


@pytest.mark.parametrize(
    ("where", "member"),
    [
        (("certificate", "header"), "issued_retroactively"),
        (("certificate", "transport"), "transshipment_ports"),
        (("certificate", "items", 0), "marks_and_numbers"),
    ],
)
def test_a_member_with_a_default_may_be_absent_but_not_null(
    where: tuple[str | int, ...], member: str
) -> None:
    def at(payload: dict[str, Any]) -> dict[str, Any]:
        node: Any = payload
        for step in where:
            node = node[step]
        assert isinstance(node, dict)
        return node

    absent = coo_payload()
    del at(absent)[member]
    assert open_at_cn(signed(absent))
    null = coo_payload()
    at(null)[member] = None
    error = refused(signed(null))
    assert error.code is RejectionCode.SCHEMA_INVALID
    assert member in error.reason


def test_an_absent_kind_is_the_kind_of_the_typ_and_a_null_one_disagrees() -> None:
    without = coo_payload()
    del without["kind"]
    opened = open_at_cn(signed(without))
    assert opened.kind is Kind.COO
    assert b'"kind"' not in opened.payload
    assert refused(signed(coo_payload() | {"kind": None})).code is RejectionCode.TYPE_MISMATCH


def test_a_null_correlation_id_is_taken_as_absent() -> None:
    assert (
        open_at_cn(signed(coo_payload() | {"correlation_id": None})).message.correlation_id is None
    )


def test_the_sender_signs_the_record_as_submitted_nulls_included() -> None:
    body = record() | {"third_party_operator": None}
    del body["header"]["issued_retroactively"]
    composed = compose(Kind.COO, body, sender="KR", receiver="CN", issued_at=vectors.ISSUED_AT)
    assert b'"third_party_operator":null' in composed.payload
    assert b"issued_retroactively" not in composed.payload


# --- AMQP properties ------------------------------------------------------------------

CN_IDENTITY = Identity("CN", "KR", vectors.cn_key(), KR_PINNED)


def answer_to(*deliveries: Delivery) -> list[Receipt]:
    opening = inbound_plan.prepare(list(deliveries), CN_IDENTITY, NOW, EnvelopeLimits())
    plan = inbound_plan.plan(opening, Facts(), CN_IDENTITY, NOW)
    receipts = []
    for effect in plan.effects:
        if isinstance(effect, ToPartner):
            opened = open_envelope(
                effect.token, vectors.pinned(vectors.cn_key(), "CN"), receiver="KR", now=NOW
            )
            assert isinstance(opened.message, Receipt)
            receipts.append(opened.message)
    return receipts


def tampered_envelope() -> bytes:
    token = committed(vectors.COO_ENVELOPE_FILE)
    return token[:-4] + (b"AAAA" if token[-4:] != b"AAAA" else b"BBBB")


def test_a_verified_envelope_is_taken_by_its_payload_whatever_the_properties_say() -> None:
    token = committed(vectors.COO_ENVELOPE_FILE)
    (receipt,) = answer_to(Delivery(token, None, None, {}, False))
    (entry,) = receipt.entries
    assert (entry.message_id, entry.kind, entry.status) == (
        vectors.COO_MESSAGE_ID,
        Kind.COO,
        ReceiptStatus.ACCEPTED,
    )


def test_a_refused_envelope_is_answered_under_the_claimed_id_and_type() -> None:
    claimed = "0f4c2b1a-9d8e-4f7a-8b6c-5d4e3f2a1b0c"
    (receipt,) = answer_to(Delivery(tampered_envelope(), claimed, "coo", {}, False))
    (entry,) = receipt.entries
    assert (entry.message_id, entry.kind, entry.code) == (
        claimed,
        Kind.COO,
        RejectionCode.BAD_SIGNATURE,
    )


def test_a_message_refused_after_the_signature_is_answered_under_the_claimed_id_too() -> None:
    """Checks 17 to 23 run on a verified payload, yet the answer names what the
    transport claimed, not the payload's id."""
    claimed = "0f4c2b1a-9d8e-4f7a-8b6c-5d4e3f2a1b0c"
    stale = with_issued_at("2026-02-20T09:30:00Z")
    (receipt,) = answer_to(Delivery(stale, claimed, "coo", {}, False))
    (entry,) = receipt.entries
    assert (entry.message_id, entry.code) == (claimed, RejectionCode.CLOCK_SKEW)
    assert entry.certificate_number is None
    assert answer_to(Delivery(stale, None, "coo", {}, False)) == []


def test_whitespace_around_the_token_is_ignored_and_left_out_of_the_digest() -> None:
    token = committed(vectors.COO_ENVELOPE_FILE)
    opened = open_at_cn(b"\r\n " + token + b"\n")
    assert opened.digest == digest(token)


@pytest.mark.parametrize(
    ("message_id", "kind"),
    [
        (None, "coo"),
        ("5B0C7F0E-2D0A-4C59-9A43-1F6DE8B2C701", "coo"),  # upper case is not the form
        (vectors.COO_MESSAGE_ID, None),
        (vectors.COO_MESSAGE_ID, "certificate"),
        (vectors.COO_MESSAGE_ID, "receipt"),  # receipts are never answered
    ],
)
def test_a_refused_envelope_without_usable_properties_gets_no_answer(
    message_id: str | None, kind: str | None
) -> None:
    assert answer_to(Delivery(tampered_envelope(), message_id, kind, {}, False)) == []


def kr_identity() -> Identity:
    return Identity("KR", "CN", KR_KEY, vectors.pinned(vectors.cn_key(), "CN"))


def test_a_record_without_an_amqp_type_is_an_e_co() -> None:
    delivery = Delivery(orjson.dumps(record()), None, None, {}, False)
    prepared = records_plan.prepare([delivery], kr_identity(), NOW, 512 * 1024)
    (ready,) = prepared.ready
    assert ready.kind is Kind.COO


@pytest.mark.parametrize("amqp_type", ["feedback", None])
def test_the_feedback_door_takes_feedback_with_type_feedback_or_none(
    amqp_type: str | None,
) -> None:
    number = record()["header"]["certificate_number"]
    body = {
        "certificate_number": number,
        "decision": "granted",
        "import_declaration": {"reference": "IMP-2026-0001", "date": "2026-03-05"},
        "items": [{"item_number": 1, "granted": True}, {"item_number": 2, "granted": True}],
    }
    identity = Identity("CN", "KR", vectors.cn_key(), KR_PINNED)
    prepared = feedback_plan.prepare(
        [Delivery(orjson.dumps(body), None, amqp_type, {}, False)], 512 * 1024
    )
    facts = Facts(
        certificates={
            (Role.IMPORTER.value, number): CertFacts(
                number, Role.IMPORTER, State.AVAILABLE, vectors.COO_MESSAGE_ID
            )
        }
    )
    plan = feedback_plan.plan(prepared, facts, identity, NOW, RetryPolicy())
    assert [e.kind for e in plan.effects if isinstance(e, ToPartner)] == ["feedback"]


# --- resends ------------------------------------------------------------------------


def test_the_default_backoff_doubles_from_5_s_up_to_300_s() -> None:
    policy = RetryPolicy()
    waits = [policy.backoff_s(sends) for sends in range(1, 11)]
    assert waits == [5, 10, 20, 40, 80, 160, 300, 300, 300, 300]


async def test_the_default_schedule_sends_ten_times_then_fails() -> None:
    """Sends at 0, 5, 15, 35, 75, 155, 315, 615, 915 and 1215 s; failed at 1515 s."""
    pair = ServicePair(retry=RetrySection())
    await pair.kr.submit([record()])
    sent_at = [0.0] * len(pair.kr.take_outgoing())
    failed_at: float | None = None
    due = await pair.kr.svc.resend_due()
    while due is not None and failed_at is None:
        pair.clock.set(datetime.fromtimestamp(due, UTC))
        due = await pair.kr.svc.resend_due()
        elapsed = (pair.clock.now() - START).total_seconds()
        sent_at += [elapsed] * len(pair.kr.take_outgoing())
        if pair.kr.events("failed"):
            failed_at = elapsed
    assert sent_at == [0, 5, 15, 35, 75, 155, 315, 615, 915, 1215]
    assert failed_at == 1515


# --- feedback items -----------------------------------------------------------------


@pytest.mark.parametrize("decided", [[1], [1, 7]])
async def test_feedback_need_not_list_every_item_and_is_not_matched_to_them(
    decided: list[int],
) -> None:
    """Neither node compares the decided items with the certificate's: feedback on item
    1 of a two-item certificate, or on an item it does not have, travels and is taken."""
    pair = ServicePair(start=NOW)
    certificate = record()
    number = certificate["header"]["certificate_number"]
    assert [i["item_number"] for i in certificate["items"]] == [1, 2]
    await pair.kr.submit([certificate])
    await pair.exchange()
    feedback = {
        "certificate_number": number,
        "decision": "granted",
        "import_declaration": {"reference": "IMP-2026-0001", "date": "2026-03-05"},
        "items": [{"item_number": n, "granted": True} for n in decided],
    }
    await pair.cn.submit_feedback([feedback])
    await pair.exchange()
    assert pair.cn.events("record_rejected") == []
    assert pair.kr.store.certificate_state("exporter", number) == "granted"
    (handed_on,) = pair.kr.local(pair.kr.topology.issuing)
    assert [i["item_number"] for i in orjson.loads(handed_on.body)["feedback"]["items"]] == decided
