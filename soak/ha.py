"""`SOAK_HA=1 make soak` (or `make soak-ha`): two instances of each node, each side on a
PostgreSQL database of its own, on the soak's private RabbitMQ node. The faults strike
the ACTIVE instance of a side: SIGKILL (the standby must take over, the killed one comes
back as a standby), or SIGSTOP past the lease (the standby takes over; once resumed, the
paused one must write nothing and exit by itself with ``leadership_lost``).

Each fault proves itself: the exit code (-9, or the paused one's own exit after its
``leadership_lost`` line), and a ``became_active`` line from the other instance after
the fault, whose timestamp gives the takeover time. At the end, both databases' audit
chains must verify; the databases are dropped whatever happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from soak.faults import Episode, Injector
from soak.harness import LocalSystems
from soak.nodes import Crash, SoakNode, make_nodes
from soak.plan import ACTIVE_KILL, ACTIVE_STOP, LEASE_S, STANDBY_POLL_S, Fault, Plan
from soak.report import Verdict, classify
from soak.run import RUN, VHOSTS, Soak, _quietly, say
from soak.takeover import summary, takeover_after

POSTGRES_ADMIN = os.environ.get(
    "EODES_SOAK_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
START_WITHIN_S = 90.0
EXIT_WITHIN_S = 30.0  # for the resumed instance to see it lost the lease and exit
TAKEOVER_TARGET_S = 5.0
AUDIT_WITHIN_S = 120.0
_HOLDER_PID = re.compile(r"pid (\d+)$")
# What a fenced instance logs when a commit of its is refused.
REFUSED = (b"this instance is not active", b"another instance took over")


def database_url(name: str, driver: str = "postgresql") -> str:
    """The admin URL with the database ``name``, e.g. for SQLAlchemy's psycopg driver."""
    base = POSTGRES_ADMIN.split("://", 1)[1].rsplit("/", 1)[0]
    return f"{driver}://{base}/{name}"


def _admin(statement: str) -> None:
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True, connect_timeout=5) as admin:
        admin.execute(statement)


def _query(
    database: str, statement: str, params: tuple[object, ...] = ()
) -> list[tuple[object, ...]]:
    with psycopg.connect(database_url(database), connect_timeout=5) as conn:
        return list(conn.execute(statement, params).fetchall())


def pg_statuses(database: str, table: str, kind: str) -> dict[str, str]:
    """certificate number -> status in ``table``, for the report (read-only)."""
    with contextlib.suppress(psycopg.Error):
        rows = _query(
            database,
            f"select certificate_number, status from {table} where kind = %s",  # noqa: S608
            (kind,),
        )
        return {str(number): str(status) for number, status in rows}
    return {}


def lease(database: str) -> tuple[int, int | None]:
    """(epoch, pid of the holder) of the side's one link."""
    rows = _query(database, "select epoch, holder from link_lease")
    if not rows:
        return 0, None
    epoch, holder = rows[0]
    found = _HOLDER_PID.search(str(holder))
    return int(str(epoch)), int(found.group(1)) if found else None


def logged(path: Path, event: str) -> bool:
    return path.exists() and f'"{event}"'.encode() in path.read_bytes()


@dataclass
class Instance:
    """One `eodes-node run` of a side; its logs are node.<letter><start>.log."""

    side: str
    letter: str
    node: SoakNode
    process: asyncio.subprocess.Process | None = None
    starts: int = 0
    crashes: list[Crash] = field(default_factory=list)
    expected_exit: bool = False  # the soak caused the next exit
    closing: bool = False
    restarted: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def name(self) -> str:
        return f"{self.side}-{self.letter}"

    @property
    def log(self) -> Path:
        return self.node.dir / f"node.{self.letter}{self.starts}.log"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def launch(self) -> None:
        self.starts += 1
        with self.log.open("wb") as handle:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "eodes_node",
                "run",
                "--config",
                str(self.node.config),
                stdout=handle,
                stderr=handle,
                start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **self.node.env()},
            )

    async def until_logged(self, event: str, within: float) -> bool:
        """Whether the current log says ``event`` before the deadline or the exit."""
        deadline = time.monotonic() + within
        while not logged(self.log, event):
            assert self.process is not None
            if self.process.returncode is not None or time.monotonic() > deadline:
                return logged(self.log, event)
            await asyncio.sleep(0.02)
        return True

    async def start(self, event: str) -> None:
        """Launch and wait for ``event`` (node_started, or standby); a start that fails
        is an exit nobody asked for, counted once, and tried again."""
        failed = False
        while True:
            await self.launch()
            if await self.until_logged(event, START_WITHIN_S):
                break
            code = await self._reap()
            if not failed:
                tail = self.log.read_text(errors="replace")[-3000:]
                self.crashes.append(Crash(self.name, code, self.log, tail))
            failed = True
            if self.closing:
                raise AssertionError(f"{self.name} did not start; see {self.log}")
            await asyncio.sleep(2.0)
        self.expected_exit = False
        self.restarted.set()

    async def _reap(self) -> int | None:
        assert self.process is not None
        if self.process.returncode is None:
            self.process.kill()
        return await self.process.wait()

    async def supervise(self) -> None:
        """Count every exit the soak did not cause, and start it again as a standby."""
        while not self.closing:
            assert self.process is not None
            code = await self.process.wait()
            if self.closing:
                return
            if self.expected_exit:
                await self.restarted.wait()
                continue
            tail = self.log.read_text(errors="replace")[-3000:]
            self.crashes.append(Crash(self.name, code, self.log, tail))
            await self.start("standby")

    async def stop(self) -> None:
        self.closing = True
        process = self.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGCONT)
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 20)
        except TimeoutError:
            process.kill()
            await process.wait()


