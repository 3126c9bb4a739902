"""`make bench` / `make bench-quick`: node throughput, latency and memory against the
ceiling of a bare relay, in one process tree and one run so the figures compare.

Speed is reported, never asserted: figures vary on shared machines, so the throughput
figures are medians of repeated runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import platform
import secrets
import sqlite3
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import orjson
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection
from breakdown import Stamps, breakdown, median_of_runs, table
from cpu import CoreSpeed, CpuWindow, broker_pid, core_ms, said_rest
from cpu import said as said_cpu
from pages import measure as measure_pages
from pydantic import TypeAdapter

from eodes_node.core.envelope import seal
from eodes_node.core.jws import KeySet, PrivateKey
from eodes_node.core.messages import CooIssued, new_message_id
from eodes_node.core.records import as_json_dict
from eodes_node.hops import ENV_FLAG
from eodes_node.keyfiles import write_private_key
from eodes_node.samples import SampleFactory
from eodes_node.testing import NodeProcess
from eodes_node.topology import Topology

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = ROOT / "bench" / "results"
BROKER = "amqp://guest:guest@127.0.0.1:5672/"
VHOSTS = ("eodes-bench-kr", "eodes-bench-cn")
EXTRA_ENV: dict[str, str] = {}


@dataclass(frozen=True)
class Plan:
    count: int
    repeats: int
    rate: float
    latency_s: float
    backlog: int
    pages: int = 100_000  # certificates in the store the console's pages are timed on


FULL = Plan(count=5000, repeats=3, rate=100.0, latency_s=30.0, backlog=100_000)
QUICK = Plan(count=2000, repeats=1, rate=100.0, latency_s=10.0, backlog=5000, pages=20_000)


RECEIPTED = (
    "SELECT count(*) FROM outbound_messages "
    "WHERE status = 'delivered' AND created_at >= %s AND kind = 'coo'"
)


def env_path() -> str:
    return os.environ.get("PYTHONPATH", "")


def say(text: str) -> None:
    print(text, flush=True)


class Records:
    """Distinct, valid e-CO records, fast: a pool of samples with fresh numbers."""

    def __init__(self) -> None:
        self.pool = [as_json_dict(c) for c in SampleFactory("KCFTA", seed=1).certificates(300)]
        self.serial = 0
        self.prefix = f"KR{datetime.now(UTC):%Y}B{secrets.token_hex(3).upper()}"

    def next(self) -> tuple[str, bytes]:
        self.serial += 1
        record = self.pool[self.serial % len(self.pool)]
        number = f"{self.prefix}{self.serial:08d}"
        record["header"]["certificate_number"] = number
        return number, orjson.dumps(record)


async def publish_many(
    connection: AbstractRobustConnection, queue: str, bodies: list[bytes], kind: str | None = "coo"
) -> None:
    channel = await connection.channel(publisher_confirms=True)
    for start in range(0, len(bodies), 1000):
        await asyncio.gather(
            *(
                channel.default_exchange.publish(
                    aio_pika.Message(
                        body, type=kind, delivery_mode=aio_pika.DeliveryMode.PERSISTENT
                    ),
                    routing_key=queue,
                )
                for body in bodies[start : start + 1000]
            )
        )
    await channel.close()


# --- 1. the ceiling ----------------------------------------------------------------------


async def relay_once(count: int, body: bytes, prefetch: int) -> float:
    """Consume from a queue in one vhost, publish with confirms to another, ack."""
    source = await aio_pika.connect_robust(BROKER + VHOSTS[0])
    target = await aio_pika.connect_robust(BROKER + VHOSTS[1])
    name = f"bench.relay.{secrets.token_hex(4)}"
    try:
        src_channel = await source.channel()
        src = await src_channel.declare_queue(name, durable=True)
        out_channel = await target.channel(publisher_confirms=True)
        await out_channel.declare_queue(name, durable=True)
        await publish_many(source, name, [body] * count, kind=None)
        await src_channel.set_qos(prefetch_count=prefetch)
        done = asyncio.Event()
        moved = 0

        async def relay(message: AbstractIncomingMessage) -> None:
            nonlocal moved
            await out_channel.default_exchange.publish(
                aio_pika.Message(message.body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=name,
            )
            await message.ack()
            moved += 1
            if moved == count:
                done.set()

        began = time.monotonic()
        tag = await src.consume(relay)
        await asyncio.wait_for(done.wait(), 300)
        elapsed = time.monotonic() - began
        await src.cancel(tag)
        await src_channel.queue_delete(name)
        await out_channel.queue_delete(name)
        return count / elapsed
    finally:
        await source.close()
        await target.close()


async def ceiling(plan: Plan, body: bytes) -> float:
    best_runs = []
    for _ in range(plan.repeats):
        rates = [await relay_once(plan.count, body, prefetch) for prefetch in (256, 1024)]
        best_runs.append(max(rates))
        say(
            f"bench: ceiling run: {max(rates):.0f} msg/s (prefetch 256: {rates[0]:.0f}, "
            f"1024: {rates[1]:.0f})"
        )
    return statistics.median(best_runs)


# --- 2-4. the real nodes -----------------------------------------------------------------


class Pair:
    """A KR and a CN node process on the bench vhosts, with the local queues watched;
    with ``trace`` the nodes log their hop stamps (``eodes_node.hops``). ``stores`` are
    the nodes' store URLs (default: a SQLite file each in ``run``); ``uuid4_partner``
    runs KR with random UUIDv4 message ids, as an older partner's node."""

    def __init__(
        self,
        run: Path,
        trace: bool = False,
        stores: dict[str, str] | None = None,
        uuid4_partner: bool = False,
    ) -> None:
        self.run = run
        self.began_at = time.time()  # what the nodes store from now on is this pair's
        self.stores = stores or {
            c: f"sqlite:///{run / c.lower() / 'node.db'}" for c in ("KR", "CN")
        }
        self._counter: Any = None
        self.namespace = "b" + secrets.token_hex(4)
        keys = {c: PrivateKey.generate() for c in ("KR", "CN")}
        self.topo = {
            "KR": Topology("KR", "CN", self.namespace),
            "CN": Topology("CN", "KR", self.namespace),
        }
        self.nodes: dict[str, NodeProcess] = {}
        for own, partner, local, remote in (("KR", "CN", *VHOSTS), ("CN", "KR", *VHOSTS[::-1])):
            d = run / own.lower()
            d.mkdir(parents=True, exist_ok=True)
            write_private_key(d / "key.pem", keys[own].to_pem())
            (run / f"{own.lower()}.jwks.json").write_bytes(
                orjson.dumps(KeySet({keys[own].kid: keys[own].public}).to_jwks())
            )
            env = {
                "EODES_NODE_NAMESPACE": self.namespace,
                "EODES_BROKER_LOCAL_URL": BROKER + local,
                "EODES_BROKER_PARTNER_URL": BROKER + remote,
                "EODES_KEYS_PRIVATE_KEY": str(d / "key.pem"),
                "EODES_KEYS_PARTNER_JWKS": str(run / f"{partner.lower()}.jwks.json"),
                "EODES_STORE_URL": self.stores[own],
                **EXTRA_ENV,
                **({ENV_FLAG: "1"} if trace else {}),
            }
            config = ROOT / "config" / f"{own.lower()}-{partner.lower()}.toml"
            older = uuid4_partner and own == "KR"
            if older:
                env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH), env_path()]))
            module = "uuid4_partner" if older else "eodes_node"
            self.nodes[own] = NodeProcess(config, d / "node.log", env, module=module)
        self.delivered: dict[str, float] = {}
        self.delivered_ns: dict[str, int] = {}  # wall clock, to join the nodes' hop stamps
        self.progress = asyncio.Event()
        self.connections: dict[str, AbstractRobustConnection] = {}
        self.watching: list[AbstractChannel] = []

    async def watch(self, consume: bool = True) -> None:
        """Connect as the local systems; without ``consume`` they only submit, so the
        nodes have the machine to themselves (the ceiling relay has no consumers either)."""
        for own, vhost in zip(("KR", "CN"), VHOSTS, strict=True):
            self.connections[own] = await aio_pika.connect_robust(BROKER + vhost)
        if not consume:
            channel = await self.connections["KR"].channel()
            await channel.declare_queue(self.topo["KR"].outbound_records, durable=True)
            await channel.close()
            return
        kr = await self.connections["KR"].channel()
        self.watching.append(kr)
        await kr.set_qos(prefetch_count=2000)
        events = await kr.declare_queue(self.topo["KR"].events, durable=True)
        await kr.declare_queue(self.topo["KR"].outbound_records, durable=True)

        async def on_event(message: AbstractIncomingMessage) -> None:
            body = orjson.loads(message.body)
            if body["event"] == "delivered":
                now, wall = time.monotonic(), time.time_ns()
                for item in body["items"]:
                    self.delivered.setdefault(item["certificate_number"], now)
                    self.delivered_ns.setdefault(item["certificate_number"], wall)
                self.progress.set()

        # Taken without acks, like the submitter's publishes without confirms in the
        # latency runs: the bench's own client shares the nodes' two cores.
        await events.consume(on_event, no_ack=True)
        cn = await self.connections["CN"].channel()
        self.watching.append(cn)
        await cn.set_qos(prefetch_count=2000)
        clearance = await cn.declare_queue(self.topo["CN"].clearance, durable=True)

        async def drop(message: AbstractIncomingMessage) -> None:
            return None

        await clearance.consume(drop, no_ack=True)

    async def submit(self, bodies: list[bytes]) -> None:
        await publish_many(self.connections["KR"], self.topo["KR"].outbound_records, bodies)

    async def wait_delivered(self, numbers: set[str], within: float) -> float:
        deadline = time.monotonic() + within
        while not numbers <= self.delivered.keys():
            if time.monotonic() > deadline:
                missing = len(numbers - self.delivered.keys())
                raise RuntimeError(f"{missing} certificates without a receipt after {within} s")
            self.progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.progress.wait(), 1.0)
        return max(self.delivered[n] for n in numbers)

    def receipted(self) -> int:
        """How many e-COs KR's store has as delivered since this pair began; 0 before the
        store exists. An index range (status, created_at): the count costs what this
        pair sent, not the store's age."""
        url = self.stores["KR"]
        if url.startswith("sqlite:"):
            path = url[len("sqlite:///") :]
            with contextlib.suppress(sqlite3.OperationalError):
                db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
                try:
                    (done,) = db.execute(RECEIPTED.replace("%s", "?"), (self.began_at,)).fetchone()
                    return int(done)
                finally:
                    db.close()
            return 0
        import psycopg

        if self._counter is None:
            self._counter = psycopg.connect(url.replace("+psycopg", ""), autocommit=True)
        (done,) = self._counter.execute(RECEIPTED, (self.began_at,)).fetchone()
        return int(done)

    async def wait_receipted(self, count: int, within: float) -> float:
        """Poll until `count` e-COs are delivered; returns when."""
        deadline = time.monotonic() + within
        while self.receipted() < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"not all {count} certificates receipted after {within} s")
            await asyncio.sleep(0.05)
        return time.monotonic()

    async def close(self) -> None:
        if self._counter is not None:
            self._counter.close()
        for node in self.nodes.values():
            if node.process is not None and node.process.returncode is None:
                await node.terminate()
        for watching in self.watching:
            # Before the queues go: a consumer on a deleted queue is a warning on stderr.
            with contextlib.suppress(Exception):
                await watching.close()
        for own, connection in self.connections.items():
            topo = self.topo[own]
            channel = await connection.channel()
            for queue in topo.local_queues():
                for name in (queue, topo.dead_letter(queue)):
                    with contextlib.suppress(Exception):
                        await channel.queue_delete(name)
                    if channel.is_closed:
                        channel = await connection.channel()
            with contextlib.suppress(Exception):
                await channel.exchange_delete(topo.inbound_exchange)
            await connection.close()


