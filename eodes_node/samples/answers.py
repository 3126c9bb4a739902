"""What follows a certificate: its cancellation by the issuing authority, and the
importing customs' feedback on it. Built from the certificate itself, so a sample
cancellation or decision always refers to a real sample certificate and its items."""

from __future__ import annotations

import random
from datetime import date, timedelta

from eodes_node.core.messages import (
    Decision,
    DenialReason,
    FeedbackBody,
    ImportDeclaration,
    ItemDecision,
)
from eodes_node.core.models import Cancellation, Certificate
from eodes_node.samples import data


def cancellation_of(cert: Certificate, rng: random.Random) -> Cancellation:
    """The issuing authority withdraws ``cert`` a few days after issue."""
    return Cancellation(
        certificate_number=cert.number,
        issuing_authority=cert.header.issuing_authority,
        cancelled_on=_by_today(cert.header.issue_date, rng.randrange(0, 4)),
        reason=rng.choice(data.CANCELLATION_REASONS),
    )


def _by_today(issued: date, days: int) -> date:
    """``days`` after issue, but not in the future: a sample must not predate events."""
    return max(issued, min(issued + timedelta(days=days), date.today()))


def _denied(numbers: list[int], rng: random.Random) -> set[int]:
    """Mostly nothing; some certificates wholly; a part only where there are several items."""
    roll = rng.random()
    if roll < 0.8:
        return set()
    if roll < 0.9 or len(numbers) == 1:
        return set(numbers)
    return set(rng.sample(numbers, rng.randrange(1, len(numbers))))


def feedback_on(cert: Certificate, rng: random.Random) -> FeedbackBody:
    """The importing customs' decision on ``cert``, per item, with a reason and remark for
    each denial; the declaration is lodged within the certificate's validity."""
    numbers = [item.item_number for item in cert.items]
    denied = _denied(numbers, rng)
    items = []
    for n in numbers:
        reason, remark = rng.choice(data.DENIALS) if n in denied else (None, "")
        items.append(
            ItemDecision(
                item_number=n,
                granted=n not in denied,
                reason=DenialReason(reason) if reason else None,
                remark=remark,
            )
        )
    if not denied:
        decision = Decision.GRANTED
    elif len(denied) == len(numbers):
        decision = Decision.DENIED
    else:
        decision = Decision.PARTIAL
    declared = _by_today(cert.header.issue_date, rng.randrange(2, 20))
    importer = cert.consignee.country
    return FeedbackBody(
        certificate_number=cert.number,
        decision=decision,
        import_declaration=ImportDeclaration(
            reference=declaration_reference(importer, declared, rng), date=declared
        ),
        items=tuple(items),
    )


def declaration_reference(importer: str, day: date, rng: random.Random) -> str:
    """An import declaration number in the importing country's usual shape."""
    if importer == "KR":  # customs broker code - year - serial and check letter
        return f"{rng.randrange(10000, 99999)}-{day:%y}-{rng.randrange(100000, 999999)}M"
    if importer == "CN":  # 18 digits: customs office, year, serial
        return f"{rng.randrange(1000, 9999)}{day:%Y}{rng.randrange(10**9, 10**10)}"
    return f"{importer}-IMP-{day:%Y}-{rng.randrange(1, 9_999_999):07d}"
