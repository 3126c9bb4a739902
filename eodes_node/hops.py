"""Hop stamps for the benchmark's latency breakdown (``bench/run.py``).

The two nodes are separate processes, so the stamps are wall-clock ``time.time_ns()``
in log lines, joined by the bench on certificate numbers and message ids. The flag is
read once at start; the pipeline and the consumer test it once per batch, so a node
that is not being benchmarked pays one attribute read per batch and logs nothing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

import structlog

ENV_FLAG = "EODES_TRACE_HOPS"
TRACING = os.environ.get(ENV_FLAG) == "1"

log = structlog.get_logger("eodes_node.hops")


def now_ns() -> int:
    return time.time_ns()


def stamp(event: str, **fields: object) -> None:
    """One hop line: ``event`` names the hop, ``at_ns`` is when it happened."""
    log.info(event, at_ns=now_ns(), **fields)


def unique(values: Iterable[str | None]) -> list[str]:
    """Distinct non-empty values in first-seen order: the keys the bench joins on."""
    return list(dict.fromkeys(v for v in values if v))
