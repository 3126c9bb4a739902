"""`make bench-aged`: is the nodes' cost flat with the age of their stores?

For each store backend (SQLite, PostgreSQL), two pairs of stores: "empty" ones and "aged"
ones. Both get a few thousand certificates through a real KR and CN node over the broker;
then the aged ones are cloned up to ``--certificates`` each (``prefill``). The measures
then alternate between the two, round after round, so a slow phase of a shared machine
falls on both; each measure runs with the nodes as they are (UUIDv7 message ids) and
with KR as an older partner whose ids are random UUIDv4.

Measured: node throughput (KR->CN, receipted), latency percentiles at a fixed offered
rate with the hop breakdown, start-up to consuming, peak RSS, a certificate's status
look-up (the read behind `eodes-node status`, on random certificates of the whole
store), and the bytes each certificate adds to each node's store. Reported, never
asserted: the targets (throughput and p99 within 20% of the empty store, status under
10 ms, start-up under 2 s, at most 5 KB per certificate per node) are for the reader.

``python bench/aged.py [--certificates N] [--backends sqlite,postgresql] [--quick]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import secrets
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import structlog
from breakdown import median_of_runs, table
from prefill import clone_number, fill_postgres, fill_sqlite
from run import RESULTS, ROOT, Plan, Records, latency, machine, say, throughput_once

from eodes_node.adapters.sql.reports import SqlReports

POSTGRES = os.environ.get(
    "EODES_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
COUNTRIES = ("KR", "CN")
ROLES = {"KR": "exporter", "CN": "importer"}
# ``repeats`` is the rounds; each measure in a round is one throughput and one latency run.
FULL = Plan(count=2000, repeats=3, rate=100.0, latency_s=20.0, backlog=0)
QUICK = Plan(count=500, repeats=1, rate=100.0, latency_s=5.0, backlog=0)
ONE_RUN = {"repeats": 1, "backlog": 0}
WARM_UP = 2000  # certificates through the nodes before the first measure: the templates
LOOKUPS = 200
IDS = ("uuid7", "uuid4")
STORE_PAIRS = ("empty", "aged-uuid7", "aged-uuid4")


class Stores(Protocol):
    urls: dict[str, str]

    def size(self, own: str) -> int: ...
    def count(self, own: str) -> int: ...
    def fill(self, own: str, target: int, pattern: str, uuid4_ids: bool) -> int:
        """Age this node's store to ``target`` certificates; returns the copies made."""

    def close(self) -> None: ...


class SqliteStores:
    def __init__(self, run: Path) -> None:
        self.paths = {c: run / c.lower() / "node.db" for c in COUNTRIES}
        self.urls = {c: f"sqlite:///{p}" for c, p in self.paths.items()}

    def size(self, own: str) -> int:
        base = self.paths[own]
        return sum(
            p.stat().st_size for p in (base, base.with_name(base.name + "-wal")) if p.exists()
        )

    def count(self, own: str) -> int:
        import sqlite3

        db = sqlite3.connect(self.paths[own])
        try:
            return int(db.execute("SELECT count(*) FROM certificates").fetchone()[0])
        finally:
            db.close()

    def fill(self, own: str, target: int, pattern: str, uuid4_ids: bool) -> int:
        return fill_sqlite(str(self.paths[own]), target, pattern, uuid4_ids)

    def close(self) -> None:
        for path in self.paths.values():
            for p in path.parent.glob(path.name + "*"):
                p.unlink()


