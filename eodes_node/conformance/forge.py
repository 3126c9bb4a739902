"""Envelopes the kit sends: correct ones, and ones broken in exactly one way each.

A hostile probe carries a single defect, so that any correct node refuses it with the
same code whatever order it checks in. Pure: keys and clock come in as arguments.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from eodes_node.core.canonical import canonical_json
from eodes_node.core.envelope import payload_bytes, seal
from eodes_node.core.jws import PrivateKey, b64url
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
    issued_now,
    new_message_id,
)
from eodes_node.core.models import Cancellation, Certificate

# The protocol's cap on an envelope (docs/protocol.md §1).
MAX_ENVELOPE_BYTES = 512 * 1024


@dataclass(frozen=True, slots=True)
class Link:
    """The two ends as the kit plays them: ``own`` is the kit, ``node`` the tested node."""

    own: str
    node: str
    key: PrivateKey
    now: datetime

    @property
    def issued(self) -> datetime:
        return issued_now(self.now)


def coo(link: Link, cert: Certificate, message_id: str | None = None) -> CooIssued:
    return CooIssued(
        message_id=message_id or new_message_id(),
        sender=link.own,
        receiver=link.node,
        issued_at=link.issued,
        certificate=cert,
    )


def replacement(link: Link, cert: Certificate) -> CooReplacement:
    return CooReplacement(
        message_id=new_message_id(),
        sender=link.own,
        receiver=link.node,
        issued_at=link.issued,
        certificate=cert,
    )


def cancellation(link: Link, body: Cancellation) -> CooCancellation:
    return CooCancellation(
        message_id=new_message_id(),
        sender=link.own,
        receiver=link.node,
        issued_at=link.issued,
        cancellation=body,
    )


def feedback(link: Link, body: FeedbackBody, correlation_id: str) -> Feedback:
    return Feedback(
        message_id=new_message_id(),
        sender=link.own,
        receiver=link.node,
        issued_at=link.issued,
        correlation_id=correlation_id,
        feedback=body,
    )


def verification_request(
    link: Link,
    number: str,
    *,
    sender: str | None = None,
    receiver: str | None = None,
    at: datetime | None = None,
) -> VerificationRequest:
    """A retrospective origin check about certificate ``number``; the keyword arguments
    exist to break exactly one of sender, receiver or issue time."""
    return VerificationRequest(
        message_id=new_message_id(),
        sender=sender or link.own,
        receiver=receiver or link.node,
        issued_at=issued_now(at or link.now),
        request=VerificationRequestBody(
            certificate_number=number,
            request_reference=f"VR-{link.own}-{link.now:%Y%m%d%H%M%S}",
            item_numbers=(1,),
            questions="Please confirm that item 1 meets the origin criterion declared.",
            reply_due=(link.now + timedelta(days=90)).date(),
        ),
    )


def receipt(link: Link, answered: MessageBase, digest: str) -> tuple[str, bytes]:
    """Our signed, accepted receipt for a message the node sent: its id and its bytes."""
    entry = ReceiptEntry(
        message_id=answered.message_id,
        kind=Kind(getattr(answered, "kind")),  # noqa: B009 - every concrete message has one
        digest=digest,
        status=ReceiptStatus.ACCEPTED,
    )
    message = Receipt(
        message_id=new_message_id(),
        sender=link.own,
        receiver=link.node,
        issued_at=link.issued,
        entries=(entry,),
    )
    return message.message_id, seal(message, link.key)


def signed(header: dict[str, Any], payload: bytes, key: PrivateKey | None) -> bytes:
    """A compact JWS with exactly this header, signed by ``key`` (no signature if None)."""
    head = b64url(json.dumps(header, separators=(",", ":")).encode())
    signing_input = head + b"." + b64url(payload)
    signature = b64url(key.sign(signing_input)) if key is not None else b""
    return signing_input + b"." + signature


def header_of(key: PrivateKey, kind: Kind, **extra: Any) -> dict[str, Any]:
    return {"alg": key.alg, "kid": key.kid, "typ": kind.typ, **extra}


def tampered(token: bytes) -> bytes:
    """One payload character changed after signing."""
    out = bytearray(token)
    at = token.index(b".") + 20
    out[at] = ord("B") if out[at] == ord("A") else ord("A")
    return bytes(out)


def other_alg(key: PrivateKey, message: MessageBase, alg: str) -> bytes:
    """Signed by our pinned key, but the header names another algorithm."""
    kind = Kind(getattr(message, "kind"))  # noqa: B009
    return signed({**header_of(key, kind), "alg": alg}, payload_bytes(message), key)


def unsigned(key: PrivateKey, message: MessageBase) -> bytes:
    kind = Kind(getattr(message, "kind"))  # noqa: B009
    return signed({**header_of(key, kind), "alg": "none"}, payload_bytes(message), None)


def with_jwk(key: PrivateKey, message: MessageBase) -> bytes:
    """A key offered in the header: a verifier must never take it."""
    kind = Kind(getattr(message, "kind"))  # noqa: B009
    return signed(header_of(key, kind, jwk=key.public.jwk()), payload_bytes(message), key)


def oversized(key: PrivateKey) -> bytes:
    """Larger than the protocol's cap, which is checked before any decoding."""
    filler = b"A" * (MAX_ENVELOPE_BYTES + 1024)
    head = b64url(json.dumps(header_of(key, Kind.COO), separators=(",", ":")).encode())
    return head + b"." + filler + b".AAAA"


def padded_header(key: PrivateKey, message: MessageBase) -> bytes:
    """base64 with padding where base64url without padding is required."""
    token = seal(message, key)
    head, rest = token.split(b".", 1)
    return head + b"=" * (-len(head) % 4 or 4) + b"." + rest


def as_typ(key: PrivateKey, message: MessageBase, kind: Kind) -> bytes:
    """The payload of one kind under the ``typ`` of another."""
    return signed(header_of(key, kind), payload_bytes(message), key)


def not_canonical(key: PrivateKey, message: MessageBase) -> bytes:
    """The right content, serialised with whitespace and unsorted members."""
    kind = Kind(getattr(message, "kind"))  # noqa: B009
    body = message.model_dump(mode="json", exclude_none=True)
    text = json.dumps(dict(reversed(list(body.items()))), indent=1).encode()
    return signed(header_of(key, kind), text, key)


def without(key: PrivateKey, message: MessageBase, field: str, member: str) -> bytes:
    """Canonical and signed, but ``field.member`` (required by the schema) is missing."""
    kind = Kind(getattr(message, "kind"))  # noqa: B009
    body = message.model_dump(mode="json", exclude_none=True)
    del body[field][member]
    return signed(header_of(key, kind), canonical_json(body), key)


def deeply_nested(key: PrivateKey, message: MessageBase, depth: int = 5000) -> bytes:
    """Nested far beyond any schema: a recursive parser may crash on it."""
    kind = Kind(getattr(message, "kind"))  # noqa: B009
    head = canonical_json(message.model_dump(mode="json", exclude_none=True))[:-1]
    payload = head + b',"zz":' + b"[" * depth + b"]" * depth + b"}"
    return signed(header_of(key, kind), payload, key)
