"""The simulated local systems of `make demo`: the KR issuing system submits e-COs, the CN
clearance system decides on each (most granted, some denied with realistic reasons, one
partially granted), and a tally counts what each system saw, to find loss and duplicates.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import orjson
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection

from eodes_node.topology import Topology

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
