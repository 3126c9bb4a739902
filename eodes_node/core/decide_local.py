"""Decisions on records our own issuing and clearance systems submit: which state moves
a record causes, or the ``InvalidRecord`` that refuses it. Legality comes from the
state table; these functions only choose the words of the refusal."""

from __future__ import annotations

from datetime import date

from eodes_node.core.decide import CertFacts, Transition, move
from eodes_node.core.messages import (
    CooCancellation,
    CooIssued,
    CooReplacement,
    FeedbackBody,
    VerificationRequestBody,
    VerificationResponseRecord,
)
from eodes_node.core.state import (
    DECISION_EVENT,
    Event,
    IllegalTransition,
    IllegalVerificationStep,
    Role,
    State,
)
from eodes_node.core.verification import (
    VerificationFacts,
    VerificationMove,
    answered,
    answered_again,
    requested,
)
from eodes_node.errors import InvalidRecord, Problem


def _state_problem(exc: IllegalTransition, number: str) -> InvalidRecord:
    return InvalidRecord([Problem("certificate_number", "state_conflict", f"{number}: {exc}")])


def _submitted_known(existing: CertFacts | None, role: Role, unknown: str) -> CertFacts:
    """The certificate a local record refers to, or the record's problem."""
    if existing is None or existing.role is not role:
        raise InvalidRecord([Problem("certificate_number", "unknown_certificate", unknown)])
    return existing


def decide_local_certificate(
    message: CooIssued | CooReplacement | CooCancellation,
    existing: CertFacts | None,
    referenced: CertFacts | None,
) -> list[Transition]:
    """State moves for a record the issuing system submits; InvalidRecord if not allowed."""
    mid = message.message_id
    if isinstance(message, CooCancellation):
        number = message.cancellation.certificate_number
        existing = _submitted_known(
            existing,
            Role.EXPORTER,
            f"certificate {number} was never sent to the partner; nothing to cancel",
        )
        try:
            return [move(existing, Role.EXPORTER, number, Event.CANCELLED, mid)]
        except IllegalTransition as exc:
            raise _state_problem(exc, number) from None
    number = message.certificate.number
    try:
        moves = [move(existing, Role.EXPORTER, number, Event.SUBMITTED, mid)]
    except IllegalTransition:
        assert existing is not None  # a new certificate can always be submitted
        raise InvalidRecord(
            [
                Problem(
                    "header.certificate_number",
                    "number_in_use",
                    f"certificate {number} was already submitted with other content "
                    f"(message {existing.coo_message_id}); a correction travels as coo-replacement",
                )
            ]
        ) from None
    ref = message.certificate.back_reference
    if isinstance(message, CooReplacement) and ref is not None and referenced is not None:
        try:
            moves.append(
                move(referenced, Role.EXPORTER, ref.certificate_number, Event.REPLACED, mid)
            )
        except IllegalTransition as exc:
            raise _state_problem(exc, ref.certificate_number) from None
    return moves


def decide_local_feedback(
    body: FeedbackBody, existing: CertFacts | None, message_id: str
) -> Transition:
    number = body.certificate_number
    existing = _submitted_known(
        existing,
        Role.IMPORTER,
        f"no certificate {number} was received from the partner; feedback needs one",
    )
    try:
        return move(
            existing, Role.IMPORTER, number, DECISION_EVENT[body.decision.value], message_id
        )
    except IllegalTransition as exc:
        if existing.state in (State.CANCELLED, State.REPLACED):
            raise InvalidRecord(
                [
                    Problem(
                        "certificate_number",
                        "certificate_withdrawn",
                        f"certificate {number} was {existing.state.value}; "
                        "it cannot be used for preference",
                    )
                ]
            ) from None
        raise _state_problem(exc, number) from None


def _withdrawn(existing: CertFacts, number: str, what: str) -> InvalidRecord | None:
    if existing.state in (State.CANCELLED, State.REPLACED):
        return InvalidRecord(
            [
                Problem(
                    "certificate_number",
                    "certificate_withdrawn",
                    f"certificate {number} was {existing.state.value}; {what}",
                )
            ]
        )
    return None


def due_date_problem(reply_due: date, today: date) -> Problem | None:
    """A request's reply due date must be after today (UTC): the day the partner answers by."""
    if reply_due > today:
        return None
    return Problem(
        "reply_due",
        "due_date_not_in_future",
        f"reply_due {reply_due.isoformat()} must be after today ({today.isoformat()}, UTC)",
    )


def decide_local_verification_request(
    body: VerificationRequestBody, existing: CertFacts | None, message_id: str, today: date
) -> tuple[Transition, VerificationMove]:
    """The clearance system asks the partner to confirm a certificate it received."""
    number = body.certificate_number
    late = due_date_problem(body.reply_due, today)
    if late is not None:
        raise InvalidRecord([late])
    existing = _submitted_known(
        existing,
        Role.IMPORTER,
        f"no certificate {number} was received from the partner; a verification request needs one",
    )
    try:
        moved = move(existing, Role.IMPORTER, number, Event.VERIFICATION_REQUESTED, message_id)
    except IllegalTransition as exc:
        withdrawn = _withdrawn(existing, number, "there is nothing left to verify")
        raise (withdrawn or _state_problem(exc, number)) from None
    return moved, requested(Role.IMPORTER, message_id, body)


def decide_local_verification_response(
    record: VerificationResponseRecord,
    asked: VerificationFacts | None,
    existing: CertFacts | None,
    message_id: str,
    *,
    replacing: bool = False,
) -> tuple[Transition, VerificationMove]:
    """The issuing system answers a request the partner sent us, once; ``replacing``: in
    place of an earlier answer the partner never took (it failed or was rejected)."""
    request_id = record.correlation_id
    if asked is None or asked.role is not Role.EXPORTER:
        raise InvalidRecord(
            [
                Problem(
                    "correlation_id",
                    "unknown_request",
                    f"message {request_id} is not a verification request received from the partner",
                )
            ]
        )
    problems = []
    if asked.number != record.certificate_number:
        problems.append(
            Problem(
                "certificate_number",
                "request_mismatch",
                f"request {request_id} is about certificate {asked.number}, "
                f"not {record.certificate_number}",
            )
        )
    if asked.reference != record.request_reference:
        problems.append(
            Problem(
                "request_reference",
                "request_mismatch",
                f"request {request_id} has reference {asked.reference!r}, "
                f"not {record.request_reference!r}",
            )
        )
    if problems:
        raise InvalidRecord(problems)
    try:
        answer = answered_again if replacing else answered
        step = answer(asked, message_id, record.result.value)
    except IllegalVerificationStep:
        raise InvalidRecord(
            [
                Problem(
                    "correlation_id",
                    "already_answered",
                    f"request {request_id} was already answered",
                )
            ]
        ) from None
    number = asked.number
    existing = _submitted_known(
        existing, Role.EXPORTER, f"certificate {number} is not one this node sent"
    )
    try:
        moved = move(existing, Role.EXPORTER, number, Event.VERIFICATION_ANSWERED, message_id)
    except IllegalTransition as exc:
        raise _state_problem(exc, number) from None
    return moved, step