async def throughput_once(run: Path, records: Records, count: int, **pair_options: Any) -> float:
    """KR's outbound queue holds `count` records when KR starts; the rate at which they
    are receipted once KR consumes. ``pair_options`` go to ``Pair``; ``started`` and
    ``rss_mb`` in them, when given, collect start-up seconds and peak RSS per node."""
    started: dict[str, list[float]] | None = pair_options.pop("started", None)
    rss: dict[str, list[float]] | None = pair_options.pop("rss_mb", None)
    pair = Pair(run, **pair_options)
    try:
        await pair.watch(consume=False)
        cn_start = await pair.nodes["CN"].start()
        batch = [records.next() for _ in range(count)]
        await pair.submit([body for _, body in batch])
        kr_start = await pair.nodes["KR"].start()
        # The clock starts once KR consumes (start-up is measured on its own, below) and
        # counts only what is receipted from then on.
        began, already = time.monotonic(), pair.receipted()
        finished = await pair.wait_receipted(count, within=600)
        if started is not None:
            started.setdefault("KR", []).append(kr_start)
            started.setdefault("CN", []).append(cn_start)
        if rss is not None:
            for own, node in pair.nodes.items():
                rss.setdefault(own, []).append(node.peak_rss_mb())
        return (count - already) / (finished - began)
    finally:
        await pair.close()


