"""Pieces shared by the planners of the two local doors (records and feedback)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import orjson

from eodes_node.core.canonical import TooDeep, canonical_json, check_depth
from eodes_node.core.decide import Transition
from eodes_node.core.envelope import seal
from eodes_node.core.jws import digest, sign_compact
from eodes_node.core.messages import Kind, MessageBase
from eodes_node.core.parts import named_certificate_number
from eodes_node.core.plan.common import (
    DeadLetter,
    Door,
    Identity,
    Plan,
    RetryPolicy,
    ToPartner,
    claimed_id,
    item,
    signing_key,
)
from eodes_node.core.records import too_deep
from eodes_node.core.work import Delivery, OutboundRow
from eodes_node.errors import InvalidRecord, Problem


def parse_body(delivery: Delivery, max_bytes: int) -> Any:
    """The record's JSON, refused before parsing when it is larger than allowed."""
    if len(delivery.body) > max_bytes:
        raise InvalidRecord([Problem("", "too_large", f"record exceeds {max_bytes} bytes")])
    try:
        return orjson.loads(delivery.body)
    except orjson.JSONDecodeError as exc:
        if str(exc).startswith("depth limit exceeded"):
            raise InvalidRecord([too_deep()]) from None
        raise InvalidRecord([Problem("", "json_invalid", f"not valid JSON: {exc}")]) from None


def record_json(body: Any, raw: bytes) -> bytes:
    """A record parsed from ``raw`` as canonical JSON again, for the models to validate."""
    try:
        check_depth(body, raw)  # before the encoder sees it (see canonical.MAX_DEPTH)
    except TooDeep:
        raise InvalidRecord([too_deep()]) from None
    return canonical_json(body)


def refuse(
    plan: Plan,
    door: Door,
    delivery: Delivery,
    kind: str,
    problems: Sequence[Problem],
    number: str | None = None,
) -> None:
    """Dead-letter a local record with its reasons and tell the local systems why."""
    if number is None and not any(p.rule == "too_large" for p in problems):
        number = named_certificate_number(delivery.body)  # the log line names its record
    text = "; ".join(str(p) for p in problems)
    plan.note(
        "warning", "local_record_rejected", delivery.message_id, number, kind=kind, problems=text
    )
    # A refused record leaves no state behind: if it comes back after a crash it is
    # simply refused again, so its binding only has to keep it out of the relay.
    binding = f"record:{digest(delivery.body)}"
    plan.effects.append(
        DeadLetter(
            door, delivery.body, claimed_id(delivery), delivery.kind or "unknown", text, binding
        )
    )
    entry = item(delivery.message_id or "", kind, number, text=text, problems=problems)
    plan.notice("record_rejected", [entry], bound_to=binding)


def send(
    plan: Plan,
    identity: Identity,
    message: MessageBase,
    kind: Kind,
    *,
    number: str,
    local_key: str,
    record_digest: str,
    moves: Iterable[Transition],
    now: datetime,
    retry: RetryPolicy,
    payload: bytes | None = None,
) -> None:
    """Sign a message for the partner, remember it for resends, and send it after commit.

    Raises ``KeyMayNotSign`` when our key is outside its window: the record waits in its
    queue, and its retry budget starts when it is signed.
    """
    key = signing_key(identity, now)
    token = seal(message, key) if payload is None else sign_compact(payload, kind.typ, key)
    plan.outbound.append(
        OutboundRow(
            message.message_id,
            kind,
            number,
            message.correlation_id,
            token,
            local_key,
            record_digest,
            attempts=1,
            next_attempt_at=now.timestamp() + retry.first_after_s,
        )
    )
    plan.transitions.extend(moves)
    plan.effects.append(ToPartner(token, message.message_id, kind.value))
