"""How database faults surface from the store: as ``StoreUnavailable`` (retried, never the
poison path) or, for what only the operator can fix, ``ConfigError``; and that a slow or
cancelled commit still ends known, with its claims and the audit chain intact.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine

from eodes_node.adapters.sql import SqlStore
from eodes_node.adapters.sql import store as store_module
from eodes_node.adapters.sql.facts import read_facts
from eodes_node.adapters.sql.schema import StoreSettings
from eodes_node.adapters.sql.statements import StoreThread
from eodes_node.errors import ConfigError, StoreUnavailable
from eodes_node.ports import PARTNER, FactsQuery, Publication, UnitOfWork
from tests.integration.test_sql_store import (
    T0,
    Database,
    ManualClock,
    _received,
    _relayable,
    _sent,
    _unit,
    database,
)

# The bound asyncio once put around each store call, in the tests below: a commit that
# outlived it went on committing on the store thread behind its caller's back.
OLD_BOUND_S = 0.5


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with database(request.param, tmp_path) as opened:
        yield opened


@pytest.fixture
async def store(db: Database) -> SqlStore:
    return await db.open()


def _sent_publishing(number: str, message_id: str) -> UnitOfWork:
    """A certificate sent (a history row) and its envelope to publish (an outbox row)."""
    unit = _sent(number, message_id, f"local-{message_id}")
    unit.publications = _unit(message_id).publications
    return unit


class WriteLock:
    """Another connection holding what the store's commit needs: SQLite's write lock, or
    PostgreSQL's lock on the outbox table."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.conn: Any = None

    def __enter__(self) -> WriteLock:
        if self.db.backend == "sqlite":
            self.conn = sqlite3.connect(self.db.url[len("sqlite:///") :], isolation_level=None)
            self.conn.execute("BEGIN IMMEDIATE")
        else:
            import psycopg

            self.conn = psycopg.connect(self.db._dsn())
            self.db.own_pids.add(self.conn.info.backend_pid)
            self.conn.execute("LOCK TABLE outbox IN ACCESS EXCLUSIVE MODE")
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.rollback()
        self.conn.close()

    async def held_past_the_old_bound(self, waiter: asyncio.Task[Any]) -> None:
        """Hold it past ``OLD_BOUND_S``, proving the commit waited on it meanwhile."""
        deadline = time.monotonic() + 10
        while self.db.backend == "postgresql" and not self._waiting():
            assert time.monotonic() < deadline, "the commit never waited on the lock"
            await asyncio.sleep(0.02)
        await asyncio.sleep(2 * OLD_BOUND_S)  # the fault: a lock held this long
        if waiter.done():
            raise AssertionError(f"the commit ended under the lock: {waiter.exception()!r}")

    def _waiting(self) -> bool:
        rows = self.db.admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'",
            (self.db.name,),
        ).fetchall()
        return bool(rows[0][0])


async def test_a_commit_slowed_past_the_old_bound_ends_committed_and_known(db: Database) -> None:
    store = await db.open(settings=StoreSettings(busy_timeout_s=20, statement_timeout_s=20))
    await store.commit(_sent("KR-1", "out-1", "local-1"))
    with WriteLock(db) as lock:
        commit = asyncio.create_task(store.commit(_sent_publishing("KR-2", "m-2")))
        await lock.held_past_the_old_bound(commit)
    ids = await commit
    # Its caller knows the outcome: the publication is its to publish, not the relay's.
    assert await _relayable(store) == []
    await store.release(ids)
    assert await _relayable(store) == ["m-2"]
    await store.commit(_sent("KR-3", "out-3", "local-3"))
    assert await store.verify_audit_chain() == 3


