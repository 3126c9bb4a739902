"""Reading a takeover out of a node's JSON log: when an instance logged ``became_active``,
and the figures over every takeover of a run. Pure, so it is tested on its own."""

from __future__ import annotations

import statistics
from datetime import datetime

import orjson

BECAME_ACTIVE = "became_active"


def event_times(log: bytes, event: str) -> list[float]:
    """The UTC times (epoch seconds) at which the log's JSON lines say ``event``."""
    times: list[float] = []
    for line in log.splitlines():
        if f'"{event}"'.encode() not in line:
            continue
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(entry, dict) and entry.get("event") == event and "timestamp" in entry:
            times.append(datetime.fromisoformat(str(entry["timestamp"])).timestamp())
    return times


def takeover_after(log: bytes, fault_at: float) -> float | None:
    """Seconds from the fault (epoch seconds) to the first ``became_active`` after it."""
    later = [t for t in event_times(log, BECAME_ACTIVE) if t >= fault_at]
    return min(later) - fault_at if later else None


def summary(takeovers: list[float | None], target_s: float) -> str:
    """One line: each takeover, their median and max, against the target; a fault with
    no takeover (None) is named, as it is the worst case of all."""
    timed = [t for t in takeovers if t is not None]
    missing = len(takeovers) - len(timed)
    none = f"; {missing} faults with NO takeover" if missing else ""
    if not timed:
        return "no takeover was timed" + none
    worst = max(timed)
    listed = ", ".join(f"{t:.2f}" for t in timed)
    verdict = "under" if worst < target_s and not missing else "OVER"
    return (
        f"{len(timed)} takeovers ({listed} s): median {statistics.median(timed):.2f} s, "
        f"max {worst:.2f} s ({verdict} the {target_s:.0f} s target){none}"
    )
