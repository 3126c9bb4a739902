"""The life of one certificate, per role, as a plain table.

``TRANSITIONS[role][state][event] -> next state``. A missing entry is an illegal move and
raises ``IllegalTransition`` naming role, state and event, which the node turns into a
refusal (``STATE_CONFLICT``), never into a silent overwrite.
"""

from __future__ import annotations

from enum import StrEnum
from types import MappingProxyType
from typing import Final


class Role(StrEnum):
    EXPORTER = "exporter"  # we issued it and sent it to the partner
    IMPORTER = "importer"  # the partner sent it to us


class State(StrEnum):
    PENDING = "pending"  # sent, no receipt yet
    DELIVERED = "delivered"  # the partner's signed receipt says stored
    FAILED = "failed"  # retry budget spent without a receipt
    REJECTED = "rejected"  # the partner refused it
    AVAILABLE = "available"  # received, verified, stored, handed to clearance
    GRANTED = "granted"
    DENIED = "denied"
    PARTIAL = "partial"
    REPLACED = "replaced"
    CANCELLED = "cancelled"


class Event(StrEnum):
    SUBMITTED = "submitted"
    RECEIVED = "received"
    RECEIPT_ACCEPTED = "receipt_accepted"
    RECEIPT_REJECTED = "receipt_rejected"
    RETRIES_EXHAUSTED = "retries_exhausted"
    GRANTED = "granted"
    DENIED = "denied"
    PARTIAL = "partial"
    REPLACED = "replaced"
    CANCELLED = "cancelled"
    RESENT = "resent"  # an operator sent a failed or rejected certificate again


NEW: Final = None  # the state of a certificate not yet known

_DECIDED = {Event.GRANTED: State.GRANTED, Event.DENIED: State.DENIED, Event.PARTIAL: State.PARTIAL}
_WITHDRAWN = {Event.REPLACED: State.REPLACED, Event.CANCELLED: State.CANCELLED}

_EXPORTER: dict[State | None, dict[Event, State]] = {
    NEW: {Event.SUBMITTED: State.PENDING},
    State.PENDING: {
        Event.RECEIPT_ACCEPTED: State.DELIVERED,
        Event.RECEIPT_REJECTED: State.REJECTED,
        Event.RETRIES_EXHAUSTED: State.FAILED,
        # Feedback can overtake the receipt: it proves the partner holds the certificate.
        **_DECIDED,
        **_WITHDRAWN,
    },
    State.DELIVERED: {
        Event.RECEIPT_ACCEPTED: State.DELIVERED,
        **_DECIDED,
        **_WITHDRAWN,
    },
    # A late receipt still counts: failed is not final.
    State.FAILED: {
        Event.RECEIPT_ACCEPTED: State.DELIVERED,
        Event.RECEIPT_REJECTED: State.REJECTED,
        Event.RESENT: State.PENDING,
        **_DECIDED,
        **_WITHDRAWN,
    },
    # Only an operator's re-send moves it on (after fixing a key, a clock, a record).
    State.REJECTED: {Event.RESENT: State.PENDING},
    State.GRANTED: {Event.RECEIPT_ACCEPTED: State.GRANTED},
    State.DENIED: {Event.RECEIPT_ACCEPTED: State.DENIED},
    State.PARTIAL: {Event.RECEIPT_ACCEPTED: State.PARTIAL},
    State.REPLACED: {Event.RECEIPT_ACCEPTED: State.REPLACED},
    State.CANCELLED: {Event.RECEIPT_ACCEPTED: State.CANCELLED},
}

_IMPORTER: dict[State | None, dict[Event, State]] = {
    NEW: {Event.RECEIVED: State.AVAILABLE},
    # Only an unused certificate can be decided on, replaced or cancelled.
    State.AVAILABLE: {**_DECIDED, **_WITHDRAWN},
    State.GRANTED: {},
    State.DENIED: {},
    State.PARTIAL: {},
    State.REPLACED: {},
    State.CANCELLED: {},
}

TRANSITIONS: MappingProxyType[Role, MappingProxyType[State | None, MappingProxyType[Event, State]]]
TRANSITIONS = MappingProxyType(
    {
        role: MappingProxyType({s: MappingProxyType(e) for s, e in table.items()})
        for role, table in ((Role.EXPORTER, _EXPORTER), (Role.IMPORTER, _IMPORTER))
    }
)

DECISION_EVENT = {"granted": Event.GRANTED, "denied": Event.DENIED, "partial": Event.PARTIAL}


class IllegalTransition(Exception):
    def __init__(self, role: Role, state: State | None, event: Event) -> None:
        self.role, self.state, self.event = role, state, event
        where = "a new certificate" if state is None else f"a {state.value} certificate"
        super().__init__(f"{event.value} is not allowed for {where} ({role.value} side)")


def next_state(role: Role, state: State | None, event: Event) -> State:
    try:
        return TRANSITIONS[role][state][event]
    except KeyError:
        raise IllegalTransition(role, state, event) from None
