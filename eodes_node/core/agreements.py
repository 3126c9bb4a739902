"""Free trade agreements as data: who is party, which origin criteria, limits and validity.

Rules consult this table; adding an agreement or changing a limit is a data change here,
never a new branch in the validation code.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

ASEAN = frozenset({"BN", "KH", "ID", "LA", "MY", "MM", "PH", "SG", "TH", "VN"})


@dataclass(frozen=True, slots=True)
class Agreement:
    code: str
    title: str
    parties: frozenset[str]
    criteria: frozenset[str]
    # Criteria whose certificate carries a regional value content percentage, which in turn
    # requires the FOB value to be declared.
    value_content_criteria: frozenset[str] = frozenset({"RVC"})
    qualifiers: frozenset[str] = frozenset()
    max_qualifiers: int = 0
    max_items: int = 50
    validity_days: int = 365
    # Issued later than this many days after departure: must be flagged retroactive.
    retroactive_after_days: int = 7
    # Retroactive issue is allowed at most this many days after departure.
    retroactive_limit_days: int = 365
    min_hs_digits: int = 6


_TABLE = (
    Agreement(
        code="KCFTA",
        title="Korea-China Free Trade Agreement",
        parties=frozenset({"KR", "CN"}),
        criteria=frozenset({"WO", "WP", "PSR"}),
        value_content_criteria=frozenset(),
        max_items=50,
    ),
    Agreement(
        code="RCEP",
        title="Regional Comprehensive Economic Partnership",
        parties=ASEAN | {"AU", "CN", "JP", "KR", "NZ"},
        criteria=frozenset({"WO", "PE", "CTC", "RVC", "CR"}),
        qualifiers=frozenset({"ACU", "DMI"}),
        max_qualifiers=2,
    ),
    Agreement(
        code="AKFTA",
        title="ASEAN-Korea Free Trade Agreement",
        parties=ASEAN | {"KR"},
        criteria=frozenset({"WO", "WO-AK", "RVC", "CTC", "CC", "CTH", "CTSH", "SP"}),
    ),
    Agreement(
        code="ATIGA",
        title="ASEAN Trade in Goods Agreement (Form D)",
        parties=ASEAN,
        criteria=frozenset({"WO", "RVC", "CC", "CTH", "CTSH", "SP", "PC"}),
        value_content_criteria=frozenset({"RVC", "PC"}),
    ),
    Agreement(
        code="ACFTA",
        title="ASEAN-China Free Trade Agreement (Form E)",
        parties=ASEAN | {"CN"},
        criteria=frozenset({"WO", "PE", "RVC", "CTH", "PSR"}),
    ),
    Agreement(
        code="AJCEP",
        title="ASEAN-Japan Comprehensive Economic Partnership",
        parties=ASEAN | {"JP"},
        criteria=frozenset({"WO", "PE", "RVC", "CTH", "CTC", "SP"}),
        qualifiers=frozenset({"ACU", "DMI"}),
        max_qualifiers=2,
    ),
    Agreement(
        code="KSFTA",
        title="Korea-Singapore Free Trade Agreement",
        parties=frozenset({"KR", "SG"}),
        criteria=frozenset({"A", "B", "C", "D"}),
        value_content_criteria=frozenset(),
    ),
    # The next three publish no public criterion list; these sets are configurable
    # defaults following the RCEP vocabulary.
    Agreement(
        code="KR-ID-CEPA",
        title="Korea-Indonesia Comprehensive Economic Partnership Agreement",
        parties=frozenset({"KR", "ID"}),
        criteria=frozenset({"WO", "PE", "CTC", "RVC", "PSR"}),
    ),
    Agreement(
        code="KR-VN-FTA",
        title="Korea-Viet Nam Free Trade Agreement",
        parties=frozenset({"KR", "VN"}),
        criteria=frozenset({"WO", "PE", "CTC", "CTH", "RVC", "PSR"}),
    ),
    Agreement(
        code="KR-IN-CEPA",
        title="Korea-India Comprehensive Economic Partnership Agreement",
        parties=frozenset({"KR", "IN"}),
        criteria=frozenset({"WO", "PE", "CTSH", "RVC", "PSR"}),
    ),
)

AGREEMENTS: MappingProxyType[str, Agreement] = MappingProxyType({a.code: a for a in _TABLE})
