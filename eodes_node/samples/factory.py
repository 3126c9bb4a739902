"""Realistic, valid e-CO records, cancellations and feedback for demos, tests and benchmarks.

Deterministic for a given seed, so a failing test or benchmark can be replayed exactly.
Realistic means what a reviewer from a customs service would not stumble over: a ship
sails a voyage and a flight has a flight number, heavy bulk goes by sea, weights follow
from the goods and their packaging, and each country's certificates come from its own
issuing authorities (tables in ``data``).
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

import pycountry

from eodes_node.core.agreements import AGREEMENTS, Agreement
from eodes_node.core.messages import (
    FeedbackBody,
)
from eodes_node.core.models import (
    Authority,
    BackReference,
    Cancellation,
    Certificate,
    Certification,
    Declaration,
    Header,
    Invoice,
    Item,
    Money,
    Party,
    ProducerNotice,
    Quantity,
    ThirdPartyOperator,
    Transport,
)
from eodes_node.core.records import checked_certificate
from eodes_node.samples import answers, data

# Whom a country trades with first, when only the agreement is given.
PARTNER_PREFERENCE = ("KR", "CN", "VN", "JP", "SG", "ID", "TH", "MY", "IN", "AU", "PH")


def link_agreement(exporter: str, importer: str) -> str:
    """The agreement that binds both countries with the fewest other parties (bilateral
    first), so a link's samples use the agreement its certificates normally travel under."""
    covering = [a for a in AGREEMENTS.values() if {exporter, importer} <= a.parties]
    if not covering:
        raise ValueError(f"no agreement in the table binds both {exporter} and {importer}")
    return min(covering, key=lambda a: (len(a.parties), a.code)).code


def _rank(country: str) -> tuple[int, str]:
    if country in PARTNER_PREFERENCE:
        return PARTNER_PREFERENCE.index(country), country
    return len(PARTNER_PREFERENCE), country


def _country_name(code: str) -> str:
    country = pycountry.countries.get(alpha_2=code)
    return str(getattr(country, "common_name", None) or country.name) if country else code


def _parties_of(
    agreement: Agreement, exporter: str | None, importer: str | None
) -> tuple[str, str]:
    """Exporter and importer: the given ones, else the agreement's most likely pair."""
    ranked = sorted(agreement.parties, key=_rank)
    exporter = exporter or next(c for c in ranked if c != importer)
    importer = importer or next(c for c in ranked if c != exporter)
    for role, code in (("exporter", exporter), ("importer", importer)):
        if code not in agreement.parties:
            parties = ", ".join(sorted(agreement.parties))
            raise ValueError(f"{role} {code} is not a party to {agreement.code} ({parties})")
    if exporter == importer:
        raise ValueError("exporter and importer must differ")
    return exporter, importer


