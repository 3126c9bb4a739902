"""Retrospective verification requests: what each side keeps of one, and how it moves.

Both sides keep a row per request, keyed by the request's message id: the side that
asked (our clearance system, the importer) and the side asked (our issuing system, the
exporter). The row names the certificate, the request reference and the reply due date,
and where the request stands (``state.VERIFICATION_TRANSITIONS``). The side that asked
watches the due date: when the due day ends without an answer, the request is overdue.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from eodes_node.core.messages import VerificationRequestBody
from eodes_node.core.state import Event, Role, VerificationState, next_verification_state

# How a sent message ended when the partner never took it: it failed (no receipt within
# the retry budget) or its receipt rejected it. Such a request waits for no answer, and
# such an answer answers nothing.
NOT_TAKEN = frozenset({"failed", "rejected"})


def reply_deadline(reply_due: date) -> datetime:
    """A reply is due by the end of its due day (UTC); overdue from the next midnight."""
    return datetime.combine(reply_due + timedelta(days=1), time(0), tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class VerificationFacts:
    """One request as the store holds it."""

    request_id: str
    role: Role  # IMPORTER: we asked; EXPORTER: the partner asked us
    number: str
    reference: str
    reply_due: date
    state: VerificationState


@dataclass(frozen=True, slots=True)
class VerificationMove:
    """A request created (``before`` None) or moved on; the store refuses a stale move."""

    request_id: str
    role: Role
    number: str
    reference: str
    reply_due: date
    before: VerificationState | None
    after: VerificationState
    event: Event
    message_id: str  # the message that caused it: the request, or its response
    result: str | None = None  # confirmed | not_confirmed, with an answer

    @property
    def due_at(self) -> float:
        return reply_deadline(self.reply_due).timestamp()

    def facts(self) -> VerificationFacts:
        return VerificationFacts(
            self.request_id, self.role, self.number, self.reference, self.reply_due, self.after
        )


def requested(role: Role, request_id: str, body: VerificationRequestBody) -> VerificationMove:
    event = Event.VERIFICATION_REQUESTED
    return VerificationMove(
        request_id,
        role,
        body.certificate_number,
        body.request_reference,
        body.reply_due,
        None,
        next_verification_state(None, event),
        event,
        request_id,
    )


def _step(
    asked: VerificationFacts, event: Event, message_id: str, result: str | None = None
) -> VerificationMove:
    """Raises ``IllegalVerificationStep`` when the request's state does not allow it."""
    return VerificationMove(
        asked.request_id,
        asked.role,
        asked.number,
        asked.reference,
        asked.reply_due,
        asked.state,
        next_verification_state(asked.state, event),
        event,
        message_id,
        result,
    )


def answered(asked: VerificationFacts, response_id: str, result: str) -> VerificationMove:
    return _step(asked, Event.VERIFICATION_ANSWERED, response_id, result)


def answered_again(asked: VerificationFacts, response_id: str, result: str) -> VerificationMove:
    """Our answer in place of an earlier one the partner never took: the request stays
    answered, now by the new message."""
    if asked.state is not VerificationState.ANSWERED:
        return answered(asked, response_id, result)
    return VerificationMove(
        asked.request_id,
        asked.role,
        asked.number,
        asked.reference,
        asked.reply_due,
        asked.state,
        asked.state,
        Event.VERIFICATION_ANSWERED,
        response_id,
        result,
    )


def overdue(asked: VerificationFacts) -> VerificationMove:
    return _step(asked, Event.VERIFICATION_OVERDUE, asked.request_id)


def closed(asked: VerificationFacts) -> VerificationMove:
    """A request of ours the partner never took leaves the overdue scan. The table has no
    state of its own for it: it takes the one a request reaches unanswered, and a late
    answer (to a request that failed but did arrive) is still taken."""
    return overdue(asked)


def folded(overlay: dict[str, VerificationFacts], moves: list[VerificationMove]) -> None:
    """Fold moves into a facts overlay, so later messages of a batch see earlier ones."""
    for m in moves:
        overlay[m.request_id] = m.facts()
