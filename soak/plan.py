"""How much traffic and which faults a soak run gets, from the environment and a seed.

Everything random in a run comes from one seed, printed at the start, so a failing run
can be replayed with SOAK_SEED (the moments differ by scheduling jitter; the order,
the kinds, the targets and the holds do not).
"""

from __future__ import annotations

import os
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace

BROKER_KILL = "broker kill -9"
STOP_APP = "broker stop_app"
CLOSE = "connections closed"
NODE_KILL = "node SIGKILL"
DISK_FULL = "store disk full"
ACTIVE_KILL = "active SIGKILL"  # HA mode: the active instance of a side, killed
ACTIVE_STOP = "active SIGSTOP"  # HA mode: the active instance paused past its lease
WAVE_SHARE = 0.6  # of the certificates, submitted in waves just before the faults
WAVE_RATE = 400.0  # certificates per second within a wave

# Seconds each kind took here from injection to recovery, to pace the trickle so that
# every fault meets certificates in flight.
EXPECTED_S = {
    BROKER_KILL: 12.0,
    STOP_APP: 10.0,
    CLOSE: 3.0,
    NODE_KILL: 4.0,
    DISK_FULL: 20.0,
    ACTIVE_KILL: 4.0,
    ACTIVE_STOP: 12.0,
}
# HA mode: how often a standby polls for the lock; the lease is about 3 polls + 1 s.
STANDBY_POLL_S = 0.5
LEASE_S = 3 * STANDBY_POLL_S + 1.0
STOP_BEYOND_LEASE_S = 2.0


@dataclass(frozen=True)
class Fault:
    kind: str
    target: str  # "broker", or the node's country for node faults
    gap_s: float  # quiet time before it, after the previous one recovered
    hold_s: float  # how long the fault lasts before it is healed
    into_wave: float  # how far into the wave of submissions before it it strikes


@dataclass(frozen=True)
class Plan:
    mode: str
    seed: int
    count: int
    faults: tuple[Fault, ...]
    deadline_s: float
    stall_s: float = 60.0
    trickle: float = 25.0  # certificates per second between waves
    wave: int = 0  # certificates submitted at WAVE_RATE just before each fault
    ha: bool = False  # two instances of each node on PostgreSQL, the active one faulted

    def describe(self) -> str:
        kinds: dict[str, int] = {}
        for fault in self.faults:
            kinds[fault.kind] = kinds.get(fault.kind, 0) + 1
        listed = ", ".join(f"{n} x {k}" for k, n in kinds.items()) or "no faults"
        return (
            f"{self.mode} mode, seed {self.seed}: {self.count} certificates ({self.trickle:.1f}/s "
            f"and a wave of {self.wave} before each fault); {listed}; "
            f"overall deadline {self.deadline_s:.0f} s"
        )


@dataclass(frozen=True)
class Shape:
    count: int
    broker: dict[str, int]
    node_kills: int  # per node
    disk: int
    deadline_s: float


QUICK = Shape(1000, {BROKER_KILL: 3, STOP_APP: 3, CLOSE: 3}, node_kills=2, disk=1, deadline_s=900)
FULL = Shape(
    10_000, {BROKER_KILL: 7, STOP_APP: 6, CLOSE: 7}, node_kills=10, disk=2, deadline_s=3600
)


def _fault(kind: str, target: str, rng: random.Random) -> Fault:
    hold = {
        BROKER_KILL: rng.uniform(1.0, 5.0),
        STOP_APP: rng.uniform(2.0, 8.0),
        CLOSE: 0.0,
        NODE_KILL: rng.uniform(0.0, 3.0),
        DISK_FULL: rng.uniform(8.0, 15.0),
    }[kind]
    return Fault(kind, target, rng.uniform(2.0, 8.0), hold, rng.uniform(0.1, 0.9))