class PostgresStores:
    """A database per node on the local server, dropped at the end."""

    def __init__(self) -> None:
        import psycopg

        self.admin = psycopg.connect(POSTGRES, autocommit=True, connect_timeout=5)
        tag = secrets.token_hex(4)
        self.names = {c: f"eodes_bench_{tag}_{c.lower()}" for c in COUNTRIES}
        base = POSTGRES.split("://", 1)[1].rsplit("/", 1)[0]
        self.dsns = {c: f"postgresql://{base}/{n}" for c, n in self.names.items()}
        self.urls = {c: f"postgresql+psycopg://{base}/{n}" for c, n in self.names.items()}
        for name in self.names.values():
            self.admin.execute(f"CREATE DATABASE {name}")

    def _one(self, own: str, query: str) -> int:
        import psycopg

        with psycopg.connect(self.dsns[own], autocommit=True) as db:
            row = db.execute(query).fetchone()
            assert row is not None
            return int(row[0])

    def size(self, own: str) -> int:
        return self._one(own, "SELECT pg_database_size(current_database())")

    def count(self, own: str) -> int:
        return self._one(own, "SELECT count(*) FROM certificates")

    def fill(self, own: str, target: int, pattern: str, uuid4_ids: bool) -> int:
        return fill_postgres(self.dsns[own], target, pattern, uuid4_ids)

    def close(self) -> None:
        for name in self.names.values():
            self.admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        self.admin.close()


@dataclass
class Numbers:
    """Certificate numbers that exist in a pair of stores, to look up at random: those
    the nodes wrote, and (aged stores) the copies made of them."""

    written: list[str]
    copies: int = 0

    def sample(self, rng: random.Random) -> str:
        index = rng.randrange(len(self.written))
        if self.copies and rng.random() < 0.95:
            return clone_number(self.written[index], rng.randint(1, self.copies), index)
        return self.written[index]


