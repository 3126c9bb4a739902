"""Pruning: settled certificates past the retention period leave the store, into an archive.

A certificate is pruned when it and every row about it are older than the cut-off, and
nothing about it is still open (no message awaiting a receipt, no verification request
awaiting an answer). Its signed messages are first appended to a JSON-lines archive, one
line each with the raw token, so they stay provable offline (``eodes-node
verify-archive``); its history rows follow them into the archive.

The history hash chain must still verify afterwards. The kept rows keep their hashes;
where a kept row's predecessor is dropped, the predecessor's hash is recorded beside it
in ``audit_links``, and ``audit.verify_chain`` chains from there. A ``prune_log`` row
records each prune.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import orjson
from sqlalchemy import and_, delete, exists, insert, not_, or_, select
from sqlalchemy.engine import Connection

from eodes_node.adapters.sql.files import PRIVATE
from eodes_node.adapters.sql.report_index import certificate_index
from eodes_node.adapters.sql.schema import (
    audit_links,
    certificates,
    history,
    inbound,
    outbound,
    prune_log,
    verifications,
)

CHUNK = 500  # values per IN list, well under every backend's bound


@dataclass(frozen=True, slots=True)
class Pruned:
    certificates: int
    messages: int
    history_rows: int


def open_archive(path: Path) -> BinaryIO:
    """The archive, opened for appending; created 0600 (it holds tax ids)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE)
    return os.fdopen(fd, "ab")


def prune(conn: Connection, before: float, now: float, archive: BinaryIO | None) -> Pruned:
    """Drop what is settled and older than ``before`` (epoch seconds), archiving it first.

    Runs in the caller's transaction: the archive is written and synced before the
    deletes, so a failed commit leaves lines for rows still in the store (a later prune
    archives them again), never rows dropped without their lines.
    """
    numbers = _prunable(conn, before)
    messages = _messages(conn, numbers, before)
    rows = _history(conn, numbers)
    if archive is not None:
        _archive(archive, messages, rows, now)
    _link_survivors(conn, {r["id"] for r in rows})
    for chunk in _chunks(sorted(numbers)):
        for table, column in (
            (history, history.c.number),
            (certificate_index, certificate_index.c.number),
            (verifications, verifications.c.certificate_number),
            (inbound, inbound.c.certificate_number),
            (outbound, outbound.c.certificate_number),
            (certificates, certificates.c.number),
        ):
            conn.execute(delete(table).where(column.in_(chunk)))
    _drop_old_receipts(conn, before)
    conn.execute(
        insert(prune_log).values(
            pruned_at=now,
            before=before,
            certificates=len(numbers),
            messages=len(messages),
            history_rows=len(rows),
            archive=archive.name if archive is not None else None,
        )
    )
    return Pruned(len(numbers), len(messages), len(rows))


def _prunable(conn: Connection, before: float) -> set[str]:
    """Numbers whose every certificate row is settled, older than ``before``, with no
    newer history, no message awaiting a receipt and no open verification request."""
    c = certificates.c
    newer_history = exists().where(and_(history.c.number == c.number, history.c.at >= before))
    open_message = exists().where(
        and_(outbound.c.certificate_number == c.number, outbound.c.status == "pending")
    )
    open_request = exists().where(
        and_(
            verifications.c.certificate_number == c.number,
            or_(verifications.c.state == "pending", verifications.c.updated_at >= before),
        )
    )
    blocked = or_(c.state == "pending", c.updated_at >= before, newer_history)
    blocked = or_(blocked, open_message, open_request)
    kept = {r[0] for r in conn.execute(select(c.number).where(blocked))}
    old = {r[0] for r in conn.execute(select(c.number).where(not_(blocked)))}
    return old - kept


def _messages(conn: Connection, numbers: set[str], before: float) -> list[dict[str, Any]]:
    """Every signed message about these certificates, and receipts older than ``before``."""
    found: list[dict[str, Any]] = []
    for chunk in _chunks(sorted(numbers)):
        found += _inbound_rows(conn, inbound.c.certificate_number.in_(chunk))
        found += _outbound_rows(conn, outbound.c.certificate_number.in_(chunk))
    found += _inbound_rows(conn, _old_inbound_receipts(before))
    found += _outbound_rows(conn, _old_outbound_receipts(before))
    return found