async def latency(
    run: Path, records: Records, plan: Plan, speed: CoreSpeed | None = None, **pair_options: Any
) -> dict[str, Any]:
    """Median of each percentile over repeated runs: one run's tail on a shared machine
    moves by half its value between runs. With ``speed``, each run first waits for the
    cores to be back to the speed they had when the bench started (``cpu.CoreSpeed``)."""
    runs = []
    for i in range(plan.repeats):
        rest = await speed.rest() if speed is not None else None
        if rest is not None:
            say(f"bench:   {said_rest(rest)}")
        # What earlier phases left on the bench's own heap must not pause its clock.
        gc.collect()
        gc.freeze()
        fsync_before = disk_fsync_ms(run)
        runs.append(await latency_once(run / f"latency-{i}", records, plan, **pair_options))
        runs[-1]["fsync_ms_before"] = fsync_before
        runs[-1]["fsync_ms_after"] = disk_fsync_ms(run)
        runs[-1]["rest"] = rest
        runs[-1]["core_ms_after"] = core_ms()
        say(
            "bench: latency run: p50 / p95 / p99 "
            + " / ".join(f"{runs[-1][p]:.0f}" for p in ("p50", "p95", "p99"))
            + f" ms (disk fsync {fsync_before} / {runs[-1]['fsync_ms_after']} ms before / after;"
            + f" core speed probe {runs[-1]['core_ms_after']} ms after)"
        )
        say(f"bench:   {said_cpu(runs[-1]['cpu'])}")
    return {
        **{p: statistics.median(r[p] for r in runs) for p in ("p50", "p95", "p99")},
        "offered_per_s": plan.rate,
        "count": runs[0]["count"],
        "hops": median_of_runs([r["hops"] for r in runs]),
        "machine_busy_pct": statistics.median(r["cpu"]["machine_busy_pct"] for r in runs),
        "runs": runs,
    }


