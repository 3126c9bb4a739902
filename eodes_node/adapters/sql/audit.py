"""The certificate history as evidence: hash-chained rows, their check, and the report.

Each history row's hash covers the previous row's, so editing, deleting or reordering
history breaks the chain from that row on; ``verify_chain`` says where. A prune drops
rows on purpose and records the hash the next kept row chains onto (``prune``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import and_, func, select
from sqlalchemy.engine import Connection

from eodes_node.adapters.sql.schema import (
    audit_links,
    certificates,
    history,
    inbound,
    outbound,
    prune_log,
)
from eodes_node.adapters.sql.statements import Sql
from eodes_node.core.decide import Transition
from eodes_node.core.state import Event, Role, State
from eodes_node.errors import AuditTrailBroken
from eodes_node.ports import CertificateReport, HistoryLine

GENESIS = "0" * 64


def chain(previous: str, t: Transition, at: float) -> str:
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


def last_chain(sql: Sql) -> str:
    """The hash the next history row chains onto, read by id from the last row.

    Read in the transaction that appends, never kept in memory: a head kept beside the
    database goes stale as soon as one commit ends unlike its caller believes. The
    append comes after the unit's first write, which holds SQLite's write lock, and one
    node writes a store at a time (``files.StoreLock``).
    """
    rows = sql.rows("SELECT chain FROM certificate_history ORDER BY id DESC LIMIT 1")
    return str(rows[0][0]) if rows else GENESIS


def write_history(sql: Sql, transitions: Sequence[Transition], at: float) -> None:
    """Append the transitions to the history, chained onto its last row."""
    if not transitions:
        return
    head = last_chain(sql)
    rows = []
    for t in transitions:
        head = chain(head, t, at)
        rows.append(
            {
                "role": t.role.value,
                "number": t.number,
                "at": at,
                "event": t.event.value,
                "before": t.before.value if t.before else None,
                "after": t.after.value,
                "message_id": t.message_id,
                "chain": head,
            }
        )
    sql.run_many(
        'INSERT INTO certificate_history (role, number, at, event, "before", "after", '
        "message_id, chain) VALUES (:role, :number, :at, :event, :before, :after, "
        ":message_id, :chain)",
        rows,
    )


def verify_chain(conn: Connection) -> int:
    """Recompute the chain from genesis; returns the rows checked or raises. Where rows
    were pruned, the next kept row chains onto the hash recorded for it in
    ``audit_links``, but only where a prune can have dropped its predecessors: so hiding
    a deletion takes a forged ``prune_log`` row as well as a link."""
    linked = conn.execute(select(audit_links.c.history_id, audit_links.c.previous_chain))
    links = {int(row_id): str(chain) for row_id, chain in linked}
    cutoffs = conn.execute(select(func.max(prune_log.c.before))).scalar()
    head, count = GENESIS, 0
    previous: tuple[int, float] | None = None
    for h in conn.execute(select(history).order_by(history.c.id)):
        if h.id in links:
            if not _pruned_before(h.id, previous, cutoffs):
                raise AuditTrailBroken(
                    f"audit chain broken at history row {h.id}: its link to pruned rows "
                    "matches no prune"
                )
            head = links[h.id]
        previous = (int(h.id), float(h.at))
        t = Transition(
            h.number,
            Role(h.role),
            State(h.before) if h.before else None,
            State(h.after),
            Event(h.event),
            h.message_id,
        )
        head = chain(head, t, h.at)
        if head != h.chain:
            raise AuditTrailBroken(f"audit chain broken at history row {h.id}")
        count += 1
    return count


def _pruned_before(
    row_id: int, previous: tuple[int, float] | None, latest_cutoff: float | None
) -> bool:
    """Whether rows right before ``row_id`` can have been pruned: some row is missing
    between it and the kept row before it (``previous``: id and time), and a prune's
    cut-off lies after that kept row (history is appended in time order, so the dropped
    rows were no older than it, and a prune drops only rows older than its cut-off)."""
    if latest_cutoff is None:
        return False
    if previous is None:
        return row_id > 1
    previous_id, previous_at = previous
    return row_id > previous_id + 1 and previous_at < float(latest_cutoff)


def report(conn: Connection, number: str) -> list[CertificateReport]:
    """A certificate's state, history and messages, once per role we hold it in."""
    reports = []
    for cert in conn.execute(select(certificates).where(certificates.c.number == number)):
        lines = _history(conn, number, cert.role)
        messages = _messages(conn, number, {line.message_id for line in lines})
        reports.append(
            CertificateReport(
                cert.number, cert.role, cert.state, cert.coo_message_id, lines, messages
            )
        )
    return reports


def _history(conn: Connection, number: str, role: str) -> list[HistoryLine]:
    return [
        HistoryLine(datetime.fromtimestamp(h.at, UTC), h.event, h.before, h.after, h.message_id)
        for h in conn.execute(
            select(history)
            .where(and_(history.c.number == number, history.c.role == role))
            .order_by(history.c.id)
        )
    ]


def _messages(
    conn: Connection, number: str, in_history: set[str]
) -> list[tuple[str, str, str, str, int]]:
    """Sent messages, then received ones; a receipt only if it moved the certificate."""
    sent = [
        ("out", r.kind, r.message_id, r.status, r.attempts)
        for r in conn.execute(
            select(outbound)
            .where(outbound.c.certificate_number == number)
            .order_by(outbound.c.created_at)
        )
    ]
    received = [
        ("in", r.kind, r.message_id, r.status, 1)
        for r in conn.execute(
            select(inbound)
            .where(inbound.c.certificate_number == number)
            .order_by(inbound.c.received_at)
        )
        if r.message_id in in_history or r.kind != "receipt"
    ]
    return sent + received
