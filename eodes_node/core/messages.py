"""Messages exchanged between two nodes. Each is the payload of one signed envelope.

Every message carries a unique id, its sender and receiver countries, when it was issued,
and, where it answers another message, that message's id (``correlation_id``).
Technical receipts and business feedback are deliberately different kinds: a receipt says
"received, verified, stored" (or why not); feedback says whether preference was granted.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    Field,
    StringConstraints,
    TypeAdapter,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from eodes_node.core.models import (
    NO_CONTROL_SCHEMA,
    Cancellation,
    Certificate,
    CertificateNumber,
    CountryCode,
    Record,
    ShortText,
    Text,
    no_control,
)
from eodes_node.core.uuid7 import new_uuid7
from eodes_node.errors import RejectionCode

MessageId = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
]
# SHA-256 of the received compact JWS, base64url without padding.
Digest = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{43}$")]


def new_message_id() -> str:
    """A UUIDv7: time-ordered, and still the lower-case UUID form ``MessageId`` checks."""
    return new_uuid7()


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


class Decision(StrEnum):
    GRANTED = "granted"
    DENIED = "denied"
    PARTIAL = "partial"


class DenialReason(StrEnum):
    """Why the importing customs refused preference, as matching rules report it."""

    CO_NOT_RECEIVED = "CO_NOT_RECEIVED"
    ITEM_MAPPING = "ITEM_MAPPING"
    UNIT_MISMATCH = "UNIT_MISMATCH"
    QUANTITY_EXCEEDED = "QUANTITY_EXCEEDED"
    OUTSIDE_VALIDITY = "OUTSIDE_VALIDITY"
    HS_MISMATCH = "HS_MISMATCH"
    ALREADY_USED = "ALREADY_USED"
    CANCELLED_OR_REPLACED = "CANCELLED_OR_REPLACED"
    ORIGIN_NOT_MET = "ORIGIN_NOT_MET"


class ItemDecision(Record):
    item_number: Annotated[int, Field(ge=1, le=999)]
    granted: bool
    reason: DenialReason | None = None
    remark: Annotated[
        str,
        StringConstraints(max_length=512),
        AfterValidator(no_control),
        Field(json_schema_extra=NO_CONTROL_SCHEMA),
    ] = ""

    @model_validator(mode="after")
    def _reason_for_denial(self) -> ItemDecision:
        if self.granted and self.reason is not None:
            raise ValueError("a granted item has no denial reason")
        if not self.granted and self.reason is None:
            raise ValueError("a denied item needs a reason code")
        return self


class ImportDeclaration(Record):
    reference: ShortText
    date: date


class FeedbackBody(Record):
    """The clearance system's decision on one certificate, as it submits it locally."""

    certificate_number: CertificateNumber
    decision: Decision
    import_declaration: ImportDeclaration
    items: Annotated[tuple[ItemDecision, ...], Field(min_length=1)]

    @model_validator(mode="after")
    def _decision_matches_items(self) -> FeedbackBody:
        granted = [d.granted for d in self.items]
        expected = (
            Decision.GRANTED
            if all(granted)
            else Decision.DENIED
            if not any(granted)
            else Decision.PARTIAL
        )
        if self.decision is not expected:
            raise ValueError(
                f"decision {self.decision.value!r} contradicts the items: "
                f"{sum(granted)} of {len(granted)} granted means {expected.value!r}"
            )
        numbers = [d.item_number for d in self.items]
        if len(set(numbers)) != len(numbers):
            raise ValueError("each item_number may be decided once")
        return self


class Feedback(MessageBase):
    """Business answer; ``correlation_id`` is the id of the e-CO message it concerns."""

    kind: Literal["feedback"] = "feedback"
    correlation_id: MessageId
    feedback: FeedbackBody


class VerificationRequestBody(Record):
    """The importing customs' request to confirm a certificate; also the record the
    clearance system submits. ``item_numbers`` empty: the whole certificate."""

    certificate_number: CertificateNumber
    request_reference: ShortText
    item_numbers: Annotated[
        tuple[Annotated[int, Field(ge=1, le=999)], ...],
        Field(json_schema_extra={"uniqueItems": True}),
    ] = ()
    questions: Text
    reply_due: date

    @field_validator("item_numbers")
    @classmethod
    def _items_once(cls, numbers: tuple[int, ...]) -> tuple[int, ...]:
        repeated = sorted({n for n in numbers if numbers.count(n) > 1})
        if repeated:
            raise PydanticCustomError(
                "repeated_item",
                "item {items} named more than once; name each item once",
                {"items": ", ".join(str(n) for n in repeated)},
            )
        return numbers


class VerificationRequest(MessageBase):
    kind: Literal["verification-request"] = "verification-request"
    request: VerificationRequestBody


class VerificationResult(StrEnum):
    CONFIRMED = "confirmed"
    NOT_CONFIRMED = "not_confirmed"


class VerificationResponseBody(Record):
    certificate_number: CertificateNumber
    request_reference: ShortText
    result: VerificationResult
    findings: Text


class VerificationResponse(MessageBase):
    kind: Literal["verification-response"] = "verification-response"
    correlation_id: MessageId
    response: VerificationResponseBody


class VerificationResponseRecord(VerificationResponseBody):
    """What the issuing system submits to answer a request: the response, and the
    ``correlation_id`` of the request it answers (its message id on the issuing queue)."""

    correlation_id: MessageId

    def body(self) -> VerificationResponseBody:
        return VerificationResponseBody(
            certificate_number=self.certificate_number,
            request_reference=self.request_reference,
            result=self.result,
            findings=self.findings,
        )


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
