"""Pure decisions: given a message and what the store knows, what should happen.

The service gathers the facts (prior copies of a message, certificate states), calls these
functions, and carries out the returned decision through its ports. Nothing here performs
I/O, so every rule of the exchange is testable without a broker or a database.

This module judges the messages a partner sends us. Settling the messages we sent lives
in ``settlement`` and the shared certificate facts and moves in ``transitions``; their
names are re-exported here so callers keep one place to import decisions from.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from eodes_node.core.envelope import Opened
from eodes_node.core.messages import (
    CooCancellation,
    CooIssued,
    CooReplacement,
    Feedback,
    Kind,
    MessageBase,
    ReceiptEntry,
    ReceiptStatus,
    VerificationRequest,
    VerificationResponse,
    certificate_number_of,
)
from eodes_node.core.models import CONTROL
from eodes_node.core.settlement import OutboundFacts as OutboundFacts
from eodes_node.core.settlement import decide_receipt as decide_receipt
from eodes_node.core.settlement import retries_exhausted as retries_exhausted
from eodes_node.core.state import (
    DECISION_EVENT,
    Event,
    IllegalTransition,
    IllegalVerificationStep,
    Role,
)
from eodes_node.core.transitions import CertFacts as CertFacts
from eodes_node.core.transitions import Transition as Transition
from eodes_node.core.transitions import applied as applied
from eodes_node.core.transitions import move as move
from eodes_node.core.verification import (
    VerificationFacts,
    VerificationMove,
    answered,
    requested,
)
from eodes_node.errors import InvalidMessage, RejectionCode


class Local(StrEnum):
    """Which local system a received message is handed to."""

    CLEARANCE = "clearance"
    ISSUING = "issuing"


@dataclass(frozen=True, slots=True)
class PriorInbound:
    digest: str
    receipt_entry: ReceiptEntry | None
    receipt_id: str | None = None
    # The signed receipt that answered it: a duplicate is answered with the same bytes.
    receipt_token: bytes | None = None


@dataclass(frozen=True, slots=True)
class InboundDecision:
    """What to do with one verified partner message."""

    entry: ReceiptEntry | None  # the receipt entry to answer with; None for receipts
    transitions: tuple[Transition, ...] = ()
    deliver_to: Local | None = None
    duplicate: bool = False
    verifications: tuple[VerificationMove, ...] = ()


def accepted_entry(opened: Opened) -> ReceiptEntry:
    return ReceiptEntry(
        message_id=opened.message.message_id,
        kind=opened.kind,
        digest=opened.digest,
        status=ReceiptStatus.ACCEPTED,
        certificate_number=certificate_number_of(opened.message),
    )


def rejection_entry(
    message_id: str,
    kind: Kind,
    digest: str,
    code: RejectionCode,
    text: str,
    certificate_number: str | None = None,
) -> ReceiptEntry:
    return ReceiptEntry(
        message_id=message_id,
        kind=kind,
        digest=digest,
        status=ReceiptStatus.REJECTED,
        code=code,
        text=printable(text)[:1024],
        certificate_number=certificate_number,
    )


def printable(text: str) -> str:
    """A reason with its control characters written out (``\\x00``): it may quote what
    the partner sent, and a receipt's text holds no control characters."""
    return CONTROL.sub(lambda found: f"\\x{ord(found.group()):02x}", text)


def decide_inbound(
    opened: Opened,
    *,
    prior: PriorInbound | None,
    certificate: CertFacts | None,
    referenced: CertFacts | None = None,
    verification: VerificationFacts | None = None,
) -> InboundDecision:
    """Decide on a verified partner message that is not a receipt; ``verification`` is
    the request a verification response correlates to, or the request already held
    under a verification request's own id, as we hold it.

    Raises ``InvalidMessage`` with the rejection code when the message must be refused.
    """
    message = opened.message
    if prior is not None:
        if prior.digest != opened.digest:
            raise InvalidMessage(
                RejectionCode.ID_CONFLICT,
                f"message id {message.message_id} was already used for different content",
            )
        return InboundDecision(entry=prior.receipt_entry, duplicate=True)
    steps: list[VerificationMove] = []
    deliver: Local | None
    try:
        if isinstance(message, VerificationRequest | VerificationResponse):
            transitions, deliver, steps = _verification_effects(message, certificate, verification)
        else:
            transitions, deliver = _inbound_effects(message, certificate, referenced)
    except (IllegalTransition, IllegalVerificationStep) as exc:
        raise InvalidMessage(RejectionCode.STATE_CONFLICT, str(exc)) from None
    return InboundDecision(
        accepted_entry(opened), tuple(transitions), deliver, verifications=tuple(steps)
    )


