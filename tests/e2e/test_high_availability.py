"""Two KR node processes on one PostgreSQL database, one CN: one KR is active, the other
stands by; the active one is killed mid-flight, the standby takes over, and every
certificate reaches CN's clearance exactly once."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from eodes_node.config import StoreSection
from eodes_node.core.records import as_json_dict
from eodes_node.core.work import POSSIBLE_DUPLICATE
from eodes_node.samples import SampleFactory
from eodes_node.testing import NodePair, NodeProcess
from tests.e2e.test_faults import by_certificate, quiet
from tests.integration.test_sql_store import POSTGRES, _postgres_admin

pytestmark = pytest.mark.broker

POLL_S = 0.5


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    admin = _postgres_admin()
    name = "eodes_test_" + secrets.token_hex(6)
    admin.execute(f"CREATE DATABASE {name}")
    try:
        yield "postgresql+psycopg://" + POSTGRES.split("://", 1)[1].rsplit("/", 1)[0] + "/" + name
    finally:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        admin.close()


def has_logged(path: Path, event: str) -> bool:
    return path.exists() and f'"{event}"'.encode() in path.read_bytes()


async def logged(path: Path, event: str, within: float) -> float:
    """Wait until a process's log has ``event``; returns how long that took."""
    began = time.monotonic()
    while not has_logged(path, event):
        if time.monotonic() - began > within:
            raise AssertionError(f"no {event} in {path} within {within} s")
        await asyncio.sleep(0.02)
    return time.monotonic() - began


@pytest.mark.timeout(240)
async def test_the_standby_takes_over_from_a_killed_active_node_and_nothing_doubles(
    tmp_path: Path, postgres_url: str
) -> None:
    async with NodePair(tmp_path, batch_max=16) as pair:
        pair.kr.config = pair.kr.config.model_copy(
            update={"store": StoreSection(url=postgres_url, standby_poll_s=POLL_S)}
        )
        config = pair.kr.write_config()
        active = NodeProcess(config, pair.kr.dir / "active")
        standby = NodeProcess(config, pair.kr.dir / "standby")
        cn = NodeProcess(pair.cn.write_config(), pair.cn.dir / "node")
        count = 120
        records = [as_json_dict(c) for c in SampleFactory("KCFTA", seed=29).certificates(count)]
        taking_over: asyncio.Task[float] | None = None
        try:
            await cn.start()
            await active.start()
            taking_over = asyncio.create_task(standby.start(within=180))
            await logged(pair.kr.dir / "standby.1.log", "standby", within=60)
            await logged(pair.kr.dir / "active.1.log", "became_active", within=1)

            await pair.kr.submit(records)
            await pair.cn.clearance.wait_count(30, within=60)
            killed_at = time.monotonic()
            await active.kill()
            await asyncio.wait_for(taking_over, 60)
            takeover_s = time.monotonic() - killed_at
            print(f"takeover: {takeover_s:.2f} s from SIGKILL to the standby consuming")
            await logged(pair.kr.dir / "standby.1.log", "became_active", within=1)

            await pair.cn.clearance.wait_for(
                lambda ms: len(by_certificate(ms)) == count, within=120
            )
            await pair.kr.events.wait_for(
                lambda ms: len(pair.kr.events.certificates_with("delivered")) == count,
                within=120,
            )
            await quiet(pair.cn.clearance, pair.kr.events, within=60)
        finally:
            if taking_over is not None and not taking_over.done():
                taking_over.cancel()
            for process in (standby, active, cn):
                if process.process is not None and process.process.returncode is None:
                    await process.terminate()

    assert active.starts == 1
    assert active.process is not None
    assert active.process.returncode == -9  # really killed, no clean stop
    assert takeover_s < 10 * POLL_S + 10
    seen = by_certificate(pair.cn.clearance.messages)
    assert set(seen) == {r["header"]["certificate_number"] for r in records}, "lost certificates"
    assert all(len(ids) == 1 for ids in seen.values()), "a certificate under two message ids"
    # Exactly once per message id; a flagged copy under the same id is not a duplicate.
    first_copies = Counter(
        str(m.message_id)
        for m in pair.cn.clearance.messages
        if (m.headers or {}).get(POSSIBLE_DUPLICATE) != "true" and not m.redelivered
    )
    assert len(first_copies) == count
    assert [mid for mid, times in first_copies.items() if times > 1] == []
