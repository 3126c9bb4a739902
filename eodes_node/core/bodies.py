"""The business records that feedback and verification messages carry.

The clearance and issuing systems submit these locally, and the node wraps each in its
message (``messages``); kept apart so the envelope kinds read without the rules of the
decision and verification records inside them.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints, field_validator, model_validator
from pydantic_core import PydanticCustomError

from eodes_node.core.ids import MessageId
from eodes_node.core.models import (
    NO_CONTROL_SCHEMA,
    CertificateNumber,
    Record,
    ShortText,
    Text,
    no_control,
)


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


class VerificationResult(StrEnum):
    CONFIRMED = "confirmed"
    NOT_CONFIRMED = "not_confirmed"


class VerificationResponseBody(Record):
    certificate_number: CertificateNumber
    request_reference: ShortText
    result: VerificationResult
    findings: Text


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
