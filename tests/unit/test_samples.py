"""Sample records are what demos show customs officers and what integrators copy: they
must read as real certificates, cancellations and decisions, not as random fields."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal

import pytest

from eodes_node.core.agreements import AGREEMENTS
from eodes_node.core.codes import MASS_UNITS
from eodes_node.core.models import Certificate
from eodes_node.samples import SampleFactory, link_agreement
from eodes_node.samples.choose import factory_for, sample_records
from eodes_node.samples.data import AIRPORTS, AUTHORITIES, LAND_ROUTES, PRODUCTS, SEAPORTS

DAY = date(2026, 3, 2)
BY_DESCRIPTION = {p.description: p for p in PRODUCTS}


def many(agreement: str, count: int = 150, **kw: str) -> list[Certificate]:
    return SampleFactory(agreement, seed=9, issue_date=DAY, **kw).certificates(count)


@pytest.mark.parametrize("agreement", sorted(AGREEMENTS))
def test_the_means_of_transport_matches_the_vehicle_and_the_ports(agreement: str) -> None:
    for cert in many(agreement):
        t, exporter, importer = cert.transport, cert.exporter.country, cert.consignee.country
        if t.means == "VESSEL":
            assert re.fullmatch(r"[A-Z0-9 ]+ V\.\d{3}[EWNS]", t.vehicle_id), t.vehicle_id
            assert t.port_of_loading in SEAPORTS[exporter]
            assert t.port_of_discharge in SEAPORTS[importer]
        elif t.means == "AIRCRAFT":
            assert re.fullmatch(r"[A-Z0-9]{2}\d{4}", t.vehicle_id), "a flight number"
            assert t.port_of_loading in AIRPORTS[exporter]
            assert t.port_of_discharge in AIRPORTS[importer]
        else:
            assert frozenset({exporter, importer}) in LAND_ROUTES, "by land only to neighbours"


def test_heavy_and_bulk_goods_never_fly() -> None:
    flown = [c for a in sorted(AGREEMENTS) for c in many(a) if c.transport.means == "AIRCRAFT"]
    assert flown, "light goods should sometimes go by air"
    for cert in flown:
        assert all(BY_DESCRIPTION[item.description].air for item in cert.items)


def test_neighbours_also_trade_by_rail_and_road() -> None:
    means = {c.transport.means for c in many("ACFTA", exporter="CN", importer="VN")}
    assert {"VESSEL", "TRAIN", "VEHICLE"} <= means


def test_gross_weight_is_the_goods_plus_their_packaging() -> None:
    for cert in many("RCEP", 100):
        for item in cert.items:
            product = BY_DESCRIPTION[item.description]
            assert item.gross_weight is not None
            assert item.gross_weight.unit in MASS_UNITS
            net = Decimal(item.quantity.value) * product.kg_per_unit
            gross = Decimal(item.gross_weight.value)
            if product.per_package:
                assert net * Decimal("1.01") <= gross <= net * Decimal("1.10") + 1
            else:
                assert abs(gross - net) <= Decimal("0.1"), "bulk goods have no packaging"
            low, high = product.lot
            assert low <= Decimal(item.quantity.value) <= high + product.per_package


def test_pieces_fill_whole_packages() -> None:
    for cert in many("KCFTA", 100):
        for item in cert.items:
            product = BY_DESCRIPTION[item.description]
            if item.quantity.unit == "C62":
                assert Decimal(item.quantity.value) == item.package_count * product.per_package


def test_korean_certificates_come_from_both_korean_issuing_authorities() -> None:
    certs = many("KCFTA", 80)
    places = dict(AUTHORITIES["KR"])
    names = {c.header.issuing_authority.name for c in certs}
    assert names == {"Korea Customs Service", "Korea Chamber of Commerce and Industry"}
    for cert in certs:
        assert cert.header.place_of_issue in places[cert.header.issuing_authority.name]
        assert cert.certification.place == cert.header.place_of_issue


def test_vietnamese_certificates_come_from_the_trade_ministry_in_hanoi() -> None:
    for cert in many("KR-VN-FTA", 20, exporter="VN", importer="KR"):
        assert cert.header.issuing_authority.name == "Ministry of Industry and Trade"
        assert cert.header.place_of_issue == "Hanoi"
        assert cert.exporter.country == "VN"


def test_goods_come_from_where_they_are_made() -> None:
    for cert in many("KR-VN-FTA", 60):
        for item in cert.items:
            origins = BY_DESCRIPTION[item.description].origins
            assert not origins or "KR" in origins, f"{item.description} from KR"


def test_an_agreement_alone_picks_a_likely_pair_of_its_parties() -> None:
    factory = SampleFactory("AKFTA", seed=1)
    assert (factory.exporter, factory.importer) == ("KR", "VN")
    assert SampleFactory("ATIGA", seed=1).exporter in AGREEMENTS["ATIGA"].parties


def test_a_link_picks_its_own_agreement_and_direction() -> None:
    assert link_agreement("KR", "VN") == "KR-VN-FTA"
    assert link_agreement("CN", "KR") == "KCFTA"
    assert link_agreement("VN", "CN") == "ACFTA"
    with pytest.raises(ValueError, match="no agreement in the table binds both KR and US"):
        link_agreement("KR", "US")
    akfta = factory_for(
        "coo", agreement="AKFTA", exporter=None, importer=None, link=("KR", "VN"), seed=1,
        issue_date=DAY,
    )  # fmt: skip
    assert (akfta.agreement.code, akfta.exporter, akfta.importer) == ("AKFTA", "KR", "VN")
    feedback = factory_for(
        "feedback", agreement=None, exporter=None, importer=None, link=("KR", "VN"), seed=1,
        issue_date=DAY,
    )  # fmt: skip
    assert (feedback.exporter, feedback.importer) == ("VN", "KR"), "on certificates received"


def test_a_contradiction_with_the_link_is_named() -> None:
    with pytest.raises(ValueError, match="--importer CN contradicts the config's link"):
        factory_for(
            "coo", agreement=None, exporter=None, importer="CN", link=("KR", "VN"), seed=1,
            issue_date=DAY,
        )  # fmt: skip
    with pytest.raises(ValueError, match="importer CN is not a party to AKFTA"):
        SampleFactory("AKFTA", exporter="KR", importer="CN")


def test_cancellations_and_feedback_refer_to_the_same_seeds_certificates() -> None:
    def factory() -> SampleFactory:
        return SampleFactory("KCFTA", seed=5, issue_date=DAY)

    coos = sample_records("coo", factory(), 6)
    numbers = [c["header"]["certificate_number"] for c in coos]
    cancellations = sample_records("cancellation", factory(), 6)
    assert [c["certificate_number"] for c in cancellations] == numbers
    for cancellation, coo in zip(cancellations, coos, strict=True):
        assert cancellation["issuing_authority"] == coo["header"]["issuing_authority"]
        assert cancellation["cancelled_on"] >= coo["header"]["issue_date"]
    decisions = sample_records("feedback", factory(), 6)
    assert [d["certificate_number"] for d in decisions] == numbers


def test_feedback_decides_every_item_and_gives_reasons_for_denials() -> None:
    factory = SampleFactory("RCEP", seed=2, issue_date=DAY)
    decisions = [factory.feedback(cert) for cert in factory.certificates(200)]
    assert {d.decision.value for d in decisions} == {"granted", "denied", "partial"}
    for decision in decisions:
        for item in decision.items:
            assert (item.reason is None) == item.granted
            assert bool(item.remark) != item.granted
        assert decision.import_declaration.date >= DAY


def test_import_declaration_numbers_look_like_the_importing_countrys() -> None:
    kr = SampleFactory("KCFTA", exporter="CN", importer="KR", seed=1, issue_date=DAY)
    reference = kr.feedback(kr.certificate()).import_declaration.reference
    assert re.fullmatch(r"\d{5}-26-\d{6}M", reference)
    cn = SampleFactory("KCFTA", seed=1, issue_date=DAY)
    assert re.fullmatch(r"\d{18}", cn.feedback(cn.certificate()).import_declaration.reference)