def written_numbers(stores: Stores) -> list[str]:
    """KR's certificates, sorted: the order ``prefill`` numbers its copies by."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(stores.urls["KR"])
    try:
        with engine.connect() as conn:
            rows = conn.execute(sqlalchemy.text("SELECT number FROM certificates ORDER BY number"))
            return [str(n) for (n,) in rows]
    finally:
        engine.dispose()


async def build_report_index(stores: Stores) -> None:
    for own in COUNTRIES:
        reports = SqlReports(stores.urls[own], own=own, partner=partner_of(own))
        await reports.open()
        try:
            await reports.catch_up()
        finally:
            await reports.close()


def partner_of(own: str) -> str:
    return next(c for c in COUNTRIES if c != own)


async def status_lookups(stores: Stores, numbers: Numbers) -> dict[str, Any]:
    """Milliseconds per look-up of a certificate's full status (state, history, messages,
    receipts), on random certificates of each store; a miss is an error, not a fast read."""
    rng = random.Random(7)  # noqa: S311 - bench data
    result = {}
    for own in COUNTRIES:
        reports = SqlReports(stores.urls[own], own=own, partner=partner_of(own))
        await reports.open()
        try:
            times = []
            for i in range(LOOKUPS + 10):
                number = numbers.sample(rng)
                began = time.perf_counter()
                found = await reports.certificate(number)
                elapsed = (time.perf_counter() - began) * 1000
                if not found:
                    raise RuntimeError(f"{own}: certificate {number} not found")
                if i >= 10:  # the first ones warm the connection and the statements
                    times.append(elapsed)
            times.sort()
            result[own] = {
                "median_ms": round(statistics.median(times), 2),
                "p95_ms": round(times[int(len(times) * 0.95) - 1], 2),
            }
        finally:
            await reports.close()
    return result


@dataclass
class Measures:
    """One pair of stores with one kind of ids, over the rounds."""

    rates: list[float]
    latencies: list[dict[str, Any]]
    started: dict[str, list[float]]
    rss: dict[str, list[float]]
    status: list[dict[str, Any]]

    @classmethod
    def new(cls) -> Measures:
        return cls([], [], {}, {}, [])

    def summary(self, stores: Stores) -> dict[str, Any]:
        def median_of(key: str) -> float:
            return round(float(statistics.median(run[key] for run in self.latencies)), 1)

        return {
            "certificates": {c: stores.count(c) for c in COUNTRIES},
            "node_per_s": round(statistics.median(self.rates), 1),
            "node_runs_per_s": [round(r, 1) for r in self.rates],
            "latency_ms": {p: median_of(p) for p in ("p50", "p95", "p99")},
            "p99_runs_ms": [run["p99"] for run in self.latencies],
            "hops": median_of_runs([run["hops"] for run in self.latencies]),
            "start_s": {c: round(statistics.median(v), 2) for c, v in self.started.items()},
            "rss_mb": {c: round(max(v), 1) for c, v in self.rss.items()},
            "status_ms": {
                c: {
                    m: round(statistics.median(s[c][m] for s in self.status), 2)
                    for m in ("median_ms", "p95_ms")
                }
                for c in COUNTRIES
            },
        }


async def measure_once(
    run: Path,
    stores: Stores,
    records: Records,
    numbers: Numbers,
    plan: Plan,
    into: Measures,
    uuid4: bool,
) -> None:
    options: dict[str, Any] = {"stores": stores.urls, "uuid4_partner": uuid4}
    into.rates.append(
        await throughput_once(
            run / "throughput",
            records,
            plan.count,
            started=into.started,
            rss_mb=into.rss,
            **options,
        )
    )
    one = Plan(**{**plan.__dict__, **ONE_RUN})
    into.latencies.append(await latency(run / "latency", records, one, **options))
    into.status.append(await status_lookups(stores, numbers))


def said(label: str, m: dict[str, Any]) -> None:
    lat, status = m["latency_ms"], m["status_ms"]
    say(
        f"bench-aged: {label}: {m['certificates']['KR']:>9} certificates: "
        f"{m['node_per_s']:.0f}/s, p50/p95/p99 "
        + " / ".join(f"{lat[p]:.0f}" for p in ("p50", "p95", "p99"))
        + f" ms, start KR {m['start_s']['KR']:.2f} s, status KR "
        f"{status['KR']['median_ms']:.1f} ms, RSS KR/CN {m['rss_mb']['KR']:.0f}/"
        f"{m['rss_mb']['CN']:.0f} MB"
    )
    for line in table(m["hops"]):
        say(f"bench-aged:   {line}")


async def one_backend(
    name: str, run: Path, pairs: dict[str, Stores], target: int, plan: Plan
) -> dict[str, Any]:
    records = Records()
    for age, stores in pairs.items():
        say(f"bench-aged: {name}: {WARM_UP} certificates through the nodes ({age} stores)")
        await throughput_once(run / f"warm-up-{age}", records, WARM_UP, stores=stores.urls)
    for stores in pairs.values():
        await build_report_index(stores)  # as a node with its console has it: cloned too
    numbers = {age: Numbers(written_numbers(stores)) for age, stores in pairs.items()}
    result: dict[str, Any] = {"empty": {}, "aged": {}, "fill_s": {}, "bytes_per_certificate": {}}
    for ids in IDS:
        aged = pairs[f"aged-{ids}"]
        before = {c: (aged.size(c), aged.count(c)) for c in COUNTRIES}
        say(f"bench-aged: {name}: ageing a pair of stores to {target} certificates, {ids} ids")
        began = time.monotonic()
        pattern = f"{records.prefix}[0-9]{{8}}"
        copies = [aged.fill(own, target, pattern, ids == "uuid4") for own in COUNTRIES]
        result["fill_s"][ids] = round(time.monotonic() - began, 1)
        numbers[f"aged-{ids}"].copies = min(copies)
        per_certificate = {}
        for own in COUNTRIES:
            added = aged.count(own) - before[own][1]
            size = aged.size(own) - before[own][0]
            per_certificate[own] = round(size / added) if added else None
        result["bytes_per_certificate"][ids] = per_certificate
        say(
            f"bench-aged: {name}: aged in {result['fill_s'][ids]:.0f} s; bytes per "
            f"certificate KR / CN: {per_certificate['KR']} / {per_certificate['CN']}"
        )
    # The older partner's ids (uuid4) on the stores that took them for years.
    measures = {(age, ids): Measures.new() for age in ("empty", "aged") for ids in IDS}
    store_of = {("empty", ids): "empty" for ids in IDS} | {("aged", i): f"aged-{i}" for i in IDS}
    for round_ in range(plan.repeats):
        for (age, ids), into in measures.items():
            say(f"bench-aged: {name}: round {round_ + 1}, {age} stores, {ids} ids")
            key = store_of[(age, ids)]
            await measure_once(
                run / f"{age}-{ids}-{round_}",
                pairs[key],
                records,
                numbers[key],
                plan,
                into,
                ids == "uuid4",
            )
    for (age, ids), into in measures.items():
        result[age][ids] = into.summary(pairs[store_of[(age, ids)]])
        said(f"{name}, {age}, {ids}", result[age][ids])
    result["size_mb"] = {
        key: {c: round(pairs[key].size(c) / 1e6, 1) for c in COUNTRIES} for key in pairs
    }
    return result


def ratio(aged: float, empty: float) -> str:
    return f"{aged / empty:.2f}" if empty else "-"


def report(results: dict[str, Any]) -> None:
    say("")
    say(
        f"{'store':<11} {'ids':<6} {'age':<6} {'cert/s':>7} {'p50':>5} {'p99':>5} "
        f"{'start KR/CN s':>14} {'RSS KR/CN MB':>13} {'status KR/CN ms':>16}"
    )
    for backend, r in results["backends"].items():
        for age in ("empty", "aged"):
            for ids, m in r[age].items():
                say(
                    f"{backend:<11} {ids:<6} {age:<6} {m['node_per_s']:>7.0f} "
                    f"{m['latency_ms']['p50']:>5.0f} {m['latency_ms']['p99']:>5.0f} "
                    f"{m['start_s']['KR']:>6.2f}/{m['start_s']['CN']:<7.2f} "
                    f"{m['rss_mb']['KR']:>6.0f}/{m['rss_mb']['CN']:<6.0f} "
                    f"{m['status_ms']['KR']['median_ms']:>7.1f}/{m['status_ms']['CN']['median_ms']:<8.1f}"
                )
        for ids in ("uuid7", "uuid4"):
            e, a = r["empty"][ids], r["aged"][ids]
            say(
                f"{backend:<11} {ids:<6} aged/empty: throughput "
                f"{ratio(a['node_per_s'], e['node_per_s'])}, p99 "
                f"{ratio(a['latency_ms']['p99'], e['latency_ms']['p99'])}"
            )
        for ids in IDS:
            b = r["bytes_per_certificate"][ids]
            say(
                f"{backend:<11} {ids:<6} bytes per certificate KR / CN: {b['KR']} / "
                f"{b['CN']}; aged in {r['fill_s'][ids]:.0f} s"
            )


async def main(target: int, backends: list[str], quick: bool, keep: bool) -> int:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    plan = QUICK if quick else FULL
    run = ROOT / "var" / "bench" / ("aged-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%S"))
    run.mkdir(parents=True)
    results: dict[str, Any] = {"target_certificates": target, "backends": {}}
    for backend in backends:
        pairs: dict[str, Stores] = {
            age: SqliteStores(run / backend / age) if backend == "sqlite" else PostgresStores()
            for age in STORE_PAIRS
        }
        try:
            results["backends"][backend] = await one_backend(
                backend, run / backend, pairs, target, plan
            )
        finally:
            for stores in pairs.values():
                if keep:
                    say(f"bench-aged: {backend}: stores kept: {stores.urls}")
                else:
                    stores.close()
    results["plan"] = plan.__dict__
    results["machine"] = machine()
    results["at"] = datetime.now(UTC).isoformat(timespec="seconds")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / ("aged-quick.json" if quick else "aged-latest.json")
    out.write_text(json.dumps(results, indent=2) + "\n")
    report(results)
    say(f"bench-aged: wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--certificates", type=int, default=1_000_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--quick", action="store_true", help="small counts, one repeat")
    parser.add_argument("--keep", action="store_true", help="keep the stores to look into")
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.certificates, args.backends.split(","), args.quick, args.keep)))