async def test_a_commit_past_the_driver_timeout_fails_and_commits_nothing(
    db: Database,
) -> None:
    store = await db.open(settings=StoreSettings(busy_timeout_s=0.3, statement_timeout_s=0.3))
    await store.commit(_sent("KR-1", "out-1", "local-1"))
    timed_out = r"database is locked|statement timeout"  # SQLite's, PostgreSQL's
    with WriteLock(db), pytest.raises(StoreUnavailable, match=timed_out):
        await store.commit(_sent_publishing("KR-2", "m-2"))
    assert db.rows("SELECT count(*) FROM outbox") == [(0,)]
    facts = await store.facts(FactsQuery(certificates=(("exporter", "KR-2"),)))
    assert facts.certificates == {}
    await store.commit(_sent_publishing("KR-3", "m-3"))
    assert await store.verify_audit_chain() == 2


class StalledHeaders(Mapping[str, str]):
    """Headers whose reading, on the store thread mid-transaction, waits for the test."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.go_on = threading.Event()

    def __getitem__(self, key: str) -> str:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        self.reached.set()
        self.go_on.wait(10)
        return iter(())

    def __len__(self) -> int:
        return 0


async def test_a_cancelled_commit_is_seen_through_and_its_publications_relayed(
    db: Database,
) -> None:
    # A commit can be cancelled midway only on the store thread: on the event loop
    # (SQLite's default) nothing runs beside it, so it is here kept off the loop.
    store = await db.open(settings=StoreSettings(sqlite_commit_on_loop=False))
    await store.commit(_sent("KR-1", "out-1", "local-1"))
    stalled = StalledHeaders()
    unit = _sent("KR-2", "out-2", "local-2")
    unit.publications = [Publication(PARTNER, b"token-m-2", "m-2", "coo", headers=stalled)]
    commit = asyncio.create_task(store.commit(unit))
    assert await asyncio.to_thread(stalled.reached.wait, 10), "the commit never started"
    commit.cancel()  # e.g. a drain that gave up on the batch, mid-transaction
    stalled.go_on.set()
    with pytest.raises(asyncio.CancelledError):
        await commit
    # It committed; nobody holds its publication, so the relay takes it.
    assert await _relayable(store) == ["m-2"]
    facts = await store.facts(FactsQuery(certificates=(("exporter", "KR-2"),)))
    assert set(facts.certificates) == {("exporter", "KR-2")}
    await store.commit(_sent("KR-3", "out-3", "local-3"))
    assert await store.verify_audit_chain() == 3


async def test_a_sqlite_batch_commits_on_the_loop_and_another_writers_lock_sends_it_to_the_thread(
    tmp_path: Path,
) -> None:
    """The loop stays free while another connection holds SQLite's write lock: the commit
    that finds it waits on the store thread, and ends committed once the lock goes."""
    async with database("sqlite", tmp_path) as db:
        store = await db.open(settings=StoreSettings(busy_timeout_s=20))
        ran_on: list[str] = []
        on_the_thread = threading.Event()

        def decide(facts: object) -> tuple[None, UnitOfWork]:
            ran_on.append(threading.current_thread().name)
            if threading.current_thread() is not threading.main_thread():
                on_the_thread.set()
            return None, _sent_publishing(f"KR-{len(ran_on)}", f"m-{len(ran_on)}")

        await store.commit(_sent("KR-0", "out-0", "local-0"))  # the connection is open
        await store.decide(FactsQuery(), decide)
        assert ran_on == [threading.main_thread().name]
        with WriteLock(db):
            commit = asyncio.create_task(store.decide(FactsQuery(), decide))
            assert await asyncio.to_thread(on_the_thread.wait, 10), ran_on
            # Tried on the loop, found the lock, went to the thread and waits there, while
            # the loop runs this test.
            assert ran_on[1:] == [threading.main_thread().name, "store_0"], ran_on
            assert not commit.done()
        await commit
        assert db.rows("SELECT count(*) FROM outbox") == [(2,)]
        assert await store.verify_audit_chain() == 3


async def test_a_sqlite_batch_waits_for_a_call_already_on_the_store_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop never uses the connection while the thread does: a batch that comes while
    a call runs there goes to the thread, after it."""
    async with database("sqlite", tmp_path) as db:
        store = await db.open()
        await store.commit(_sent("KR-0", "out-0", "local-0"))  # the connection is open
        reached, go_on = threading.Event(), threading.Event()
        reading = read_facts

        def slow_facts(sql: Any, query: FactsQuery) -> Any:
            reached.set()
            go_on.wait(10)
            return reading(sql, query)

        monkeypatch.setattr(store_module, "read_facts", slow_facts)
        ran_on: list[str] = []

        def decide(facts: object) -> tuple[None, UnitOfWork]:
            ran_on.append(threading.current_thread().name)
            return None, _sent_publishing("KR-1", "m-1")

        reads = asyncio.create_task(store.facts(FactsQuery(certificates=(("exporter", "KR-0"),))))
        assert await asyncio.to_thread(reached.wait, 10), "the read never started"
        batch = asyncio.create_task(store.decide(FactsQuery(), decide))
        await asyncio.sleep(0)  # the batch starts while the read holds the thread
        assert ran_on == []  # not run beside the thread's call
        go_on.set()
        await asyncio.gather(reads, batch)
        assert ran_on == ["store_0"]
        assert db.rows("SELECT count(*) FROM outbox") == [(1,)]


