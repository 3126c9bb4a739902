"""Business rules that relate several fields of a certificate, driven by the agreements table.

Each rule returns the problems it finds, so a caller can report all of them at once: an
issuing-system developer fixes a record in one round trip, not one error at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date, timedelta

from eodes_node.core.agreements import AGREEMENTS, Agreement
from eodes_node.core.codes import MASS_UNITS
from eodes_node.core.models import Certificate, Item
from eodes_node.errors import Problem

Rule = Callable[[Certificate, Agreement], Iterator[Problem]]


def _parties(cert: Certificate, ag: Agreement) -> Iterator[Problem]:
    named = (
        ("header.issuing_authority.country", cert.header.issuing_authority.country),
        ("exporter.country", cert.exporter.country),
        ("consignee.country", cert.consignee.country),
    )
    for path, country in named:
        if country not in ag.parties:
            yield Problem(
                path,
                "not_a_party",
                f"{country} is not a party to {ag.code}; parties are "
                + ", ".join(sorted(ag.parties)),
            )
    if cert.exporter.country != cert.header.issuing_authority.country:
        yield Problem(
            "exporter.country",
            "exporter_outside_issuing_country",
            f"the exporter is in {cert.exporter.country} but the certificate is issued by an "
            f"authority of {cert.header.issuing_authority.country}",
        )
    if cert.consignee.country == cert.exporter.country:
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


def _validity(cert: Certificate, ag: Agreement) -> Iterator[Problem]:
    h = cert.header
    latest = _days_after(h.issue_date, ag.validity_days)
    if h.valid_until <= h.issue_date:
        yield Problem(
            "header.valid_until",
            "validity_order",
            f"valid_until {h.valid_until} must be after issue_date {h.issue_date}",
        )
    elif latest is None:
        yield Problem(
            "header.issue_date",
            "date_out_of_range",
            f"issue date {h.issue_date} is too close to the end of the calendar: the "
            f"{ag.validity_days} days of {ag.code} validity would run past {date.max}",
        )
    elif h.valid_until > latest:
        yield Problem(
            "header.valid_until",
            "validity_too_long",
            f"{ag.code} certificates are valid at most {ag.validity_days} days from issue; "
            f"latest allowed is {latest}",
        )


def _retroactive(cert: Certificate, ag: Agreement) -> Iterator[Problem]:
    late_by = (cert.header.issue_date - cert.transport.departure_date).days
    flagged = cert.header.issued_retroactively
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


def _items(cert: Certificate, ag: Agreement) -> Iterator[Problem]:
    if len(cert.items) > ag.max_items:
        yield Problem(
            "items",
            "too_many_items",
            f"{len(cert.items)} items; {ag.code} allows at most {ag.max_items} per certificate",
        )
    for index, item in enumerate(cert.items):
        yield from _item(cert, ag, index, item)


def _item(cert: Certificate, ag: Agreement, index: int, item: Item) -> Iterator[Problem]:
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
    if item.invoice.date > cert.header.issue_date:
        yield Problem(
            f"{at}.invoice.date",
            "invoice_after_issue",
            f"invoice date {item.invoice.date} is after the issue date {cert.header.issue_date}",
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


def _declarations(cert: Certificate, ag: Agreement) -> Iterator[Problem]:
    issue = cert.header.issue_date
    if cert.exporter_declaration.date > issue:
        yield Problem(
            "exporter_declaration.date",
            "declaration_after_issue",
            f"the exporter's declaration ({cert.exporter_declaration.date}) cannot be dated "
            f"after the issue date ({issue})",
        )
    if cert.certification.date != issue:
        yield Problem(
            "certification.date",
            "certification_date",
            f"the authority certifies on the issue date ({issue}), got {cert.certification.date}",
        )


def _back_reference(cert: Certificate, ag: Agreement) -> Iterator[Problem]:
    ref = cert.back_reference
    if ref is None:
        return
    if ref.certificate_number == cert.number:
        yield Problem(
            "back_reference.certificate_number",
            "self_reference",
            "a certificate cannot refer back to itself",
        )
    if ref.issue_date > cert.header.issue_date:
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
    agreement = AGREEMENTS.get(cert.header.agreement)
    if agreement is None:
        return [
            Problem(
                "header.agreement",
                "agreement_unknown",
                f"unknown agreement {cert.header.agreement!r}; known: "
                + ", ".join(sorted(AGREEMENTS)),
            )
        ]
    return [problem for rule in RULES for problem in rule(cert, agreement)]