class SampleFactory:
    """Builds certificates for one agreement and one direction of trade."""

    def __init__(
        self,
        agreement: str = "KCFTA",
        *,
        exporter: str | None = None,
        importer: str | None = None,
        seed: int | None = None,
        issue_date: date | None = None,
    ) -> None:
        if agreement not in AGREEMENTS:
            raise ValueError(f"unknown agreement {agreement!r}; known: {', '.join(AGREEMENTS)}")
        self.agreement: Agreement = AGREEMENTS[agreement]
        self.exporter, self.importer = _parties_of(self.agreement, exporter, importer)
        self.rng = random.Random(seed)  # noqa: S311 - test data, not secrets
        self.issue_date = issue_date or date.today()
        self.serial = self.rng.randrange(1, 9_000_000)
        made_here = [p for p in data.PRODUCTS if self.exporter in p.origins]
        self.products = made_here + [p for p in data.PRODUCTS if not p.origins]

    def _signatory(self, country: str) -> str:
        return self.rng.choice(data.SIGNATORIES.get(country, data.GENERIC_SIGNATORIES))

    def _party(self, country: str) -> Party:
        first, second, streets = data.NAME_PARTS.get(country, data.GENERIC_NAME_PARTS)
        rng = self.rng
        name = f"{rng.choice(first)} {rng.choice(second)}"
        address = f"{rng.randrange(1, 999)}, {rng.choice(streets)}"
        if country not in data.NAME_PARTS:
            address += f", {_country_name(country)}"
        tax_id = f"{country}{rng.randrange(10**9, 10**10)}" if rng.random() < 0.7 else None
        return Party(name=name, address=address, country=country, tax_id=tax_id)

    def _authority(self) -> tuple[Authority, str]:
        fallback = ((f"Ministry of Trade of {_country_name(self.exporter)}", ("Capital",)),)
        name, places = self.rng.choice(data.AUTHORITIES.get(self.exporter, fallback))
        authority = Authority(
            name=name, country=self.exporter, signatory=self._signatory(self.exporter)
        )
        return authority, self.rng.choice(places)

    def _lot(self, product: data.Product) -> tuple[Decimal, int]:
        """A quantity in the product's usual range, and the packages it fills: pieces come
        in whole packages, goods by mass or volume fill the last package partly."""
        low, high = product.lot
        quantity = Decimal(self.rng.randrange(low, high + 1))
        per = product.per_package
        if not per:
            return quantity, 0
        if product.unit in {"C62", "PR", "SET"}:
            quantity = max(per, (quantity / per).to_integral_value(ROUND_FLOOR) * per)
        return quantity, int((quantity / per).to_integral_value(ROUND_CEILING))

    def _item(self, number: int, product: data.Product, issue: date) -> Item:
        rng, ag = self.rng, self.agreement
        criterion = rng.choice(sorted(ag.criteria))
        if ag.qualifiers and rng.random() < 0.2:
            criterion += " " + rng.choice(sorted(ag.qualifiers))
        value_content = criterion.split(" ")[0] in ag.value_content_criteria
        quantity, packages = self._lot(product)
        # Gross = net plus packaging: a few per cent for cartons and pallets, none in bulk.
        tare = (
            Decimal(1) if not product.per_package else Decimal(self.rng.randrange(102, 110)) / 100
        )
        weight = (quantity * product.kg_per_unit * tare).quantize(Decimal("0.1"))
        with_fob = value_content or rng.random() < 0.5
        return Item(
            item_number=number,
            marks_and_numbers=rng.choice(
                ("N/M", f"LOT-{rng.randrange(100, 999)}", "AS PER INVOICE")
            ),
            package_count=packages,
            package_kind=product.package_kind,
            description=product.description,
            hs_code=product.hs_code,
            origin_criterion=criterion,
            rvc_percent=rng.randrange(40, 96) if value_content else None,
            quantity=Quantity(value=quantity, unit=product.unit),
            gross_weight=Quantity(value=max(weight, Decimal("0.1")), unit="KGM"),
            fob_value=(
                Money(
                    amount=(quantity * product.unit_price).quantize(Decimal("0.01")), currency="USD"
                )
                if with_fob
                else None
            ),
            invoice=Invoice(
                number=f"INV-{issue.year}-{rng.randrange(10000, 99999)}",
                date=issue - timedelta(days=rng.randrange(0, 5)),
            ),
        )

    def _transport(self, goods: list[data.Product], departure: date) -> Transport:
        """Means first (bulk goes by sea, light goods may fly, neighbours use land), then a
        vehicle id and ports that belong to that means."""
        rng, exp, imp = self.rng, self.exporter, self.importer
        land = data.LAND_ROUTES.get(frozenset({exp, imp}))
        if land is not None and rng.random() < 0.4:
            points, means = land
            mode = rng.choice(means)
            vehicle = (
                f"CR EXPRESS {rng.randrange(10000, 99999)}"
                if mode == "TRAIN"
                else f"{exp} {rng.randrange(10, 99)}C-{rng.randrange(10000, 99999)}"
            )
            return Transport(
                departure_date=departure,
                means=mode,
                vehicle_id=vehicle,
                port_of_loading=points[exp],
                port_of_discharge=points[imp],
            )
        airlines = data.AIRLINES.get(exp, ()) + data.AIRLINES.get(imp, ())
        if airlines and all(p.air for p in goods) and rng.random() < 0.5:
            return Transport(
                departure_date=departure,
                means="AIRCRAFT",
                vehicle_id=f"{rng.choice(airlines)}{rng.randrange(100, 9999):04d}",
                port_of_loading=rng.choice(data.AIRPORTS.get(exp, ("SGSIN",))),
                port_of_discharge=rng.choice(data.AIRPORTS.get(imp, ("SGSIN",))),
            )
        voyage = f"{rng.randrange(1, 999):03d}{rng.choice('EWNS')}"
        return Transport(
            departure_date=departure,
            means="VESSEL",
            vehicle_id=f"{rng.choice(data.VESSELS)} V.{voyage}",
            port_of_loading=rng.choice(data.SEAPORTS.get(exp, ("SGSIN",))),
            port_of_discharge=rng.choice(data.SEAPORTS.get(imp, ("SGSIN",))),
        )

    def _third_party(self) -> ThirdPartyOperator | None:
        if self.rng.random() >= 0.1:
            return None
        outside = sorted({"SG", "HK", "AE", "CH"} - {self.exporter, self.importer})
        return ThirdPartyOperator(
            name=f"{self.rng.choice(data.GENERIC_NAME_PARTS[0])} Trading Ltd.",
            country=self.rng.choice(outside),
        )

    def certificate(self) -> Certificate:
        rng, ag = self.rng, self.agreement
        issue = self.issue_date
        self.serial += 1
        retro = rng.random() < 0.05
        departure = issue - timedelta(days=rng.randrange(10, 40) if retro else rng.randrange(0, 4))
        authority, place = self._authority()
        producer: Party | ProducerNotice = (
            self._party(self.exporter)
            if rng.random() < 0.4
            else rng.choice(("SAME", "AVAILABLE UPON REQUEST"))
        )
        number = f"{self.exporter}{issue.year}{ag.code.replace('-', '')[:5]}{self.serial:07d}"
        item_count = min(ag.max_items, rng.choice((1, 1, 2, 3, 4, 6, 10)))
        # One exporter ships one or two lines of goods, not a catalogue.
        lines = rng.sample(self.products, min(len(self.products), rng.choice((1, 1, 2))))
        goods = [rng.choice(lines) for _ in range(item_count)]
        cert = Certificate(
            header=Header(
                certificate_number=number,
                issue_date=issue,
                place_of_issue=place,
                issuing_authority=authority,
                agreement=ag.code,
                valid_until=issue + timedelta(days=ag.validity_days),
                issued_retroactively=retro,
                reference_number=f"REF{rng.randrange(10**8, 10**9)}",
                reference_code=f"{rng.getrandbits(40):010X}",
            ),
            exporter=self._party(self.exporter),
            producer=producer,
            consignee=self._party(self.importer),
            third_party_operator=self._third_party(),
            transport=self._transport(goods, departure),
            items=tuple(self._item(n, p, issue) for n, p in enumerate(goods, start=1)),
            exporter_declaration=Declaration(
                place=place,
                date=issue - timedelta(days=rng.randrange(0, 2)),
                signatory=self._signatory(self.exporter),
            ),
            certification=Certification(
                place=place,
                date=issue,
                signatory=authority.signatory,
                stamp_id=f"STAMP-{rng.randrange(100, 999)}",
            ),
        )
        return checked_certificate(cert)

    def certificates(self, count: int) -> list[Certificate]:
        return [self.certificate() for _ in range(count)]

    def replacement(self, original: Certificate) -> Certificate:
        """A new certificate that replaces ``original`` (an amendment), with a reason."""
        fresh = self.certificate()
        reference = BackReference(
            kind="replaces",
            certificate_number=original.number,
            issue_date=original.header.issue_date,
            reason=self.rng.choice(data.REPLACEMENT_REASONS),
        )
        return checked_certificate(fresh.model_copy(update={"back_reference": reference}))

    def cancellation(self, cert: Certificate) -> Cancellation:
        """The issuing authority withdraws ``cert`` a few days after issue."""
        return answers.cancellation_of(cert, self.rng)

    def feedback(self, cert: Certificate) -> FeedbackBody:
        """The importing customs' decision on ``cert`` (see ``answers.feedback_on``)."""
        return answers.feedback_on(cert, self.rng)