async def test_a_commit_refused_as_busy_on_the_loop_is_not_committed_twice(
    tmp_path: Path,
) -> None:
    """SQLAlchemy does not roll back a COMMIT that SQLite refused as busy: the transaction
    stays open on the connection. Retried on the thread inside it, the first attempt's
    rows would commit with the second's. (Busy at COMMIT needs a rollback journal: a
    reader's shared lock holds the writer's exclusive one.)"""
    path = tmp_path / "journal.db"
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 10})
    thread = StoreThread(sqlite_busy_ms=10_000)
    thread.engine = engine
    await thread.run(lambda conn: conn.exec_driver_sql("CREATE TABLE t (n INTEGER)"))
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM t").fetchall()  # a shared lock, held
    attempts: list[str] = []
    on_the_thread = threading.Event()

    def insert(conn: Any) -> None:
        attempts.append(threading.current_thread().name)
        if threading.current_thread() is not threading.main_thread():
            on_the_thread.set()
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")

    write = asyncio.create_task(thread.run(insert, on_loop=True))
    assert await asyncio.to_thread(on_the_thread.wait, 10), attempts
    reader.execute("ROLLBACK")  # the thread's COMMIT, waiting for it, goes through
    reader.close()
    await write
    assert attempts == [threading.main_thread().name, "store_0"]
    count = await thread.run(lambda conn: conn.exec_driver_sql("SELECT count(*) FROM t").scalar())
    assert count == 1
    await thread.close()
    engine.dispose()


async def test_a_call_after_close_is_store_unavailable(store: SqlStore) -> None:
    await store.close()
    with pytest.raises(StoreUnavailable, match="closed"):
        await store.commit(_unit("m-1"))


async def test_a_store_path_through_a_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    store = SqlStore(f"sqlite:///{tmp_path / 'file' / 'node.db'}", clock=ManualClock(T0))
    with pytest.raises(StoreUnavailable, match=re.escape(f"File exists: '{tmp_path / 'file'}'")):
        await store.open()


async def test_a_malformed_postgresql_url_is_a_config_error() -> None:
    url = "postgresql+psycopg://node@127.0.0.1:five/eodes"
    with pytest.raises(ConfigError, match=r"store url .*five.* cannot be used"):
        await SqlStore(url, clock=ManualClock(T0)).open()


