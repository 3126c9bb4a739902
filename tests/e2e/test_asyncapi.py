"""schemas/asyncapi.json is the contract partners build against: it must name exactly the
exchanges, queues and bindings a running node declares, on the vhost it runs on."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from eodes_node.config import RetrySection
from eodes_node.testing import BROKER, Side
from eodes_node.topology import Topology

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
VHOSTS = ("eodes-test-cn", "eodes-test-kr")


def document() -> dict[str, Any]:
    return dict(json.loads((SCHEMAS / "asyncapi.json").read_text(encoding="utf-8")))


def _concrete(text: str, namespace: str, own: str, partner: str) -> str:
    """A document address as a node of ``own`` serving ``partner`` names it."""
    text = text.replace("{partner}", partner.lower()).replace("{PARTNER}", partner)
    text = text.replace("{OWN}", own)
    return namespace + text[len("eodes") :] if text.startswith("eodes.") else text


def documented(namespace: str, own: str, partner: str) -> dict[str, set[tuple[Any, ...]]]:
    """Exchanges, queues and bindings the document says a node declares."""
    exchanges, queues, bindings = set(), set(), set()
    for channel in document()["channels"].values():
        amqp = channel["bindings"]["amqp"]
        if amqp["is"] == "routingKey":
            ex = amqp["exchange"]
            name = _concrete(ex["name"], namespace, own, partner)
            exchanges.add((name, ex["type"], ex["durable"], ex["autoDelete"]))
            for bound in channel.get("x-eodes-bindings", []):
                queue = _concrete(bound["queue"], namespace, own, partner)
                key = _concrete(bound["routingKey"], namespace, own, partner)
                bindings.add((name, queue, key))
        else:
            q = amqp["queue"]
            name = _concrete(q["name"], namespace, own, partner)
            queues.add((name, q["durable"], q["autoDelete"], q["exclusive"], "{}"))
    return {"exchanges": exchanges, "queues": queues, "bindings": bindings}


async def _ctl(*args: str) -> list[dict[str, Any]]:
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl",
        "-q",
        *args,
        "--formatter",
        "json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return list(json.loads(out or b"[]"))


def _args(value: Any) -> str:
    return json.dumps(dict(value) if value else {}, sort_keys=True)


async def declared(vhost: str, namespace: str) -> dict[str, set[tuple[Any, ...]]]:
    """What exists on ``vhost`` under ``namespace``, as the broker itself lists it."""
    ours = f"{namespace}."
    exchanges = {
        (e["name"], e["type"], e["durable"], e["auto_delete"])
        for e in await _ctl("list_exchanges", "-p", vhost, "name", "type", "durable", "auto_delete")
        if e["name"].startswith(ours)
    }
    queues = {
        (q["name"], q["durable"], q["auto_delete"], q["exclusive"], _args(q["arguments"]))
        for q in await _ctl(
            "list_queues", "-p", vhost, "name", "durable", "auto_delete", "exclusive", "arguments"
        )
        if q["name"].startswith(ours)
    }
    bindings = {
        (b["source_name"], b["destination_name"], b["routing_key"])
        for b in await _ctl(
            "list_bindings", "-p", vhost, "source_name", "destination_name", "routing_key"
        )
        if b["source_name"].startswith(ours)
    }
    return {"exchanges": exchanges, "queues": queues, "bindings": bindings}


async def _delete(vhost: str, topology: Topology) -> None:
    connection = await aio_pika.connect(BROKER + vhost)
    async with connection:
        channel = await connection.channel()
        for queue in topology.local_queues():
            for name in (queue, topology.dead_letter(queue)):
                with contextlib.suppress(aio_pika.exceptions.AMQPError):
                    await channel.queue_delete(name)
        with contextlib.suppress(aio_pika.exceptions.AMQPError):
            await channel.exchange_delete(topology.inbound_exchange)


@pytest.mark.broker
async def test_the_document_lists_exactly_what_a_running_node_declares(tmp_path: Path) -> None:
    namespace = "t" + secrets.token_hex(5)
    retry = RetrySection(first_after_s=1.0, max_attempts=3)
    # The KR side only provides the key the CN node pins; it never runs.
    Side("KR", "CN", VHOSTS[1], VHOSTS[0], namespace, tmp_path, retry=retry)
    cn = Side("CN", "KR", VHOSTS[0], VHOSTS[1], namespace, tmp_path, retry=retry)
    await cn.start()
    try:
        live = await declared(VHOSTS[0], namespace)
    finally:
        await cn.stop()
        await _delete(VHOSTS[0], cn.topology)
    expected = documented(namespace, own="CN", partner="KR")
    assert live["exchanges"] == expected["exchanges"]
    assert live["queues"] == expected["queues"]
    assert live["bindings"] == expected["bindings"]


def test_every_reference_in_the_document_resolves() -> None:
    doc = document()
    for key, channel in doc["channels"].items():
        for ref in channel.get("messages", {}).values():
            assert ref["$ref"].rsplit("/", 1)[1] in doc["components"]["messages"], key
        for server in channel["servers"]:
            assert server["$ref"].rsplit("/", 1)[1] in doc["servers"], key
    for key, operation in doc["operations"].items():
        assert operation["channel"]["$ref"].rsplit("/", 1)[1] in doc["channels"], key
    for message in doc["components"]["messages"].values():
        payload = message.get("payload", {})
        if "$ref" in payload:
            assert (SCHEMAS / payload["$ref"]).exists(), payload["$ref"]


def test_local_queues_carry_every_kind_the_node_hands_over() -> None:
    channels = document()["channels"]
    assert set(channels["clearance"]["messages"]) == {
        "coo",
        "coo-replacement",
        "coo-cancellation",
        "verification-response",
    }
    assert set(channels["issuing"]["messages"]) == {"feedback", "verification-request"}


def test_no_binding_claims_the_default_vhost() -> None:
    for channel in document()["channels"].values():
        amqp = channel["bindings"]["amqp"]
        declared_in = amqp.get("exchange", amqp.get("queue"))
        assert declared_in["vhost"] == "{vhost}"
    for server in document()["servers"].values():
        assert server["pathname"] == "/{vhost}"
