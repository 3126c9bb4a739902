"""Schema migrations with Alembic: a store written before them (``schema_version`` 3,
committed as dumps in ``data/``) opens with today's code, on SQLite and PostgreSQL, and
keeps its rows; a new store starts at the head revision."""

from __future__ import annotations

import ast
import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, create_engine

from eodes_node.adapters.sql import report_index, schema
from eodes_node.core.decide import Transition
from eodes_node.core.state import Event, Role, State
from eodes_node.errors import ConfigError
from eodes_node.ports import PARTNER, OutboundUpdate, Publication, UnitOfWork
from tests.integration.test_sql_store import Database, database

DATA = Path(__file__).with_name("data")
VERSIONS = Path(schema.__file__).with_name("migrations") / "versions"
HEAD = "0007"


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with database(request.param, tmp_path) as opened:
        yield opened


def load_schema3(db: Database) -> None:
    """The dump of a store as the code before Alembic wrote it."""
    dump = (DATA / f"store_schema3.{db.backend}.sql").read_text()
    if db.backend == "sqlite":
        with closing(sqlite3.connect(db.url[len("sqlite:///") :])) as conn:
            conn.executescript(dump)
        return
    db.alter(dump)


def tables(db: Database) -> set[str]:
    if db.backend == "sqlite":
        query = "SELECT name FROM sqlite_master WHERE type = 'table'"
    else:
        query = "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
    return {str(name) for (name,) in db.rows(query)}


async def test_a_store_from_before_alembic_is_upgraded_and_keeps_its_rows(db: Database) -> None:
    load_schema3(db)
    assert "audit_links" not in tables(db)
    assert db.rows("SELECT max(version) FROM schema_version") == [(3,)]

    store = await db.open()
    assert {"audit_links", "prune_log", "alembic_version"} <= tables(db)
    assert db.rows("SELECT version_num FROM alembic_version") == [(HEAD,)]
    assert db.rows("SELECT role, number, state FROM certificates ORDER BY number") == [
        ("importer", "CN-OLD-9", "available"),
        ("exporter", "KR-OLD-1", "pending"),
    ]
    assert db.rows("SELECT message_id, local_key FROM outbound_messages") == [("out-1", "local-1")]
    assert await store.verify_audit_chain() == 2
    # The old rows take part in new work: a receipt settles the old pending message.
    await store.commit(
        UnitOfWork(
            outbound_updates=[OutboundUpdate("out-1", "delivered")],
            transitions=[
                Transition(
                    "KR-OLD-1",
                    Role.EXPORTER,
                    State.PENDING,
                    State.DELIVERED,
                    Event.RECEIPT_ACCEPTED,
                    "out-1",
                )
            ],
        )
    )
    assert await store.verify_audit_chain() == 3
    await store.close()
    # Opened again: nothing to do, nothing repeated.
    await db.open()
    assert db.rows("SELECT version_num FROM alembic_version") == [(HEAD,)]
    assert db.rows("SELECT count(*) FROM schema_version") == [(3,)]


async def test_a_new_store_starts_at_the_head_revision(db: Database) -> None:
    await db.open()
    assert db.rows("SELECT version_num FROM alembic_version") == [(HEAD,)]
    assert {"certificates", "certificate_index", "verification_requests", "prune_log"} <= tables(db)


async def test_a_store_of_an_unknown_legacy_version_is_refused(db: Database) -> None:
    load_schema3(db)
    db.alter("INSERT INTO schema_version (version) VALUES (9)")
    with pytest.raises(ConfigError, match="schema_version 9 is not one this node knows"):
        await db.open()


def live_metadata() -> MetaData:
    """Every table the code declares today, in one MetaData."""
    combined = MetaData()
    for source in (schema.metadata, report_index.metadata):
        for table in source.tables.values():
            if table.name != schema.schema_version.name:  # a legacy store's, never created
                table.to_metadata(combined)
    return combined


# Indexes the read side created with SQL of its own (revision 0002), not declared on the
# tables.
RAW_INDEXES = {statement.split()[5] for statement in report_index._CORE_INDEXES}


async def test_a_store_built_by_the_revisions_equals_the_live_tables(db: Database) -> None:
    await db.open()
    engine = create_engine(db.url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(context, live_metadata())
    finally:
        engine.dispose()
    unexplained = [
        change
        for change in diff
        if not (change[0] == "remove_index" and change[1].name in RAW_INDEXES)
    ]
    assert unexplained == []
    assert {change[1].name for change in diff} == RAW_INDEXES


@pytest.mark.parametrize("revision", ["r0001", "r0002", "r0003", "r0004"])
def test_a_revision_writes_its_tables_out_instead_of_importing_todays(revision: str) -> None:
    """A revision that creates today's table objects would create the columns of later
    revisions too, and those revisions would then fail on a new store."""
    (path,) = VERSIONS.glob(f"{revision}_*.py")
    imported = {
        node.module or ""
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom)
    }
    imported |= {
        alias.name
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    assert not {name for name in imported if name.startswith("eodes_node")}


def queue_an_old_outbox_row(db: Database) -> None:
    """Outbox row 7, unpublished, as the code before Alembic wrote it (SQLite)."""
    db.alter(
        "INSERT INTO outbox (id, destination, body, message_id, kind, headers, "
        "content_type, published) "
        "VALUES (7, 'partner', x'00', 'queued-1', 'coo', '{}', 'application/jose', 0)"
    )


async def test_an_upgraded_sqlite_store_keeps_its_outbox_and_never_gives_an_id_twice(
    tmp_path: Path,
) -> None:
    async with database("sqlite", tmp_path) as db:
        load_schema3(db)
        queue_an_old_outbox_row(db)
        store = await db.open()
        [queued] = await store.unpublished(10)
        assert (queued.id, queued.publication.message_id) == (7, "queued-1")
        await store.mark_published([7])
        await store.flush_published()
        assert db.rows("SELECT count(*) FROM outbox") == [(0,)]
        [new] = await store.commit(
            UnitOfWork(publications=[Publication(PARTNER, b"token", "m-2", "coo")])
        )
        assert new == 8


async def test_an_upgrade_that_fails_midway_changes_nothing_and_the_next_open_completes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite commits DDL statement by statement unless a transaction is open: a rebuild
    of the outbox (revision 0007) stopped between creating its new table and dropping the
    old left a table behind that made every later open fail."""
    pragmas = schema._sqlite_pragmas
    denied: list[str] = []

    def outbox_may_not_be_dropped(dbapi_conn: Any, record: Any) -> None:
        pragmas(dbapi_conn, record)

        def authorize(action: int, table: str | None, *_: object) -> int:
            if action == sqlite3.SQLITE_DROP_TABLE and table == "outbox":
                denied.append(table)
                return sqlite3.SQLITE_DENY
            return sqlite3.SQLITE_OK

        dbapi_conn.set_authorizer(authorize)

    async with database("sqlite", tmp_path) as db:
        load_schema3(db)
        queue_an_old_outbox_row(db)
        with monkeypatch.context() as patched:
            patched.setattr(schema, "_sqlite_pragmas", outbox_may_not_be_dropped)
            with pytest.raises(Exception, match="not authorized"):
                await db.open()
        assert denied == ["outbox"], "the upgrade never reached the rebuild"
        assert "alembic_version" not in tables(db)
        assert "_alembic_tmp_outbox" not in tables(db)

        store = await db.open()
        assert db.rows("SELECT version_num FROM alembic_version") == [(HEAD,)]
        [queued] = await store.unpublished(10)
        assert (queued.id, queued.publication.message_id) == (7, "queued-1")
        [outbox_sql] = db.rows("SELECT sql FROM sqlite_master WHERE name = 'outbox'")
        assert "AUTOINCREMENT" in outbox_sql[0]
        indexes = db.rows("SELECT name FROM sqlite_master WHERE tbl_name = 'outbox'")
        assert {"ix_outbox_pending", "ix_outbox_bound"} <= {name for (name,) in indexes}
