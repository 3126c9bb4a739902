"""What the HTTP side costs the traffic: node throughput with ``[http]`` off and on, runs
interleaved (off, on, off, on, ...) so a busy phase of a shared machine hits both alike.

Each run is ``run.py``'s throughput run (a queued batch, receipted, nobody reading the
HTTP side). Beside the rate it reports the CPU time both nodes spent per certificate
while draining: on a machine others load, the rate follows their load, the CPU time much
less. Medians are reported with the load average at each run; nothing is asserted.

``--scrape S`` polls /metrics and /readyz of both nodes every S seconds while HTTP is on,
as monitoring would (``--reader``: and the API's dashboard, as an open console would).
Run: ``python bench/http_ab.py [--pairs N] [--count N] [--scrape S [--reader]]``
(the bench vhosts must exist: ``make bench-quick`` creates them).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import orjson
import run as bench

from eodes_node.testing import NodeProcess

READER_TOKEN = secrets.token_urlsafe(24)  # a viewer token for this run only
HTTP_ON = {
    "EODES_HTTP_ENABLED": "true",
    "EODES_HTTP_PORT": "0",
    "EODES_HTTP_TOKENS": f"viewer:{READER_TOKEN}:bench",
}
HTTP_OFF = {"EODES_HTTP_ENABLED": "false"}
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User and system time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def http_port(node: NodeProcess) -> int | None:
    """The port a node serves HTTP on, from its log; None when HTTP is off."""
    log = node.log.with_suffix(f".{node.starts}.log")
    for line in log.read_bytes().splitlines():
        if b'"http_started"' in line:
            return int(orjson.loads(line)["port"])
    return None


async def scrape(ports: list[int], every: float, paths: tuple[str, ...]) -> None:
    """Poll ``paths`` of each node, as monitoring or an operator's open console would,
    until cancelled."""
    headers = {"Authorization": f"Bearer {READER_TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        while True:
            for port in ports:
                for path in paths:
                    async with session.get(f"http://127.0.0.1:{port}{path}") as response:
                        await response.read()
            await asyncio.sleep(every)


async def drain_once(
    run: Path,
    records: bench.Records,
    count: int,
    scrape_every: float | None = None,
    paths: tuple[str, ...] = (),
) -> tuple[float, float]:
    """``run.throughput_once``, plus the nodes' CPU milliseconds per certificate; with
    ``scrape_every``, ``paths`` are polled meanwhile."""
    pair = bench.Pair(run)
    try:
        await pair.watch(consume=False)
        await pair.nodes["CN"].start()
        batch = [records.next() for _ in range(count)]
        await pair.submit([body for _, body in batch])
        await pair.nodes["KR"].start()
        pids = [node.pid for node in pair.nodes.values()]
        cpu_before = sum(cpu_seconds(pid) for pid in pids)
        ports = [p for node in pair.nodes.values() if (p := http_port(node)) is not None]
        scraper = (
            asyncio.create_task(scrape(ports, scrape_every, paths))
            if ports and scrape_every
            else None
        )
        began, already = time.monotonic(), pair.receipted()
        try:
            finished = await pair.wait_receipted(count, within=600)
        finally:
            if scraper is not None:
                scraper.cancel()
        cpu = sum(cpu_seconds(pid) for pid in pids) - cpu_before
        done = count - already
        return done / (finished - began), 1000 * cpu / done
    finally:
        await pair.close()


async def main(pairs: int, count: int, scrape_every: float | None, reader: bool) -> int:
    paths = ("/metrics", "/readyz", *(("/api/v1/dashboard",) if reader else ()))
    base = bench.ROOT / "var" / "bench-http" / datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    records = bench.Records()
    rates: dict[bool, list[float]] = {False: [], True: []}
    costs: dict[bool, list[float]] = {False: [], True: []}
    for i in range(pairs):
        for http in (False, True):
            bench.EXTRA_ENV.clear()
            bench.EXTRA_ENV.update(HTTP_ON if http else HTTP_OFF)
            before = os.getloadavg()[0]
            rate, cost = await drain_once(
                base / f"{i}-{'on' if http else 'off'}", records, count, scrape_every, paths
            )
            rates[http].append(rate)
            costs[http].append(cost)
            bench.say(
                f"bench: http {'on ' if http else 'off'} run {i + 1}: {rate:.0f} certificates/s, "
                f"{cost:.2f} CPU ms per certificate (load {before:.2f} before, "
                f"{os.getloadavg()[0]:.2f} after)"
            )
    for http in (False, True):
        bench.say(
            f"bench: http {'on ' if http else 'off'}: "
            f"{' / '.join(f'{r:.0f}' for r in rates[http])} certificates/s, "
            f"median {statistics.median(rates[http]):.0f}; CPU ms per certificate "
            f"{' / '.join(f'{c:.2f}' for c in costs[http])}, "
            f"median {statistics.median(costs[http]):.2f}"
        )
    off, on = statistics.median(rates[False]), statistics.median(rates[True])
    cpu_off, cpu_on = statistics.median(costs[False]), statistics.median(costs[True])
    bench.say(
        f"bench: HTTP on costs {100 * (off - on) / off:.1f}% of throughput, "
        f"{100 * (cpu_on - cpu_off) / cpu_off:+.1f}% CPU per certificate"
    )
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=4, help="off/on pairs of runs")
    parser.add_argument("--count", type=int, default=bench.QUICK.count, help="certificates per run")
    parser.add_argument(
        "--scrape", type=float, default=None, help="with HTTP on, poll /metrics every S seconds"
    )
    parser.add_argument(
        "--reader",
        action="store_true",
        help="with --scrape, read /api/v1/dashboard too (an operator's console is open)",
    )
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.pairs, args.count, args.scrape, args.reader)))