async def latency_once(
    run: Path, records: Records, plan: Plan, **pair_options: Any
) -> dict[str, Any]:
    """Submission to receipt back at the sender, at a fixed offered load, with the nodes'
    hop stamps on so each certificate's time splits into its hops."""
    pair = Pair(run, trace=True, **pair_options)
    try:
        await pair.watch()
        await pair.nodes["CN"].start()
        await pair.nodes["KR"].start()
        # No confirms: the submission time is taken before each publish, and a record the
        # broker lost would show as never delivered.
        channel = await pair.connections["KR"].channel(publisher_confirms=False)
        total = int(plan.rate * plan.latency_s)
        window = CpuWindow(
            {
                "KR": pair.nodes["KR"].pid,
                "CN": pair.nodes["CN"].pid,
                "RabbitMQ": broker_pid(),
                "bench": os.getpid(),
            }
        )
        submitted: dict[str, float] = {}
        submitted_ns: dict[str, int] = {}
        began = time.monotonic()
        for i in range(total):
            delay = began + i / plan.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            number, body = records.next()
            submitted[number] = time.monotonic()
            submitted_ns[number] = time.time_ns()
            await channel.default_exchange.publish(
                aio_pika.Message(body, type="coo", delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=pair.topo["KR"].outbound_records,
            )
        await pair.wait_delivered(set(submitted), within=120)
        cpu = window.close()
        samples = sorted((pair.delivered[n] - t) * 1000 for n, t in submitted.items())
        q = statistics.quantiles(samples, n=100, method="inclusive")
        await pair.nodes["KR"].terminate()  # its last log lines are written
        await pair.nodes["CN"].terminate()
        hops = breakdown(
            submitted_ns, pair.delivered_ns, Stamps.of_node(run / "kr"), Stamps.of_node(run / "cn")
        )
        return {
            "p50": round(q[49], 1),
            "p95": round(q[94], 1),
            "p99": round(q[98], 1),
            "count": total,
            "hops": hops,
            "cpu": cpu,
        }
    finally:
        await pair.close()


async def memory(run: Path, records: Records, plan: Plan) -> dict[str, Any]:
    """Peak RSS of each node while draining a backlog; then time from restart to consuming."""
    pair = Pair(run)
    try:
        await pair.watch()
        await pair.nodes["CN"].start()
        batch = [records.next() for _ in range(plan.backlog)]
        say(f"bench: queueing a backlog of {plan.backlog} certificates")
        await pair.submit([body for _, body in batch])
        began = time.monotonic()
        await pair.nodes["KR"].start()
        finished = await pair.wait_delivered({n for n, _ in batch}, within=3600)
        rss = {c: round(node.peak_rss_mb(), 1) for c, node in pair.nodes.items()}
        await pair.nodes["KR"].terminate()
        more = [records.next() for _ in range(1000)]
        await pair.submit([body for _, body in more])
        restart = await pair.nodes["KR"].start()
        await pair.wait_delivered({n for n, _ in more}, within=300)
        return {
            "rss_mb": rss,
            "backlog_per_s": round(plan.backlog / (finished - began), 1),
            "restart_to_consume_s": round(restart, 2),
        }
    finally:
        await pair.close()


def median_envelope() -> bytes:
    """A signed e-CO of median size among the records the nodes will carry."""
    key = PrivateKey.generate()
    now = datetime.now(UTC).replace(microsecond=0)
    tokens = sorted(
        (
            seal(
                CooIssued(
                    message_id=new_message_id(),
                    sender="KR",
                    receiver="CN",
                    issued_at=now,
                    certificate=cert,
                ),
                key,
            )
            for cert in SampleFactory("KCFTA", seed=1).certificates(300)
        ),
        key=len,
    )
    return tokens[len(tokens) // 2]


def disk_fsync_ms(path: Path, count: int = 50) -> float:
    """Median time of an fsync beside the stores: each hop of a certificate waits on one at
    each end, so a slow phase of the shared disk shows here and in the latency at once."""
    probe = path / "fsync.probe"
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT, 0o600)
    times = []
    try:
        for _ in range(count):
            os.write(fd, b"x" * 4096)
            began = time.perf_counter()
            os.fsync(fd)
            times.append((time.perf_counter() - began) * 1000)
    finally:
        os.close(fd)
        probe.unlink()
    return round(statistics.median(times), 3)


def machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.machine(),
    )
    mem_kb = int(
        next(
            line.split()[1]
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
    )
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "memory_gb": round(mem_kb / 1024**2, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def http_on() -> bool:
    """Whether the nodes serve HTTP: they inherit the environment, so
    ``EODES_HTTP_ENABLED=true EODES_HTTP_PORT=0`` turns it on, parsed as the node does."""
    return TypeAdapter(bool).validate_python(os.environ.get("EODES_HTTP_ENABLED", "false"))


async def main(quick: bool) -> int:
    plan = QUICK if quick else FULL
    run = ROOT / "var" / "bench" / datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    run.mkdir(parents=True)
    speed = CoreSpeed()  # before anything keeps the cores busy
    records = Records()
    body = median_envelope()
    http = http_on()
    say(
        f"bench: {'quick' if quick else 'full'} run; relay message size {len(body)} bytes; "
        f"HTTP side {'on' if http else 'off'} in the nodes; core speed probe {speed.idle_ms} ms"
    )
    ceiling_rate = await ceiling(plan, body)
    rates = []
    for i in range(plan.repeats):
        rate = await throughput_once(run / f"throughput-{i}", records, plan.count)
        rates.append(rate)
        say(f"bench: node throughput run: {rate:.0f} certificates/s")
    node_rate = statistics.median(rates)
    say(f"bench: latency at {plan.rate:.0f}/s for {plan.latency_s:.0f} s, {plan.repeats} runs")
    lat = await latency(run / "latency", records, plan, speed)
    for line in table(lat["hops"]):
        say(f"bench: {line}")
    mem = await memory(run / "memory", records, plan)
    pages = await measure_pages(run / "pages", plan.pages)
    result = {
        "ceiling_per_s": round(ceiling_rate, 1),
        "node_per_s": round(node_rate, 1),
        "ratio": round(node_rate / ceiling_rate, 3),
        "latency_ms": lat,
        "rss_mb_max": max(mem["rss_mb"].values()),
        "rss_mb": mem["rss_mb"],
        "backlog": plan.backlog,
        "backlog_per_s": mem["backlog_per_s"],
        "restart_to_consume_s": mem["restart_to_consume_s"],
        "pages_ms": pages,
        "count": plan.count,
        "repeats": plan.repeats,
        "node_runs_per_s": [round(r, 1) for r in rates],
        "quick": quick,
        "http": http,
        "machine": machine(),
        "core_ms_at_start": speed.idle_ms,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(result, indent=2) + "\n")
    say("")
    say(f"{'measure':<38} {'value':>12}")
    rows = [
        ("ceiling: bare relay (msg/s)", f"{result['ceiling_per_s']:.0f}"),
        (f"node: KR->CN, receipted (cert/s, n={plan.count})", f"{node_rate:.0f}"),
        ("ratio to ceiling", f"{result['ratio']:.2f}"),
        (
            f"latency p50 / p95 / p99 at {plan.rate:.0f}/s (ms)",
            f"{lat['p50']:.0f} / {lat['p95']:.0f} / {lat['p99']:.0f}",
        ),
        ("machine busy in the latency runs (%)", f"{lat['machine_busy_pct']:.0f}"),
        (
            f"peak RSS KR / CN, {plan.backlog} backlog (MB)",
            f"{mem['rss_mb']['KR']:.0f} / {mem['rss_mb']['CN']:.0f}",
        ),
        ("backlog drain (cert/s)", f"{mem['backlog_per_s']:.0f}"),
        ("restart to consuming (s)", f"{mem['restart_to_consume_s']:.2f}"),
        *(
            (f"page {name}, median / p95 (ms)", f"{t['median_ms']:.0f} / {t['p95_ms']:.0f}")
            for name, t in pages.items()
            if isinstance(t, dict)
        ),
    ]
    for name, value in rows:
        say(f"{name:<38} {value:>12}")
    say("")
    for line in table(lat["hops"]):
        say(line)
    say(f"bench: wrote {RESULTS.relative_to(ROOT) / 'latest.json'}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="about a minute")
    sys.exit(asyncio.run(main(parser.parse_args().quick)))
