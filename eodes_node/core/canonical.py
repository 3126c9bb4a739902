"""Canonical JSON (RFC 8785, JCS) for signed payloads.

Our payloads hold only objects, ASCII member names, strings, integers, booleans and null:
amounts travel as strings. For that subset, orjson with sorted keys produces exactly the
JCS bytes (a property test checks it against the reference implementation), at a fraction
of the cost of a pure-Python canonicaliser.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def canonical_json(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


class DuplicateMember(ValueError):
    pass


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise DuplicateMember(f"duplicate member name {key!r}")
        seen[key] = value
    return seen


def loads_strict(data: bytes) -> Any:
    """Parse JSON, refusing duplicate member names (which parsers resolve differently)."""
    return json.loads(data, object_pairs_hook=_reject_duplicates)


def canonical_problem(data: bytes) -> str | None:
    """Why ``data`` is not the canonical form of itself, or None when it is."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        return f"not valid JSON: {exc}"
    if canonical_json(value) == data:
        return None
    try:
        loads_strict(data)
    except DuplicateMember as exc:
        return str(exc)
    return "payload is not in RFC 8785 canonical form"
