"""Seal a message into a signed envelope and open one received from a partner."""

from __future__ import annotations

from collections.abc import Container, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import ValidationError

from eodes_node.core.canonical import canonical_json
from eodes_node.core.jws import (
    DEFAULT_MAX_TOKEN_BYTES,
    KeySet,
    PrivateKey,
    digest,
    sign_compact,
    verify_compact,
)
from eodes_node.core.link import link_problems
from eodes_node.core.messages import (
    MODEL_BY_KIND,
    TYP_TO_KIND,
    CooIssued,
    CooReplacement,
    Kind,
    MessageBase,
)
from eodes_node.core.records import problems_from
from eodes_node.core.rules import check_certificate
from eodes_node.errors import InvalidMessage, RejectionCode

MAX_FUTURE_SKEW = timedelta(minutes=5)
# Resends reuse the original bytes, so an envelope may be as old as the longest retry
# budget; the dedup store keeps ids for longer than this.
MAX_AGE = timedelta(days=7)


def payload_bytes(message: MessageBase) -> bytes:
    return canonical_json(message.model_dump(mode="json", exclude_none=True))


def seal(message: MessageBase, key: PrivateKey) -> bytes:
    kind = Kind(getattr(message, "kind"))  # noqa: B009 - every concrete message has a kind
    return sign_compact(payload_bytes(message), kind.typ, key)


@dataclass(frozen=True, slots=True)
class Opened:
    message: MessageBase
    kind: Kind
    token: bytes
    digest: str
    kid: str
    payload: bytes  # the verified canonical JSON, handed on to local systems as is


def _summary(problems: Iterable[object], limit: int = 5) -> str:
    items = [str(p) for p in problems]
    more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
    return "; ".join(items[:limit]) + more


def open_envelope(
    token: bytes,
    keys: KeySet,
    *,
    receiver: str | None,
    now: datetime,
    kinds: Iterable[Kind] | None = None,
    max_bytes: int = DEFAULT_MAX_TOKEN_BYTES,
    max_future_skew: timedelta = MAX_FUTURE_SKEW,
    max_age: timedelta = MAX_AGE,
) -> Opened:
    """Verify, parse and check a partner's envelope; raise a PeerError naming the problem."""
    typs: Container[str] = TYP_TO_KIND if kinds is None else {kind.typ for kind in kinds}
    verified = verify_compact(token, keys, typs=typs, now=int(now.timestamp()), max_bytes=max_bytes)
    kind = TYP_TO_KIND[verified.typ]
    try:
        message = MODEL_BY_KIND[kind].model_validate_json(verified.payload)
    except ValidationError as exc:
        if any(error["loc"] == ("kind",) for error in exc.errors()):
            raise InvalidMessage(
                RejectionCode.TYPE_MISMATCH,
                f"typ {verified.typ!r} does not match the payload's kind",
            ) from None
        raise InvalidMessage(RejectionCode.SCHEMA_INVALID, _summary(problems_from(exc))) from None
    if keys.owner is not None and message.sender != keys.owner:
        raise InvalidMessage(
            RejectionCode.WRONG_SENDER,
            f"signed with a key of {keys.owner} but the payload claims sender {message.sender}",
        )
    if receiver is not None and message.receiver != receiver:
        raise InvalidMessage(
            RejectionCode.WRONG_RECEIVER,
            f"addressed to {message.receiver}, this node is {receiver}",
        )
    if message.issued_at > now + max_future_skew:
        raise InvalidMessage(
            RejectionCode.CLOCK_SKEW,
            f"issued_at {message.issued_at.isoformat()} is in the future beyond the "
            f"allowed skew of {int(max_future_skew.total_seconds())} s",
        )
    if message.issued_at < now - max_age:
        raise InvalidMessage(
            RejectionCode.CLOCK_SKEW,
            f"issued_at {message.issued_at.isoformat()} is older than the accepted "
            f"{max_age.days} days",
        )
    if isinstance(message, CooIssued | CooReplacement):
        foreign = link_problems(message.certificate, message.sender, message.receiver)
        if foreign:
            raise InvalidMessage(RejectionCode.NOT_FOR_THIS_LINK, _summary(foreign))
        problems = check_certificate(message.certificate)
        if problems:
            raise InvalidMessage(RejectionCode.RULE_VIOLATION, _summary(problems))
    token = token.strip()
    return Opened(message, kind, token, digest(token), verified.kid, verified.payload)
