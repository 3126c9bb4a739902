"""What every batch planner shares: who we are, the effects a plan asks for, and the
notes to log once the plan is committed.

A plan names its effects in domain terms (hand this payload to clearance, dead-letter
that delivery at the records door); the service renders them into publications on
concrete queues. Log lines are notes too: the core does no logging, and a fact is
logged only after it is committed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from eodes_node.core.canonical import canonical_json
from eodes_node.core.decide import Local, Transition
from eodes_node.core.jws import KeySet, PrivateKey
from eodes_node.core.validity import KeyMayNotSign, window_problem
from eodes_node.core.verification import VerificationMove
from eodes_node.core.work import Delivery, InboundRow, OutboundRow, OutboundUpdate
from eodes_node.errors import Problem

_UUID_CHARS = frozenset("0123456789abcdef-")


@dataclass(frozen=True, slots=True)
class Identity:
    own: str
    partner: str
    key: PrivateKey  # its ``public`` carries the window we publish for it (keyfiles)
    partner_keys: KeySet


def signing_key(identity: Identity, now: datetime) -> PrivateKey:
    """Our key, if it may sign at ``now``: a key outside its published window signs
    nothing (``KeyMayNotSign``), whatever the files said when it was loaded."""
    problem = window_problem(identity.key.public, int(now.timestamp()))
    if problem is not None:
        raise KeyMayNotSign(f"our signing key may not sign now: {problem}")
    return identity.key


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    first_after_s: float = 5.0
    multiplier: float = 2.0
    max_interval_s: float = 300.0
    max_attempts: int = 10

    def backoff_s(self, attempts: int) -> float:
        """The wait after the ``attempts``-th send: growing, capped."""
        delay = self.first_after_s * self.multiplier ** max(attempts - 1, 0)
        return float(min(delay, self.max_interval_s))


@dataclass(frozen=True, slots=True)
class EnvelopeLimits:
    max_bytes: int = 512 * 1024
    max_future_skew: timedelta = timedelta(minutes=5)
    max_age: timedelta = timedelta(days=7)


class Door(StrEnum):
    """Where a delivery came in; what is refused there goes to that door's dead letters."""

    INBOUND = "inbound"
    RECORDS = "records"
    FEEDBACK = "feedback"


@dataclass(frozen=True, slots=True)
class ToPartner:
    token: bytes
    message_id: str
    kind: str


@dataclass(frozen=True, slots=True)
class Handoff:
    """A verified partner message for a local system, bound to the delivery it came in."""

    to: Local
    payload: bytes
    message_id: str
    kind: str
    headers: Mapping[str, str]
    bound_to: str


@dataclass(frozen=True, slots=True)
class DeadLetter:
    door: Door
    body: bytes
    message_id: str | None  # the id the transport claimed, if it looks like one
    kind: str
    reason: str
    bound_to: str


@dataclass(frozen=True, slots=True)
class Notice:
    """An event message for the local systems; a receipt's deliveries share one."""

    event: str
    items: tuple[Mapping[str, Any], ...]
    bound_to: str | None = None


Effect = ToPartner | Handoff | DeadLetter | Notice


@dataclass(frozen=True, slots=True)
class Note:
    """A log line owed once the plan is committed."""

    level: str  # info | warning | error
    event: str
    message_id: str | None
    certificate_number: str | None
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Plan:
    """Everything a batch decided: rows and moves to commit, effects to publish after."""

    inbound: list[InboundRow] = field(default_factory=list)
    outbound: list[OutboundRow] = field(default_factory=list)
    outbound_updates: list[OutboundUpdate] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)
    effects: list[Effect] = field(default_factory=list)
    reissue: list[str] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    verifications: list[VerificationMove] = field(default_factory=list)

    def note(
        self,
        level: str,
        event: str,
        message_id: str | None,
        certificate_number: str | None,
        **fields: Any,
    ) -> None:
        self.notes.append(Note(level, event, message_id, certificate_number, fields))

    def notice(
        self, event: str, items: Sequence[Mapping[str, Any]], bound_to: str | None = None
    ) -> None:
        if items:
            self.effects.append(Notice(event, tuple(items), bound_to))


def item(
    message_id: str,
    kind: str,
    certificate_number: str | None,
    code: str | None = None,
    text: str = "",
    problems: Sequence[Problem] = (),
) -> dict[str, Any]:
    """One entry of an event message."""
    entry: dict[str, Any] = {
        "message_id": message_id,
        "kind": kind,
        "certificate_number": certificate_number,
    }
    if code:
        entry["code"] = code
    if text:
        entry["text"] = text
    if problems:
        entry["problems"] = [
            {"path": p.path, "rule": p.rule, "message": p.message} for p in problems
        ]
    return entry


def looks_like_id(value: str | None) -> bool:
    return value is not None and len(value) == 36 and set(value) <= _UUID_CHARS


def claimed_id(delivery: Delivery) -> str | None:
    """The message id the transport claims, if it has the form of one."""
    return delivery.message_id if looks_like_id(delivery.message_id) else None


def record_digest(body: Any) -> str:
    return hashlib.sha256(canonical_json(body)).hexdigest()


def inbound_binding(partner: str, message_id: str) -> str:
    """What ties local effects to the partner delivery that caused them."""
    return f"in:{partner}:{message_id}"
