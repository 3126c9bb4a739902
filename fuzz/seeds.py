"""Valid documents the fuzz targets start from: one of every message and record kind,
signed with fixed keys so that a saved input replays the same way in any process."""

from __future__ import annotations

from datetime import UTC, date, datetime
from functools import cache
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from eodes_node.core.canonical import canonical_json
from eodes_node.core.jws import KeySet, PrivateKey
from eodes_node.core.messages import (
    CooCancellation,
    CooIssued,
    CooReplacement,
    Feedback,
    FeedbackBody,
    Kind,
    MessageBase,
    Receipt,
    ReceiptEntry,
    ReceiptStatus,
    VerificationRequest,
    VerificationRequestBody,
    VerificationResponse,
    VerificationResponseBody,
    VerificationResult,
)
from eodes_node.core.models import BackReference, Cancellation, Certificate
from eodes_node.core.records import as_json_dict
from eodes_node.samples import SampleFactory

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ISSUED = date(2026, 3, 2)
# Fixed keys: the partner (KR) signs, this node (CN) receives.
KR_KEY = PrivateKey("Ed25519", Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33))))
CN_KEY = PrivateKey("Ed25519", Ed25519PrivateKey.from_private_bytes(bytes(range(2, 34))))
KR_KEYS = KeySet({KR_KEY.kid: KR_KEY.public}, owner="KR")
_IDS = [f"00000000-0000-4000-8000-{n:012d}" for n in range(1, 20)]


@cache
def certificates() -> tuple[Certificate, Certificate]:
    first, second = SampleFactory("KCFTA", seed=1, issue_date=ISSUED).certificates(2)
    ref = BackReference(
        kind="replaces",
        certificate_number=first.number,
        issue_date=first.header.issue_date,
        reason="corrected quantity",
    )
    return first, second.model_copy(update={"back_reference": ref})


def cancellation() -> Cancellation:
    cert = certificates()[0]
    return Cancellation(
        certificate_number=cert.number,
        issuing_authority=cert.header.issuing_authority,
        cancelled_on=ISSUED,
        reason="exporter withdrew the application",
    )


def feedback_record() -> dict[str, Any]:
    cert = certificates()[0]
    items = [
        {"item_number": i.item_number, "granted": i.item_number != 1}
        | ({} if i.item_number != 1 else {"reason": "ORIGIN_NOT_MET"})
        for i in cert.items
    ]
    decision = "denied" if len(items) == 1 else "partial"
    return {
        "certificate_number": cert.number,
        "decision": decision,
        "import_declaration": {"reference": "CN-IMP-1", "date": ISSUED.isoformat()},
        "items": items,
    }


@cache
def messages() -> tuple[MessageBase, ...]:
    """One valid message of every kind, from KR to CN."""
    first, replacement = certificates()
    common: dict[str, Any] = {"sender": "KR", "receiver": "CN", "issued_at": NOW}
    number = first.number
    entry = ReceiptEntry(
        message_id=_IDS[9], kind=Kind.COO, digest="A" * 43, status=ReceiptStatus.ACCEPTED
    )
    return (
        CooIssued(message_id=_IDS[0], certificate=first, **common),
        CooReplacement(message_id=_IDS[1], certificate=replacement, **common),
        CooCancellation(message_id=_IDS[2], cancellation=cancellation(), **common),
        Receipt(message_id=_IDS[3], entries=(entry,), **common),
        Feedback(
            message_id=_IDS[4],
            correlation_id=_IDS[10],
            feedback=FeedbackBody.model_validate_json(canonical_json(feedback_record())),
            **common,
        ),
        VerificationRequest(
            message_id=_IDS[5],
            request=VerificationRequestBody(
                certificate_number=number,
                request_reference="VR-1",
                item_numbers=(1,),
                questions="Please confirm the origin of item 1.",
                reply_due=ISSUED,
            ),
            **common,
        ),
        VerificationResponse(
            message_id=_IDS[6],
            correlation_id=_IDS[11],
            response=VerificationResponseBody(
                certificate_number=number,
                request_reference="VR-1",
                result=VerificationResult.CONFIRMED,
                findings="Origin confirmed by a visit to the producer.",
            ),
            **common,
        ),
    )


def message_documents() -> list[dict[str, Any]]:
    return [as_json_dict(m) for m in messages()]


def record_documents() -> list[tuple[str, dict[str, Any]]]:
    """(AMQP type, record) as the issuing system submits them."""
    first, replacement = certificates()
    return [
        ("coo", as_json_dict(first)),
        ("coo-replacement", as_json_dict(replacement)),
        ("coo-cancellation", as_json_dict(cancellation())),
    ]


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth
