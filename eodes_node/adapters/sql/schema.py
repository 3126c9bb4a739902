"""The tables, their migrations, and the engine: one schema for SQLite and PostgreSQL.

Schema and migrations stay on SQLAlchemy Core so both backends share them; the per-batch
statements are hand-written elsewhere (``statements``, ``facts``, ``commit``). The
migrations are Alembic revisions (``migrations/versions``), run at every store open.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    func,
    inspect,
    make_url,
    select,
    text,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError

from eodes_node.adapters.sql.urls import masked_url, scrub
from eodes_node.errors import ConfigError

metadata = MetaData()

inbound = Table(
    "inbound_messages",
    metadata,
    Column("sender", String(2), primary_key=True),
    Column("message_id", String(36), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("digest", String(43), nullable=False),
    # The signed bytes, Zstandard-compressed (``tokens``): provable later.
    Column("token", LargeBinary, nullable=False),
    Column("status", String(16), nullable=False),
    Column("code", String(32)),
    Column("text", Text, nullable=False, default=""),
    Column("certificate_number", String(40)),
    Column("receipt_entry", Text),
    Column("receipt_id", String(36)),  # our receipt that answered it (resent on duplicates)
    Column("received_at", Float, nullable=False),
)
outbound = Table(
    "outbound_messages",
    metadata,
    Column("message_id", String(36), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("certificate_number", String(40)),
    Column("correlation_id", String(36)),
    Column("token", LargeBinary, nullable=False),
    Column("local_key", String(200), unique=True),
    Column("record_digest", String(64)),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", Float),
    Column("receipt_code", String(32)),
    Column("receipt_text", Text),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index("ix_outbound_due", "status", "next_attempt_at"),
)
certificates = Table(
    "certificates",
    metadata,
    Column("role", String(16), primary_key=True),
    Column("number", String(40), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("coo_message_id", String(36), nullable=False),
    Column("updated_at", Float, nullable=False),
)
history = Table(
    "certificate_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("role", String(16), nullable=False),
    Column("number", String(40), nullable=False, index=True),
    Column("at", Float, nullable=False),
    Column("event", String(32), nullable=False),
    Column("before", String(16)),
    Column("after", String(16), nullable=False),
    Column("message_id", String(36), nullable=False),
    # Each row's chain hash covers the previous one: editing or deleting history shows.
    Column("chain", String(64), nullable=False),
)
outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("destination", String(200), nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("message_id", String(36), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("headers", Text, nullable=False),
    Column("content_type", String(64), nullable=False),
    # Always false now: a confirmed row is deleted (the signed envelope stays in
    # outbound_messages). Kept for the databases written before.
    Column("published", Boolean, nullable=False, default=False),
    Column("bound_to", String(120)),
    # The store instance whose publisher or relay holds the row, and until when: another
    # instance's relay skips it meanwhile (``store.SqlStore.unpublished``).
    Column("claimed_by", String(32)),
    Column("claimed_until", Float),
    Index("ix_outbox_pending", "published", "id"),
    Index("ix_outbox_bound", "bound_to"),
    # An id is never given twice (revision 0007): a confirmed row is deleted by its id,
    # and a late second delete must not take a newer row.
    sqlite_autoincrement=True,
)
# One row per verification request, on the side that asked (role importer) and the side
# asked (role exporter); the side that asked scans (state, due_at) for overdue requests.
verifications = Table(
    "verification_requests",
    metadata,
    Column("request_id", String(36), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("certificate_number", String(40), nullable=False),
    Column("request_reference", String(128), nullable=False),
    Column("reply_due", String(10), nullable=False),  # ISO date, as the request says
    Column("due_at", Float, nullable=False),  # the end of the due day, UTC
    Column("state", String(16), nullable=False),
    Column("response_id", String(36)),
    Column("result", String(16)),
    Column("updated_at", Float, nullable=False),
    Index("ix_verification_due", "role", "state", "due_at"),
)
# A history row whose predecessor was pruned: the chain value it was computed from, so
# the chain of what is kept still verifies (``prune``).
audit_links = Table(
    "audit_links",
    metadata,
    Column("history_id", Integer, primary_key=True, autoincrement=False),
    Column("previous_chain", String(64), nullable=False),
)
# One row per prune: when, up to which date, how much, and into which archive.
prune_log = Table(
    "prune_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("pruned_at", Float, nullable=False),
    Column("before", Float, nullable=False),
    Column("certificates", Integer, nullable=False),
    Column("messages", Integer, nullable=False),
    Column("history_rows", Integer, nullable=False),
    Column("archive", Text),  # the archive file, or NULL when discarded
)
# One row per link run in active/standby on PostgreSQL: the epoch grows at each takeover,
# and a commit writes only while the epoch is the one its instance took (``leadership``).
link_lease = Table(
    "link_lease",
    metadata,
    Column("link", String(200), primary_key=True),
    Column("epoch", BigInteger, nullable=False),
    Column("holder", String(200), nullable=False),
    Column("taken_at", Float, nullable=False),
)
schema_version = Table("schema_version", metadata, Column("version", Integer, nullable=False))

# The Alembic revision each version of the hand-made migrations before it had reached.
LEGACY_REVISIONS = {1: "0001", 2: "0002", 3: "0003"}
MIGRATIONS = Path(__file__).with_name("migrations")
MIGRATION_LOCK = 0x656F_6465_735F_6D67  # PostgreSQL advisory lock key: "eodes_mg"


def migrate(conn: Connection) -> None:
    """Bring the schema up to Alembic's head, in the caller's transaction, which this
    opens: every revision commits with the others or not at all.

    A store written before Alembic carries ``schema_version`` rows instead of
    ``alembic_version``: it is stamped with the revision its last step matches first, and
    ``schema_version`` is left as it was.
    """
    if conn.dialect.name == "postgresql":
        # Instances started together on an empty database take turns: the second finds
        # the schema at head. Released when this transaction ends.
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
    elif conn.dialect.name == "sqlite":
        # pysqlite opens a transaction only before a write, not before DDL: without this
        # each statement of a revision commits alone, and one stopped midway (a table
        # rebuild, revision 0007) would leave a store that no longer opens.
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn
    logging.getLogger("alembic").setLevel(logging.WARNING)
    current = MigrationContext.configure(conn).get_current_revision()
    if current is None and inspect(conn).has_table(schema_version.name):
        legacy = conn.execute(select(func.max(schema_version.c.version))).scalar() or 0
        if legacy in LEGACY_REVISIONS:
            command.stamp(config, LEGACY_REVISIONS[legacy])
        elif legacy:
            raise ConfigError(f"store schema_version {legacy} is not one this node knows")
    command.upgrade(config, "head")
    # Stores written before confirmed rows were deleted kept them; an index probe when
    # there are none, so no revision of its own.
    conn.execute(delete(outbox).where(outbox.c.published.is_(True)))


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """The driver-side bounds (a running transaction is never abandoned, so these are the
    only ones) and when SQLite's WAL is truncated; the ``[store]`` section's fields."""

    busy_timeout_s: float = 30.0  # SQLite: wait for another connection's lock
    statement_timeout_s: float = 30.0  # PostgreSQL: the server cancels a longer statement
    connect_timeout_s: int = 10  # PostgreSQL: whole seconds, at least 2 (libpq's rule)
    wal_truncate_mb: float = 16.0  # SQLite: checkpoint and truncate a larger WAL
    retention_days: int = 3653  # what `eodes-node prune` must keep (ten years)
    standby_poll_s: float = 2.0  # PostgreSQL: how often a standby tries to take over
    # SQLite: a small batch's transaction runs on the event loop when nothing else waits
    # for the store (``statements.StoreThread``); off, every call goes to the store thread.
    sqlite_commit_on_loop: bool = True
    # PostgreSQL, active/standby: the server ends a store session left idle inside a
    # transaction this long (a paused leader's), whose row locks would hold a takeover.
    idle_in_transaction_s: float | None = None


def make_engine(url: str, settings: StoreSettings | None = None) -> Engine:
    """SQLite in WAL with a full fsync per commit (nothing acked may be lost); PostgreSQL
    with a small pool, since one store thread does all the work."""
    settings = settings or StoreSettings()
    try:
        if url.startswith("sqlite:"):
            engine = create_engine(
                url,
                connect_args={"timeout": settings.busy_timeout_s, "check_same_thread": False},
            )
            event.listen(engine, "connect", _sqlite_pragmas)
            return engine
        if url.startswith("postgresql"):
            return create_engine(
                url, pool_size=2, pool_pre_ping=True, connect_args=_postgres_args(url, settings)
            )
    except (ArgumentError, ValueError, ImportError) as exc:
        shown = masked_url(url)
        raise ConfigError(f"store url {shown!r} cannot be used: {scrub(str(exc))}") from None
    raise ConfigError(
        f"unsupported store url {masked_url(url)!r}: use sqlite:///PATH or postgresql+psycopg://"
    )


def _postgres_args(url: str, settings: StoreSettings) -> dict[str, Any]:
    """libpq's connect timeout and the server's statement timeout, after any ``options``
    the url already carries."""
    given = make_url(url).query.get("options", "")
    options = " ".join(given) if isinstance(given, tuple) else given
    timeout_ms = math.ceil(settings.statement_timeout_s * 1000)
    options = f"{options} -c statement_timeout={timeout_ms}"
    if settings.idle_in_transaction_s is not None:
        idle_ms = math.ceil(settings.idle_in_transaction_s * 1000)
        options += f" -c idle_in_transaction_session_timeout={idle_ms}"
    return {"connect_timeout": max(2, settings.connect_timeout_s), "options": options.strip()}


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
