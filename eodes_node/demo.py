"""`make demo`: a KR node and a CN node as two processes, with simulated local systems.

The KR issuing system submits realistic e-COs; the CN clearance system decides on each
(most granted, some denied with realistic reasons, one partially granted). The demo shows
progress, a table per certificate, and ends with one summary line. It exits 0 only if
every certificate got its receipt and its decision, none was lost and none duplicated.
Each node serves its console; the demo prints their addresses, and with ``DEMO_KEEP=1``
it leaves the pair and its consoles running until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import aio_pika
import orjson
from aio_pika.abc import AbstractRobustConnection

from eodes_node.adapters.clock import SystemClock
from eodes_node.adapters.sql import SqlStore
from eodes_node.config import load_config
from eodes_node.core.jws import KeySet, PrivateKey
from eodes_node.core.records import as_json_dict
from eodes_node.demo_systems import (
    DENIAL_REASONS,
    Tally,
    attach_local_systems,
    say,
    submit_records,
)
from eodes_node.keyfiles import write_private_key
from eodes_node.samples import SampleFactory
from eodes_node.testing import NodeProcess
from eodes_node.topology import Topology

__all__ = ["DENIAL_REASONS", "main", "run_demo"]

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "demo-run"
CONFIGS = {"KR": ROOT / "config" / "kr-cn.toml", "CN": ROOT / "config" / "cn-kr.toml"}


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
    tokens = console_token(keys)
    for own, partner in (("KR", "CN"), ("CN", "KR")):
        env[own] = {
            "EODES_KEYS_PRIVATE_KEY": str(keys / f"{own.lower()}.key.pem"),
            "EODES_KEYS_PARTNER_JWKS": str(keys / f"{partner.lower()}.jwks.json"),
            "EODES_STORE_URL": f"sqlite:///{RUN / own.lower() / 'node.db'}",
            "EODES_LOGGING_LEVEL": "info",
            "EODES_RETRY_FIRST_AFTER_S": "3",
            "EODES_HTTP_ENABLED": "true",
            "EODES_HTTP_PORT": str(free_port()),
            "EODES_HTTP_TOKENS_FILE": str(tokens),
        }
    return env


def console_token(keys: Path) -> Path:
    """A fresh operator token for both consoles, kept in files (mode 0600), never printed:
    keys/console-token holds it for the person signing in, keys/http-tokens for the nodes."""
    token = secrets.token_urlsafe(24)
    write_private_key(keys / "console-token", f"{token}\n".encode())
    write_private_key(keys / "http-tokens", f"operator:{token}:demo\n".encode())
    return keys / "http-tokens"


def free_port() -> int:
    """A loopback port free now, for a node's HTTP side (the demo may run beside others)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def show_consoles(env: Mapping[str, Mapping[str, str]]) -> None:
    for country in ("KR", "CN"):
        say(f"demo: {country} console: http://127.0.0.1:{env[country]['EODES_HTTP_PORT']}/console")
    say(f"demo: sign in with the token in {(RUN / 'keys' / 'console-token').relative_to(ROOT)}")


async def until_interrupted() -> None:
    """``DEMO_KEEP=1``: the pair and its consoles stay up until Ctrl-C (or SIGTERM)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    say("demo: DEMO_KEEP=1: the nodes and their consoles keep running; Ctrl-C stops them")
    await stop.wait()


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


def clean_run_dir() -> None:
    """Remove what a previous demo left: keys, node databases and logs."""
    RUN.mkdir(exist_ok=True)
    for child in ("keys", "kr", "cn"):
        path = RUN / child
        if path.exists():
            for file in sorted(path.rglob("*"), reverse=True):
                file.unlink() if file.is_file() else file.rmdir()
            path.rmdir()


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
        show_consoles(env)
        await attach_local_systems(local, topo, tally, records)
        await submit_records(local["KR"], topo["KR"], tally, records)
        await await_outcomes(tally, count)
        if os.environ.get("DEMO_KEEP") == "1":
            outcome = await report(tally, count)
            show_consoles(env)
            await until_interrupted()
            return outcome
    finally:
        await shut_down(nodes, local)
    return await report(tally, count)


async def report(tally: Tally, count: int) -> int:
    # Only reads, so also beside a running KR node (DEMO_KEEP=1).
    store = SqlStore(f"sqlite:///{RUN / 'kr' / 'node.db'}", clock=SystemClock(), exclusive=False)
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
