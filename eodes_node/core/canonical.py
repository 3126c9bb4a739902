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

# No message or record nests objects and arrays more than five levels deep. orjson
# (3.13) corrupts the heap encoding values nested about 220 levels deep, below its own
# limit of 254, so JSON from outside is measured against this before it is re-encoded.
MAX_DEPTH = 64
_CONTAINERS = frozenset({dict, list, tuple})


class TooDeep(ValueError):
    """JSON nested deeper than ``MAX_DEPTH``: no schema allows it, and it is never
    handed to the encoder."""

    def __init__(self) -> None:
        super().__init__(f"nested more than {MAX_DEPTH} levels of objects and arrays deep")


def canonical_json(value: Any) -> bytes:
    """The canonical bytes of a value we built, or one ``check_depth`` has passed."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def nesting_depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """Levels of objects and arrays, counted level by level without recursion; the
    count stops once it is past ``limit``."""
    depth, level = 0, [value] if type(value) in _CONTAINERS else []
    while level and depth <= limit:
        depth += 1
        level = [
            child
            for node in level
            for child in (node.values() if type(node) is dict else node)
            if type(child) in _CONTAINERS
        ]
    return depth


def check_depth(value: Any, raw: bytes | None = None) -> None:
    """Raise ``TooDeep`` unless ``value`` nests at most ``MAX_DEPTH`` levels.

    ``raw``, the JSON text it was parsed from, usually settles it at once: no value
    nests deeper than its text has opening brackets.
    """
    if raw is not None and raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:
        return
    if nesting_depth(value) > MAX_DEPTH:
        raise TooDeep


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
    """Why ``data`` is not the canonical form of itself, or None when it is.

    Raises ``TooDeep`` for JSON nested beyond ``MAX_DEPTH``: that is a schema problem,
    not an encoding one, and the caller picks its code.
    """
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if str(exc).startswith("depth limit exceeded"):  # orjson parses 1024 levels
            raise TooDeep from None
        return f"not valid JSON: {exc}"
    check_depth(value, data)
    if canonical_json(value) == data:
        return None
    try:
        loads_strict(data)
    except DuplicateMember as exc:
        return str(exc)
    return "payload is not in RFC 8785 canonical form"