def _inbound_rows(conn: Connection, where: Any) -> list[dict[str, Any]]:
    i = inbound.c
    query = select(i.sender, i.message_id, i.kind, i.status, i.certificate_number)
    query = query.add_columns(i.received_at, i.token).where(where)
    return [
        {
            "direction": "in",
            "sender": r.sender,
            "message_id": r.message_id,
            "kind": r.kind,
            "status": r.status,
            "certificate_number": r.certificate_number,
            "at": r.received_at,
            "token": bytes(r.token).decode("ascii"),
        }
        for r in conn.execute(query)
    ]


def _outbound_rows(conn: Connection, where: Any) -> list[dict[str, Any]]:
    o = outbound.c
    query = select(o.message_id, o.kind, o.status, o.certificate_number, o.created_at, o.token)
    return [
        {
            "direction": "out",
            "message_id": r.message_id,
            "kind": r.kind,
            "status": r.status,
            "certificate_number": r.certificate_number,
            "at": r.created_at,
            "token": bytes(r.token).decode("ascii"),
        }
        for r in conn.execute(query.where(where))
    ]


def _old_inbound_receipts(before: float) -> Any:
    return and_(inbound.c.certificate_number.is_(None), inbound.c.received_at < before)


def _old_outbound_receipts(before: float) -> Any:
    """Our receipts older than ``before``, unless a kept inbound row still answers with it."""
    answered = select(inbound.c.receipt_id).where(inbound.c.receipt_id.is_not(None))
    return and_(
        outbound.c.certificate_number.is_(None),
        outbound.c.status != "pending",
        outbound.c.updated_at < before,
        outbound.c.message_id.not_in(answered),
    )


def _drop_old_receipts(conn: Connection, before: float) -> None:
    # Inbound first: their receipt ids no longer hold our receipts back.
    conn.execute(delete(inbound).where(_old_inbound_receipts(before)))
    conn.execute(delete(outbound).where(_old_outbound_receipts(before)))


def _history(conn: Connection, numbers: set[str]) -> list[dict[str, Any]]:
    h = history.c
    rows: list[dict[str, Any]] = []
    for chunk in _chunks(sorted(numbers)):
        query = select(history).where(h.number.in_(chunk)).order_by(h.id)
        # Column names may be str subclasses, which orjson refuses as keys.
        rows += [{str(k): v for k, v in r._mapping.items()} for r in conn.execute(query)]
    return sorted(rows, key=lambda r: int(r["id"]))


def _link_survivors(conn: Connection, dropped: set[int]) -> None:
    """Record, for each kept row right after a dropped one, the hash it chains onto."""
    if not dropped:
        return
    linked = {r[0] for r in conn.execute(select(audit_links.c.history_id))}
    previous: tuple[int, str] | None = None
    links = []
    for row_id, chain in conn.execute(select(history.c.id, history.c.chain).order_by(history.c.id)):
        if (
            row_id not in dropped
            and previous is not None
            and previous[0] in dropped
            and row_id not in linked
        ):
            links.append({"history_id": row_id, "previous_chain": previous[1]})
        previous = (row_id, chain)
    if links:
        conn.execute(insert(audit_links), links)
    for chunk in _chunks(sorted(dropped)):
        conn.execute(delete(audit_links).where(audit_links.c.history_id.in_(chunk)))


def _archive(
    archive: BinaryIO,
    messages: Sequence[dict[str, Any]],
    rows: Sequence[dict[str, Any]],
    now: float,
) -> None:
    archived_at = datetime.fromtimestamp(now, UTC).isoformat()
    lines = [{"record": "message", "archived_at": archived_at, **m} for m in messages]
    lines += [{"record": "history", "archived_at": archived_at, **r} for r in rows]
    archive.write(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    archive.flush()
    os.fsync(archive.fileno())


def _chunks(values: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]
