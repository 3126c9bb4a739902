"""The electronic certificate of origin (e-CO) as the issuing system submits it.

Models are strict, frozen and closed (``extra="forbid"``): a field we do not know is an
error, never silently dropped. Field-level checks (formats, code lists) live in the types
below; rules that relate several fields are table-driven and live in ``rules.py``.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from eodes_node.core.codes import UNITS_OF_MEASURE, country_codes, currency_codes


class Record(BaseModel):
    """Base of every wire and record model."""

    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")


def shown(value: Any) -> str:
    """A refused value as the record's author wrote it in JSON, cut short when long, so a
    problem names what was refused without echoing a whole document."""
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:37] + "...")
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float | Decimal):
        return str(value)
    if isinstance(value, dict):
        return "a JSON object"
    if isinstance(value, list | tuple):
        return "an empty JSON array" if not value else "a JSON array"
    return type(value).__name__


# Code lists are checked before the length constraints, so a wrong code is refused as
# "not a country code", not as "too long"; a value that is not text is left to the
# string type, which refuses it as such.
def _country(value: Any) -> Any:
    if isinstance(value, str) and value not in country_codes():
        raise PydanticCustomError(
            "country_code",
            "{value} is not an ISO 3166-1 alpha-2 country code",
            {"value": shown(value)},
        )
    return value


def _currency(value: Any) -> Any:
    if isinstance(value, str) and value not in currency_codes():
        raise PydanticCustomError(
            "currency_code", "{value} is not an ISO 4217 currency code", {"value": shown(value)}
        )
    return value


def _unit(value: Any) -> Any:
    if isinstance(value, str) and value not in UNITS_OF_MEASURE:
        raise PydanticCustomError(
            "unit_code",
            "{value} is not a UN/ECE Recommendation 20 unit code accepted on certificates "
            "(for example KGM, C62, LTR)",
            {"value": shown(value)},
        )
    return value


_HS_CODE = re.compile(r"[0-9]{6,10}")


def _hs_code(value: str) -> str:
    if not _HS_CODE.fullmatch(value):
        raise PydanticCustomError(
            "hs_code",
            "HS code must be 6 to 10 digits with no dots or spaces, got {value}",
            {"value": shown(value)},
        )
    return value


_DECIMAL = re.compile(r"(0|[1-9][0-9]{0,14})(\.[0-9]{1,6})?")


def _decimal(value: Any) -> Any:
    # Amounts travel as strings so no binary float ever rounds a quantity or a price.
    if isinstance(value, Decimal) and value.is_finite() and value >= 0:
        return value
    if isinstance(value, str) and _DECIMAL.fullmatch(value):
        return Decimal(value)
    raise PydanticCustomError(
        "decimal_string",
        'must be a non-negative decimal written as a JSON string such as "1250.50" '
        "(at most 15 integer and 6 fractional digits), got {value}",
        {"value": shown(value)},
    )


CountryCode = Annotated[
    str,
    StringConstraints(min_length=2, max_length=2),
    BeforeValidator(_country),
]
CurrencyCode = Annotated[
    str, StringConstraints(min_length=3, max_length=3), BeforeValidator(_currency)
]
UnitCode = Annotated[str, StringConstraints(min_length=1, max_length=3), BeforeValidator(_unit)]
HsCode = Annotated[
    str,
    AfterValidator(_hs_code),
    WithJsonSchema({"type": "string", "pattern": "^[0-9]{6,10}$"}),
]
DecimalString = Annotated[
    Decimal,
    BeforeValidator(_decimal),
    WithJsonSchema({"type": "string", "pattern": r"^(0|[1-9][0-9]{0,14})(\.[0-9]{1,6})?$"}),
]
# C0 control characters other than tab, line feed and carriage return. They have no
# place in the text of a certificate, and PostgreSQL text columns cannot hold NUL.
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
NO_CONTROL_SCHEMA: dict[str, Any] = {"not": {"pattern": CONTROL.pattern}}


def no_control(value: str) -> str:
    """Refuses C0 control characters other than tab, line feed and carriage return."""
    found = CONTROL.search(value)
    if found is not None:
        raise PydanticCustomError(
            "control_character",
            "{value} holds the control character {character} at position {position}; "
            "text may hold tabs and line breaks, no other control characters",
            {
                "value": shown(value),
                "character": f"U+{ord(found.group()):04X}",
                "position": found.start() + 1,
            },
        )
    return value


# Free text: not blank, and no control characters but tabs and line breaks.
Text = Annotated[
    str,
    StringConstraints(min_length=1, max_length=512, pattern=r"\S"),
    AfterValidator(no_control),
    Field(json_schema_extra=NO_CONTROL_SCHEMA),
]
ShortText = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128, pattern=r"\S"),
    AfterValidator(no_control),
    Field(json_schema_extra=NO_CONTROL_SCHEMA),
]
CertificateNumber = Annotated[str, StringConstraints(pattern=r"^[A-Z0-9][A-Z0-9/-]{3,34}$")]
# UN/LOCODE: country code + 3 characters, e.g. KRPUS (Busan), CNSHA (Shanghai).
LoCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}[A-Z2-9]{3}$")]
ReferenceCode = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9]{4,32}$")]
# A code from the agreement's list, optionally followed by qualifiers: "CTC ACU".
OriginCriterion = Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z-]{0,9}( [A-Z]{2,5}){0,3}$")]


def pattern_of(constrained: Any) -> str:
    """The regular expression a constrained string type (``LoCode``...) is checked with."""
    for meta in getattr(constrained, "__metadata__", ()):
        if isinstance(meta, StringConstraints) and meta.pattern is not None:
            return str(meta.pattern)
    raise TypeError(f"{constrained!r} has no pattern")


# What each pattern means, in the words of a certificate: the rule a refusal names and
# its message, where {value} is the refused value.
PATTERN_MEANINGS: dict[str, tuple[str, str]] = {
    pattern_of(LoCode): (
        "locode",
        "{value} is not a UN/LOCODE (two-letter country code and three letters or "
        "digits 2-9, e.g. KRPUS)",
    ),
    pattern_of(CertificateNumber): (
        "certificate_number_format",
        "{value} is not a certificate number (4 to 35 capital letters, digits, '/' or "
        "'-', starting with a letter or digit)",
    ),
    pattern_of(ReferenceCode): (
        "reference_code_format",
        "{value} is not a reference code (4 to 32 letters or digits)",
    ),
    pattern_of(OriginCriterion): (
        "criterion_format",
        "{value} is not an origin criterion (a code such as WO, PE or CTC, then at most "
        "three qualifiers of 2 to 5 capital letters, e.g. 'CTC ACU')",
    ),
    pattern_of(Text): ("blank", "{value} is blank: write the text, not only spaces"),
}


class Authority(Record):
    name: Text
    country: CountryCode
    signatory: ShortText


class Party(Record):
    name: Text
    address: Text
    country: CountryCode
    tax_id: ShortText | None = None


class ThirdPartyOperator(Record):
    """A company in a third country that invoices the goods."""

    name: Text
    country: CountryCode


ProducerNotice = Literal["SAME", "AVAILABLE UPON REQUEST"]


class Header(Record):
    certificate_number: CertificateNumber
    issue_date: date
    place_of_issue: ShortText
    issuing_authority: Authority
    agreement: ShortText
    valid_until: date
    issued_retroactively: bool = False
    # Printed on the certificate so anyone can check its authenticity online.
    reference_number: ShortText
    reference_code: ReferenceCode


class Transport(Record):
    departure_date: date
    means: Literal["VESSEL", "AIRCRAFT", "TRAIN", "VEHICLE"]
    vehicle_id: ShortText
    port_of_loading: LoCode
    port_of_discharge: LoCode
    transshipment_ports: tuple[LoCode, ...] = ()


class Quantity(Record):
    value: DecimalString
    unit: UnitCode


class Money(Record):
    amount: DecimalString
    currency: CurrencyCode


class Invoice(Record):
    number: ShortText
    date: date


class Item(Record):
    item_number: Annotated[int, Field(ge=1, le=999)]
    marks_and_numbers: ShortText = "N/M"
    package_count: Annotated[int, Field(ge=0)]
    package_kind: ShortText
    description: Text
    hs_code: HsCode
    origin_criterion: OriginCriterion
    rvc_percent: Annotated[int, Field(ge=0, le=100)] | None = None
    quantity: Quantity
    gross_weight: Quantity | None = None
    fob_value: Money | None = None
    invoice: Invoice


class Declaration(Record):
    place: ShortText
    date: date
    signatory: ShortText


class Certification(Declaration):
    stamp_id: ShortText | None = None


class BackReference(Record):
    """Names an earlier certificate this one replaces, copies or builds on."""

    kind: Literal["replaces", "certified_true_copy", "back_to_back"]
    certificate_number: CertificateNumber
    issue_date: date
    reason: Text


class Certificate(Record):
    """One e-CO as issued; the unit that travels, is stored, and receives feedback."""

    header: Header
    exporter: Party
    producer: Party | ProducerNotice
    consignee: Party
    third_party_operator: ThirdPartyOperator | None = None
    transport: Transport
    items: Annotated[tuple[Item, ...], Field(min_length=1)]
    exporter_declaration: Declaration
    certification: Certification
    back_reference: BackReference | None = None

    @property
    def number(self) -> str:
        return self.header.certificate_number


class Cancellation(Record):
    """The issuing authority withdraws a certificate that has not been used."""

    certificate_number: CertificateNumber
    issuing_authority: Authority
    cancelled_on: date
    reason: Text
