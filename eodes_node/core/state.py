"""The life of one certificate, per role, as a plain table.

``TRANSITIONS[role][state][event] -> next state``. A missing entry is an illegal move and
raises ``IllegalTransition`` naming role, state and event, which the node turns into a
refusal (``STATE_CONFLICT``), never into a silent overwrite.

A retrospective verification runs beside the certificate's life, not instead of it: its
events are rows that leave the certificate's state as it is (a granted certificate under
verification stays granted, can still be decided on, replaced or cancelled where its
state allows), so they say only *whether* a certificate may be verified in its state and
put each step in its history. The progress of each request (pending, answered, overdue)
is the second table, ``VERIFICATION_TRANSITIONS``.
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
    VERIFICATION_REQUESTED = "verification_requested"
    VERIFICATION_ANSWERED = "verification_answered"
    VERIFICATION_OVERDUE = "verification_overdue"  # the reply due date passed unanswered


class VerificationState(StrEnum):
    """Where one verification request stands, on the side that asked and the side asked."""

    PENDING = "pending"
    ANSWERED = "answered"
    OVERDUE = "overdue"


NEW: Final = None  # the state of a certificate not yet known

_DECIDED = {Event.GRANTED: State.GRANTED, Event.DENIED: State.DENIED, Event.PARTIAL: State.PARTIAL}
_WITHDRAWN = {Event.REPLACED: State.REPLACED, Event.CANCELLED: State.CANCELLED}


def _stays(state: State, *events: Event) -> dict[Event, State]:
    """Verification rows: the event is allowed and recorded; the state does not change."""
    return {event: state for event in events}


# A request may concern a certificate the partner holds and has not withdrawn; an answer
# and an overdue notice follow a request already made, whatever happened to the
# certificate since (a request stays owed its answer after a cancellation).
_ASKABLE = (Event.VERIFICATION_REQUESTED, Event.VERIFICATION_ANSWERED)
_ASKED = (Event.VERIFICATION_ANSWERED,)
_IMPORTER_ASKABLE = (*_ASKABLE, Event.VERIFICATION_OVERDUE)
_IMPORTER_ASKED = (Event.VERIFICATION_ANSWERED, Event.VERIFICATION_OVERDUE)

_EXPORTER: dict[State | None, dict[Event, State]] = {
    NEW: {Event.SUBMITTED: State.PENDING},
    State.PENDING: {
        Event.RECEIPT_ACCEPTED: State.DELIVERED,
        Event.RECEIPT_REJECTED: State.REJECTED,
        Event.RETRIES_EXHAUSTED: State.FAILED,
        # Feedback can overtake the receipt: it proves the partner holds the certificate.
        **_DECIDED,
        **_WITHDRAWN,
        # So can a verification request.
        **_stays(State.PENDING, *_ASKABLE),
    },
    State.DELIVERED: {
        Event.RECEIPT_ACCEPTED: State.DELIVERED,
        **_DECIDED,
        **_WITHDRAWN,
        **_stays(State.DELIVERED, *_ASKABLE),
    },
    # A late receipt still counts: failed is not final.
    State.FAILED: {
        Event.RECEIPT_ACCEPTED: State.DELIVERED,
        Event.RECEIPT_REJECTED: State.REJECTED,
        Event.RESENT: State.PENDING,
        **_DECIDED,
        **_WITHDRAWN,
        **_stays(State.FAILED, *_ASKABLE),
    },
    # Only an operator's re-send moves it on (after fixing a key, a clock, a record).
    State.REJECTED: {Event.RESENT: State.PENDING},
    State.GRANTED: {
        Event.RECEIPT_ACCEPTED: State.GRANTED,
        **_stays(State.GRANTED, *_ASKABLE),
    },
    State.DENIED: {Event.RECEIPT_ACCEPTED: State.DENIED, **_stays(State.DENIED, *_ASKABLE)},
    State.PARTIAL: {
        Event.RECEIPT_ACCEPTED: State.PARTIAL,
        **_stays(State.PARTIAL, *_ASKABLE),
    },
    State.REPLACED: {
        Event.RECEIPT_ACCEPTED: State.REPLACED,
        **_stays(State.REPLACED, *_ASKED),
    },
    State.CANCELLED: {
        Event.RECEIPT_ACCEPTED: State.CANCELLED,
        **_stays(State.CANCELLED, *_ASKED),
    },
}

_IMPORTER: dict[State | None, dict[Event, State]] = {
    NEW: {Event.RECEIVED: State.AVAILABLE},
    # Only an unused certificate can be decided on, replaced or cancelled.
    State.AVAILABLE: {**_DECIDED, **_WITHDRAWN, **_stays(State.AVAILABLE, *_IMPORTER_ASKABLE)},
    # Retrospective verification is mostly of certificates already used.
    State.GRANTED: _stays(State.GRANTED, *_IMPORTER_ASKABLE),
    State.DENIED: _stays(State.DENIED, *_IMPORTER_ASKABLE),
    State.PARTIAL: _stays(State.PARTIAL, *_IMPORTER_ASKABLE),
    # Withdrawn unused: nothing to verify any more, but an earlier request's answer or
    # its overdue notice still arrives.
    State.REPLACED: _stays(State.REPLACED, *_IMPORTER_ASKED),
    State.CANCELLED: _stays(State.CANCELLED, *_IMPORTER_ASKED),
}

# One verification request, on either side: asked, then answered (late is still an
# answer) or overdue once. A second answer is refused.
VERIFICATION_TRANSITIONS: MappingProxyType[
    VerificationState | None, MappingProxyType[Event, VerificationState]
] = MappingProxyType(
    {
        NEW: MappingProxyType({Event.VERIFICATION_REQUESTED: VerificationState.PENDING}),
        VerificationState.PENDING: MappingProxyType(
            {
                Event.VERIFICATION_ANSWERED: VerificationState.ANSWERED,
                Event.VERIFICATION_OVERDUE: VerificationState.OVERDUE,
            }
        ),
        VerificationState.OVERDUE: MappingProxyType(
            {Event.VERIFICATION_ANSWERED: VerificationState.ANSWERED}
        ),
        VerificationState.ANSWERED: MappingProxyType({}),
    }
)

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


class IllegalVerificationStep(Exception):
    def __init__(self, state: VerificationState | None, event: Event) -> None:
        self.state, self.event = state, event
        where = "a new verification request" if state is None else f"a request {state.value}"
        super().__init__(f"{event.value} is not allowed for {where}")


def next_verification_state(state: VerificationState | None, event: Event) -> VerificationState:
    try:
        return VERIFICATION_TRANSITIONS[state][event]
    except KeyError:
        raise IllegalVerificationStep(state, event) from None
