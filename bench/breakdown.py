"""Where a certificate's latency goes: the hop stamps the nodes log when the bench starts
them with ``EODES_TRACE_HOPS=1`` (``eodes_node.hops``), joined per certificate.

All stamps are wall-clock nanoseconds from processes on one machine, so the hops of
both nodes and the bench's own submit / receipt times share one clock.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

# In path order, each from the stamp before it: they add up to the measured latency. A
# confirm comes back after the far side may already have consumed the message, so a
# transit after a publish-confirm (and the event after KR's settle) can be negative.
PATH = (
    "KR queue wait",
    "KR record parse",
    "KR commit",
    "KR publish-confirm",
    "broker transit KR->CN",
    "CN verify",
    "CN commit",
    "CN publish-confirm (receipt)",
    "broker transit CN->KR",
    "KR receipt verify",
    "KR receipt commit",
    "KR publish-confirm (settle tx)",
    "event to local system",
)
# Beside the path: CN's settle transaction (clearance hand-off and ack) after its commit.
SIDE = ("CN settle tx (clearance + ack)",)
HOPS = PATH + SIDE


@dataclass(frozen=True)
class Batch:
    ids: tuple[str, ...]
    consumed: int
    verified: int
    committed: int


@dataclass
class Stamps:
    """The first stamp of each kind per key, from one node's log lines."""

    batches: dict[tuple[str, str], Batch]  # (stage, certificate number) -> its batch
    confirmed: dict[str, int]  # certificate number -> its partner publish confirmed
    settled: dict[str, int]  # delivery message id -> its batch's settle committed

    @classmethod
    def read(cls, lines: Iterable[bytes]) -> Stamps:
        found = cls({}, {}, {})
        for line in lines:
            if b'"hop_' not in line:
                continue
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            event, at = entry.get("event"), entry.get("at_ns")
            if event == "hop_committed":
                batch = Batch(tuple(entry["ids"]), entry["consumed_ns"], entry["verified_ns"], at)
                for number in entry["numbers"]:
                    found.batches.setdefault((entry["stage"], number), batch)
            elif event == "hop_confirmed":
                for number in entry["numbers"]:
                    found.confirmed.setdefault(number, at)
            elif event == "hop_settled":
                for message_id in entry["ids"]:
                    found.settled.setdefault(message_id, at)
        return found

    @classmethod
    def of_node(cls, directory: Path) -> Stamps:
        return cls.read(
            line
            for log in sorted(directory.glob("node*.log"))
            for line in log.read_bytes().splitlines()
        )

    def settled_of(self, batch: Batch) -> int | None:
        return next((self.settled[i] for i in batch.ids if i in self.settled), None)


def hops_of(
    number: str, submitted_ns: int, delivered_ns: int, kr: Stamps, cn: Stamps
) -> list[float] | None:
    """One certificate's hops in ms, in the order of ``HOPS``; None if a stamp is missing
    (a certificate whose batch went round a retry has no clean path)."""
    sent = kr.batches.get(("records", number))
    received = cn.batches.get(("inbound", number))
    receipt = kr.batches.get(("inbound", number))
    confirmed, answered = kr.confirmed.get(number), cn.confirmed.get(number)
    if sent is None or received is None or receipt is None:
        return None
    if confirmed is None or answered is None:
        return None
    cn_settled = cn.settled_of(received)
    kr_settled = kr.settled_of(receipt)
    if cn_settled is None or kr_settled is None:
        return None
    points = [
        submitted_ns,
        sent.consumed,
        sent.verified,
        sent.committed,
        confirmed,
        received.consumed,
        received.verified,
        received.committed,
        answered,
        receipt.consumed,
        receipt.verified,
        receipt.committed,
        kr_settled,
        delivered_ns,
    ]
    path = [(b - a) / 1e6 for a, b in itertools.pairwise(points)]
    return [*path, (cn_settled - received.committed) / 1e6]


def breakdown(
    submitted_ns: Mapping[str, int], delivered_ns: Mapping[str, int], kr: Stamps, cn: Stamps
) -> dict[str, Any]:
    """p50 / p99 of each hop over the certificates, and each hop's mean over the slowest
    1 % of them: the hop whose tail mean stands out is the one that makes the p99."""
    paths = {}
    for number, submitted in submitted_ns.items():
        if number in delivered_ns:
            hops = hops_of(number, submitted, delivered_ns[number], kr, cn)
            if hops is not None:
                paths[number] = hops
    if len(paths) < 2:
        return {"traced": len(paths), "hops": {}}
    totals = sorted(paths, key=lambda n: sum(paths[n][: len(PATH)]))
    tail = totals[-max(1, len(totals) // 100) :]
    result: dict[str, Any] = {"traced": len(paths), "hops": {}}
    for index, name in enumerate(HOPS):
        values = [hops[index] for hops in paths.values()]
        q = statistics.quantiles(values, n=100, method="inclusive")
        result["hops"][name] = {
            "p50": round(q[49], 2),
            "p99": round(q[98], 2),
            "tail_mean": round(statistics.fmean(paths[n][index] for n in tail), 2),
        }
    return result


def median_of_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure of each hop as the median over the runs, like the latency percentiles."""
    hops: dict[str, Any] = {}
    for name in HOPS:
        present = [r["hops"][name] for r in runs if name in r["hops"]]
        if present:
            hops[name] = {
                k: statistics.median(h[k] for h in present) for k in ("p50", "p99", "tail_mean")
            }
    return {"traced": sum(r["traced"] for r in runs), "hops": hops}


def table(result: Mapping[str, Any]) -> list[str]:
    if not result["hops"]:
        return [f"bench: hop breakdown: no traced certificates ({result['traced']})"]
    lines = [
        f"{'hop (ms), ' + str(result['traced']) + ' certificates':<38} "
        f"{'p50':>8} {'p99':>8} {'slowest 1%':>11}"
    ]
    for name, h in result["hops"].items():
        lines.append(f"{name:<38} {h['p50']:>8.1f} {h['p99']:>8.1f} {h['tail_mean']:>11.1f}")
    return lines
