"""Realistic, valid e-CO records for demos, tests and benchmarks.

Deterministic for a given seed, so a failing test or benchmark can be replayed exactly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

import pycountry

from eodes_node.core.agreements import AGREEMENTS, Agreement
from eodes_node.core.models import (
    Authority,
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


@dataclass(frozen=True, slots=True)
class Product:
    hs_code: str
    description: str
    unit: str
    package_kind: str
    unit_price: Decimal
    kg_per_unit: Decimal


PRODUCTS = (
    Product(
        "854232",
        "Electronic integrated circuits: memories (DRAM modules)",
        "C62",
        "CARTON",
        Decimal("3.40"),
        Decimal("0.02"),
    ),
    Product(
        "8708301000",
        "Brake assemblies for passenger motor vehicles",
        "C62",
        "PALLET",
        Decimal("42.00"),
        Decimal("4.5"),
    ),
    Product(
        "390110",
        "Polyethylene, specific gravity below 0.94, in primary forms",
        "KGM",
        "BAG",
        Decimal("1.18"),
        Decimal("1"),
    ),
    Product(
        "721049",
        "Flat-rolled steel, zinc-coated, width 600 mm or more",
        "TNE",
        "COIL",
        Decimal("845.00"),
        Decimal("1000"),
    ),
    Product(
        "330499",
        "Skin care creams and beauty preparations",
        "C62",
        "CARTON",
        Decimal("6.20"),
        Decimal("0.15"),
    ),
    Product(
        "030617",
        "Frozen shrimps and prawns, shell-on",
        "KGM",
        "CARTON",
        Decimal("9.10"),
        Decimal("1"),
    ),
    Product(
        "190230",
        "Instant noodles (ramyeon), in packets",
        "KGM",
        "CARTON",
        Decimal("2.75"),
        Decimal("1"),
    ),
    Product(
        "847130",
        "Portable computers weighing not more than 10 kg",
        "C62",
        "CARTON",
        Decimal("415.00"),
        Decimal("2.1"),
    ),
    Product(
        "610910", "T-shirts of cotton, knitted", "C62", "CARTON", Decimal("2.90"), Decimal("0.18")
    ),
    Product("290243", "p-Xylene", "TNE", "BULK", Decimal("960.00"), Decimal("1000")),
    Product(
        "400122",
        "Technically specified natural rubber (TSNR 20)",
        "TNE",
        "BALE",
        Decimal("1580.00"),
        Decimal("1000"),
    ),
    Product("151190", "Refined palm oil", "TNE", "BULK", Decimal("905.00"), Decimal("1000")),
    Product(
        "090111",
        "Coffee beans, not roasted, not decaffeinated",
        "KGM",
        "BAG",
        Decimal("4.30"),
        Decimal("1"),
    ),
    Product(
        "220300", "Beer made from malt, in cans", "LTR", "CARTON", Decimal("1.35"), Decimal("1.05")
    ),
    Product(
        "401110",
        "New pneumatic radial tyres for passenger cars",
        "C62",
        "PALLET",
        Decimal("38.50"),
        Decimal("9.2"),
    ),
    Product(
        "850760", "Lithium-ion battery cells", "C62", "CARTON", Decimal("11.80"), Decimal("0.07")
    ),
    Product(
        "732393", "Stainless steel kitchen ware", "C62", "CARTON", Decimal("4.60"), Decimal("0.6")
    ),
    Product(
        "200899",
        "Citron tea (prepared fruit with honey), in jars",
        "KGM",
        "CARTON",
        Decimal("3.95"),
        Decimal("1"),
    ),
)

PORTS = {
    "KR": ("KRPUS", "KRINC", "KRUSN", "KRKAN", "KRPTK"),
    "CN": ("CNSHA", "CNNGB", "CNTAO", "CNTXG", "CNSZX", "CNDLC"),
    "SG": ("SGSIN",),
    "VN": ("VNSGN", "VNHPH"),
    "ID": ("IDTPP", "IDSUB"),
    "IN": ("INNSA", "INMAA"),
    "JP": ("JPTYO", "JPYOK", "JPOSA"),
    "TH": ("THLCH", "THBKK"),
    "MY": ("MYPKG", "MYPEN"),
    "PH": ("PHMNL",),
    "AU": ("AUSYD", "AUMEL"),
    "NZ": ("NZAKL",),
    "BN": ("BNMUA",),
    "KH": ("KHPNH",),
    "LA": ("LAVTE",),
    "MM": ("MMRGN",),
}

AUTHORITIES = {
    "KR": (("Korea Customs Service", "Seoul"), ("Korea Chamber of Commerce and Industry", "Seoul")),
    "CN": (
        ("General Administration of Customs of the People's Republic of China", "Beijing"),
        ("China Council for the Promotion of International Trade", "Beijing"),
    ),
}

NAME_PARTS = {
    "KR": (
        ("Hanbit", "Daesung", "Seoyeon", "Mirae", "Hyundo", "Sejin", "Namyang", "Dongbang"),
        ("Industrial Co., Ltd.", "Chemical Co., Ltd.", "Electronics Co., Ltd.", "Trading Corp."),
        (
            "Teheran-ro, Gangnam-gu, Seoul",
            "Jungang-daero, Dong-gu, Busan",
            "Gongdan-ro, Ansan-si, Gyeonggi-do",
            "Songdo-dong, Yeonsu-gu, Incheon",
        ),
    ),
    "CN": (
        (
            "Zhejiang Huaxin",
            "Qingdao Haida",
            "Shanghai Jinqiao",
            "Jiangsu Tianyuan",
            "Guangzhou Lianfa",
            "Ningbo Yongsheng",
        ),
        ("Import & Export Co., Ltd.", "Trading Co., Ltd.", "Industrial Co., Ltd."),
        (
            "Pudong New Area, Shanghai",
            "Huangdao District, Qingdao, Shandong",
            "Yinzhou District, Ningbo, Zhejiang",
            "Tianhe District, Guangzhou, Guangdong",
        ),
    ),
}
GENERIC_NAME_PARTS = (
    ("Golden Harbour", "Eastern Star", "Pacific Crest", "Summit", "Lotus", "Evergreen"),
    ("Trading Co., Ltd.", "Industries Ltd.", "Manufacturing Pte. Ltd.", "Exports Ltd."),
    (
        "Industrial Estate, Lot 12",
        "Harbour Road 45",
        "Export Processing Zone, Block C",
        "Commerce Avenue 210",
    ),
)


def _country_name(code: str) -> str:
    country = pycountry.countries.get(alpha_2=code)
    return str(getattr(country, "common_name", None) or country.name) if country else code


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
        parties = sorted(self.agreement.parties)
        self.exporter = exporter or ("KR" if "KR" in parties else parties[0])
        self.importer = importer or next(
            c for c in (["CN", *parties] if "CN" in parties else parties) if c != self.exporter
        )
        for role, code in (("exporter", self.exporter), ("importer", self.importer)):
            if code not in self.agreement.parties:
                raise ValueError(f"{role} {code} is not a party to {agreement}")
        if self.exporter == self.importer:
            raise ValueError("exporter and importer must differ")
        self.rng = random.Random(seed)  # noqa: S311 - test data, not secrets
        self.issue_date = issue_date or date.today()
        self.serial = self.rng.randrange(1, 9_000_000)

    def _party(self, country: str) -> Party:
        first, second, streets = NAME_PARTS.get(country, GENERIC_NAME_PARTS)
        rng = self.rng
        name = f"{rng.choice(first)} {rng.choice(second)}"
        address = f"{rng.randrange(1, 999)}, {rng.choice(streets)}"
        if country not in NAME_PARTS:
            address += f", {_country_name(country)}"
        tax_id = f"{country}{rng.randrange(10**9, 10**10)}" if rng.random() < 0.7 else None
        return Party(name=name, address=address, country=country, tax_id=tax_id)

    def _authority(self) -> tuple[Authority, str]:
        options = AUTHORITIES.get(
            self.exporter,
            (
                (
                    f"Ministry of Trade of {_country_name(self.exporter)}",
                    _country_name(self.exporter),
                ),
            ),
        )
        name, place = self.rng.choice(options)
        signatory = self.rng.choice(
            (
                "KIM Jiwon",
                "LEE Minseo",
                "WANG Fang",
                "LIU Yang",
                "NGUYEN Thi Lan",
                "TAN Wei Ming",
                "PARK Seojun",
            )
        )
        return Authority(name=name, country=self.exporter, signatory=signatory), place

    def _item(self, number: int, issue: date) -> Item:
        rng, ag = self.rng, self.agreement
        product = rng.choice(PRODUCTS)
        criterion = rng.choice(sorted(ag.criteria))
        if ag.qualifiers and rng.random() < 0.2:
            criterion += " " + rng.choice(sorted(ag.qualifiers))
        value_content = criterion.split(" ")[0] in ag.value_content_criteria
        quantity = Decimal(rng.randrange(1, 500) * (1 if product.unit == "TNE" else 20))
        amount = (quantity * product.unit_price).quantize(Decimal("0.01"))
        weight = (quantity * product.kg_per_unit).quantize(Decimal("0.1"))
        with_fob = value_content or rng.random() < 0.5
        return Item(
            item_number=number,
            marks_and_numbers=rng.choice(
                ("N/M", f"LOT-{rng.randrange(100, 999)}", "AS PER INVOICE")
            ),
            package_count=max(1, int(quantity) // rng.choice((1, 10, 20, 50))),
            package_kind=product.package_kind,
            description=product.description,
            hs_code=product.hs_code,
            origin_criterion=criterion,
            rvc_percent=rng.randrange(40, 96) if value_content else None,
            quantity=Quantity(value=quantity, unit=product.unit),
            gross_weight=Quantity(value=max(weight, Decimal("0.1")), unit="KGM"),
            fob_value=Money(amount=amount, currency="USD") if with_fob else None,
            invoice=Invoice(
                number=f"INV-{issue.year}-{rng.randrange(10000, 99999)}",
                date=issue - timedelta(days=rng.randrange(0, 5)),
            ),
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
        third = None
        if rng.random() < 0.1:
            outside = sorted({"SG", "HK", "AE", "CH"} - {self.exporter, self.importer})
            third = ThirdPartyOperator(
                name=f"{rng.choice(GENERIC_NAME_PARTS[0])} Trading Ltd.",
                country=rng.choice(outside),
            )
        number = f"{self.exporter}{issue.year}{ag.code.replace('-', '')[:5]}{self.serial:07d}"
        item_count = min(ag.max_items, rng.choice((1, 1, 2, 3, 4, 6, 10)))
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
            third_party_operator=third,
            transport=Transport(
                departure_date=departure,
                means=rng.choice(("VESSEL", "VESSEL", "VESSEL", "AIRCRAFT")),
                vehicle_id=rng.choice(
                    (
                        "HMM ALGECIRAS",
                        "SINOKOR TOKYO",
                        "PANCON SUCCESS",
                        "KE0881",
                        "CA0124",
                        "COSCO PRIDE",
                    )
                )
                + f" V.{rng.randrange(100, 999)}",
                port_of_loading=rng.choice(PORTS.get(self.exporter, ("SGSIN",))),
                port_of_discharge=rng.choice(PORTS.get(self.importer, ("SGSIN",))),
            ),
            items=tuple(self._item(n, issue) for n in range(1, item_count + 1)),
            exporter_declaration=Declaration(
                place=place,
                date=issue - timedelta(days=rng.randrange(0, 2)),
                signatory=rng.choice(("CHOI Eunji", "ZHANG Wei", "HAN Dongwoo", "CHEN Jing")),
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
