"""The KR and CN node processes of a soak, each watched for exits nobody asked for.

A node that exits by itself is a crash, whatever its return code: it is counted with
its log's last lines and started again so the run goes on. An exit the soak caused
(its own SIGKILL) is not, and must show return code -9 to prove the kill happened.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from eodes_node.core.jws import KeySet, PrivateKey
from eodes_node.keyfiles import write_private_key
from eodes_node.testing.process import NodeProcess
from eodes_node.topology import Topology

NAMESPACE = "soak"
START_WITHIN_S = 90.0
RESTART_PAUSE_S = 2.0


@dataclass(frozen=True)
class Crash:
    country: str
    returncode: int | None
    log: Path
    tail: str


def toml_config(values: dict[str, dict[str, object]]) -> str:
    lines: list[str] = []
    for section, entries in values.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {orjson.dumps(value).decode()}" for key, value in entries.items()]
    return "\n".join(lines) + "\n"


@dataclass
class SoakNode:
    country: str
    partner: str
    dir: Path
    local_url: str
    partner_url: str
    process: NodeProcess = field(init=False)
    store_url: str = ""  # empty: SQLite in the node's own store directory
    standby_poll_s: float | None = None  # HA mode, on PostgreSQL
    crashes: list[Crash] = field(default_factory=list)
    failed_starts: list[Path] = field(default_factory=list)
    intended: bool = False
    closing: bool = False
    restarted: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.store_dir = self.dir / "store"
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.store_url = self.store_url or f"sqlite:///{self.store_dir / 'node.db'}"
        self.topology = Topology(self.country, self.partner, NAMESPACE)
        self.config = self.dir / "node.toml"
        self.process = NodeProcess(self.config, self.dir / "node.log", self.env())

    def env(self) -> dict[str, str]:
        """Also as variables: they would otherwise lose to any EODES_* in our environment."""
        return {
            "EODES_BROKER_LOCAL_URL": self.local_url,
            "EODES_BROKER_PARTNER_URL": self.partner_url,
            "EODES_STORE_URL": self.store_url,
            "EODES_NODE_NAMESPACE": NAMESPACE,
        }

    def write_config(self, partner_jwks: Path, key: PrivateKey) -> None:
        key_path = self.dir / f"{self.country.lower()}.key.pem"
        write_private_key(key_path, key.to_pem())
        self.config.write_text(toml_config(self._values(partner_jwks, key_path)))

    def _values(self, partner_jwks: Path, key_path: Path) -> dict[str, dict[str, object]]:
        return {
            "node": {"country": self.country, "partner": self.partner, "namespace": NAMESPACE},
            "broker": {
                "local_url": self.local_url,
                "partner_url": self.partner_url,
                "prefetch": 128,
                "batch_max": 64,
                "batch_wait_ms": 2.0,
                "io_timeout_s": 5.0,
                "reconnect_interval_s": 0.5,
            },
            "keys": {"private_key": str(key_path), "partner_jwks": str(partner_jwks)},
            "store": self._store(),
            # Short, so a fault heals in seconds; a budget no outage here exhausts.
            "retry": {
                "first_after_s": 1.5,
                "multiplier": 2.0,
                "max_interval_s": 5.0,
                "max_attempts": 200,
            },
            "limits": {"drain_timeout_s": 5.0},
            "logging": {"level": "info", "format": "json"},
        }

    def _store(self) -> dict[str, object]:
        if self.standby_poll_s is None:
            return {"url": self.store_url}
        return {"url": self.store_url, "standby_poll_s": self.standby_poll_s}

    def logs(self) -> list[Path]:
        return sorted(self.dir.glob("node.*.log"))

    async def start(self) -> None:
        """Start it and wait until it consumes, trying again until it does: a start that
        fails is the node exiting by itself (one crash however many tries it takes)."""
        failed = False
        while True:
            try:
                await self.process.start(within=START_WITHIN_S)
                break
            except AssertionError as error:
                code = await self._reap()
                if not failed:
                    self.crashes.append(Crash(self.country, code, self.logs()[-1], str(error)))
                failed = True
                self.failed_starts.append(self.logs()[-1])
                if self.closing:
                    raise
                await asyncio.sleep(RESTART_PAUSE_S)
        self.intended = False
        self.restarted.set()

    async def _reap(self) -> int | None:
        """The exit code of a start that failed; a hung one is killed first."""
        process = self.process.process
        assert process is not None
        if process.returncode is None:
            await self.process.kill()
        return process.returncode

    async def kill(self) -> int | None:
        """SIGKILL, as a power loss would end it; returns its exit code (-9 when it did)."""
        self.intended = True
        self.restarted.clear()
        await self.process.kill()
        assert self.process.process is not None
        return self.process.process.returncode

    async def supervise(self) -> None:
        """Count every exit the soak did not cause, and start the node again after it."""
        while not self.closing:
            process = self.process.process
            assert process is not None
            code = await process.wait()
            if self.closing:
                return
            if self.intended:
                await self.restarted.wait()
                continue
            log = self.logs()[-1]
            tail = log.read_text(errors="replace")[-3000:]
            self.crashes.append(Crash(self.country, code, log, tail))
            await self.start()

    async def stop(self) -> None:
        self.closing = True
        process = self.process.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(TimeoutError, ProcessLookupError):
            await self.process.terminate(within=20.0)


def make_nodes(
    run: Path,
    urls: dict[str, str],
    store_urls: dict[str, str] | None = None,
    standby_poll_s: float | None = None,
) -> dict[str, SoakNode]:
    """Keys, pinned partner keys and configurations for both nodes."""
    keys = {c: PrivateKey.generate("Ed25519") for c in ("KR", "CN")}
    nodes: dict[str, SoakNode] = {}
    for own, partner in (("KR", "CN"), ("CN", "KR")):
        nodes[own] = SoakNode(
            own,
            partner,
            run / own.lower(),
            urls[own],
            urls[partner],
            store_url=(store_urls or {}).get(own, ""),
            standby_poll_s=standby_poll_s,
        )
        jwks = run / own.lower() / f"{own.lower()}.jwks.json"
        jwks.write_bytes(orjson.dumps(KeySet({keys[own].kid: keys[own].public}).to_jwks()))
    for own, node in nodes.items():
        node.write_config(nodes[node.partner].dir / f"{node.partner.lower()}.jwks.json", keys[own])
    return nodes
