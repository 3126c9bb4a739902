"""Business rules that relate several fields of a certificate, driven by the agreements table.

Each rule returns the problems it finds, so a caller can report all of them at once: an
issuing-system developer fixes a record in one round trip, not one error at a time.

Rules read a certificate's ``Parts``: the fields they need, each ``None`` when it did not
parse. A record with schema errors still gets every rule whose fields did parse (an item
that parsed is checked against the agreement even when the header has an error), and no
rule ever sees a value that failed to parse.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta

from eodes_node.core.agreements import AGREEMENTS, Agreement
from eodes_node.core.codes import MASS_UNITS
from eodes_node.core.models import BackReference, Certificate, Item
from eodes_node.errors import Problem


@dataclass(frozen=True, slots=True)
class Parts:
    """What the rules read of one certificate; ``None`` where that field did not parse."""

    number: str | None = None
    agreement: str | None = None
    issue_date: date | None = None
    valid_until: date | None = None
    issued_retroactively: bool | None = None
    issuing_country: str | None = None
    exporter_country: str | None = None
    consignee_country: str | None = None
    departure_date: date | None = None
    item_count: int | None = None
    items: tuple[tuple[int, Item], ...] = ()  # (index in the record, item) of those parsed
    declaration_date: date | None = None
    certification_date: date | None = None
    back_reference: BackReference | None = None


def parts_of(cert: Certificate) -> Parts:
    """A certificate that parsed whole: every part is there."""
    header = cert.header
    return Parts(
        number=header.certificate_number,
        agreement=header.agreement,
        issue_date=header.issue_date,
        valid_until=header.valid_until,
        issued_retroactively=header.issued_retroactively,
        issuing_country=header.issuing_authority.country,
        exporter_country=cert.exporter.country,
        consignee_country=cert.consignee.country,
        departure_date=cert.transport.departure_date,
        item_count=len(cert.items),
        items=tuple(enumerate(cert.items)),
        declaration_date=cert.exporter_declaration.date,
        certification_date=cert.certification.date,
        back_reference=cert.back_reference,
    )


Rule = Callable[[Parts, Agreement], Iterator[Problem]]


def _parties(cert: Parts, ag: Agreement) -> Iterator[Problem]:
    named = (
        ("header.issuing_authority.country", cert.issuing_country),
        ("exporter.country", cert.exporter_country),
        ("consignee.country", cert.consignee_country),
    )
    for path, country in named:
        if country is not None and country not in ag.parties:
            yield Problem(
                path,
                "not_a_party",
                f"{country} is not a party to {ag.code}; parties are "
                + ", ".join(sorted(ag.parties)),
            )
    exporter, issuing = cert.exporter_country, cert.issuing_country
    if exporter is not None and issuing is not None and exporter != issuing:
        yield Problem(
            "exporter.country",
            "exporter_outside_issuing_country",
            f"the exporter is in {exporter} but the certificate is issued by an "
            f"authority of {issuing}",
        )
    if exporter is not None and cert.consignee_country == exporter:
        yield Problem(
            "consignee.country",
            "same_country",
            "the consignee must be in another country than the exporter",
        )


def _days_after(day: date, days: int) -> date | None:
    """``day`` plus ``days``, or None when that falls past the calendar's end (9999-12-31)."""
    try:
        return day + timedelta(days=days)
    except OverflowError:
        return None


def _validity(cert: Parts, ag: Agreement) -> Iterator[Problem]:
    issued, valid_until = cert.issue_date, cert.valid_until
    if issued is None or valid_until is None:
        return
    latest = _days_after(issued, ag.validity_days)
    if valid_until <= issued:
        yield Problem(
            "header.valid_until",
            "validity_order",
            f"valid_until {valid_until} must be after issue_date {issued}",
        )
    elif latest is None:
        yield Problem(
            "header.issue_date",
            "date_out_of_range",
            f"issue date {issued} is too close to the end of the calendar: the "
            f"{ag.validity_days} days of {ag.code} validity would run past {date.max}",
        )
    elif valid_until > latest:
        yield Problem(
            "header.valid_until",
            "validity_too_long",
            f"{ag.code} certificates are valid at most {ag.validity_days} days from issue; "
            f"latest allowed is {latest}",
        )


def _retroactive(cert: Parts, ag: Agreement) -> Iterator[Problem]:
    issued, departed = cert.issue_date, cert.departure_date
    flagged = cert.issued_retroactively
    if issued is None or departed is None or flagged is None:
        return
    late_by = (issued - departed).days
    if late_by > ag.retroactive_limit_days:
        yield Problem(
            "header.issue_date",
            "retroactive_limit",
            f"issued {late_by} days after departure; {ag.code} allows retroactive issue "
            f"up to {ag.retroactive_limit_days} days",
        )
    elif late_by > ag.retroactive_after_days and not flagged:
        yield Problem(
            "header.issued_retroactively",
            "retroactive_flag_missing",
            f"issued {late_by} days after departure (more than {ag.retroactive_after_days}), "
            "so issued_retroactively must be true",
        )
    elif late_by <= ag.retroactive_after_days and flagged:
        yield Problem(
            "header.issued_retroactively",
            "retroactive_flag_unexpected",
            f"issued {late_by} days after departure, within {ag.retroactive_after_days} days, "
            "so it is not retroactive",
        )


