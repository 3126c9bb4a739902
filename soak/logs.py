"""What the nodes said about the faults: their error lines and notable warnings, counted
by event, so a run that passed still shows how hard the nodes had to work for it, and a
run that failed points at the lines to read."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson

LEVELS = ("error", "critical")
# Warnings that say a node lost work in flight or deferred it; worth a count each run.
NOTABLE = (
    "settle_lost",
    "batch_deferred",
    "store_unavailable",
    "background_deferred",
    "background_failed",
    "drain_timeout",
    "mark_published_failed",
    "flush_deferred",
)
SHOWN = 6
_NOISE = re.compile(r"0x[0-9a-f]+|\d+")


def _event(line: bytes) -> tuple[str, str] | None:
    """(level, event) of one JSON log line; a line that is not JSON is an error."""
    try:
        entry = orjson.loads(line)
    except orjson.JSONDecodeError:
        text = line.decode(errors="replace").strip()
        return ("error", f"(not JSON) {_NOISE.sub('N', text)[:100]}") if text else None
    if not isinstance(entry, dict):
        return None
    level, event = str(entry.get("level", "")), str(entry.get("event", ""))
    if level in LEVELS or event in NOTABLE:
        return level, _NOISE.sub("N", event)[:120]
    return None


def summarize(logs: list[Path]) -> Counter[tuple[str, str]]:
    counts: Counter[tuple[str, str]] = Counter()
    for log in logs:
        with log.open("rb") as handle:
            for line in handle:
                found = _event(line)
                if found is not None:
                    counts[found] += 1
    return counts


def report_logs(country: str, logs: list[Path], say: Callable[[str], None]) -> None:
    counts = summarize(logs)
    if not counts:
        say(f"soak: {country} node logs: no errors, no lost or deferred work")
        return
    listed = ", ".join(f"{n} x {level} {event}" for (level, event), n in counts.most_common(SHOWN))
    more = f" (+{len(counts) - SHOWN} kinds)" if len(counts) > SHOWN else ""
    say(f"soak: {country} node logs ({len(logs)} starts): {listed}{more}")
