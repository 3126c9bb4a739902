"""Opening a partner's envelope: after the signature, the payload's schema, the agreement's
rules, the parties and the clock decide, and a refusal says what to fix."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from eodes_node.core.canonical import canonical_json
from eodes_node.core.envelope import open_envelope, payload_bytes, seal
from eodes_node.core.jws import KeySet, PrivateKey, b64url, sign_compact
from eodes_node.core.messages import (
    CooIssued,
    CooReplacement,
    Kind,
    MessageBase,
    new_message_id,
)
from eodes_node.core.models import BackReference
from eodes_node.errors import InvalidMessage, RejectionCode
from eodes_node.samples import SampleFactory

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
HEADER_FIELDS = (
    "certificate_number",
    "issue_date",
    "place_of_issue",
    "agreement",
    "valid_until",
    "reference_number",
    "reference_code",
)


def coo(factory: SampleFactory) -> CooIssued:
    return CooIssued(
        message_id=new_message_id(),
        sender="KR",
        receiver="CN",
        issued_at=NOW,
        certificate=factory.certificate(),
    )


def refused(token: bytes, keys: KeySet) -> InvalidMessage:
    with pytest.raises(InvalidMessage) as caught:
        open_envelope(token, keys, receiver="CN", now=NOW)
    return caught.value


def signed_json(document: dict[str, Any], kind: Kind, key: PrivateKey) -> bytes:
    return sign_compact(canonical_json(document), kind.typ, key)


def test_one_schema_problem_is_named_with_its_path(
    factory: SampleFactory, kr_key: PrivateKey, kr_keys: KeySet
) -> None:
    document = orjson.loads(payload_bytes(coo(factory)))
    del document["certificate"]["header"]["place_of_issue"]
    error = refused(signed_json(document, Kind.COO, kr_key), kr_keys)
    assert error.code is RejectionCode.SCHEMA_INVALID
    assert error.reason == "certificate.header.place_of_issue: this field is required [missing]"


def test_many_schema_problems_are_summarised(
    factory: SampleFactory, kr_key: PrivateKey, kr_keys: KeySet
) -> None:
    """The rejection text stays short: five problems, then how many more there are."""
    document = orjson.loads(payload_bytes(coo(factory)))
    for name in HEADER_FIELDS:
        del document["certificate"]["header"][name]
    error = refused(signed_json(document, Kind.COO, kr_key), kr_keys)
    assert error.code is RejectionCode.SCHEMA_INVALID
    shown = [
        f"certificate.header.{name}: this field is required [missing]" for name in HEADER_FIELDS
    ]
    assert error.reason == "; ".join(shown[:5]) + " (+2 more)"


def test_payload_kind_must_match_the_typ(
    factory: SampleFactory, kr_key: PrivateKey, kr_keys: KeySet
) -> None:
    token = sign_compact(payload_bytes(coo(factory)), Kind.COO_REPLACEMENT.typ, kr_key)
    error = refused(token, kr_keys)
    assert error.code is RejectionCode.TYPE_MISMATCH
    assert error.reason == "typ 'eodes-coo-replacement+jws' does not match the payload's kind"


def test_certificate_breaking_the_agreement_is_refused(
    factory: SampleFactory, kr_key: PrivateKey, kr_keys: KeySet
) -> None:
    message = coo(factory)
    cert = message.certificate
    early = cert.model_copy(
        update={"header": cert.header.model_copy(update={"valid_until": cert.header.issue_date})}
    )
    error = refused(seal(message.model_copy(update={"certificate": early}), kr_key), kr_keys)
    assert error.code is RejectionCode.RULE_VIOLATION
    assert "header.valid_until: valid_until" in error.reason
    assert "must be after issue_date" in error.reason
    assert "[validity_order]" in error.reason


def test_replacement_is_held_to_the_agreement_too(
    factory: SampleFactory, kr_key: PrivateKey, kr_keys: KeySet
) -> None:
    cert = factory.certificate()
    itself = BackReference(
        kind="replaces",
        certificate_number=cert.number,
        issue_date=cert.header.issue_date,
        reason="corrected quantity",
    )
    message = CooReplacement(
        message_id=new_message_id(),
        sender="KR",
        receiver="CN",
        issued_at=NOW,
        certificate=cert.model_copy(update={"back_reference": itself}),
    )
    error = refused(seal(message, kr_key), kr_keys)
    assert error.code is RejectionCode.RULE_VIOLATION
    assert error.reason == (
        "back_reference.certificate_number: a certificate cannot refer back to itself "
        "[self_reference]"
    )


def test_opened_envelope_keeps_the_received_bytes(
    factory: SampleFactory, kr_key: PrivateKey, kr_keys: KeySet
) -> None:
    """The digest a receipt quotes is over the token as sent, without transport whitespace,
    and local systems get exactly the canonical payload that was signed."""
    message: MessageBase = coo(factory)
    token = seal(message, kr_key)
    opened = open_envelope(b"\r\n" + token + b"\n", kr_keys, receiver="CN", now=NOW)
    assert opened.token == token
    assert opened.digest == b64url(hashlib.sha256(token).digest()).decode()
    assert opened.payload == payload_bytes(message)
    assert (opened.kind, opened.kid, opened.message) == (Kind.COO, kr_key.kid, message)
