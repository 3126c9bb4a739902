"""`make soak`: the KR and CN node processes under realistic traffic both ways, on a
private RabbitMQ node, with seeded faults (broker kill -9, stop_app, closed connections,
SIGKILL of each node, a full disk under a node's store), counted at the local queues.

Ends with one line, ``soak: N certificates, F faults, L lost, D duplicated, S stuck,
X crashed``, and exits 0 only when the last four are 0 and every certificate reached CN's
clearance once and its decision reached KR's issuing once. SOAK_SEED replays a run,
SOAK_FULL=1 runs the long version, SOAK_FAULTS=0 runs without faults (to check the
counting), SOAK_COUNT overrides the number of certificates. SOAK_HA=1 runs two instances
of each node on PostgreSQL instead and faults the active one (soak/ha.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable
from pathlib import Path

from eodes_node.testing.rabbit import SERVER, PrivateRabbit
from soak.disk import SmallDisk, copy_out
from soak.faults import Injector
from soak.harness import LocalSystems
from soak.logs import report_logs
from soak.nodes import Crash, SoakNode, make_nodes
from soak.pace import Pacer
from soak.plan import WAVE_RATE, Plan, from_env, ha_from_env
from soak.report import Verdict, classify, details, fault_table
from soak.tally import POLL_S, Tally
from soak.traffic import Records

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "soak-run"
VHOSTS = {"KR": "eodes-soak-kr", "CN": "eodes-soak-cn"}
PROGRESS_EVERY_S = 15.0
EVENTS_GRACE_S = 15.0


def say(text: str) -> None:
    print(text, flush=True)


def disk_mb(count: int) -> int:
    """Room for a node's store with a wide margin: tens of KB per certificate."""
    return 64 + count * 64 // 1000


class Soak:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.started = time.monotonic()
        self.rabbit = PrivateRabbit(RUN, "eodes-soak", log_dir=RUN / "broker")
        self.tally = Tally(plan.count)
        self.nodes: dict[str, SoakNode] = {}
        self.disks: dict[str, SmallDisk] = {}
        self.systems: LocalSystems | None = None
        self.injector: Injector | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.records = Records(plan.seed, plan.count)
        self.final_stall = False
        self.failure = ""

    async def everything(self) -> None:
        await self.setup()
        await self.traffic()

    async def setup(self) -> None:
        await self.rabbit.start()
        for vhost in VHOSTS.values():
            await self.rabbit.add_vhost(vhost)
        say(f"soak: private RabbitMQ {self.rabbit.node} on 127.0.0.1:{self.rabbit.port}")
        urls = {c: self.rabbit.url(v) for c, v in VHOSTS.items()}
        self.nodes = make_nodes(RUN, urls)
        for country, node in self.nodes.items():
            self.disks[country] = SmallDisk(node.store_dir, disk_mb(self.plan.count))
            await self.disks[country].mount()
        topo = {c: n.topology for c, n in self.nodes.items()}
        self.systems = LocalSystems(urls, topo, self.tally, self.plan.seed)
        await self.systems.connect()
        for country in ("CN", "KR"):
            await self.nodes[country].start()
            self.tasks.append(asyncio.create_task(self.nodes[country].supervise()))
        say(f"soak: KR and CN nodes running; logs in {RUN.relative_to(ROOT)}/")
        self.injector = Injector(
            self.rabbit,
            self.nodes,
            self.disks,
            self.tally,
            started=time.monotonic(),
            stall_s=self.plan.stall_s,
            say=say,
        )

    async def traffic(self) -> None:
        """Submissions and faults together, then until every certificate is through."""
        assert self.systems is not None
        assert self.injector is not None
        self.tasks.append(asyncio.create_task(self.systems.answer()))
        self.tasks.append(asyncio.create_task(self.progress()))
        plan = self.plan
        pacer = Pacer(plan.count, plan.trickle, plan.wave, WAVE_RATE, len(plan.faults))
        submit = asyncio.create_task(self.systems.submit(self.records, pacer.pace))
        faults = asyncio.create_task(self.injector.run(plan.faults, pacer))
        self.tasks += [submit, faults]
        await asyncio.gather(submit, faults)
        await self.until_through()

    async def until_through(self) -> None:
        """Until all is delivered and decided, or nothing moved for the stall bound."""
        numbers = self.records.numbers
        while not self.tally.complete(numbers):
            assert self.injector is not None
            healed = self.injector.last_healed
            last = max(self.tally.last_cleared, self.tally.last_decided, healed)
            if time.monotonic() - last > self.plan.stall_s:
                self.final_stall = True
                return
            await asyncio.sleep(POLL_S)
        # The delivered events trail the decisions; wait for them, and for late copies.
        grace = time.monotonic() + EVENTS_GRACE_S
        while not all(self.tally.receipts[n] for n in numbers):
            if time.monotonic() > grace:
                return
            await asyncio.sleep(POLL_S)

    async def progress(self) -> None:
        while True:
            await asyncio.sleep(PROGRESS_EVERY_S)
            t = self.tally
            done = self.injector.done if self.injector else 0
            say(
                f"soak: {time.monotonic() - self.started:.0f} s: {len(t.submitted)} submitted, "
                f"{len(t.cleared)} at CN clearance, {len(t.decided)} decided at KR issuing, "
                f"faults {done}/{len(self.plan.faults)}"
            )

    async def queued(self) -> int:
        total = 0
        for vhost in VHOSTS.values():
            with contextlib.suppress(Exception):
                listed = await self.rabbit.ctl(
                    "list_queues", "-p", vhost, "messages", "--quiet", "--no-table-headers"
                )
                total += sum(int(x) for x in listed.split() if x.isdigit())
        return total

    def judge(self, queued: int) -> Verdict:
        """Why each incomplete certificate is incomplete, from the nodes' stores."""
        stores = {c: str(n.store_dir / "node.db") for c, n in self.nodes.items()}
        return classify(self.tally, stores, queued)

    def crashes(self) -> list[Crash]:
        return [c for n in self.nodes.values() for c in n.crashes]

    async def more_checks(self) -> list[str]:
        """Failures beyond the counting, each said in one line (none in this mode)."""
        return []

    async def verdict(self) -> int:
        plan, tally = self.plan, self.tally
        judged = self.judge(await self.queued())
        episodes = self.injector.episodes if self.injector else []
        crashes = self.crashes()
        # A final stall over certificates that are lost is counted once, as lost.
        stuck = sum(1 for e in episodes if e.stuck) + int(self.final_stall and bool(judged.stuck))
        unsubmitted = plan.count - len(tally.submitted)
        say("")
        fault_table(episodes, say)
        details(tally, judged, crashes, say)
        for country, node in self.nodes.items():
            report_logs(country, node.logs(), say)
        if self.final_stall:
            say(f"soak: stuck: nothing moved for {plan.stall_s:.0f} s after the last fault healed")
        if unsubmitted:
            say(f"soak: {unsubmitted} certificates were never submitted (the run ended early)")
        if judged.stuck:
            say(f"soak: {len(judged.stuck)} certificates still pending at the end")
        say(f"soak: logs of every node process and the broker are in {RUN}")
        failed_checks = await self.more_checks()
        lost, duplicated = len(judged.lost), len(tally.duplicated())
        say(
            f"soak: {plan.count} certificates, {len(episodes)} faults, {lost} lost, "
            f"{duplicated} duplicated, {stuck} stuck, {len(crashes)} crashed"
        )
        complete = tally.complete(self.records.numbers)
        unproved = [e for e in episodes if not e.proved]
        ok = complete and not (lost or duplicated or stuck or crashes or unproved or tally.wrong)
        ok = ok and not failed_checks
        return 0 if ok and not self.failure else 1

    async def cleanup(self) -> None:
        """Every step bounded and independent: nothing left running or mounted."""
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for node in self.nodes.values():
            await _quietly(node.stop(), 30)
        for country, disk in self.disks.items():
            await _quietly(copy_out(disk, RUN / country.lower() / "store-copy"), 60)
            await _quietly(disk.unmount(), 30)
        if self.systems is not None:
            await _quietly(self.systems.close(), 15)
        await _quietly(self.rabbit.stop(), 90)


