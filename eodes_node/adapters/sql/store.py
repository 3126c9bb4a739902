"""The store ports (``Store``, ``Outbox``, ``Schedule``, ``Audit``) on one SQL database.

SQLite by default, PostgreSQL with the same schema. Every call runs on the store thread
through ``StoreThread.run``, the one place database errors are translated; the per-batch
statements are hand-written (``facts``, ``commit``), the rare queries SQLAlchemy Core.
Timestamps come from the injected clock, so the node has one notion of now.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import and_, func, select
from sqlalchemy.engine import Connection

from eodes_node.adapters.sql import audit
from eodes_node.adapters.sql.claims import Claims
from eodes_node.adapters.sql.commit import (
    apply_transitions,
    apply_updates,
    write_inbound,
    write_marks,
    write_outbound,
    write_publications,
)
from eodes_node.adapters.sql.facts import read_facts
from eodes_node.adapters.sql.schema import make_engine, migrate, outbound, outbox
from eodes_node.adapters.sql.statements import Sql, StoreThread
from eodes_node.core.messages import Kind
from eodes_node.ports import (
    CertificateReport,
    Clock,
    Due,
    Facts,
    FactsQuery,
    Publication,
    QueuedPublication,
    UnitOfWork,
)


class SqlStore:
    def __init__(self, url: str, *, clock: Clock, timeout_s: float = 30.0) -> None:
        self.url = url
        self._clock = clock
        self._thread = StoreThread(timeout_s)
        self._claims = Claims()
        self._last_chain = audit.GENESIS  # what the next history row chains onto

    async def open(self) -> None:
        """Create the database if need be and bring its schema up to date."""
        if self.url.startswith("sqlite:///"):
            Path(self.url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        self._thread.engine = make_engine(self.url)

        def migrated(conn: Connection) -> str:
            migrate(conn)
            return audit.chain_head(conn)

        self._last_chain = await self._thread.run(migrated)

    async def close(self) -> None:
        await self._thread.close()

    async def facts(self, query: FactsQuery) -> Facts:
        """Every fact a batch needs, read in one trip to the store thread."""
        return await self._thread.run(lambda conn: read_facts(Sql(conn), query))

    async def commit(self, unit: UnitOfWork) -> list[int]:
        """Apply a batch's effects atomically; returns the outbox ids to publish."""
        now = self._clock.now().timestamp()
        marks = self._claims.marked()

        def work(conn: Connection) -> tuple[list[int], str]:
            sql = Sql(conn)
            write_inbound(sql, unit.inbound, now)
            write_outbound(sql, unit.outbound, now)
            apply_updates(sql, unit.outbound_updates, now)
            apply_transitions(sql, unit.transitions, now)
            head = audit.write_history(sql, self._last_chain, unit.transitions, now)
            # Marks from earlier batches ride along: one fsync instead of two per batch.
            write_marks(sql, marks)
            ids = write_publications(sql, unit.publications)
            # Claimed before this thread runs anything else, so no relay sees them free.
            self._claims.claim(
                i for i, p in zip(ids, unit.publications, strict=True) if p.bound_to is None
            )
            return ids, head

        ids, self._last_chain = await self._thread.run(work)
        self._claims.written(marks)
        return ids

    async def mark_published(self, ids: Sequence[int]) -> None:
        """Remember confirmed publications; the next commit or flush makes it durable.

        Until then the in-memory marks keep them out of relays and re-issues.
        """
        self._claims.mark(ids)

    async def release(self, ids: Sequence[int]) -> None:
        """Publishing these failed: hand them to the relay."""
        self._claims.release(ids)

    async def flush_published(self) -> None:
        marks = self._claims.marked()
        if not marks:
            return
        # WAL without fsync survives a crash of this process, which is the failure the
        # marks guard against; an fsync per batch for them halved the commit budget.
        await self._thread.run(lambda conn: write_marks(Sql(conn), marks), fsync=False)
        self._claims.written(marks)

    async def unpublished(self, limit: int) -> list[QueuedPublication]:
        """Unbound publications not yet confirmed (bound ones travel with their delivery)."""

        def work(conn: Connection) -> list[QueuedPublication]:
            rows = conn.execute(
                select(outbox)
                .where(and_(outbox.c.published.is_(False), outbox.c.bound_to.is_(None)))
                .order_by(outbox.c.id)
                .limit(limit)
            ).all()
            # Read after the query, on this thread: a flush that drops marks writes them
            # on this thread too, so it cannot slip in between.
            taken = self._claims.taken()
            return [_queued(r) for r in rows if r.id not in taken]

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

        return await self._thread.run(work)

    async def next_due_at(self) -> float | None:
        def work(conn: Connection) -> float | None:
            value = conn.execute(
                select(func.min(outbound.c.next_attempt_at)).where(outbound.c.status == "pending")
            ).scalar()
            return None if value is None else float(value)

        return await self._thread.run(work)

    async def report(self, number: str) -> list[CertificateReport]:
        return await self._thread.run(lambda conn: audit.report(conn, number))

    async def verify_audit_chain(self) -> int:
        """Recompute the history hash chain; returns the rows checked or raises."""
        return await self._thread.run(audit.verify_chain)


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