async def test_connecting_to_a_server_that_never_answers_ends_at_the_connect_timeout() -> None:
    pytest.importorskip("psycopg")
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        port = silent.getsockname()[1]
        store = SqlStore(
            f"postgresql+psycopg://postgres@127.0.0.1:{port}/eodes",
            clock=ManualClock(T0),
            settings=StoreSettings(connect_timeout_s=2),
        )
        began = time.monotonic()
        with pytest.raises(StoreUnavailable, match="timeout"):
            await asyncio.wait_for(store.open(), 20)  # the test's guard, not the store's
        assert time.monotonic() - began < 8


async def test_a_driver_error_on_the_hot_path_is_store_unavailable_until_its_cause_goes(
    db: Database, store: SqlStore
) -> None:
    await store.commit(_unit("m-1"))  # the store now holds a connection
    held = db.server_pids()
    db.alter("ALTER TABLE outbox RENAME TO outbox_away")
    failing = UnitOfWork(inbound=[_received("in-1", None)], publications=_unit("m-2").publications)
    with pytest.raises(StoreUnavailable, match="outbox") as failed:
        await store.commit(failing)
    # Raised by the driver under the hand-written statements, not by SQLAlchemy.
    cause = failed.value.__cause__
    assert type(cause).__module__.split(".")[0] in {"sqlite3", "psycopg"}
    assert type(cause).__name__ in str(failed.value)
    db.alter("ALTER TABLE outbox_away RENAME TO outbox")
    ids = await store.commit(_unit("m-3"))
    if db.backend == "postgresql":
        # The connection that failed was dropped, not handed back for reuse.
        assert len(held) == 1
        assert db.server_pids() - held
    await store.release(ids)
    assert await _relayable(store) == ["m-3"]
    # The failed batch left nothing behind.
    assert (await store.facts(FactsQuery(sender="CN", message_ids=("in-1",)))).priors == {}


async def test_a_lost_database_connection_is_replaced(db: Database, store: SqlStore) -> None:
    if db.backend != "postgresql":
        pytest.skip("only a server connection can be lost")
    await store.commit(_sent("KR-1", "out-1", "local-1"))
    assert db.terminate_connections() == 1
    query = FactsQuery(outbound_ids=("out-1",))
    with pytest.raises(StoreUnavailable):
        await store.facts(query)
    assert (await store.facts(query)).outbound["out-1"].certificate_number == "KR-1"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs, mounted for this test and always unmounted."""
    mount, umount = shutil.which("mount"), shutil.which("umount")
    if os.geteuid() != 0 or mount is None or umount is None:
        pytest.skip("filling a disk for real needs root to mount a small tmpfs")
    where = tmp_path / "small"
    where.mkdir()
    mounted = subprocess.run(
        [mount, "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run([umount, str(where)], check=True)


def _fill(disk: Path) -> Path:
    """A ballast file over all the free space; returns it."""
    ballast = disk / "ballast"
    with ballast.open("wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError:
            pass
    free = os.statvfs(disk)
    assert free.f_bavail * free.f_frsize < 65536, "the disk is not full"
    return ballast


async def test_a_full_disk_is_store_unavailable_and_loses_nothing(small_disk: Path) -> None:
    store = SqlStore(f"sqlite:///{small_disk / 'node.db'}", clock=ManualClock(T0))
    await store.open()
    try:
        kept = await store.commit(_sent_publishing("KR-1", "m-1"))
        await store.mark_published(kept)
        ballast = _fill(small_disk)
        big = _sent_publishing("KR-2", "m-2")
        big.publications = [Publication(PARTNER, os.urandom(256 * 1024), "m-2", "coo")]
        with pytest.raises(StoreUnavailable, match="full"):
            await store.commit(big)
        ballast.unlink()
        ids = await store.commit(big)
        await store.release(ids)
        assert await _relayable(store) == ["m-2"]
        await store.flush_published()  # the mark of m-1, through the sync switch
        facts = await store.facts(
            FactsQuery(certificates=(("exporter", "KR-1"), ("exporter", "KR-2")))
        )
        assert len(facts.certificates) == 2
        assert await store.verify_audit_chain() == 2
    finally:
        await store.close()
