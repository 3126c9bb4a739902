"""The ``Schedule`` port's read-only queries: what to resend, what is overdue, and when.

Kept apart from ``store`` so that module holds the store's life cycle, its writes and
the outbox claims; these are plain functions on a ``Connection`` that ``SqlStore`` runs
on its store thread, and they neither write nor claim anything.
"""

from __future__ import annotations

from sqlalchemy import and_, func, select
from sqlalchemy.engine import Connection

from eodes_node.adapters.sql.facts import verification_fact
from eodes_node.adapters.sql.schema import outbound, verifications
from eodes_node.adapters.sql.tokens import unpacked
from eodes_node.core.messages import Kind
from eodes_node.core.verification import VerificationFacts
from eodes_node.ports import Due

# Requests we sent, still waiting for their answer: the overdue scan's rows.
_ASKED_BY_US = and_(verifications.c.role == "importer", verifications.c.state == "pending")


def due(conn: Connection, now: float, limit: int) -> list[Due]:
    """Outbound messages whose next attempt is due by ``now``, earliest first."""
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
        Due(r.message_id, Kind(r.kind), r.certificate_number, unpacked(r.token), r.attempts)
        for r in rows
    ]


def next_due_at(conn: Connection) -> float | None:
    """The next resend, or the next reply due date of a request we sent."""
    resend = conn.execute(
        select(func.min(outbound.c.next_attempt_at)).where(outbound.c.status == "pending")
    ).scalar()
    reply = conn.execute(select(func.min(verifications.c.due_at)).where(_ASKED_BY_US)).scalar()
    times = [float(v) for v in (resend, reply) if v is not None]
    return min(times, default=None)


def overdue(conn: Connection, now: float, limit: int) -> list[VerificationFacts]:
    """Requests we sent, still unanswered after the end of their reply due day."""
    v = verifications.c
    rows = conn.execute(
        select(
            v.request_id,
            v.role,
            v.certificate_number,
            v.request_reference,
            v.reply_due,
            v.state,
        )
        .where(and_(_ASKED_BY_US, v.due_at <= now))
        .order_by(v.due_at)
        .limit(limit)
    )
    return [verification_fact(r) for r in rows]
