"""The conformance kit against our own node, set up the way a new link is: `eodes-node
init`, the node run as a process from the written configuration, the kit run as a
command. Every case must pass; the JUnit report must say the same."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import orjson
import pytest

from eodes_node.core.jws import KeySet, PrivateKey
from eodes_node.keyfiles import write_private_key
from eodes_node.testing import BROKER, NodeProcess
from eodes_node.topology import Topology

pytestmark = pytest.mark.broker

VHOST_PREFIX = "eodes-conf-"  # `make broker` creates eodes-conf-cn and eodes-conf-kr


@dataclass
class Run:
    code: int
    out: str
    err: str


async def eodes(*args: str, within: float = 60.0) -> Run:
    """`eodes-node ARGS` as a process, as an integrator would run it."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "eodes_node",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), within)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return Run(process.returncode, out.decode(), err.decode())


async def _vhost_reachable(vhost: str) -> None:
    try:
        connection = await aio_pika.connect(BROKER + vhost)
    except aio_pika.exceptions.AMQPError as exc:
        raise AssertionError(f"vhost {vhost} is not there ({exc!r}): run `make broker`") from None
    await connection.close()


async def _delete(vhost: str, queues: list[str], exchange: str) -> None:
    connection = await aio_pika.connect(BROKER + vhost)
    async with connection:
        channel = await connection.channel()
        for name in queues:
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await channel.queue_delete(name)
        with contextlib.suppress(aio_pika.exceptions.AMQPError):
            await channel.exchange_delete(exchange)


def _pin_an_expired_key(link: Path) -> Path:
    """A second KR key, pinned by CN with an exp an hour ago, for the KEY_NOT_VALID case."""
    key = PrivateKey.generate("Ed25519")
    path = link / "keys" / "expired.key.pem"
    write_private_key(path, key.to_pem())
    pinned = link / "keys" / "kr.jwks.json"
    jwks = orjson.loads(pinned.read_bytes())
    expired = KeySet({key.kid: key.public}).to_jwks()["keys"][0] | {"exp": int(time.time()) - 3600}
    jwks["keys"].append(expired)
    pinned.write_bytes(orjson.dumps(jwks))
    return path


@dataclass
class Link:
    directory: Path
    namespace: str
    expired_key: Path  # pinned by CN with an exp in the past


@pytest.fixture
async def link(tmp_path: Path) -> AsyncIterator[Link]:
    """A CN-KR link written by `init`, CN's node running from it; KR's end is the kit's."""
    namespace = "t" + secrets.token_hex(5)
    for vhost in ("cn", "kr"):
        await _vhost_reachable(VHOST_PREFIX + vhost)
    made = await eodes(
        "init", "--own", "CN", "--partner", "KR", "--trial", "--out", str(tmp_path / "link"),
        "--vhost-prefix", VHOST_PREFIX, "--namespace", namespace,
    )  # fmt: skip
    assert made.code == 0, made.err
    expired = _pin_an_expired_key(tmp_path / "link")
    node = NodeProcess(
        tmp_path / "link" / "cn-kr.toml",
        tmp_path / "cn.log",
        env={"EODES_RETRY_FIRST_AFTER_S": "1", "EODES_RETRY_MAX_INTERVAL_S": "2"},
    )
    await node.start()
    try:
        yield Link(tmp_path / "link", namespace, expired)
    finally:
        await node.terminate()
        cn = Topology("CN", "KR", namespace)
        dead = [cn.dead_letter(q) for q in cn.local_queues()]
        await _delete(VHOST_PREFIX + "cn", [*cn.local_queues(), *dead], cn.inbound_exchange)
        kr = Topology("KR", "CN", namespace)
        await _delete(VHOST_PREFIX + "kr", [kr.inbound_queue], kr.inbound_exchange)


@pytest.mark.timeout(300)
async def test_our_node_passes_every_case_of_the_kit(link: Link) -> None:
    directory, expired = link.directory, link.expired_key
    report = directory / "conformance.xml"
    run = await eodes(
        "conformance", "--config", str(directory / "kr-cn.toml"),
        "--node-local-url", BROKER + VHOST_PREFIX + "cn", "--expired-key", str(expired),
        "--junit", str(report), "--resend-within", "60", "--node-within", "60",
        within=240,
    )  # fmt: skip
    assert run.code == 0, run.out + run.err
    rows = [line.split() for line in run.out.splitlines()[1:-1] if not line.startswith(" ")]
    results = {row[0]: row[-1] for row in rows}
    assert set(results.values()) == {"pass"}, run.out
    # Every kind of check the issue names is among them.
    assert {
        "valid-coo", "valid-coo-replacement", "valid-coo-cancellation", "valid-feedback",
        "valid-verification-request", "tampered-signature", "unknown-kid", "wrong-alg",
        "alg-none", "oversized", "malformed", "wrong-sender", "wrong-receiver",
        "clock-skew-future", "id-conflict", "duplicate", "unknown-certificate-feedback",
        "not-for-this-link", "deeply-nested", "key-not-valid", "withheld-receipt",
        "node-feedback",
    } <= set(results)  # fmt: skip
    summary = run.out.splitlines()[-1]
    assert f"{len(results)} cases, {len(results)} passed, 0 failed, 0 skipped" in summary
    suite = ET.parse(report).getroot().find("testsuite")
    assert suite is not None
    assert suite.get("tests") == str(len(results))
    assert (suite.get("failures"), suite.get("skipped")) == ("0", "0")


@pytest.mark.timeout(120)
async def test_samples_for_the_link_are_submitted_and_bad_records_named(link: Link) -> None:
    directory, namespace = link.directory, link.namespace
    config = str(directory / "cn-kr.toml")
    made = await eodes("sample", "--config", config, "--count", "2", "--seed", "3")
    assert made.code == 0, made.err
    records = directory / "records.jsonl"
    records.write_text(made.out + '{"a": 1}\n')
    sent = await eodes("submit", "--config", config, str(records))
    assert sent.code == 1
    assert "records.jsonl:3: refused: a: unknown field" in sent.err
    assert "records.jsonl:3: refused: header: this field is required" in sent.err
    queue = Topology("CN", "KR", namespace).outbound_records
    assert f"submitted 2 record(s) to {queue}; refused 1" in sent.out