@dataclass
class Side:
    """A node's two instances on one database."""

    country: str
    database: str
    instances: tuple[Instance, Instance]

    async def active(self) -> tuple[Instance, Instance]:
        """(the active instance, the other), by the lease's holder."""
        _, pid = await asyncio.to_thread(lease, self.database)
        first, second = self.instances
        if second.process is not None and second.process.pid == pid:
            return second, first
        if first.process is not None and first.process.pid == pid:
            return first, second
        raise AssertionError(f"{self.country}: the lease holder pid {pid} is no instance of ours")


class HaInjector(Injector):
    """The active instance of a side killed or paused, and the takeover timed."""

    def __init__(self, soak: HaSoak, *, started: float) -> None:
        super().__init__(
            soak.rabbit, {}, {}, soak.tally, started=started, stall_s=soak.plan.stall_s, say=say
        )
        self.sides = soak.sides

    async def apply(self, fault: Fault, episode: Episode) -> tuple[bool, str]:
        side = self.sides[fault.target]
        active, other = await side.active()
        if fault.kind == ACTIVE_KILL:
            return await self._kill(fault, episode, active, other)
        if fault.kind == ACTIVE_STOP:
            return await self._stop(fault, episode, side, active, other)
        raise AssertionError(f"not an HA fault: {fault.kind}")

    async def _took_over(self, other: Instance, fault_at: float) -> float | None:
        """Poll the other instance's log for its became_active after the fault."""
        deadline = time.monotonic() + self.stall_s
        while time.monotonic() < deadline:
            took = takeover_after(other.log.read_bytes(), fault_at)
            if took is not None:
                return took
            await asyncio.sleep(0.05)
        return None

    async def _kill(
        self, fault: Fault, episode: Episode, active: Instance, other: Instance
    ) -> tuple[bool, str]:
        pid = active.pid
        assert active.process is not None
        active.expected_exit = True
        active.restarted.clear()
        killed_at = time.time()
        active.process.send_signal(signal.SIGKILL)
        code = await active.process.wait()
        episode.takeover_s = await self._took_over(other, killed_at)
        await asyncio.sleep(fault.hold_s)  # down a while, as a host that reboots
        await active.start("standby")
        took = (
            f"NO TAKEOVER within {self.stall_s:.0f} s"
            if episode.takeover_s is None
            else f"{other.name} active"
        )
        return code == -9 and episode.takeover_s is not None, (
            f"{active.name} pid {pid} exited {code}, {took}, back as a standby"
        )

    async def _stop(
        self, fault: Fault, episode: Episode, side: Side, active: Instance, other: Instance
    ) -> tuple[bool, str]:
        pid = active.pid
        assert active.process is not None
        epoch_before, _ = await asyncio.to_thread(lease, side.database)
        stopped_at = time.time()
        active.process.send_signal(signal.SIGSTOP)
        episode.takeover_s = await self._took_over(other, stopped_at)
        # Paused past its lease, whatever the takeover took.
        await asyncio.sleep(max(0.0, stopped_at + fault.hold_s - time.time()))
        epoch_taken, holder = await asyncio.to_thread(lease, side.database)
        active.expected_exit = True
        active.restarted.clear()
        active.process.send_signal(signal.SIGCONT)
        paused_s = time.time() - stopped_at
        try:
            code: int | None = await asyncio.wait_for(active.process.wait(), EXIT_WITHIN_S)
        except TimeoutError:
            active.process.kill()
            await active.process.wait()
            code = None
        lost = logged(active.log, "leadership_lost")
        refused = sum(
            1 for line in active.log.read_bytes().splitlines() if any(r in line for r in REFUSED)
        )
        # Fenced: the resumed one did not take the link back, nor did it act as active.
        epoch_after, holder_after = await asyncio.to_thread(lease, side.database)
        fenced = epoch_after == epoch_taken > epoch_before and holder_after == other.pid
        await active.start("standby")
        exit_said = "did NOT exit by itself" if code is None else f"exited {code} by itself"
        took = (
            f"NO TAKEOVER while paused (holder pid {holder})"
            if episode.takeover_s is None
            else f"{other.name} active (holder pid {holder})"
        )
        proof = (
            f"{active.name} pid {pid} paused {paused_s:.1f} s, {took}, epoch "
            f"{epoch_before}->{epoch_taken}; resumed, "
            f"{'leadership_lost' if lost else 'NO leadership_lost'}, {exit_said}; "
            f"{'fenced' if fenced else 'NOT FENCED'} (epoch {epoch_after}, {refused} writes "
            "refused)"
        )
        proved = episode.takeover_s is not None and code not in (None, 0, -9) and lost and fenced
        return proved, proof