def _items(cert: Parts, ag: Agreement) -> Iterator[Problem]:
    if cert.item_count is not None and cert.item_count > ag.max_items:
        yield Problem(
            "items",
            "too_many_items",
            f"{cert.item_count} items; {ag.code} allows at most {ag.max_items} per certificate",
        )
    for index, item in cert.items:
        yield from _item(cert, ag, index, item)


def _item(cert: Parts, ag: Agreement, index: int, item: Item) -> Iterator[Problem]:
    """The problems of one item, in the order a reader meets its fields."""
    at = f"items[{index}]"
    if item.item_number != index + 1:
        yield Problem(
            f"{at}.item_number",
            "item_numbering",
            f"items must be numbered 1, 2, 3... in order; expected {index + 1}, "
            f"got {item.item_number}",
        )
    code, *qualifiers = item.origin_criterion.split(" ")
    yield from _criterion(ag, at, code, qualifiers)
    yield from _value_content(ag, at, code, item)
    if item.gross_weight is not None and item.gross_weight.unit not in MASS_UNITS:
        yield Problem(
            f"{at}.gross_weight.unit",
            "weight_unit",
            f"gross weight needs a mass unit ({', '.join(sorted(MASS_UNITS))}), "
            f"got {item.gross_weight.unit}",
        )
    if cert.issue_date is not None and item.invoice.date > cert.issue_date:
        yield Problem(
            f"{at}.invoice.date",
            "invoice_after_issue",
            f"invoice date {item.invoice.date} is after the issue date {cert.issue_date}",
        )


def _criterion(ag: Agreement, at: str, code: str, qualifiers: list[str]) -> Iterator[Problem]:
    if code not in ag.criteria:
        yield Problem(
            f"{at}.origin_criterion",
            "criterion_unknown",
            f"{code!r} is not an origin criterion of {ag.code}; allowed: "
            + ", ".join(sorted(ag.criteria)),
        )
    bad = [q for q in qualifiers if q not in ag.qualifiers]
    if bad:
        allowed = ", ".join(sorted(ag.qualifiers)) or "none"
        yield Problem(
            f"{at}.origin_criterion",
            "criterion_qualifier",
            f"qualifier {' '.join(bad)} is not allowed under {ag.code} (allowed: {allowed})",
        )
    elif len(qualifiers) > ag.max_qualifiers:
        yield Problem(
            f"{at}.origin_criterion",
            "criterion_qualifier",
            f"at most {ag.max_qualifiers} qualifiers under {ag.code}",
        )


def _value_content(ag: Agreement, at: str, code: str, item: Item) -> Iterator[Problem]:
    """A value content criterion needs the FOB value and the percentage; others omit it."""
    if code in ag.value_content_criteria:
        if item.fob_value is None:
            yield Problem(
                f"{at}.fob_value",
                "fob_required",
                f"criterion {code} requires the FOB value and its currency",
            )
        if item.rvc_percent is None:
            yield Problem(
                f"{at}.rvc_percent",
                "rvc_required",
                f"criterion {code} requires the value content percentage (rounded down)",
            )
    elif item.rvc_percent is not None:
        yield Problem(
            f"{at}.rvc_percent",
            "rvc_unexpected",
            f"criterion {code} is not a value content criterion; omit rvc_percent",
        )


def _declarations(cert: Parts, ag: Agreement) -> Iterator[Problem]:
    issue, declared, certified = cert.issue_date, cert.declaration_date, cert.certification_date
    if issue is None:
        return
    if declared is not None and declared > issue:
        yield Problem(
            "exporter_declaration.date",
            "declaration_after_issue",
            f"the exporter's declaration ({declared}) cannot be dated "
            f"after the issue date ({issue})",
        )
    if certified is not None and certified != issue:
        yield Problem(
            "certification.date",
            "certification_date",
            f"the authority certifies on the issue date ({issue}), got {certified}",
        )


def _back_reference(cert: Parts, ag: Agreement) -> Iterator[Problem]:
    ref = cert.back_reference
    if ref is None:
        return
    if cert.number is not None and ref.certificate_number == cert.number:
        yield Problem(
            "back_reference.certificate_number",
            "self_reference",
            "a certificate cannot refer back to itself",
        )
    if cert.issue_date is not None and ref.issue_date > cert.issue_date:
        yield Problem(
            "back_reference.issue_date",
            "reference_in_future",
            "the referenced certificate must be issued before this one",
        )


RULES: tuple[Rule, ...] = (
    _parties,
    _validity,
    _retroactive,
    _items,
    _declarations,
    _back_reference,
)


def check_certificate(cert: Certificate) -> list[Problem]:
    """All business-rule problems of a structurally valid certificate."""
    return check_parts(parts_of(cert))


def check_parts(parts: Parts) -> list[Problem]:
    """The business-rule problems of what parsed of a certificate: every rule whose
    fields are there. Without an agreement that parsed, no rule applies."""
    if parts.agreement is None:
        return []
    agreement = AGREEMENTS.get(parts.agreement)
    if agreement is None:
        return [
            Problem(
                "header.agreement",
                "agreement_unknown",
                f"unknown agreement {parts.agreement!r}; known: " + ", ".join(sorted(AGREEMENTS)),
            )
        ]
    return [problem for rule in RULES for problem in rule(parts, agreement)]
