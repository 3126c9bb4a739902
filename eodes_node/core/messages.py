"""Messages exchanged between two nodes. Each is the payload of one signed envelope.

Every message carries a unique id, its sender and receiver countries, when it was issued,
and, where it answers another message, that message's id (``correlation_id``).
Technical receipts and business feedback are deliberately different kinds: a receipt says
"received, verified, stored" (or why not); feedback says whether preference was granted.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    Field,
    StringConstraints,
    TypeAdapter,
    model_validator,
)

from eodes_node.core.bodies import Decision as Decision
from eodes_node.core.bodies import DenialReason as DenialReason
from eodes_node.core.bodies import FeedbackBody as FeedbackBody
from eodes_node.core.bodies import ImportDeclaration as ImportDeclaration
from eodes_node.core.bodies import ItemDecision as ItemDecision
from eodes_node.core.bodies import VerificationRequestBody as VerificationRequestBody
from eodes_node.core.bodies import VerificationResponseBody as VerificationResponseBody
from eodes_node.core.bodies import VerificationResponseRecord as VerificationResponseRecord
from eodes_node.core.bodies import VerificationResult as VerificationResult
from eodes_node.core.ids import MessageId as MessageId
from eodes_node.core.ids import new_message_id as new_message_id
from eodes_node.core.models import (
    NO_CONTROL_SCHEMA,
    Cancellation,
    Certificate,
    CertificateNumber,
    CountryCode,
    Record,
    no_control,
)
from eodes_node.errors import RejectionCode

# SHA-256 of the received compact JWS, base64url without padding.
Digest = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{43}$")]


class Kind(StrEnum):
    COO = "coo"
    COO_REPLACEMENT = "coo-replacement"
    COO_CANCELLATION = "coo-cancellation"
    RECEIPT = "receipt"
    FEEDBACK = "feedback"
    VERIFICATION_REQUEST = "verification-request"
    VERIFICATION_RESPONSE = "verification-response"

    @property
    def typ(self) -> str:
        """The JWS ``typ`` header that marks this kind; a verifier requires it to match."""
        return f"eodes-{self.value}+jws"


TYP_TO_KIND = {kind.typ: kind for kind in Kind}


class MessageBase(Record):
    message_id: MessageId
    sender: CountryCode
    receiver: CountryCode
    issued_at: AwareDatetime
    correlation_id: MessageId | None = None

    @model_validator(mode="after")
    def _distinct_parties(self) -> MessageBase:
        if self.sender == self.receiver:
            raise ValueError("sender and receiver must be different countries")
        return self


class CooIssued(MessageBase):
    kind: Literal["coo"] = "coo"
    certificate: Certificate

    @model_validator(mode="after")
    def _no_replacement_reference(self) -> CooIssued:
        ref = self.certificate.back_reference
        if ref is not None and ref.kind == "replaces":
            raise ValueError("a certificate that replaces another travels as coo-replacement")
        return self


class CooReplacement(MessageBase):
    kind: Literal["coo-replacement"] = "coo-replacement"
    certificate: Certificate

    @model_validator(mode="after")
    def _names_what_it_replaces(self) -> CooReplacement:
        ref = self.certificate.back_reference
        if ref is None or ref.kind != "replaces":
            raise ValueError(
                "a replacement must carry back_reference with kind 'replaces' naming the "
                "certificate it replaces"
            )
        return self


class CooCancellation(MessageBase):
    kind: Literal["coo-cancellation"] = "coo-cancellation"
    cancellation: Cancellation


class ReceiptStatus(StrEnum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"


class ReceiptEntry(Record):
    """The answer to one received message."""

    message_id: MessageId
    kind: Kind
    digest: Digest
    status: ReceiptStatus
    code: RejectionCode | None = None
    text: Annotated[
        str,
        StringConstraints(max_length=1024),
        AfterValidator(no_control),
        Field(json_schema_extra=NO_CONTROL_SCHEMA),
    ] = ""
    certificate_number: CertificateNumber | None = None

    @model_validator(mode="after")
    def _code_matches_status(self) -> ReceiptEntry:
        if (self.status is ReceiptStatus.REJECTED) != (self.code is not None):
            raise ValueError("a rejected entry needs a code; an accepted one has none")
        return self


class Receipt(MessageBase):
    """Signed technical acknowledgement; one receipt may answer several messages."""

    kind: Literal["receipt"] = "receipt"
    entries: Annotated[tuple[ReceiptEntry, ...], Field(min_length=1, max_length=500)]


class Feedback(MessageBase):
    """Business answer; ``correlation_id`` is the id of the e-CO message it concerns."""

    kind: Literal["feedback"] = "feedback"
    correlation_id: MessageId
    feedback: FeedbackBody


class VerificationRequest(MessageBase):
    kind: Literal["verification-request"] = "verification-request"
    request: VerificationRequestBody


class VerificationResponse(MessageBase):
    kind: Literal["verification-response"] = "verification-response"
    correlation_id: MessageId
    response: VerificationResponseBody


Message = Annotated[
    CooIssued
    | CooReplacement
    | CooCancellation
    | Receipt
    | Feedback
    | VerificationRequest
    | VerificationResponse,
    Field(discriminator="kind"),
]

MESSAGE_ADAPTER: TypeAdapter[Message] = TypeAdapter(Message)

MODEL_BY_KIND: dict[Kind, type[MessageBase]] = {
    Kind.COO: CooIssued,
    Kind.COO_REPLACEMENT: CooReplacement,
    Kind.COO_CANCELLATION: CooCancellation,
    Kind.RECEIPT: Receipt,
    Kind.FEEDBACK: Feedback,
    Kind.VERIFICATION_REQUEST: VerificationRequest,
    Kind.VERIFICATION_RESPONSE: VerificationResponse,
}


def certificate_number_of(message: MessageBase) -> str | None:
    """The certificate a message is about, for logs and state; None for receipts."""
    match message:
        case CooIssued() | CooReplacement():
            return message.certificate.number
        case CooCancellation():
            return message.cancellation.certificate_number
        case Feedback():
            return message.feedback.certificate_number
        case VerificationRequest():
            return message.request.certificate_number
        case VerificationResponse():
            return message.response.certificate_number
    return None


def issued_now(at: datetime) -> datetime:
    """Second precision keeps the wire form short and stable."""
    return at.replace(microsecond=0)


# Where the local record sits inside each kind of message.
BODY_FIELD: dict[Kind, str] = {
    Kind.COO: "certificate",
    Kind.COO_REPLACEMENT: "certificate",
    Kind.COO_CANCELLATION: "cancellation",
    Kind.RECEIPT: "entries",
    Kind.FEEDBACK: "feedback",
    Kind.VERIFICATION_REQUEST: "request",
    Kind.VERIFICATION_RESPONSE: "response",
}
