"""The Store port on SQLAlchemy Core: SQLite by default, PostgreSQL with the same schema.

All database work runs on one dedicated thread, which makes this node the single writer
(SQLite's model) and keeps blocking calls off the event loop. Each call has a timeout;
database exceptions become ``StoreUnavailable`` here and nowhere else.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
from sqlalchemy import (
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
    and_,
    create_engine,
    event,
    func,
    insert,
    select,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from eodes_node.core.decide import CertFacts, OutboundFacts, PriorInbound, Transition
from eodes_node.core.messages import Kind, ReceiptEntry
from eodes_node.core.state import Event, Role, State
from eodes_node.errors import AuditTrailBroken, ConfigError, StoreConflict, StoreUnavailable
from eodes_node.ports import (
    CertificateReport,
    Due,
    Facts,
    FactsQuery,
    HistoryLine,
    Publication,
    QueuedPublication,
    UnitOfWork,
)

T = TypeVar("T")
metadata = MetaData()

inbound = Table(
    "inbound_messages",
    metadata,
    Column("sender", String(2), primary_key=True),
    Column("message_id", String(36), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("digest", String(43), nullable=False),
    Column("token", LargeBinary, nullable=False),  # raw signed bytes: provable later
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
    Column("published", Boolean, nullable=False, default=False),
    Column("bound_to", String(120)),
    Index("ix_outbox_pending", "published", "id"),
    Index("ix_outbox_bound", "bound_to"),
)
schema_version = Table("schema_version", metadata, Column("version", Integer, nullable=False))

# One migration history for every backend: index = version reached after it runs.
MIGRATIONS: tuple[Callable[[Connection], None], ...] = (lambda conn: metadata.create_all(conn),)

GENESIS = "0" * 64


class Sql:
    """The per-batch statements, hand-written and run on the driver's cursor.

    SQLAlchemy builds a statement in Python on every call; for a batch's facts that cost
    0.9 ms where the queries themselves take 0.05 ms. Schema, migrations and the rare
    queries stay on SQLAlchemy Core. The text uses ``:name`` parameters; PostgreSQL's
    driver gets them as ``%(name)s``.
    """

    def __init__(self, conn: Connection) -> None:
        self.cursor: Any = conn.connection.cursor()
        self.named = conn.dialect.name != "sqlite"

    def text(self, sql: str) -> str:
        if not self.named:
            return sql
        if sql not in _NAMED:
            _NAMED[sql] = _PARAM.sub(r"%(\1)s", sql.replace("%", "%%"))
        return _NAMED[sql]

    def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        self.cursor.execute(self.text(sql), params or {})
        return list(self.cursor.fetchall())

    def run(self, sql: str, params: dict[str, Any]) -> None:
        self.cursor.execute(self.text(sql), params)

    def run_many(self, sql: str, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            self.cursor.executemany(self.text(sql), rows)

    def rows_in(
        self, head: str, column: str, values: Iterable[Any], params: dict[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        """``head`` ending in WHERE or AND, then ``column IN (...)`` over ``values``."""
        return self.rows(*self._with_in(head, column, values, params))

    def run_in(self, head: str, column: str, values: Iterable[Any], params: dict[str, Any]) -> None:
        self.run(*self._with_in(head, column, values, params))

    @staticmethod
    def _with_in(
        head: str, column: str, values: Iterable[Any], params: dict[str, Any] | None
    ) -> tuple[str, dict[str, Any]]:
        listed = {f"in{i}": v for i, v in enumerate(values)}
        placeholders = ", ".join(f":{name}" for name in listed)
        # Only placeholders are formatted in; every value is bound.
        return f"{head} {column} IN ({placeholders})", {**(params or {}), **listed}

    def insert_returning_id(self, sql: str, params: dict[str, Any]) -> int:
        self.cursor.execute(self.text(sql + " RETURNING id"), params)
        return int(self.cursor.fetchone()[0])


_PARAM = re.compile(r"(?<![:\w]):(\w+)")
_NAMED: dict[str, str] = {}


def _write_marks(sql: Sql, ids: Iterable[int]) -> None:
    if ids:
        sql.run_in("UPDATE outbox SET published = :yes WHERE", "id", sorted(ids), {"yes": True})


def _certificate_states(
    sql: Sql, keys: Iterable[tuple[str, str]]
) -> list[tuple[str, str, str, str]]:
    """(role, number, state, coo_message_id) of these certificates, by primary key.

    One query per role: SQLite scans the whole table for a row-value IN list.
    """
    by_role: dict[str, set[str]] = {}
    for role, number in keys:
        by_role.setdefault(role, set()).add(number)
    found: list[tuple[str, str, str, str]] = []
    for role, numbers in by_role.items():
        found += sql.rows_in(
            "SELECT role, number, state, coo_message_id FROM certificates WHERE role = :role AND",
            "number",
            sorted(numbers),
            {"role": role},
        )
    return found


def _queued(row: Any) -> QueuedPublication:
    return QueuedPublication(
        row.id,
        Publication(
            row.destination,
            row.body,
            row.message_id,
            row.kind,
            orjson.loads(row.headers),
            row.content_type,
            row.bound_to,
        ),
    )


def _chain(previous: str, t: Transition, at: float) -> str:
    text = "|".join(
        (
            previous,
            t.role.value,
            t.number,
            f"{at:.6f}",
            t.event.value,
            t.before.value if t.before else "",
            t.after.value,
            t.message_id,
        )
    )
    return hashlib.sha256(text.encode()).hexdigest()


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite:"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    if url.startswith("postgresql"):
        return create_engine(url, pool_size=2, pool_pre_ping=True)
    raise ConfigError(f"unsupported store url {url!r}: use sqlite:///PATH or postgresql+psycopg://")


class SqlStore:
    def __init__(self, url: str, *, timeout_s: float = 30.0) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._engine: Engine | None = None
        self._conn: Connection | None = None
        self._last_chain = GENESIS
        # Confirmed publications whose mark is not written yet. Removed by value once
        # written: a commit and a flush may both write the same marks, harmlessly.
        self._published_pending: set[int] = set()
        # Unbound publications handed to the caller by `commit` and not yet confirmed or
        # released: the relay must not publish them a second time meanwhile.
        self._claimed: set[int] = set()

    async def _run(self, work: Callable[[Connection], T], *, fsync: bool = True) -> T:
        def in_thread() -> T:
            # One connection, kept by the store thread: checking one out of a pool (and
            # resetting it on return) cost more than the statements themselves.
            assert self._engine is not None
            if self._conn is None:
                self._conn = self._engine.connect()
            sqlite: Any = None
            if not fsync and self._engine.dialect.name == "sqlite":
                sqlite = self._conn.connection.driver_connection
                sqlite.execute("PRAGMA synchronous=NORMAL")
            try:
                with self._conn.begin():
                    return work(self._conn)
            except SQLAlchemyError:
                self._conn.close()
                self._conn = None
                raise
            finally:
                if sqlite is not None and self._conn is not None:
                    sqlite.execute("PRAGMA synchronous=FULL")

        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(
                loop.run_in_executor(self._executor, in_thread), self.timeout_s
            )
        except StoreConflict:
            raise
        except SQLAlchemyError as exc:
            raise StoreUnavailable(f"store: {type(exc).__name__}: {exc}") from exc
        except TimeoutError:
            raise StoreUnavailable(f"store did not answer within {self.timeout_s} s") from None

    async def open(self) -> None:
        if self.url.startswith("sqlite:///"):
            from pathlib import Path

            Path(self.url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        self._engine = make_engine(self.url)

        def migrate(conn: Connection) -> str:
            schema_version.create(conn, checkfirst=True)
            current = conn.execute(select(func.max(schema_version.c.version))).scalar() or 0
            for version in range(current, len(MIGRATIONS)):
                MIGRATIONS[version](conn)
                conn.execute(insert(schema_version).values(version=version + 1))
            last = conn.execute(
                select(history.c.chain).order_by(history.c.id.desc()).limit(1)
            ).scalar()
            return str(last) if last else GENESIS

        self._last_chain = await self._run(migrate)

    async def close(self) -> None:
        if self._engine is not None:
            engine = self._engine

            def dispose() -> None:
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
                engine.dispose()

            await asyncio.get_running_loop().run_in_executor(self._executor, dispose)
            self._engine = None
        self._executor.shutdown(wait=True)

    async def facts(self, query: FactsQuery) -> Facts:
        """Every fact a batch needs, read in one trip to the store thread."""

        def work(conn: Connection) -> Facts:
            sql = Sql(conn)
            facts = Facts()
            if query.message_ids:
                facts.priors = {
                    message_id: PriorInbound(
                        digest,
                        ReceiptEntry.model_validate_json(entry) if entry else None,
                        receipt_id,
                    )
                    for message_id, digest, entry, receipt_id in sql.rows_in(
                        "SELECT message_id, digest, receipt_entry, receipt_id "
                        "FROM inbound_messages WHERE sender = :sender AND",
                        "message_id",
                        set(query.message_ids),
                        {"sender": query.sender},
                    )
                }
            wanted = set(query.certificates)
            if query.outbound_ids:
                facts.outbound = {
                    message_id: OutboundFacts(message_id, Kind(kind), number, status)
                    for message_id, kind, number, status in sql.rows_in(
                        "SELECT message_id, kind, certificate_number, status "
                        "FROM outbound_messages WHERE",
                        "message_id",
                        set(query.outbound_ids),
                    )
                }
                wanted |= {
                    (Role.EXPORTER.value, o.certificate_number)
                    for o in facts.outbound.values()
                    if o.certificate_number
                }
            if wanted:
                facts.certificates = {
                    (role, number): CertFacts(number, Role(role), State(state), coo_message_id)
                    for role, number, state, coo_message_id in _certificate_states(sql, wanted)
                }
            if query.local_keys:
                facts.local_keys = {
                    local_key: (message_id, record_digest or "")
                    for local_key, message_id, record_digest in sql.rows_in(
                        "SELECT local_key, message_id, record_digest FROM outbound_messages WHERE",
                        "local_key",
                        set(query.local_keys),
                    )
                }
            return facts

        return await self._run(work)

    async def tokens(self, ids: Iterable[str]) -> dict[str, bytes]:
        wanted = list(set(ids))
        if not wanted:
            return {}

        def work(conn: Connection) -> dict[str, bytes]:
            rows = conn.execute(
                select(outbound.c.message_id, outbound.c.token).where(
                    outbound.c.message_id.in_(wanted)
                )
            )
            return {r.message_id: bytes(r.token) for r in rows}

        return await self._run(work)

    async def commit(self, unit: UnitOfWork) -> list[int]:
        """Apply a batch's effects atomically; returns the outbox ids to publish."""
        now = time.time()
        marks = set(self._published_pending)

        def work(conn: Connection) -> tuple[list[int], str]:
            sql = Sql(conn)
            sql.run_many(
                "INSERT INTO inbound_messages (sender, message_id, kind, digest, token, status, "
                "code, text, certificate_number, receipt_entry, receipt_id, received_at) "
                "VALUES (:sender, :message_id, :kind, :digest, :token, :status, :code, :text, "
                ":certificate_number, :receipt_entry, :receipt_id, :received_at)",
                [
                    {
                        "sender": r.sender,
                        "message_id": r.message_id,
                        "kind": r.kind.value,
                        "digest": r.digest,
                        "token": r.token,
                        "status": r.status,
                        "code": r.code,
                        "text": r.text,
                        "certificate_number": r.certificate_number,
                        "receipt_entry": r.receipt_entry,
                        "receipt_id": r.receipt_id,
                        "received_at": now,
                    }
                    for r in unit.inbound
                ],
            )
            sql.run_many(
                "INSERT INTO outbound_messages (message_id, kind, certificate_number, "
                "correlation_id, token, local_key, record_digest, status, attempts, "
                "next_attempt_at, created_at, updated_at) VALUES (:message_id, :kind, "
                ":certificate_number, :correlation_id, :token, :local_key, :record_digest, "
                ":status, :attempts, :next_attempt_at, :now, :now)",
                [
                    {
                        "message_id": r.message_id,
                        "kind": r.kind.value,
                        "certificate_number": r.certificate_number,
                        "correlation_id": r.correlation_id,
                        "token": r.token,
                        "local_key": r.local_key,
                        "record_digest": r.record_digest,
                        "status": r.status,
                        "attempts": r.attempts,
                        "next_attempt_at": r.next_attempt_at,
                        "now": now,
                    }
                    for r in unit.outbound
                ],
            )
            self._apply_updates(sql, unit, now)
            self._apply_transitions(sql, unit, now)
            chain = self._last_chain
            history_rows = []
            for t in unit.transitions:
                chain = _chain(chain, t, now)
                history_rows.append(
                    {
                        "role": t.role.value,
                        "number": t.number,
                        "at": now,
                        "event": t.event.value,
                        "before": t.before.value if t.before else None,
                        "after": t.after.value,
                        "message_id": t.message_id,
                        "chain": chain,
                    }
                )
            sql.run_many(
                'INSERT INTO certificate_history (role, number, at, event, "before", "after", '
                "message_id, chain) VALUES (:role, :number, :at, :event, :before, :after, "
                ":message_id, :chain)",
                history_rows,
            )
            # Marks from earlier batches ride along: one fsync instead of two per batch.
            _write_marks(sql, marks)
            ids = [
                sql.insert_returning_id(
                    "INSERT INTO outbox (destination, body, message_id, kind, headers, "
                    "content_type, published, bound_to) VALUES (:destination, :body, "
                    ":message_id, :kind, :headers, :content_type, :published, :bound_to)",
                    {
                        "destination": p.destination,
                        "body": p.body,
                        "message_id": p.message_id,
                        "kind": p.kind,
                        "headers": orjson.dumps(dict(p.headers)).decode(),
                        "content_type": p.content_type,
                        "published": False,
                        "bound_to": p.bound_to,
                    },
                )
                for p in unit.publications
            ]
            # Claimed before this thread runs anything else, so no relay sees them free.
            self._claimed.update(
                i for i, p in zip(ids, unit.publications, strict=True) if p.bound_to is None
            )
            return ids, chain

        ids, chain = await self._run(work)
        self._last_chain = chain
        self._published_pending -= marks
        return ids

    async def mark_published(self, ids: Sequence[int]) -> None:
        """Remember confirmed publications; the next commit or flush makes it durable.

        Until then the in-memory marks keep them out of relays and re-issues.
        """
        # Marked before unclaimed: a concurrent `_taken` always finds the id in one of them.
        self._published_pending.update(ids)
        self._claimed.difference_update(ids)

    async def release(self, ids: Sequence[int]) -> None:
        """Publishing these failed: hand them to the relay."""
        self._claimed.difference_update(ids)

    def _taken(self) -> set[int]:
        """Ids the relay must skip. Read on the store thread after the query: a flush that
        removes marks runs its write on this thread too, so it cannot slip in between."""
        claimed = set(self._claimed)
        return claimed | set(self._published_pending)

    async def flush_published(self) -> None:
        if not self._published_pending:
            return
        marks = set(self._published_pending)
        # WAL without fsync survives a crash of this process, which is the failure the
        # marks guard against; an fsync per batch for them halved the commit budget.
        await self._run(lambda conn: _write_marks(Sql(conn), marks), fsync=False)
        self._published_pending -= marks

    @staticmethod
    def _apply_updates(sql: Sql, unit: UnitOfWork, now: float) -> None:
        # A retry attempt never overrides a receipt that arrived meanwhile.
        sql.run_many(
            "UPDATE outbound_messages SET attempts = :attempts, next_attempt_at = :next, "
            "updated_at = :now WHERE message_id = :id AND status = 'pending'",
            [
                {"id": u.message_id, "attempts": u.attempts, "next": u.next_attempt_at, "now": now}
                for u in unit.outbound_updates
                if u.status == "pending"
            ],
        )
        sql.run_many(
            "UPDATE outbound_messages SET status = :status, receipt_code = :code, "
            "receipt_text = :text, next_attempt_at = NULL, updated_at = :now "
            "WHERE message_id = :id",
            [
                {"id": u.message_id, "status": u.status, "code": u.code, "text": u.text, "now": now}
                for u in unit.outbound_updates
                if u.status != "pending"
            ],
        )

    @staticmethod
    def _apply_transitions(sql: Sql, unit: UnitOfWork, now: float) -> None:
        """Insert new certificates, move known ones; refuse moves from a stale state."""
        created = [t for t in unit.transitions if t.before is None]
        sql.run_many(
            "INSERT INTO certificates (role, number, state, coo_message_id, updated_at) "
            "VALUES (:role, :number, :state, :coo_message_id, :now)",
            [
                {
                    "role": t.role.value,
                    "number": t.number,
                    "state": t.after.value,
                    "coo_message_id": t.coo_message_id or t.message_id,
                    "now": now,
                }
                for t in created
            ],
        )
        expected: dict[tuple[str, str], str] = {}
        final: dict[tuple[str, str], str] = {}
        fresh = {(t.role.value, t.number) for t in created}
        for t in unit.transitions:
            key = (t.role.value, t.number)
            if t.before is None:
                final[key] = t.after.value
                continue
            if key in final:
                if final[key] != t.before.value:
                    raise StoreConflict(f"certificate {t.number}: moves of one batch disagree")
            elif key not in fresh:
                expected[key] = t.before.value
            final[key] = t.after.value
        if expected:
            current = {
                (role, number): state
                for role, number, state, _ in _certificate_states(sql, expected)
            }
            for key, state in expected.items():
                if current.get(key) != state:
                    # Decided on a state that changed meanwhile: retry with fresh facts.
                    raise StoreConflict(f"certificate {key[1]} is no longer {state}")
        inserted = {(t.role.value, t.number): t.after.value for t in created}
        sql.run_many(
            "UPDATE certificates SET state = :state, updated_at = :now "
            "WHERE role = :role AND number = :number",
            [
                {"role": role, "number": number, "state": state, "now": now}
                for (role, number), state in final.items()
                if inserted.get((role, number)) != state
            ],
        )

    async def unpublished(self, limit: int) -> list[QueuedPublication]:
        """Unbound publications not yet confirmed (bound ones travel with their delivery)."""

        def work(conn: Connection) -> list[QueuedPublication]:
            rows = conn.execute(
                select(outbox)
                .where(and_(outbox.c.published.is_(False), outbox.c.bound_to.is_(None)))
                .order_by(outbox.c.id)
                .limit(limit)
            ).all()
            taken = self._taken()
            return [_queued(r) for r in rows if r.id not in taken]

        return await self._run(work)

    async def bound_unpublished(self, keys: Iterable[str]) -> list[QueuedPublication]:
        wanted = list(set(keys))
        if not wanted:
            return []

        def work(conn: Connection) -> list[QueuedPublication]:
            rows = conn.execute(
                select(outbox)
                .where(and_(outbox.c.published.is_(False), outbox.c.bound_to.in_(wanted)))
                .order_by(outbox.c.id)
            ).all()
            marked = set(self._published_pending)
            return [_queued(r) for r in rows if r.id not in marked]

        return await self._run(work)

    async def due(self, now: float, limit: int) -> list[Due]:
        def work(conn: Connection) -> list[Due]:
            rows = conn.execute(
                select(
                    outbound.c.message_id,
                    outbound.c.kind,
                    outbound.c.certificate_number,
                    outbound.c.token,
                    outbound.c.attempts,
                )
                .where(and_(outbound.c.status == "pending", outbound.c.next_attempt_at <= now))
                .order_by(outbound.c.next_attempt_at)
                .limit(limit)
            )
            return [
                Due(r.message_id, Kind(r.kind), r.certificate_number, r.token, r.attempts)
                for r in rows
            ]

        return await self._run(work)

    async def next_due_at(self) -> float | None:
        def work(conn: Connection) -> float | None:
            value = conn.execute(
                select(func.min(outbound.c.next_attempt_at)).where(outbound.c.status == "pending")
            ).scalar()
            return None if value is None else float(value)

        return await self._run(work)

    async def report(self, number: str) -> list[CertificateReport]:
        def work(conn: Connection) -> list[CertificateReport]:
            reports = []
            for cert in conn.execute(select(certificates).where(certificates.c.number == number)):
                lines = [
                    HistoryLine(
                        datetime.fromtimestamp(h.at, UTC), h.event, h.before, h.after, h.message_id
                    )
                    for h in conn.execute(
                        select(history)
                        .where(and_(history.c.number == number, history.c.role == cert.role))
                        .order_by(history.c.id)
                    )
                ]
                ids = {line.message_id for line in lines}
                messages = [
                    ("out", r.kind, r.message_id, r.status, r.attempts)
                    for r in conn.execute(
                        select(outbound)
                        .where(outbound.c.certificate_number == number)
                        .order_by(outbound.c.created_at)
                    )
                ] + [
                    ("in", r.kind, r.message_id, r.status, 1)
                    for r in conn.execute(
                        select(inbound)
                        .where(inbound.c.certificate_number == number)
                        .order_by(inbound.c.received_at)
                    )
                    if r.message_id in ids or r.kind != "receipt"
                ]
                reports.append(
                    CertificateReport(
                        cert.number, cert.role, cert.state, cert.coo_message_id, lines, messages
                    )
                )
            return reports

        return await self._run(work)

    async def verify_audit_chain(self) -> int:
        """Recompute the history hash chain; returns the rows checked or raises."""

        def work(conn: Connection) -> int:
            chain, count = GENESIS, 0
            for h in conn.execute(select(history).order_by(history.c.id)):
                t = Transition(
                    h.number,
                    Role(h.role),
                    State(h.before) if h.before else None,
                    State(h.after),
                    Event(h.event),
                    h.message_id,
                )
                chain = _chain(chain, t, h.at)
                if chain != h.chain:
                    raise AuditTrailBroken(f"audit chain broken at history row {h.id}")
                count += 1
            return count

        return await self._run(work)