async def _quietly(step: Awaitable[None], within: float) -> None:
    try:
        await asyncio.wait_for(step, within)
    except Exception as error:  # noqa: BLE001 - cleanup goes on; say what failed
        say(f"soak: cleanup step failed: {type(error).__name__}: {error}")


async def soak(plan: Plan) -> int:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    if plan.ha:
        from soak.ha import HaSoak  # here: soak.ha builds on this module's Soak

        run: Soak = HaSoak(plan)
    else:
        run = Soak(plan)
    try:
        try:
            await asyncio.wait_for(run.everything(), plan.deadline_s)
        except TimeoutError:
            run.failure = f"overall deadline of {plan.deadline_s:.0f} s reached"
        except Exception as error:  # judged and reported below
            run.failure = f"harness error: {type(error).__name__}: {error}"
            logging.getLogger("soak").exception("harness error")
        if run.failure:
            say(f"soak: {run.failure}")
        return await run.verdict()
    except asyncio.CancelledError:
        say("soak: interrupted; cleaning up")
        raise
    finally:
        await run.cleanup()


def prepare_run_dir() -> int:
    """A fresh soak-run/, locked against a second soak in this tree; returns the lock."""
    RUN.mkdir(exist_ok=True)
    lock = os.open(RUN / ".lock", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        say(f"soak: another soak is running in this tree ({RUN}); wait for it")
        sys.exit(2)
    # We hold the lock, so a tmpfs still mounted here is left by a run that was killed.
    for line in Path("/proc/mounts").read_text().splitlines():
        target = line.split()[1]
        if target.startswith(f"{RUN}/"):
            subprocess.run(["umount", "-l", target], check=False, timeout=30)  # noqa: S603,S607
    for child in RUN.iterdir():
        if child.name != ".lock":
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    return lock


def main() -> None:
    if os.geteuid() != 0:
        say("soak: run as root (it starts a private RabbitMQ node and mounts a tmpfs)")
        sys.exit(2)
    if not Path(SERVER).exists():
        say("soak: RabbitMQ is not installed; run `make broker` (installs it) and retry")
        sys.exit(2)
    ha = os.environ.get("SOAK_HA", "") not in ("", "0")
    plan = ha_from_env() if ha else from_env()
    prepare_run_dir()
    # The clients' own reconnect chatter goes to a file, not between the soak's lines.
    logging.basicConfig(filename=RUN / "harness.log", level=logging.INFO)
    say(f"soak: {plan.describe()}")
    say(f"soak: seed {plan.seed} (replay with SOAK_SEED={plan.seed})")
    try:
        code = asyncio.run(soak(plan))
    except KeyboardInterrupt:
        code = 130  # cleaned up already: soak() cleans up on every way out
    sys.exit(code)


if __name__ == "__main__":
    main()
