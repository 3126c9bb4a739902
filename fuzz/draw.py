"""Structured mutation: the fuzzer's bytes decide which field of a valid document to break
and how, so a mutation that crashes replays exactly from the saved input.

Random bytes rarely get past the signature or the JSON parser; starting from a valid
message or record and changing one to four fields reaches the schema, the agreement
rules and the decisions behind them.
"""

from __future__ import annotations

import copy
import json
import re
from datetime import date, timedelta
from typing import Any

from eodes_node.core.canonical import TooDeep, canonical_json, check_depth

# Values that have broken parsers and date arithmetic elsewhere: the ends of the calendar
# and of integer ranges, impossible dates, offsets at their limits, odd codes.
HOSTILE: tuple[Any, ...] = (
    None,
    True,
    False,
    0,
    -1,
    1,
    2**31,
    2**53 + 1,
    2**63 - 1,
    -(2**63),
    2**64,
    10**30,
    0.5,
    1e308,
    "",
    " ",
    "\u0000",
    "A" * 1025,
    "9999-12-31",
    "9999-12-30",
    "0001-01-01",
    "2026-02-29",
    "2026-13-01",
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59-23:59",
    "0001-01-01T00:00:00+23:59",
    "2026-03-02T09:00:00",
    "2026-03-02T09:00:00+00:00",
    "KR",
    "CN",
    "VN",
    "JP",
    "XX",
    "kr",
    "999999999999999.999999",
    "1e5",
    "-1",
    "NaN",
    "SAME",
    "AVAILABLE UPON REQUEST",
    "RVC",
    "CTC ACU DMI ACU",
    "KCFTA",
    "RCEP",
    "KR-VN-FTA",
    "replaces",
    "rejected",
    "RULE_VIOLATION",
    "00000000-0000-4000-8000-000000000000",
    [],
    {},
)


_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class Draw:
    """Decisions read from the input's bytes; zeros once they run out."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def below(self, n: int) -> int:
        """A number in [0, n), from two bytes."""
        return ((self.byte() << 8) | self.byte()) % n if n > 0 else 0

    def text(self) -> str:
        size = self.byte()
        chunk = self.data[self.pos : self.pos + size]
        self.pos += len(chunk)
        return chunk.decode("utf-8", errors="replace")


def _containers(doc: Any, draw: Draw) -> tuple[Any, Any]:
    """Walk from the root to some member or element: (its container, its key or index)."""
    parent: Any = None
    key: Any = None
    node = doc
    while isinstance(node, dict | list) and node and (parent is None or draw.byte() >= 48):
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        parent, key = node, keys[draw.below(len(keys))]
        node = node[key]
    return parent, key


def _copy(value: Any) -> Any:
    """A copy, so no mutation makes a cycle; None for one too deep for ``deepcopy``."""
    try:
        return copy.deepcopy(value)
    except RecursionError:
        return None


def _deep(depth: int) -> Any:
    value: Any = None
    for _ in range(depth):
        value = [value]
    return value


def _replacement(draw: Draw, doc: Any, old: Any) -> Any:
    choice = draw.below(8)
    if choice == 0:
        return draw.text()
    if choice == 1:
        return _deep(1 + draw.below(400))  # orjson stops at 254, the schema far sooner
    if choice == 2:
        donor_parent, donor_key = _containers(doc, draw)
        return _copy(donor_parent[donor_key]) if donor_parent is not None else old
    if choice == 3 and isinstance(old, list) and old:
        return old + [_copy(old[0]) for _ in range(draw.below(64))]
    if choice == 4 and isinstance(old, str) and old:
        return old[: draw.below(len(old) + 1)]
    return HOSTILE[draw.below(len(HOSTILE))]


def _leaves(doc: Any) -> list[tuple[Any, Any]]:
    """Every (container, key) holding a scalar, found without recursion."""
    found, stack = [], [doc]
    while stack:
        node = stack.pop()
        pairs = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in pairs:
            if isinstance(value, dict | list):
                stack.append(value)
            else:
                found.append((node, key))
    return found


def _shift_dates(doc: Any, draw: Draw) -> None:
    """Move every date of the document by the same number of days, so that one of them
    lands within days of the calendar's end (or start); dates pushed past it stop there.
    Sentinel dates such as 9999-12-31 are common in real systems, and date arithmetic
    overflows there."""
    places = [(p, k) for p, k in _leaves(doc) if isinstance(p[k], str) and _DATE.fullmatch(p[k])]
    try:
        days = [date.fromisoformat(p[k]) for p, k in places]
    except ValueError:
        return
    if not days:
        return
    anchor = days[draw.below(len(days))]
    near = timedelta(days=draw.below(3))
    to_end = bool(draw.byte() & 1)
    shift = date.max - anchor - near if to_end else date.min - anchor + near
    for (parent, key), day in zip(places, days, strict=True):
        try:
            parent[key] = (day + shift).isoformat()
        except OverflowError:
            parent[key] = (date.max if to_end else date.min).isoformat()


def mutate(doc: Any, draw: Draw) -> Any:
    """A copy of ``doc`` with up to four members replaced, removed or added, and maybe
    all of its dates moved to an end of the calendar."""
    doc = _copy(doc)
    if isinstance(doc, dict | list) and draw.byte() < 24:
        _shift_dates(doc, draw)
    for _ in range(draw.below(5)):
        parent, key = _containers(doc, draw)
        if parent is None:
            return _replacement(draw, doc, doc)
        action = draw.below(6)
        if action == 0 and isinstance(parent, dict):
            del parent[key]
        elif action == 1 and isinstance(parent, dict):
            parent[draw.text() or "extra"] = _replacement(draw, doc, None)
        else:
            parent[key] = _replacement(draw, doc, parent[key])
    return doc


def to_json(doc: Any) -> bytes:
    """Canonical bytes where the document has them; plain JSON where it cannot (too deep,
    integers beyond 64 bits), so the receiver's checks rather than ours refuse it."""
    try:
        check_depth(doc)  # orjson must not see a hostile depth (see canonical.MAX_DEPTH)
        return canonical_json(doc)
    except (TooDeep, TypeError):  # too deep, or integers beyond 64 bits
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
