"""`make demo`: a KR node and a CN node as two processes, with simulated local systems.

The KR issuing system submits realistic e-COs; the CN clearance system decides on each
(most granted, some denied with realistic reasons, one partially granted). The demo shows
progress, a table per certificate, and ends with one summary line. It exits 0 only if
every certificate got its receipt and its decision, none was lost and none duplicated.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import orjson
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection

from eodes_node.adapters.clock import SystemClock
from eodes_node.adapters.sql import SqlStore
from eodes_node.config import load_config
from eodes_node.core.jws import KeySet, PrivateKey
from eodes_node.core.records import as_json_dict
from eodes_node.keyfiles import write_private_key
from eodes_node.samples import SampleFactory
from eodes_node.testing import NodeProcess
from eodes_node.topology import Topology

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "demo-run"
CONFIGS = {"KR": ROOT / "config" / "kr-cn.toml", "CN": ROOT / "config" / "cn-kr.toml"}
DENIAL_REASONS = (
    "QUANTITY_EXCEEDED",
    "HS_MISMATCH",
    "OUTSIDE_VALIDITY",
    "ORIGIN_NOT_MET",
    "UNIT_MISMATCH",
)


def say(text: str) -> None:
    print(text, flush=True)


@dataclass
class Tally:
    submitted: dict[str, dict[str, Any]] = field(default_factory=dict)
    cleared: Counter[str] = field(default_factory=Counter)
    receipts: Counter[str] = field(default_factory=Counter)
    decisions: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    failed: set[str] = field(default_factory=set)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def complete(self) -> bool:
        return all(n in self.receipts and n in self.decisions for n in self.submitted)


def prepare_keys() -> dict[str, dict[str, str]]:
    keys = RUN / "keys"
    keys.mkdir(parents=True)
    for country in ("KR", "CN"):
        key = PrivateKey.generate("Ed25519")
        write_private_key(keys / f"{country.lower()}.key.pem", key.to_pem())
        (keys / f"{country.lower()}.jwks.json").write_bytes(
            orjson.dumps(KeySet({key.kid: key.public}).to_jwks(), option=orjson.OPT_INDENT_2)
        )
    env = {}
    for own, partner in (("KR", "CN"), ("CN", "KR")):
        env[own] = {
            "EODES_KEYS_PRIVATE_KEY": str(keys / f"{own.lower()}.key.pem"),
            "EODES_KEYS_PARTNER_JWKS": str(keys / f"{partner.lower()}.jwks.json"),
            "EODES_STORE_URL": f"sqlite:///{RUN / own.lower() / 'node.db'}",
            "EODES_LOGGING_LEVEL": "info",
            "EODES_RETRY_FIRST_AFTER_S": "3",
        }
    return env


async def reset_queues(connection: AbstractRobustConnection, topology: Topology) -> None:
    """The demo vhosts belong to the demo: start from empty queues."""
    channel = await connection.channel()
    for queue in topology.local_queues():
        for name in (queue, topology.dead_letter(queue)):
            with contextlib.suppress(Exception):
                await channel.queue_delete(name)
            if channel.is_closed:
                channel = await connection.channel()
    await channel.close()


def decide(index: int, record: dict[str, Any], partial_at: int) -> dict[str, Any]:
    items = record["items"]
    if index == partial_at:
        outcome = {i["item_number"]: (i["item_number"] != 1) for i in items}
    elif index % 6 == 4:
        outcome = {i["item_number"]: False for i in items}
    else:
        outcome = {i["item_number"]: True for i in items}
    # One matching rule fails for the whole declaration, as clearance reports it.
    reason = random.Random(index).choice(DENIAL_REASONS)  # noqa: S311 - demo data
    decided = [
        {"item_number": n, "granted": ok} | ({} if ok else {"reason": reason})
        for n, ok in outcome.items()
    ]
    granted = sum(outcome.values())
    decision = "granted" if granted == len(items) else "denied" if not granted else "partial"
    return {
        "certificate_number": record["header"]["certificate_number"],
        "decision": decision,
        "import_declaration": {
            "reference": f"CN-IMP-2026-{100000 + index}",
            "date": record["header"]["issue_date"],
        },
        "items": decided,
    }


def clean_run_dir() -> None:
    """Remove what a previous demo left: keys, node databases and logs."""
    RUN.mkdir(exist_ok=True)
    for child in ("keys", "kr", "cn"):
        path = RUN / child
        if path.exists():
            for file in sorted(path.rglob("*"), reverse=True):
                file.unlink() if file.is_file() else file.rmdir()
            path.rmdir()


@dataclass
class LocalSystems:
    """The simulated KR issuing system and CN clearance system, as queue consumers."""

    tally: Tally
    topo: dict[str, Topology]
    records: list[dict[str, Any]]
    # The CN clearance system publishes its decisions here (with publisher confirms).
    feedback_channel: AbstractChannel
    partial_at: int = field(init=False)
    index_of: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.partial_at = next((i for i, r in enumerate(self.records) if len(r["items"]) > 1), 0)
        self.index_of = {r["header"]["certificate_number"]: i for i, r in enumerate(self.records)}

    async def on_clearance(self, message: AbstractIncomingMessage) -> None:
        body = orjson.loads(message.body)
        number = body["certificate"]["header"]["certificate_number"]
        self.tally.cleared[number] += 1
        await message.ack()
        if self.tally.cleared[number] == 1 and number in self.index_of:
            record = decide(self.index_of[number], body["certificate"], self.partial_at)
            await self.feedback_channel.default_exchange.publish(
                aio_pika.Message(
                    orjson.dumps(record),
                    type="feedback",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=self.topo["CN"].outbound_feedback,
            )
        self.tally.changed.set()

    async def on_issuing(self, message: AbstractIncomingMessage) -> None:
        body = orjson.loads(message.body)
        self.tally.decisions[body["feedback"]["certificate_number"]].append(body["feedback"])
        await message.ack()
        self.tally.changed.set()

    async def on_event(self, message: AbstractIncomingMessage) -> None:
        body = orjson.loads(message.body)
        for item in body["items"]:
            self.on_item(body["event"], item)
        await message.ack()
        self.tally.changed.set()

    def on_item(self, event: str, item: dict[str, Any]) -> None:
        number = str(item.get("certificate_number"))
        if event == "delivered" and item["kind"] == "coo":
            self.tally.receipts[number] += 1
        elif event in ("failed", "rejected", "record_rejected"):
            self.tally.failed.add(number)
            say(f"demo: {event}: {number}: {item.get('text', '')}")


async def attach_local_systems(
    local: Mapping[str, AbstractRobustConnection],
    topo: dict[str, Topology],
    tally: Tally,
    records: list[dict[str, Any]],
) -> None:
    """Consume what the nodes hand to clearance (CN), to issuing and as events (KR)."""
    kr_channel = await local["KR"].channel()
    cn_channel = await local["CN"].channel(publisher_confirms=True)
    systems = LocalSystems(tally, topo, records, cn_channel)
    clearance_channel = await local["CN"].channel()
    for channel, queue, handler in (
        (clearance_channel, topo["CN"].clearance, systems.on_clearance),
        (kr_channel, topo["KR"].issuing, systems.on_issuing),
        (kr_channel, topo["KR"].events, systems.on_event),
    ):
        declared = await channel.declare_queue(queue, durable=True)
        await declared.consume(handler)


async def submit_records(
    connection: AbstractRobustConnection,
    topology: Topology,
    tally: Tally,
    records: list[dict[str, Any]],
) -> None:
    """The KR issuing system submits every record to its node."""
    submit = await connection.channel(publisher_confirms=True)
    say(f"demo: KR issuing system submits {len(records)} e-COs (KCFTA)")
    for record in records:
        number = record["header"]["certificate_number"]
        tally.submitted[number] = record
        await submit.default_exchange.publish(
            aio_pika.Message(
                orjson.dumps(record), type="coo", delivery_mode=aio_pika.DeliveryMode.PERSISTENT
            ),
            routing_key=topology.outbound_records,
        )


async def await_outcomes(tally: Tally, count: int) -> None:
    """Wait until every certificate has its receipt and decision, or the deadline passes,
    reporting progress about once a second."""
    deadline = time.monotonic() + 60 + count * 0.2
    last = 0.0
    while not tally.complete() and time.monotonic() < deadline:
        tally.changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(tally.changed.wait(), 1.0)
        if time.monotonic() - last >= 1.0 or tally.complete():
            last = time.monotonic()
            say(
                f"demo: progress: {len(tally.cleared)}/{count} at CN clearance, "
                f"{len(tally.receipts)}/{count} receipts at KR, "
                f"{len(tally.decisions)}/{count} decisions at KR"
            )


async def shut_down(
    nodes: Mapping[str, NodeProcess], local: Mapping[str, AbstractRobustConnection]
) -> None:
    for node in nodes.values():
        if node.process is not None and node.process.returncode is None:
            await node.terminate()
    for connection in local.values():
        with contextlib.suppress(Exception):
            await connection.close()


async def run_demo(count: int) -> int:
    clean_run_dir()
    env = prepare_keys()
    configs = {c: load_config(CONFIGS[c], {**os.environ, **env[c]}) for c in ("KR", "CN")}
    topo = {
        c: Topology(cfg.node.country, cfg.node.partner, cfg.node.namespace)
        for c, cfg in configs.items()
    }
    local = {
        c: await aio_pika.connect_robust(
            cfg.broker.local_url, client_properties={"connection_name": f"demo {c}"}
        )
        for c, cfg in configs.items()
    }
    for c in local:
        await reset_queues(local[c], topo[c])
    nodes = {c: NodeProcess(CONFIGS[c], RUN / f"{c.lower()}.log", env[c]) for c in ("CN", "KR")}
    tally = Tally()
    records = [as_json_dict(cert) for cert in SampleFactory("KCFTA").certificates(count)]
    try:
        for node in nodes.values():
            await node.start()
        say(f"demo: KR and CN nodes running (logs in {RUN.relative_to(ROOT)}/kr.1.log, cn.1.log)")
        await attach_local_systems(local, topo, tally, records)
        await submit_records(local["KR"], topo["KR"], tally, records)
        await await_outcomes(tally, count)
    finally:
        await shut_down(nodes, local)
    return await report(tally, count)


async def report(tally: Tally, count: int) -> int:
    store = SqlStore(f"sqlite:///{RUN / 'kr' / 'node.db'}", clock=SystemClock())
    await store.open()
    try:
        states = {
            n: {r.role: r.state for r in await store.report(n)}.get("exporter", "-")
            for n in tally.submitted
        }
    finally:
        await store.close()
    say("")
    say(f"{'certificate':<22} {'state at KR':<12} {'receipt':<9} {'decision':<9} reason")
    for number in tally.submitted:
        decisions = tally.decisions.get(number, [])
        decision = decisions[0]["decision"] if decisions else "-"
        reasons = sorted({i["reason"] for d in decisions for i in d["items"] if "reason" in i})
        say(
            f"{number:<22} {states[number]:<12} "
            f"{'yes' if number in tally.receipts else 'NO':<9} {decision:<9} "
            f"{', '.join(reasons)}"
        )
    say("")
    delivered = sum(1 for n in tally.submitted if n in tally.cleared)
    receipts = sum(1 for n in tally.submitted if n in tally.receipts)
    kinds = Counter(
        tally.decisions[n][0]["decision"] for n in tally.submitted if tally.decisions.get(n)
    )
    lost = sum(
        1
        for n in tally.submitted
        if n not in tally.cleared or n not in tally.receipts or n not in tally.decisions
    )
    duplicated = (
        sum(c - 1 for c in tally.cleared.values())
        + sum(c - 1 for c in tally.receipts.values())
        + sum(len(d) - 1 for d in tally.decisions.values())
    )
    say(
        f"demo: {count} certificates, {delivered} delivered, {receipts} receipts, "
        f"{kinds['granted']} granted, {kinds['denied']} denied, {kinds['partial']} partial, "
        f"{lost} lost, {duplicated} duplicated"
    )
    return 0 if lost == 0 and duplicated == 0 and receipts == count else 1


def main() -> None:
    count = int(os.environ.get("DEMO_COUNT", "20"))
    if count < 1:
        print("demo: DEMO_COUNT must be a positive number", file=sys.stderr)
        sys.exit(2)
    sys.exit(asyncio.run(run_demo(count)))


if __name__ == "__main__":
    main()
