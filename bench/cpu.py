"""Where the machine's CPU goes during a run, read from /proc: the machine's busy share of
all its cores (and the share the host took back, ``steal``), and each process's share of
one core. A latency run on a machine busy most of the time waits for cores at every hop;
this says so in the run's own figures."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_TICKS = os.sysconf("SC_CLK_TCK")


def _machine() -> tuple[int, int, int]:
    """Total, idle (with I/O wait) and stolen jiffies of all cores since boot."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    total = sum(fields[:8])  # guest time is already counted in user time
    return total, fields[3] + fields[4], fields[7]


def _process_s(pid: int) -> float | None:
    """User plus system CPU seconds of ``pid``; None once it has gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def broker_pid() -> int | None:
    """The shared RabbitMQ node's Erlang VM (its home is the package's), if one runs."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if command and command[0].endswith(b"beam.smp") and b"/var/lib/rabbitmq" in command:
            return int(entry.name)
    return None


class CpuWindow:
    """CPU used between ``__init__`` and ``close`` by the machine and by ``pids``."""

    def __init__(self, pids: Mapping[str, int | None]) -> None:
        self.pids = {name: pid for name, pid in pids.items() if pid is not None}
        self._began = time.monotonic()
        self._machine = _machine()
        self._processes = {name: _process_s(pid) for name, pid in self.pids.items()}

    def close(self) -> dict[str, Any]:
        elapsed = time.monotonic() - self._began
        total, idle, steal = (
            now - then for now, then in zip(_machine(), self._machine, strict=True)
        )
        shares = {}
        for name, pid in self.pids.items():
            before, after = self._processes[name], _process_s(pid)
            if before is not None and after is not None and elapsed > 0:
                shares[name] = round((after - before) / elapsed * 100, 1)
        return {
            "machine_busy_pct": round((total - idle) / total * 100, 1) if total else 0.0,
            "steal_pct": round(steal / total * 100, 1) if total else 0.0,
            "cores": os.cpu_count(),
            "process_pct_of_a_core": shares,
        }


def said(cpu: Mapping[str, Any]) -> str:
    shares = ", ".join(f"{name} {pct:.0f}%" for name, pct in cpu["process_pct_of_a_core"].items())
    return (
        f"CPU: machine {cpu['machine_busy_pct']:.0f}% busy of {cpu['cores']} cores "
        f"(steal {cpu['steal_pct']:.0f}%); of one core: {shares}"
    )


def core_ms(rounds: int = 5) -> float:
    """The best of a few runs of a fixed piece of pure Python, in ms: how fast one core of
    this machine is right now."""
    best = float("inf")
    for _ in range(rounds):
        began = time.perf_counter()
        sum(range(10**6))
        best = min(best, (time.perf_counter() - began) * 1000)
    return round(best, 1)


class CoreSpeed:
    """The host slows the cores of a machine kept busy and gives the speed back after a
    rest (seen on this project's machine: 12 ms for ``core_ms`` idle, 16 ms after 90 s of
    both cores busy, 12 ms again a minute later). A latency run right after the bench's
    saturating phases would measure a slower machine than the ceiling run did, so each
    waits for the speed measured when the bench started."""

    SLACK = 1.10  # within 10% of the speed at the start counts as rested
    POLL_S = 5.0

    def __init__(self) -> None:
        self.idle_ms = core_ms()

    async def rest(self, within_s: float = 180.0) -> dict[str, Any]:
        """Wait until a core is back to its starting speed, or ``within_s`` passed; what
        was found, for the run's record."""
        began = time.monotonic()
        while True:
            now_ms = core_ms()
            rested = now_ms <= self.idle_ms * self.SLACK
            if rested or time.monotonic() - began >= within_s:
                break
            await asyncio.sleep(self.POLL_S)
        return {
            "core_ms_at_start": self.idle_ms,
            "core_ms": now_ms,
            "rested_s": round(time.monotonic() - began, 1),
            "rested": rested,
        }


def said_rest(rest: Mapping[str, Any]) -> str:
    state = "rested" if rest["rested"] else "NOT back to its starting speed"
    return (
        f"core speed probe {rest['core_ms']} ms against {rest['core_ms_at_start']} ms at the "
        f"start, after {rest['rested_s']:.0f} s of rest ({state})"
    )
