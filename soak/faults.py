"""Injecting each fault, proving it happened, healing it, and timing the recovery.

One fault at a time: each is healed and the traffic has moved again both ways (or the
stall bound has passed) before the next one, so every recovery time is its own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aio_pika

from eodes_node.testing.rabbit import PrivateRabbit, RabbitError
from soak.disk import FULL_BELOW, SmallDisk
from soak.nodes import SoakNode
from soak.pace import Pacer
from soak.plan import BROKER_KILL, CLOSE, DISK_FULL, NODE_KILL, STOP_APP, Fault
from soak.tally import Tally

DISK_EVIDENCE = (b"disk is full", b"No space left")
DISK_BITE_WITHIN_S = 60.0
PROBES = 3  # certificates submitted right after healing, to time a round trip


@dataclass
class Episode:
    number: int
    fault: Fault
    at_s: float
    proof: str = ""
    proved: bool = False
    down_s: float = 0.0
    recovered_s: float | None = None  # until the traffic moved both ways again
    round_trip_s: float | None = None  # until a certificate sent after healing went through
    measured: bool = False  # False when the run ended before the recovery was timed
    takeover_s: float | None = None  # HA mode: from the fault to the other's became_active

    @property
    def stuck(self) -> bool:
        return self.measured and self.recovered_s is None


def _count_lines(logs: list[Path], needles: tuple[bytes, ...]) -> int:
    total = 0
    for log in logs:
        with log.open("rb") as handle:
            total += sum(1 for line in handle if any(n in line for n in needles))
    return total


class Injector:
    def __init__(
        self,
        rabbit: PrivateRabbit,
        nodes: dict[str, SoakNode],
        disks: dict[str, SmallDisk],
        tally: Tally,
        *,
        started: float,
        stall_s: float,
        say: Callable[[str], None],
    ) -> None:
        self.rabbit, self.nodes, self.disks, self.tally = rabbit, nodes, disks, tally
        self.started, self.stall_s, self.say = started, stall_s, say
        self.episodes: list[Episode] = []
        self.done = 0
        self.last_healed = started

    async def run(self, faults: tuple[Fault, ...], pacer: Pacer) -> None:
        for number, fault in enumerate(faults, 1):
            await asyncio.sleep(fault.gap_s)  # a quiet spell, of seeded length
            burst = pacer.wave()
            await asyncio.sleep(fault.into_wave * burst)  # strike mid-wave
            await self.inject(number, fault, pacer)
            self.done = number
        if faults:
            pacer.finish()

    async def inject(self, number: int, fault: Fault, pacer: Pacer) -> Episode:
        began = time.monotonic()
        episode = Episode(number, fault, at_s=began - self.started)
        self.episodes.append(episode)
        self.say(f"soak: fault {number}: {fault.kind} ({fault.target}) at {episode.at_s:.0f} s")
        episode.proved, episode.proof = await self.apply(fault, episode)
        healed = self.last_healed = time.monotonic()
        pacer.probe(PROBES)
        episode.down_s = healed - began
        episode.recovered_s = await self.tally.progress_since(healed, self.stall_s)
        if episode.recovered_s is not None:
            episode.round_trip_s = await self.tally.round_trip(healed, self.stall_s)
        episode.measured = True
        took = "STUCK" if episode.recovered_s is None else f"{episode.recovered_s:.1f} s"
        trip = "-" if episode.round_trip_s is None else f"{episode.round_trip_s:.1f} s"
        self.say(
            f"soak: fault {number}: {episode.proof}; moving again after {took}, "
            f"a new certificate through after {trip}"
        )
        return episode

    async def apply(self, fault: Fault, episode: Episode) -> tuple[bool, str]:
        """Inject ``fault`` and heal it; (proved, proof)."""
        apply = {
            BROKER_KILL: self._broker_kill,
            STOP_APP: self._stop_app,
            CLOSE: self._close,
            NODE_KILL: self._node_kill,
            DISK_FULL: self._disk_full,
        }[fault.kind]
        return await apply(fault)

    async def _broker_kill(self, fault: Fault) -> tuple[bool, str]:
        beam = self.rabbit.pid
        await self.rabbit.kill()  # raises unless the beam process is gone
        await asyncio.sleep(fault.hold_s)
        began = time.monotonic()
        await self.rabbit.restart()
        return True, f"beam {beam} killed, restarted in {time.monotonic() - began:.1f} s"

    async def _stop_app(self, fault: Fault) -> tuple[bool, str]:
        await self.rabbit.stop_app()
        try:
            connection = await aio_pika.connect(self.rabbit.url(), timeout=3)
        except (OSError, aio_pika.exceptions.AMQPError):
            refused = True
        else:
            await connection.close()
            refused = False
        await asyncio.sleep(fault.hold_s)
        await self.rabbit.start_app()
        return refused, f"application stopped ({'AMQP refused' if refused else 'AMQP ANSWERED'})"

    async def _close(self, fault: Fault) -> tuple[bool, str]:
        closed = await self.rabbit.close_connections("soak: connections closed")
        back = await self._connections_back(closed)
        return closed > 0 and back, (
            f"{closed} connections closed, "
            + ("as many open again" if back else "NOT ALL REOPENED")
        )

    async def _connections_back(self, wanted: int) -> bool:
        """The clients reconnected: the node lists as many connections as before."""
        deadline = time.monotonic() + self.stall_s
        while time.monotonic() < deadline:
            try:
                listed = await self.rabbit.ctl("list_connections", "pid", "--quiet")
            except RabbitError:
                listed = ""
            if sum(1 for line in listed.splitlines() if line.startswith("<")) >= wanted:
                return True
            await asyncio.sleep(0.5)
        return False

    async def _node_kill(self, fault: Fault) -> tuple[bool, str]:
        node = self.nodes[fault.target]
        pid = node.process.pid
        code = await node.kill()
        await asyncio.sleep(fault.hold_s)
        began = time.monotonic()
        await node.start()
        return code == -9, (
            f"{fault.target} pid {pid} exited {code}, consuming again in "
            f"{time.monotonic() - began:.1f} s"
        )

    async def _disk_full(self, fault: Fault) -> tuple[bool, str]:
        node, disk = self.nodes[fault.target], self.disks[fault.target]
        before = _count_lines(node.logs(), DISK_EVIDENCE)
        left = await asyncio.to_thread(disk.fill)
        # Hold until the node has met the full disk (its WAL may absorb a while), then on.
        deadline = time.monotonic() + DISK_BITE_WITHIN_S
        bitten = 0
        while time.monotonic() < deadline and bitten == 0:
            await asyncio.sleep(0.5)
            bitten = _count_lines(node.logs(), DISK_EVIDENCE) - before
        await asyncio.sleep(fault.hold_s)
        disk.release()
        bitten = _count_lines(node.logs(), DISK_EVIDENCE) - before
        return left < FULL_BELOW and bitten > 0, (
            f"{fault.target} store disk full ({left} bytes free), {bitten} log lines about it"
        )
