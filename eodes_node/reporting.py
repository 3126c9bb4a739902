"""Report values read from the signed messages the store keeps.

The store keeps every message's raw signed bytes; what a listing filters on (agreement,
issue date, countries, reference number) and what a detail shows (feedback per item,
the cancellation reason) is read from those payloads here, once, for both the SQL store
and the in-memory one. The payloads were verified (or signed by us) before they were
stored, so they are only decoded, not checked again.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import orjson

from eodes_node.ports import (
    FeedbackLine,
    ItemDecision,
    PublicCertificate,
    PublicItem,
    PublicParty,
)


def _b64(part: bytes) -> bytes:
    return base64.urlsafe_b64decode(part + b"=" * (-len(part) % 4))


def payload_of(token: bytes) -> dict[str, Any] | None:
    """The JSON payload of a stored compact JWS, or None if it is not one."""
    parts = bytes(token).split(b".")
    if len(parts) != 3:
        return None
    try:
        value = orjson.loads(_b64(parts[1]))
    except (binascii.Error, ValueError):
        return None
    return value if isinstance(value, dict) else None


def kid_of(token: bytes) -> str:
    try:
        header = orjson.loads(_b64(bytes(token).split(b".")[0]))
    except (binascii.Error, ValueError):
        return ""
    return str(header.get("kid", "")) if isinstance(header, dict) else ""


@dataclass(frozen=True, slots=True)
class IndexFacts:
    """What a listing filters and shows, from a certificate's payload."""

    agreement: str | None = None
    issue_date: str | None = None  # ISO date: sorts and compares as text
    valid_until: str | None = None
    exporter_country: str | None = None
    importer_country: str | None = None
    reference_number: str | None = None
    reference_code: str | None = None
    replaces: str | None = None


def index_facts(payload: dict[str, Any] | None) -> IndexFacts:
    cert = (payload or {}).get("certificate")
    if not isinstance(cert, dict):
        return IndexFacts()
    header = cert.get("header") or {}
    back = cert.get("back_reference") or {}
    return IndexFacts(
        agreement=header.get("agreement"),
        issue_date=header.get("issue_date"),
        valid_until=header.get("valid_until"),
        exporter_country=(cert.get("exporter") or {}).get("country"),
        importer_country=(cert.get("consignee") or {}).get("country"),
        reference_number=header.get("reference_number"),
        reference_code=header.get("reference_code"),
        replaces=back.get("certificate_number") if back.get("kind") == "replaces" else None,
    )


def folded(text: str) -> str:
    """How numbers and codes are compared: case-insensitively, without outer spaces."""
    return text.strip().upper()


def code_matches(stored: str | None, given: str) -> bool:
    """Constant time, so a timing difference tells nothing about a code."""
    expected = folded(stored or "").encode()
    return bool(stored) and hmac.compare_digest(expected, folded(given).encode())


def feedback_line(
    payload: dict[str, Any] | None, message_id: str, direction: str, at: datetime
) -> FeedbackLine | None:
    body = (payload or {}).get("feedback")
    if not isinstance(body, dict):
        return None
    declaration = body.get("import_declaration") or {}
    declared = declaration.get("date")
    return FeedbackLine(
        message_id=message_id,
        direction=direction,
        decision=str(body.get("decision")),
        at=at,
        declaration_reference=declaration.get("reference"),
        declaration_date=date.fromisoformat(declared) if declared else None,
        items=tuple(
            ItemDecision(
                int(i["item_number"]), bool(i["granted"]), i.get("reason"), i.get("remark", "")
            )
            for i in body.get("items") or ()
        ),
    )


def cancellation_reason(payload: dict[str, Any] | None) -> str | None:
    body = (payload or {}).get("cancellation")
    return str(body.get("reason")) if isinstance(body, dict) else None


def _party(value: Any) -> PublicParty:
    value = value if isinstance(value, dict) else {}
    return PublicParty(str(value.get("name", "")), str(value.get("country", "")))


def public_certificate(
    token: bytes, *, role: str, state: str, signed_by: str, replaced_by: str | None
) -> PublicCertificate | None:
    """What anyone holding the printed certificate may see: no tax ids, values, invoices."""
    cert = (payload_of(token) or {}).get("certificate")
    if not isinstance(cert, dict):
        return None
    header = cert["header"]
    return PublicCertificate(
        number=header["certificate_number"],
        reference_number=header["reference_number"],
        role=role,
        state=state,
        agreement=header["agreement"],
        issue_date=date.fromisoformat(header["issue_date"]),
        valid_until=date.fromisoformat(header["valid_until"]),
        issuing_authority=_party(header.get("issuing_authority")),
        exporter=_party(cert.get("exporter")),
        consignee=_party(cert.get("consignee")),
        items=tuple(
            PublicItem(
                int(i["item_number"]), str(i["description"]), i["hs_code"], i["origin_criterion"]
            )
            for i in cert.get("items") or ()
        ),
        signed_by=signed_by,
        kid=kid_of(token),
        envelope=bytes(token),
        replaced_by=replaced_by,
    )


def encode_cursor(*values: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(values))).decode().rstrip("=")


def decode_cursor(cursor: str, arity: int) -> list[Any]:
    """Raises ValueError naming the problem when the cursor is not one of ours."""
    try:
        values = orjson.loads(_b64(cursor.encode()))
    except (binascii.Error, ValueError):
        raise ValueError("not a cursor this node issued") from None
    if not isinstance(values, list) or len(values) != arity:
        raise ValueError("not a cursor this node issued")
    return values
