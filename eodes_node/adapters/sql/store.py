"""The store ports (``Store``, ``Outbox``, ``Schedule``, ``Audit``) on one SQL database.

SQLite by default, PostgreSQL with the same schema. Every call runs on the store thread
through ``StoreThread``, the one place database errors are translated; the per-batch
statements are hand-written (``facts``, ``commit``), the rare queries SQLAlchemy Core.
Timestamps come from the injected clock, so the node has one notion of now.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence, Sized
from contextlib import suppress
from typing import Any

import orjson
import structlog
from sqlalchemy import and_, select
from sqlalchemy.engine import Connection

from eodes_node.adapters.sql import audit, schedule_reads
from eodes_node.adapters.sql.claims import (
    CLAIM_S,
    Claims,
    claim_relayable,
    release_claims,
    void_claims,
)
from eodes_node.adapters.sql.commit import (
    apply_transitions,
    apply_updates,
    apply_verifications,
    write_inbound,
    write_marks,
    write_outbound,
    write_publications,
)
from eodes_node.adapters.sql.facts import read_facts
from eodes_node.adapters.sql.files import (
    StoreLock,
    create_private,
    sqlite_path,
    truncate_wal,
    wal_bytes,
)
from eodes_node.adapters.sql.leadership import PgLeadership
from eodes_node.adapters.sql.schema import StoreSettings, make_engine, migrate, outbox
from eodes_node.adapters.sql.statements import Sql, StoreThread, map_errors
from eodes_node.core.verification import VerificationFacts
from eodes_node.errors import TransientError
from eodes_node.ports import (
    CertificateReport,
    Clock,
    Decide,
    Decision,
    Due,
    Facts,
    FactsQuery,
    Publication,
    QueuedPublication,
    UnitOfWork,
)

log = structlog.get_logger("eodes_node.store")

# A batch with at most this many keys or rows of each kind (a few messages) may commit on
# SQLite's event loop (``StoreThread``). Batches stay this small while a queue is nearly
# empty, where each batch's two thread wake-ups are much of its latency; a large batch
# means a backlog, where the thread's SQLite work overlapping the loop's broker work is
# worth more: with every batch on the loop, node throughput fell by up to a third.
ON_LOOP_KEYS = 8


def _few(*keys_or_rows: Sized) -> bool:
    """A batch of a few messages: each has one or two keys or rows of each kind."""
    return max(map(len, keys_or_rows)) <= ON_LOOP_KEYS


class SqlStore:
    """``exclusive=False`` opens a SQLite store without its one-node lock, for tools that
    only read beside a running node. On PostgreSQL several instances of a link may share
    the database: ``leadership`` fences every commit, so only the active one writes."""

    def __init__(
        self,
        url: str,
        *,
        clock: Clock,
        settings: StoreSettings | None = None,
        exclusive: bool = True,
        leadership: PgLeadership | None = None,
    ) -> None:
        self.url = url
        self._clock = clock
        self._settings = settings or StoreSettings()
        self._db = sqlite_path(url)
        on_loop = self._db is not None and self._settings.sqlite_commit_on_loop
        busy_ms = round(self._settings.busy_timeout_s * 1000)  # what make_engine gives SQLite
        self._thread = StoreThread(sqlite_busy_ms=busy_ms if on_loop else None)
        self._claims = Claims()
        self._lock = StoreLock(self._db) if exclusive and self._db else None
        self._leadership = leadership
        self.owner = uuid.uuid4().hex  # this instance, in the outbox rows it holds

    async def open(self) -> None:
        """Take the store (SQLite: refused with ``StoreInUse`` while another process has
        it), create it if need be and bring its schema up to date."""
        engine = make_engine(self.url, self._settings)
        try:
            with map_errors():
                self._take_files()
            self._thread.engine = engine
            await self._thread.run(migrate)
            if self._lock is not None:
                # The one node of this SQLite store: claims left by an earlier run are void.
                await self._thread.run(lambda conn: void_claims(Sql(conn)))
        except BaseException:
            await self.close()
            engine.dispose()
            raise

    def _take_files(self) -> None:
        if self._db is None:
            return
        self._db.parent.mkdir(parents=True, exist_ok=True)
        if self._lock is not None:
            self._lock.acquire()  # before touching the files of a store in use
        create_private(self._db, tighten=self._lock is not None)

    async def close(self) -> None:
        """Free the outbox rows we hold, so another instance relays them at once."""
        if self._thread.engine is not None:
            with suppress(TransientError):
                await self._thread.run(lambda conn: void_claims(Sql(conn), self.owner))
        try:
            await self._thread.close()
        finally:
            if self._lock is not None:
                self._lock.release()

    async def facts(self, query: FactsQuery) -> Facts:
        """Every fact a batch needs, read in one trip to the store thread."""
        return await self._thread.run(lambda conn: read_facts(Sql(conn), query))

    async def commit(self, unit: UnitOfWork) -> list[int]:
        """Apply a batch's effects atomically; returns the outbox ids to publish."""
        few = _few(
            unit.inbound,
            unit.outbound,
            unit.outbound_updates,
            unit.transitions,
            unit.publications,
            unit.verifications,
        )
        _, _, ids = await self._decide(FactsQuery(), lambda _: (None, unit), few)
        return ids

    async def decide(
        self, query: FactsQuery, decide: Decide[Decision]
    ) -> tuple[Decision, UnitOfWork, list[int]]:
        """Facts, decision and commit in one store call (on SQLite, usually on the event
        loop: ``StoreThread``): nothing else of this node's runs between its read and its
        write. On PostgreSQL the transaction stays open while ``decide``
        runs: milliseconds, where a fenced session may idle in one for seconds."""
        few = _few(
            query.message_ids,
            query.certificates,
            query.outbound_ids,
            query.local_keys,
            query.verification_ids,
        )
        return await self._decide(query, decide, few)

    async def _decide(
        self, query: FactsQuery, decide: Decide[Decision], on_loop: bool
    ) -> tuple[Decision, UnitOfWork, list[int]]:
        now = self._clock.now().timestamp()
        marks = self._claims.marked()

        def work(conn: Connection) -> tuple[Decision, UnitOfWork, list[int]]:
            sql = Sql(conn)
            decision, unit = decide(read_facts(sql, query) if query else Facts())
            if not unit:
                return decision, unit, []
            if self._leadership is not None:
                self._leadership.fence(sql)  # before any write: a fenced-out writer writes nothing
            write_inbound(sql, unit.inbound, now)
            write_outbound(sql, unit.outbound, now)
            apply_updates(sql, unit.outbound_updates, now)
            apply_transitions(sql, unit.transitions, now)
            apply_verifications(sql, unit.verifications, now)
            audit.write_history(sql, unit.transitions, now)
            # Marks from earlier batches ride along: one fsync instead of two per batch.
            write_marks(sql, marks)
            return (
                decision,
                unit,
                write_publications(sql, unit.publications, self.owner, now + CLAIM_S),
            )

        def committed(result: tuple[Decision, UnitOfWork, list[int]]) -> None:
            # Before the store runs anything else: no relay sees them free.
            _, unit, ids = result
            self._claims.claim(
                i for i, p in zip(ids, unit.publications, strict=True) if p.bound_to is None
            )

        def abandoned(result: tuple[Decision, UnitOfWork, list[int]]) -> None:
            # Committed after our caller was cancelled: nobody publishes them but the relay.
            if result[1]:
                self._claims.written(marks)
            self._claims.release(result[2])

        result = await self._thread.run(
            work, committed=committed, abandoned=abandoned, on_loop=on_loop
        )
        if result[1]:
            self._claims.written(marks)
        return result

    async def mark_published(self, ids: Sequence[int]) -> None:
        """Remember confirmed publications; the next commit or flush makes it durable.

        Until then the in-memory marks keep them out of relays and re-issues.
        """
        self._claims.mark(ids)

    async def release(self, ids: Sequence[int]) -> None:
        """Publishing these failed: hand them to the relay (any instance's)."""
        self._claims.release(ids)
        if ids:
            await self._thread.run(
                lambda conn: release_claims(Sql(conn), self.owner, ids),
                on_loop=_few(ids),
            )

    async def flush_published(self) -> None:
        """Write the marks waiting in memory; then truncate SQLite's WAL if it grew past
        its bound (a stat per call, a checkpoint only then)."""
        marks = self._claims.marked()
        if marks:
            # WAL without fsync survives a crash of this process, which is the failure
            # the marks guard against; an fsync per batch for them halved the commit
            # budget.
            await self._thread.run(
                lambda conn: write_marks(Sql(conn), marks),
                fsync=False,
                on_loop=_few(marks),
            )
            self._claims.written(marks)
        if self._db is None:
            return
        with map_errors():
            size = wal_bytes(self._db)
        if size > self._settings.wal_truncate_mb * 1024 * 1024:
            busy_s = self._settings.busy_timeout_s
            done = await self._thread.run_bare(lambda conn: truncate_wal(conn, busy_s))
            log.info("wal_truncated" if done else "wal_truncate_deferred", wal_bytes=size)

    async def unpublished(self, limit: int) -> list[QueuedPublication]:
        """Unbound publications not yet confirmed (bound ones travel with their delivery),
        skipping the ones our publishers hold and those another live instance claimed;
        claims what it returns (``claims``)."""
        now = self._clock.now().timestamp()

        def work(conn: Connection) -> list[QueuedPublication]:
            sql = Sql(conn)
            if self._leadership is not None:
                self._leadership.fence(sql)  # a fenced-out instance relays nothing
            # Read in the transaction, on this thread: a flush that drops marks writes
            # them on this thread too, so it cannot slip in between.
            taken = self._claims.taken()
            rows = claim_relayable(sql, self.owner, now, limit, taken)
            return [_queued_row(r) for r in rows]

        return await self._thread.run(work)

    async def bound_unpublished(self, keys: Iterable[str]) -> list[QueuedPublication]:
        """What these deliveries caused and was never confirmed, to go out again with them."""
        wanted = list(set(keys))
        if not wanted:
            return []

        def work(conn: Connection) -> list[QueuedPublication]:
            rows = conn.execute(
                select(outbox)
                .where(and_(outbox.c.published.is_(False), outbox.c.bound_to.in_(wanted)))
                .order_by(outbox.c.id)
            ).all()
            marked = self._claims.marked()
            return [_queued(r) for r in rows if r.id not in marked]

        return await self._thread.run(work)

    async def due(self, now: float, limit: int) -> list[Due]:
        return await self._thread.run(lambda conn: schedule_reads.due(conn, now, limit))

    async def next_due_at(self) -> float | None:
        """The next resend, or the next reply due date of a request we sent."""
        return await self._thread.run(schedule_reads.next_due_at)

    async def overdue(self, now: float, limit: int) -> list[VerificationFacts]:
        """Requests we sent, still unanswered after the end of their reply due day."""
        return await self._thread.run(lambda conn: schedule_reads.overdue(conn, now, limit))

    async def report(self, number: str) -> list[CertificateReport]:
        return await self._thread.run(lambda conn: audit.report(conn, number))

    async def verify_audit_chain(self) -> int:
        """Recompute the history hash chain; returns the rows checked or raises."""
        return await self._thread.run(audit.verify_chain)


def _queued_row(row: tuple[Any, ...]) -> QueuedPublication:
    """A row of ``claims.RELAY_QUERY``."""
    outbox_id, destination, body, message_id, kind, headers, content_type, bound_to = row
    return QueuedPublication(
        outbox_id,
        Publication(
            destination,
            bytes(body),
            message_id,
            kind,
            orjson.loads(headers),
            content_type,
            bound_to,
        ),
    )


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
