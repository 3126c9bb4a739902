"""The tables realistic samples are drawn from: goods, ports, carriers, authorities, names.

Kept apart from the factories so that correcting a port code or adding a country is a data
change a reviewer can read at a glance.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

LandMeans = Literal["TRAIN", "VEHICLE"]


@dataclass(frozen=True, slots=True)
class Product:
    """One kind of goods, with what makes its quantities and weights plausible."""

    hs_code: str
    description: str
    unit: str  # UN/ECE Rec. 20 unit the quantity is declared in
    package_kind: str
    unit_price: Decimal  # USD per unit, FOB
    kg_per_unit: Decimal  # net mass of one unit
    per_package: Decimal  # units in one package (0: shipped in bulk)
    lot: tuple[int, int]  # the range of quantities one shipment carries
    origins: frozenset[str] = frozenset()  # where it is made; empty: anywhere
    air: bool = False  # light and valuable enough to fly


def _p(
    hs: str,
    text: str,
    unit: str,
    kind: str,
    price: str,
    kg: str,
    per: str,
    lot: tuple[int, int],
    origins: str = "",
    air: bool = False,
) -> Product:
    return Product(
        hs,
        text,
        unit,
        kind,
        Decimal(price),
        Decimal(kg),
        Decimal(per),
        lot,
        frozenset(origins.split()),
        air,
    )


PRODUCTS = (
    _p("854232", "Electronic integrated circuits: memories (DRAM modules)", "C62", "CARTON",
       "3.40", "0.025", "500", (500, 20000), "KR CN SG MY", air=True),
    _p("8708301000", "Brake assemblies for passenger motor vehicles", "C62", "PALLET",
       "42.00", "4.5", "40", (80, 2000)),
    _p("390110", "Polyethylene, specific gravity below 0.94, in primary forms", "KGM", "BAG",
       "1.18", "1", "25", (5000, 50000), "KR CN SG TH MY JP IN"),
    _p("721049", "Flat-rolled steel, zinc-coated, width 600 mm or more", "TNE", "COIL",
       "845.00", "1000", "20", (20, 600), "KR CN JP VN IN"),
    _p("330499", "Skin care creams and beauty preparations", "C62", "CARTON",
       "6.20", "0.15", "48", (480, 24000), "KR CN JP TH", air=True),
    _p("030617", "Frozen shrimps and prawns, shell-on", "KGM", "CARTON",
       "9.10", "1", "10", (2000, 24000), "VN TH ID IN MY PH CN"),
    _p("190230", "Instant noodles (ramyeon), in packets", "KGM", "CARTON",
       "2.75", "1", "5", (1000, 18000), "KR CN JP VN ID"),
    _p("847130", "Portable computers weighing not more than 10 kg", "C62", "CARTON",
       "415.00", "2.1", "5", (50, 3000), "CN VN TH", air=True),
    _p("610910", "T-shirts of cotton, knitted", "C62", "CARTON",
       "2.90", "0.18", "100", (1000, 40000), "CN VN KH MM ID IN"),
    _p("290243", "p-Xylene", "TNE", "BULK", "960.00", "1000", "0", (1000, 8000), "KR CN SG JP"),
    _p("400122", "Technically specified natural rubber (TSNR 20)", "TNE", "BALE",
       "1580.00", "1000", "0.035", (20, 400), "TH ID MY VN LA MM KH"),
    _p("151190", "Refined palm oil", "TNE", "BULK", "905.00", "1000", "0", (500, 5000), "ID MY"),
    _p("090111", "Coffee beans, not roasted, not decaffeinated", "KGM", "BAG",
       "4.30", "1", "60", (6000, 19200), "VN ID LA IN"),
    _p("220300", "Beer made from malt, in cans", "LTR", "CARTON",
       "1.35", "1.05", "8.52", (4800, 24000), "KR CN JP VN TH"),
    _p("401110", "New pneumatic radial tyres for passenger cars", "C62", "PALLET",
       "38.50", "9.2", "40", (200, 2400), "KR CN JP TH ID"),
    _p("850760", "Lithium-ion battery cells", "C62", "CARTON",
       "11.80", "0.07", "200", (2000, 100000), "KR CN JP"),
    _p("732393", "Stainless steel kitchen ware", "C62", "CARTON",
       "4.60", "0.6", "12", (600, 12000), "KR CN VN IN"),
    _p("200899", "Citron tea (prepared fruit with honey), in jars", "KGM", "CARTON",
       "3.95", "1", "12", (1200, 18000), "KR"),
)  # fmt: skip

# UN/LOCODEs of seaports, and of the airports of each country's main cities.
SEAPORTS = {
    "KR": ("KRPUS", "KRINC", "KRUSN", "KRKAN", "KRPTK"),
    "CN": ("CNSHA", "CNNGB", "CNTAO", "CNTXG", "CNYTN", "CNDLC"),
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
    "KH": ("KHKOS",),
    "LA": ("THLCH",),  # landlocked: sea freight for Laos is discharged at Laem Chabang
    "MM": ("MMRGN",),
}
AIRPORTS = {
    "KR": ("KRINC",),
    "CN": ("CNSHA", "CNBJS", "CNCAN"),
    "SG": ("SGSIN",),
    "VN": ("VNHAN", "VNSGN"),
    "ID": ("IDJKT",),
    "IN": ("INDEL", "INBOM"),
    "JP": ("JPTYO", "JPOSA"),
    "TH": ("THBKK",),
    "MY": ("MYKUL",),
    "PH": ("PHMNL",),
    "AU": ("AUSYD",),
    "NZ": ("NZAKL",),
    "BN": ("BNBWN",),
    "KH": ("KHPNH",),
    "LA": ("LAVTE",),
    "MM": ("MMRGN",),
}
# Neighbours trading by rail or road: (loading, discharge) points, and the means.
LAND_ROUTES: dict[frozenset[str], tuple[dict[str, str], tuple[LandMeans, ...]]] = {
    frozenset({"CN", "VN"}): ({"CN": "CNNNG", "VN": "VNHAN"}, ("TRAIN", "VEHICLE")),
    frozenset({"CN", "LA"}): ({"CN": "CNKMG", "LA": "LAVTE"}, ("TRAIN",)),
    frozenset({"TH", "MY"}): ({"TH": "THBKK", "MY": "MYKUL"}, ("VEHICLE", "TRAIN")),
    frozenset({"TH", "LA"}): ({"TH": "THBKK", "LA": "LAVTE"}, ("VEHICLE",)),
    frozenset({"MY", "SG"}): ({"MY": "MYJHB", "SG": "SGSIN"}, ("VEHICLE",)),
}

VESSELS = (
    "HMM ALGECIRAS",
    "HMM OSLO",
    "SINOKOR TOKYO",
    "PANCON SUCCESS",
    "COSCO PRIDE",
    "SITC BANGKOK",
    "WAN HAI 322",
    "EVER GIVEN",
    "ONE HARMONY",
    "KMTC SHANGHAI",
)
# IATA codes of carriers flying cargo from each country.
AIRLINES = {
    "KR": ("KE", "OZ"),
    "CN": ("CA", "MU", "CZ"),
    "VN": ("VN", "VJ"),
    "SG": ("SQ",),
    "JP": ("JL", "NH"),
    "TH": ("TG",),
    "MY": ("MH",),
    "ID": ("GA",),
    "IN": ("AI",),
    "PH": ("PR",),
    "AU": ("QF",),
    "NZ": ("NZ",),
}

# Issuing authorities per exporting country, each with the places it issues from.
AUTHORITIES: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "KR": (
        ("Korea Customs Service", ("Seoul", "Busan", "Incheon")),
        ("Korea Chamber of Commerce and Industry", ("Seoul", "Busan", "Daegu")),
    ),
    "CN": (
        ("General Administration of Customs of the People's Republic of China",
         ("Beijing", "Shanghai", "Qingdao")),
        ("China Council for the Promotion of International Trade", ("Beijing", "Shanghai")),
    ),
    "VN": (("Ministry of Industry and Trade", ("Hanoi",)),),
    "SG": (("Singapore Customs", ("Singapore",)),),
    "JP": (("Japan Chamber of Commerce and Industry", ("Tokyo", "Osaka")),),
    "ID": (("Ministry of Trade of the Republic of Indonesia", ("Jakarta",)),),
    "IN": (("Export Inspection Council of India", ("New Delhi", "Mumbai")),),
    "TH": (("Department of Foreign Trade, Ministry of Commerce", ("Nonthaburi",)),),
    "MY": (("Ministry of Investment, Trade and Industry", ("Kuala Lumpur",)),),
    "PH": (("Bureau of Customs", ("Manila",)),),
    "AU": (("Australian Chamber of Commerce and Industry", ("Canberra", "Sydney")),),
    "NZ": (("New Zealand Customs Service", ("Wellington",)),),
    "BN": (("Ministry of Finance and Economy", ("Bandar Seri Begawan",)),),
    "KH": (("Ministry of Commerce", ("Phnom Penh",)),),
    "LA": (("Ministry of Industry and Commerce", ("Vientiane",)),),
    "MM": (("Ministry of Commerce", ("Nay Pyi Taw",)),),
}  # fmt: skip

SIGNATORIES = {
    "KR": ("KIM Jiwon", "LEE Minseo", "PARK Seojun", "CHOI Eunji", "HAN Dongwoo"),
    "CN": ("WANG Fang", "LIU Yang", "ZHANG Wei", "CHEN Jing"),
    "VN": ("NGUYEN Thi Lan", "TRAN Van Minh", "LE Hoang Anh"),
    "SG": ("TAN Wei Ming", "LIM Hui Min"),
    "JP": ("SATO Haruto", "SUZUKI Yui"),
}
GENERIC_SIGNATORIES = ("A. RAHMAN", "S. KUMAR", "M. SANTOS", "P. SOMCHAI")

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
        ("Zhejiang Huaxin", "Qingdao Haida", "Shanghai Jinqiao", "Jiangsu Tianyuan",
         "Guangzhou Lianfa", "Ningbo Yongsheng"),
        ("Import & Export Co., Ltd.", "Trading Co., Ltd.", "Industrial Co., Ltd."),
        (
            "Pudong New Area, Shanghai",
            "Huangdao District, Qingdao, Shandong",
            "Yinzhou District, Ningbo, Zhejiang",
            "Tianhe District, Guangzhou, Guangdong",
        ),
    ),
    "VN": (
        ("Sao Mai", "Thanh Cong", "Phu Gia", "Hong Linh", "Viet Hung", "An Khang"),
        ("Joint Stock Company", "Co., Ltd.", "Trading and Production JSC"),
        (
            "Cau Giay District, Hanoi",
            "District 7, Ho Chi Minh City",
            "Hai An District, Hai Phong",
            "Di An City, Binh Duong",
        ),
    ),
}  # fmt: skip
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

CANCELLATION_REASONS = (
    "exporter withdrew the application",
    "shipment cancelled by the buyer",
    "issued in error: wrong consignee",
    "goods not shipped; contract terminated",
)
REPLACEMENT_REASONS = (
    "consignee address corrected",
    "quantity corrected to match the commercial invoice",
    "vessel changed after departure was postponed",
)
# Denial reasons for feedback, with the remark a clearance officer would add.
DENIALS = (
    ("HS_MISMATCH", "first six digits of the declared HS code differ from the certificate"),
    ("QUANTITY_EXCEEDED", "declared quantity exceeds the certificate's quantity"),
    ("UNIT_MISMATCH", "declared in a unit of measure other than the certificate's"),
    ("ITEM_MAPPING", "declaration lines do not map one-to-one to certificate items"),
    ("ORIGIN_NOT_MET", "origin criterion not met after verification"),
)
