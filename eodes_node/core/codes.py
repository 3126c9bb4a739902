"""Code lists that records are checked against: countries, currencies, units of measure."""

from __future__ import annotations

from functools import cache

import pycountry

# User-assigned ISO 3166 codes that customs administrations use in practice.
USER_ASSIGNED_COUNTRY_CODES = frozenset({"XK", "XI", "XU", "EU"})

# UN/ECE Recommendation 20 units seen on certificates of origin.
MASS_UNITS = frozenset({"KGM", "GRM", "TNE", "LBR", "MGM"})
UNITS_OF_MEASURE = MASS_UNITS | frozenset(
    {
        "C62",  # one (piece)
        "H87",  # piece
        "NAR",  # number of articles
        "PR",  # pair
        "SET",  # set
        "DZN",  # dozen
        "LTR",  # litre
        "MLT",  # millilitre
        "MTQ",  # cubic metre
        "MTK",  # square metre
        "MTR",  # metre
        "KWH",  # kilowatt hour
        "CT",  # carton (commonly used as a unit on COs)
    }
)


@cache
def country_codes() -> frozenset[str]:
    return frozenset(c.alpha_2 for c in pycountry.countries) | USER_ASSIGNED_COUNTRY_CODES


@cache
def currency_codes() -> frozenset[str]:
    return frozenset(c.alpha_3 for c in pycountry.currencies)
