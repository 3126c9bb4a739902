"""Page-render times of the console and the verification page with a large store.

A SQLite store is filled with cloned rows (a few hundred real signed certificates, copied
under new numbers: the nodes are not involved), the report index is built once, then the
real HTTP application answers real requests on loopback: dashboard, search (first page
and a filtered one), a certificate's detail, a verification look-up. Each is timed from
request to the last byte of the page; median and p95 are reported, nothing asserted.

Run alone: ``python bench/pages.py [--count N]``; ``bench/run.py`` runs it too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import sqlite3
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import structlog

from eodes_node.adapters.clock import SystemClock
from eodes_node.adapters.http.access import Access, parse_tokens
from eodes_node.adapters.http.app import HttpServer, create_app
from eodes_node.adapters.http.context import HttpContext
from eodes_node.adapters.sql import SqlStore
from eodes_node.adapters.sql.reports import SqlReports
from eodes_node.config import HttpSection
from eodes_node.core.envelope import seal
from eodes_node.core.jws import KeySet, PrivateKey
from eodes_node.core.messages import CooIssued, new_message_id
from eodes_node.core.models import Certificate
from eodes_node.ports import CertificateFilter
from eodes_node.samples import SampleFactory
from eodes_node.service.metrics import NodeMetrics

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-operator-token-0123456789"  # noqa: S105 - a bench-only token
TEMPLATES = 200
SAMPLES = 60
# Exporter states, weighted roughly as a busy node holds them.
STATES = ["delivered"] * 40 + ["granted"] * 40 + ["denied"] * 8 + ["partial"] * 2
STATES += ["pending"] * 4 + ["failed"] * 2 + ["replaced"] * 2 + ["cancelled"] * 2


def say(text: str) -> None:
    print(text, flush=True)


def _templates(key: PrivateKey) -> list[tuple[Certificate, bytes]]:
    now = datetime.now(UTC).replace(microsecond=0)
    certs = SampleFactory("KCFTA", seed=11).certificates(TEMPLATES)
    return [(cert, seal(_coo(cert, now), key)) for cert in certs]


def _coo(cert: Certificate, now: datetime) -> CooIssued:
    return CooIssued(
        message_id=new_message_id(), sender="KR", receiver="CN", issued_at=now, certificate=cert
    )


def fill(path: Path, count: int, key: PrivateKey) -> str:
    """``count`` certificates sent to CN, each with its coo message and history."""
    templates = _templates(key)
    rng = random.Random(5)  # noqa: S311 - bench data
    now = time.time()
    certs: list[tuple[str, str, str, str, float]] = []
    history: list[tuple[str, str, float, str, str | None, str, str, str]] = []
    outbound: list[tuple[str, str, str, bytes, str, int, float, float]] = []
    for n in range(count):
        _, token = templates[n % len(templates)]
        number, message_id = f"KR2026BENCH{n:08d}", f"00000000-0000-4000-8000-{n:012d}"
        state = STATES[rng.randrange(len(STATES))]
        sent = now - rng.uniform(60, 120 * 86400)
        updated = sent + rng.uniform(1, 3600)
        certs.append(("exporter", number, state, message_id, updated))
        history.append(
            ("exporter", number, sent, "submitted", None, "pending", message_id, "0" * 64)
        )
        if state != "pending":
            history.append(
                ("exporter", number, updated, "bench", "pending", state, message_id, "0" * 64)
            )
        status = state if state in ("pending", "failed") else "delivered"
        outbound.append((message_id, "coo", number, token, status, 1, sent, updated))
    db = sqlite3.connect(path)
    with db:
        db.executemany(
            "INSERT INTO certificates (role, number, state, coo_message_id, updated_at) "
            "VALUES (?, ?, ?, ?, ?)",
            certs,
        )
        db.executemany(
            'INSERT INTO certificate_history (role, number, at, event, "before", "after", '
            "message_id, chain) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            history,
        )
        db.executemany(
            "INSERT INTO outbound_messages (message_id, kind, certificate_number, token, "
            "status, attempts, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            outbound,
        )
    db.close()
    return templates[7][0].header.reference_code


def unique_references(path: Path) -> None:
    """Clones share their template's payload; give each its own reference number, so a
    look-up finds one row as it would in a real store."""
    db = sqlite3.connect(path)
    with db:
        db.execute(
            "UPDATE certificate_index SET reference_number = 'REF-' || number, "
            "reference_ci = 'REF-' || upper(number)"
        )
    db.close()


async def _time(session: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> float:
    started = time.perf_counter()
    async with session.request(method, url, **kw) as response:
        await response.read()
        if response.status != 200:
            raise RuntimeError(f"{method} {url}: {response.status}")
    return (time.perf_counter() - started) * 1000


async def _sample(
    session: aiohttp.ClientSession, method: str, url: str, **kw: Any
) -> dict[str, float]:
    for _ in range(3):  # warm: templates compiled, pages in the OS cache
        await _time(session, method, url, **kw)
    times = sorted([await _time(session, method, url, **kw) for _ in range(SAMPLES)])
    return {
        "median_ms": round(statistics.median(times), 1),
        "p95_ms": round(times[int(len(times) * 0.95) - 1], 1),
    }


async def _read_median(read: Callable[[], Awaitable[object]]) -> float:
    times = []
    for _ in range(SAMPLES):
        started = time.perf_counter()
        await read()
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 1)


async def measure(run: Path, count: int) -> dict[str, Any]:
    """Median and p95 milliseconds per page, with ``count`` certificates in the store."""
    await asyncio.to_thread(run.mkdir, parents=True, exist_ok=True)
    # The audit line of each timed look-up would drown the bench's own output.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    url = f"sqlite:///{run / 'pages.db'}"
    store = SqlStore(url, clock=SystemClock())
    await store.open()
    await store.close()
    key = PrivateKey.generate()
    say(f"bench: pages: filling a store with {count} certificates (cloned rows)")
    started = time.perf_counter()
    code = fill(run / "pages.db", count, key)
    reports = SqlReports(url, own="KR", partner="CN")
    await reports.open()
    while await reports.index(limit=20_000):
        pass
    unique_references(run / "pages.db")
    say(f"bench: pages: store filled and indexed in {time.perf_counter() - started:.0f} s")
    settings = HttpSection(enabled=True, port=0, lookups_per_minute=10_000)
    jwks = KeySet({key.kid: key.public}).to_jwks()

    async def ready() -> list[str]:
        return []

    context = HttpContext(
        settings,
        "KR",
        "CN",
        reports,
        Access(parse_tokens(f"operator:{TOKEN}", where="bench")),
        SystemClock(),
        NodeMetrics(),
        ready,
        jwks,
        jwks,
    )
    server = HttpServer(create_app(context), settings)
    await server.start()
    base = f"http://127.0.0.1:{server.port}"
    reference = f"REF-KR2026BENCH{7 + TEMPLATES * (count // TEMPLATES // 2):08d}"
    detail = f"KR2026BENCH{count // 2:08d}"
    pages = {
        "dashboard": ("GET", "/console", {}),
        "search, first page": ("GET", "/console/certificates", {}),
        "search, filtered": ("GET", "/console/certificates?state=failed&agreement=kcfta", {}),
        "detail": ("GET", f"/console/certificates/{detail}", {}),
        "verification": ("POST", "/verify", {"data": {"ref": reference, "code": code}}),
    }
    # The read port's share of each page: the rest is routing, rendering and HTTP.
    reads: dict[str, Callable[[], Awaitable[object]]] = {
        "dashboard": reports.dashboard,
        "search, first page": lambda: reports.certificates(CertificateFilter()),
        "search, filtered": lambda: reports.certificates(
            CertificateFilter(state="failed", agreement="kcfta")
        ),
        "detail": lambda: reports.certificate(detail),
        "verification": lambda: reports.verify_reference(reference, code),
    }
    results: dict[str, Any] = {"certificates": count}
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        async with aiohttp.ClientSession(headers=headers) as session:
            for name, (method, path, kw) in pages.items():
                timed = await _sample(session, method, base + path, **kw)
                timed["read_median_ms"] = await _read_median(reads[name])
                results[name] = timed
                say(
                    f"bench: pages: {name:<20} median {timed['median_ms']:6.1f} ms, "
                    f"p95 {timed['p95_ms']:6.1f} ms (of which reading the store: "
                    f"{timed['read_median_ms']:.1f} ms)"
                )
    finally:
        await server.stop()
        await reports.close()
        await asyncio.to_thread(_remove_store, run)
    return results


def _remove_store(run: Path) -> None:
    """The store is about 6 KB per certificate: not worth keeping once timed."""
    for path in run.glob("pages.db*"):
        path.unlink()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=100_000)
    args = parser.parse_args()
    out = ROOT / "var" / "bench" / ("pages-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%S"))
    print(json.dumps(asyncio.run(measure(out, args.count)), indent=2))
    sys.exit(0)