class HaSoak(Soak):
    def __init__(self, plan: Plan) -> None:
        super().__init__(plan)
        tag = secrets.token_hex(4)
        self.databases = {c: f"eodes_soak_{c.lower()}_{tag}" for c in VHOSTS}
        self.created: list[str] = []
        self.sides: dict[str, Side] = {}

    async def setup(self) -> None:
        await self.rabbit.start()
        for vhost in VHOSTS.values():
            await self.rabbit.add_vhost(vhost)
        say(f"soak: private RabbitMQ {self.rabbit.node} on 127.0.0.1:{self.rabbit.port}")
        for name in self.databases.values():
            await asyncio.to_thread(_admin, f"CREATE DATABASE {name}")
            self.created.append(name)
        say(f"soak: PostgreSQL databases {', '.join(self.created)}")
        urls = {c: self.rabbit.url(v) for c, v in VHOSTS.items()}
        stores = {c: database_url(n, "postgresql+psycopg") for c, n in self.databases.items()}
        self.nodes = make_nodes(RUN, urls, stores, STANDBY_POLL_S)
        for country, node in self.nodes.items():
            pair = (Instance(country, "a", node), Instance(country, "b", node))
            self.sides[country] = Side(country, self.databases[country], pair)
        topo = {c: n.topology for c, n in self.nodes.items()}
        self.systems = LocalSystems(urls, topo, self.tally, self.plan.seed)
        await self.systems.connect()
        for country in ("CN", "KR"):
            first, second = self.sides[country].instances
            await first.start("node_started")
            await second.start("standby")
            for instance in (first, second):
                self.tasks.append(asyncio.create_task(instance.supervise()))
        say(
            f"soak: KR and CN, two instances each (standby_poll_s {STANDBY_POLL_S}, lease "
            f"about {LEASE_S:.1f} s); logs in {RUN.name}/"
        )
        self.injector = HaInjector(self, started=time.monotonic())

    def judge(self, queued: int) -> Verdict:
        return classify(self.tally, self.databases, queued, pg_statuses)

    def crashes(self) -> list[Crash]:
        return [c for s in self.sides.values() for i in s.instances for c in i.crashes]

    async def more_checks(self) -> list[str]:
        """The takeover times, and both audit chains."""
        failed: list[str] = []
        episodes = self.injector.episodes if self.injector else []
        takeovers = [e.takeover_s for e in episodes]
        say(f"soak: takeover: {summary(takeovers, TAKEOVER_TARGET_S)}")
        for country, node in self.nodes.items():
            code, output = await self._audit(node)
            say(f"soak: {country} audit verify: exit {code}: {output}")
            if code != 0:
                failed.append(f"{country} audit chain")
        return failed

    async def _audit(self, node: SoakNode) -> tuple[int | None, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "eodes_node",
            "audit",
            "verify",
            "--config",
            str(node.config),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, **node.env()},
        )
        try:
            out, _ = await asyncio.wait_for(process.communicate(), AUDIT_WITHIN_S)
        except TimeoutError:
            process.kill()
            await process.wait()
            return None, f"no answer within {AUDIT_WITHIN_S:.0f} s"
        lines = out.decode(errors="replace").strip().splitlines()
        return process.returncode, (lines[-1] if lines else "")[:300]

    async def cleanup(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks = []
        for side in self.sides.values():
            for instance in side.instances:
                await _quietly(instance.stop(), 30)
        await super().cleanup()
        for name in self.created:
            await _quietly(asyncio.to_thread(_admin, f"DROP DATABASE {name} WITH (FORCE)"), 30)
