"""What the simulated local systems say: KR's e-CO records and CN's clearance decisions.

Both are pure functions of the seed and the certificate number, so a body published
again after a lost confirm is byte for byte the same: the node takes an identical record
as the same submission, and the soak does not invent duplicates of its own.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import orjson

from eodes_node.core.records import as_json_dict
from eodes_node.demo import DENIAL_REASONS
from eodes_node.samples import SampleFactory

POOL = 300


class Records:
    """``count`` distinct, valid KCFTA records: a pool of samples with fresh numbers."""

    def __init__(self, seed: int, count: int) -> None:
        self.pool = [as_json_dict(c) for c in SampleFactory("KCFTA", seed=seed).certificates(POOL)]
        self.prefix = f"KR{datetime.now(UTC):%Y}SOAK"
        self.numbers = [f"{self.prefix}{i:07d}" for i in range(1, count + 1)]

    def body(self, index: int) -> bytes:
        record = self.pool[index % len(self.pool)]
        record["header"]["certificate_number"] = self.numbers[index]
        return orjson.dumps(record)


def decide(seed: int, certificate: dict[str, Any]) -> dict[str, Any]:
    """CN customs' decision on one certificate: mostly granted, some denied with a
    realistic reason, a few partly granted (one item denied)."""
    header = certificate["header"]
    number = header["certificate_number"]
    rng = random.Random(f"{seed}:{number}")  # noqa: S311 - simulated decisions
    numbers = [item["item_number"] for item in certificate["items"]]
    roll = rng.random()
    if roll < 0.80:
        denied: set[int] = set()
    elif roll < 0.95 or len(numbers) == 1:
        denied = set(numbers)
    else:
        denied = {rng.choice(numbers)}
    reason = rng.choice(DENIAL_REASONS)
    items = [
        {"item_number": n, "granted": n not in denied} | ({"reason": reason} if n in denied else {})
        for n in numbers
    ]
    decision = "granted" if not denied else "denied" if len(denied) == len(numbers) else "partial"
    return {
        "certificate_number": number,
        "decision": decision,
        "import_declaration": {
            "reference": f"CN-IMP-{header['issue_date'][:4]}-{rng.randrange(10**6, 10**7)}",
            "date": header["issue_date"],
        },
        "items": items,
    }