def _received(number: str, cert: CertFacts | None, message_id: str) -> Transition:
    """The first copy of a certificate creates it; the table has no move for a second."""
    try:
        return move(cert, Role.IMPORTER, number, Event.RECEIVED, message_id)
    except IllegalTransition:
        assert cert is not None  # a new certificate can always be received
        raise InvalidMessage(
            RejectionCode.STATE_CONFLICT,
            f"certificate {number} was already received in message {cert.coo_message_id}",
        ) from None


def _known(cert: CertFacts | None, role: Role, unknown: str) -> CertFacts:
    if cert is None or cert.role is not role:
        raise InvalidMessage(RejectionCode.UNKNOWN_CERTIFICATE, unknown)
    return cert


def _inbound_effects(
    message: MessageBase, cert: CertFacts | None, referenced: CertFacts | None
) -> tuple[list[Transition], Local | None]:
    mid = message.message_id
    match message:
        case CooIssued():
            return [_received(message.certificate.number, cert, mid)], Local.CLEARANCE
        case CooReplacement():
            moves = [_received(message.certificate.number, cert, mid)]
            ref = message.certificate.back_reference
            assert ref is not None  # guaranteed by the CooReplacement model
            if referenced is not None:
                moves.append(
                    move(referenced, Role.IMPORTER, ref.certificate_number, Event.REPLACED, mid)
                )
            return moves, Local.CLEARANCE
        case CooCancellation():
            number = message.cancellation.certificate_number
            cert = _known(
                cert,
                Role.IMPORTER,
                f"certificate {number} was never received here; nothing to cancel",
            )
            return [move(cert, Role.IMPORTER, number, Event.CANCELLED, mid)], Local.CLEARANCE
        case Feedback():
            number = message.feedback.certificate_number
            cert = _known(
                cert,
                Role.EXPORTER,
                f"feedback for certificate {number}, which this node never sent",
            )
            if message.correlation_id != cert.coo_message_id:
                raise InvalidMessage(
                    RejectionCode.UNKNOWN_CERTIFICATE,
                    f"feedback correlates to message {message.correlation_id}, but certificate "
                    f"{number} was sent in message {cert.coo_message_id}",
                )
            event = DECISION_EVENT[message.feedback.decision.value]
            return [move(cert, Role.EXPORTER, number, event, mid)], Local.ISSUING
    raise InvalidMessage(RejectionCode.TYPE_MISMATCH, f"{type(message).__name__} is not handled")


def _verification_effects(
    message: VerificationRequest | VerificationResponse,
    cert: CertFacts | None,
    asked: VerificationFacts | None,
) -> tuple[list[Transition], Local, list[VerificationMove]]:
    """A request about a certificate we sent goes to our issuing system; a response to a
    request we sent goes to our clearance system, once."""
    mid = message.message_id
    if isinstance(message, VerificationRequest):
        if asked is not None:
            # Our own requests share the table: the id is taken, by other content.
            raise InvalidMessage(
                RejectionCode.ID_CONFLICT,
                f"message id {mid} is already the id of another verification request",
            )
        number = message.request.certificate_number
        cert = _known(
            cert,
            Role.EXPORTER,
            f"verification request for certificate {number}, which this node never sent",
        )
        moves = [move(cert, Role.EXPORTER, number, Event.VERIFICATION_REQUESTED, mid)]
        return moves, Local.ISSUING, [requested(Role.EXPORTER, mid, message.request)]
    body = message.response
    number = body.certificate_number
    if asked is None or asked.role is not Role.IMPORTER or asked.number != number:
        raise InvalidMessage(
            RejectionCode.UNKNOWN_CERTIFICATE,
            f"verification response correlates to message {message.correlation_id}, which is "
            f"not a verification request this node sent about certificate {number}",
        )
    if asked.reference != body.request_reference:
        raise InvalidMessage(
            RejectionCode.UNKNOWN_CERTIFICATE,
            f"verification response names request reference {body.request_reference!r}, "
            f"but request {asked.request_id} has reference {asked.reference!r}",
        )
    cert = _known(cert, Role.IMPORTER, f"certificate {number} was never received here")
    step = answered(asked, mid, body.result.value)
    moves = [move(cert, Role.IMPORTER, number, Event.VERIFICATION_ANSWERED, mid)]
    return moves, Local.CLEARANCE, [step]