def schedule(shape: Shape, rng: random.Random) -> tuple[Fault, ...]:
    wanted = [(kind, "broker") for kind, n in shape.broker.items() for _ in range(n)]
    wanted += [(NODE_KILL, c) for c in ("KR", "CN") for _ in range(shape.node_kills)]
    first = rng.choice(("KR", "CN"))
    others = {"KR": "CN", "CN": "KR"}
    wanted += [(DISK_FULL, first if i % 2 == 0 else others[first]) for i in range(shape.disk)]
    rng.shuffle(wanted)
    return tuple(_fault(kind, target, rng) for kind, target in wanted)


def from_env(environ: dict[str, str] | None = None) -> Plan:
    env = dict(os.environ if environ is None else environ)
    full = env.get("SOAK_FULL", "") not in ("", "0")
    shape = FULL if full else QUICK
    if env.get("SOAK_BROKER_KILLS"):
        # How many broker kill -9 faults, to replay or to isolate that fault.
        broker = dict(shape.broker, **{BROKER_KILL: int(env["SOAK_BROKER_KILLS"])})
        shape = replace(shape, broker=broker)
    return _plan(
        env,
        "full" if full else "quick",
        shape.count,
        shape.deadline_s,
        lambda rng: schedule(shape, rng),
    )


def _plan(
    env: dict[str, str],
    mode: str,
    count: int,
    deadline_s: float,
    faults_of: Callable[[random.Random], tuple[Fault, ...]],
    ha: bool = False,
) -> Plan:
    """The knobs both soaks share (SOAK_SEED, SOAK_COUNT, SOAK_FAULTS, SOAK_DEADLINE_S),
    and the traffic spread over the faults' expected time."""
    seed = int(env["SOAK_SEED"]) if env.get("SOAK_SEED") else secrets.randbelow(10**9)
    rng = random.Random(seed)  # noqa: S311 - a reproducible soak, not secrets
    count = int(env.get("SOAK_COUNT", count))
    faults = faults_of(rng) if env.get("SOAK_FAULTS", "1") != "0" else ()
    busy_s = sum(f.gap_s + f.hold_s + EXPECTED_S[f.kind] for f in faults)
    wave = int(WAVE_SHARE * count / len(faults)) if faults else 0
    trickle = (count - wave * len(faults)) / busy_s if faults else 25.0
    return Plan(
        mode=mode,
        seed=seed,
        count=count,
        faults=faults,
        deadline_s=float(env.get("SOAK_DEADLINE_S", deadline_s)),
        trickle=trickle,
        wave=wave,
        ha=ha,
    )


@dataclass(frozen=True)
class HaShape:
    count: int
    kills: int  # of the active instance, on a seeded side each time
    stops: int  # SIGSTOP of the active instance past its lease
    deadline_s: float


HA_QUICK = HaShape(400, kills=3, stops=1, deadline_s=420)
HA_FULL = HaShape(3000, kills=10, stops=1, deadline_s=1800)


def ha_schedule(shape: HaShape, rng: random.Random) -> tuple[Fault, ...]:
    wanted = [ACTIVE_KILL] * shape.kills + [ACTIVE_STOP] * shape.stops
    rng.shuffle(wanted)
    faults = []
    for kind in wanted:
        side = rng.choice(("KR", "CN"))
        # A kill: how long the killed instance stays down before its restart as a
        # standby. A stop: how long it stays paused, past the lease.
        hold = rng.uniform(0.0, 2.0) if kind == ACTIVE_KILL else LEASE_S + STOP_BEYOND_LEASE_S
        faults.append(Fault(kind, side, rng.uniform(2.0, 8.0), hold, rng.uniform(0.1, 0.9)))
    return tuple(faults)


def ha_from_env(environ: dict[str, str] | None = None) -> Plan:
    """SOAK_HA=1: the same knobs (SOAK_FULL, SOAK_SEED, SOAK_COUNT, SOAK_DEADLINE_S)."""
    env = dict(os.environ if environ is None else environ)
    full = env.get("SOAK_FULL", "") not in ("", "0")
    shape = HA_FULL if full else HA_QUICK
    return _plan(
        env,
        "HA full" if full else "HA quick",
        shape.count,
        shape.deadline_s,
        lambda rng: ha_schedule(shape, rng),
        ha=True,
    )
