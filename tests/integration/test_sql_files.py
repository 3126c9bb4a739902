"""The SQLite store's files: one node at a time, private to their owner, and a WAL that
shrinks back once it grew past its bound."""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path

import pytest

from eodes_node.adapters.sql import SqlStore
from eodes_node.adapters.sql.files import StoreInUse
from eodes_node.adapters.sql.schema import StoreSettings
from eodes_node.errors import ConfigError
from eodes_node.ports import PARTNER, Publication, UnitOfWork
from tests.integration.test_sql_store import (
    Database,
    _relayable,
    _sent,
    _unit,
    database,
)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    async with database("sqlite", tmp_path) as opened:
        yield opened


def _mode(path: Path) -> str:
    return f"{stat.S_IMODE(path.stat().st_mode):o}"


async def test_a_second_store_on_one_file_is_refused_until_the_first_closes(
    db: Database,
) -> None:
    first = await db.open()
    second = SqlStore(db.url, clock=db.clock)
    path = db.url[len("sqlite:///") :]
    with pytest.raises(StoreInUse, match=f"store {path} is already in use by pid {os.getpid()}"):
        await second.open()
    assert issubclass(StoreInUse, ConfigError)
    # A reader beside it takes no lock.
    reader = await db.open(exclusive=False)
    assert await reader.verify_audit_chain() == 0
    await first.close()
    again = await db.open()
    await again.commit(_sent("KR-1", "out-1", "local-1"))


async def test_the_store_files_are_private_to_their_owner(db: Database, tmp_path: Path) -> None:
    store = await db.open()
    await store.commit(_sent("KR-1", "out-1", "local-1"))
    files = [tmp_path / name for name in ("node.db", "node.db-wal", "node.db-shm", "node.db.lock")]
    assert {f.name: _mode(f) for f in files} == {f.name: "600" for f in files}


async def test_an_existing_store_readable_by_others_is_made_private(
    db: Database, tmp_path: Path
) -> None:
    store = await db.open()
    await store.close()
    (tmp_path / "node.db").chmod(0o644)
    await db.open()
    assert _mode(tmp_path / "node.db") == "600"
    assert _mode(tmp_path / "node.db-wal") == "600"


def _bulky(count: int, size: int = 64 * 1024) -> UnitOfWork:
    return UnitOfWork(
        publications=[
            Publication(PARTNER, os.urandom(size), f"bulk-{n}", "coo") for n in range(count)
        ]
    )


async def test_the_wal_is_truncated_by_a_flush_once_past_its_bound(
    db: Database, tmp_path: Path
) -> None:
    store = await db.open(settings=StoreSettings(wal_truncate_mb=0.5))
    wal = tmp_path / "node.db-wal"
    ids = await store.commit(_bulky(16))
    await store.mark_published(ids)
    grown = wal.stat().st_size
    assert grown > 1024 * 1024
    await store.flush_published()
    assert wal.stat().st_size == 0
    # Below the bound it is left alone: SQLite reuses the file rather than regrow it.
    await store.commit(_unit("m-1"))
    small = wal.stat().st_size
    await store.flush_published()
    assert 0 < wal.stat().st_size == small


async def test_a_reader_holding_the_wal_delays_its_truncation_not_the_store(
    db: Database, tmp_path: Path
) -> None:
    store = await db.open(settings=StoreSettings(wal_truncate_mb=0.5, busy_timeout_s=30))
    wal = tmp_path / "node.db-wal"
    await store.commit(_bulky(16))
    with closing(sqlite3.connect(tmp_path / "node.db", isolation_level=None)) as reader:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM outbox").fetchall()  # holds its snapshot
        began = time.monotonic()
        await store.flush_published()
        assert time.monotonic() - began < 5  # not the 30 s busy timeout
        assert wal.stat().st_size > 1024 * 1024
        reader.execute("COMMIT")
    await store.flush_published()
    assert wal.stat().st_size == 0
    assert len(await _relayable(store)) == 0  # all still claimed by their publisher
