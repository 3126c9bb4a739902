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

A prune may run beside the node: it takes the write lock before its first read
(``hold_writers``), so nothing is written between deciding what goes and deleting it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import orjson
from sqlalchemy import and_, delete, exists, insert, not_, or_, select
from sqlalchemy.engine import Connection, Engine

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
from eodes_node.adapters.sql.tokens import unpacked
from eodes_node.errors import ConfigError

CHUNK = 500  # values per IN list, well under every backend's bound


@dataclass(frozen=True, slots=True)
class Pruned:
    certificates: int
    messages: int
    history_rows: int


class ArchiveNotPrivate(ConfigError):
    """An existing archive that group or others may read: it holds tax ids."""


def open_archive(path: Path) -> BinaryIO:
    """The archive, opened for appending; created 0600 (it holds tax ids), and its new
    directory entries synced, so lines synced into a new file survive a power cut.
    An existing archive open to group or others is refused, not appended to."""
    _make_dirs(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, PRIVATE)
    except FileExistsError:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        if mode & 0o077:
            os.close(fd)
            raise ArchiveNotPrivate(
                f"archive {path} has mode {mode:04o}, open to group/others; "
                f"chmod 600 it before appending"
            ) from None
    else:
        _fsync_dir(path.parent)
    return os.fdopen(fd, "ab")


def _make_dirs(directory: Path) -> None:
    """Create ``directory`` and its missing parents, syncing each new entry's parent."""
    if directory.is_dir():
        return
    _make_dirs(directory.parent)
    try:
        directory.mkdir()
    except FileExistsError:
        return
    _fsync_dir(directory.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# Every table a prune reads its decision from or deletes from.
WRITTEN = (certificates, history, inbound, outbound, verifications, certificate_index, audit_links)


def prune_store(engine: Engine, before: float, now: float, archive: BinaryIO | None) -> Pruned:
    """One prune in a transaction of its own that holds off writers from its first read
    to its commit: a row written meanwhile would be deleted without being archived."""
    with engine.connect() as conn, conn.begin():
        hold_writers(conn)
        return prune(conn, before, now, archive)


def hold_writers(conn: Connection) -> None:
    """Take the write lock now, as the transaction's first statement, not at the first
    delete. SQLite: ``BEGIN IMMEDIATE`` (pysqlite would begin only before the first
    write). PostgreSQL: the tables locked against writes (readers go on); a lock on the
    certificate rows would not stop a new message or request about them."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    elif conn.dialect.name == "postgresql":
        tables = ", ".join(table.name for table in WRITTEN)
        conn.exec_driver_sql(f"LOCK TABLE {tables} IN EXCLUSIVE MODE")


def prune(conn: Connection, before: float, now: float, archive: BinaryIO | None) -> Pruned:
    """Drop what is settled and older than ``before`` (epoch seconds), archiving it first.

    Runs in the caller's transaction, which must hold off writers (``hold_writers``).
    What is dropped is decided once, before any delete, and exactly that is archived
    and deleted. The archive is written and synced before the deletes, so a failed
    commit leaves lines for rows still in the store (a later prune archives them
    again), never rows dropped without their lines.
    """
    numbers = _prunable(conn, before)
    received = _received(conn, numbers, before)
    sent = _sent(conn, numbers, before, {(m["sender"], m["message_id"]) for m in received})
    messages = received + sent
    rows = _history(conn, numbers)
    if archive is not None:
        _archive(archive, messages, rows, now)
    _link_survivors(conn, {r["id"] for r in rows})
    for chunk in _chunks(sorted(numbers)):
        for table, column in (
            (history, history.c.number),
            (certificate_index, certificate_index.c.number),
            (verifications, verifications.c.certificate_number),
        ):
            conn.execute(delete(table).where(column.in_(chunk)))
    senders: dict[str, list[str]] = {}
    for m in received:
        senders.setdefault(m["sender"], []).append(m["message_id"])
    for sender, ids in senders.items():
        for chunk in _chunks(sorted(ids)):
            i = inbound.c
            conn.execute(delete(inbound).where(and_(i.sender == sender, i.message_id.in_(chunk))))
    for chunk in _chunks(sorted(m["message_id"] for m in sent)):
        conn.execute(delete(outbound).where(outbound.c.message_id.in_(chunk)))
    for chunk in _chunks(sorted(numbers)):
        conn.execute(delete(certificates).where(certificates.c.number.in_(chunk)))
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


def _received(conn: Connection, numbers: set[str], before: float) -> list[dict[str, Any]]:
    """The partner's messages to drop: those about these certificates, and its receipts
    older than ``before``."""
    found: list[dict[str, Any]] = []
    for chunk in _chunks(sorted(numbers)):
        found += _inbound_rows(conn, inbound.c.certificate_number.in_(chunk))
    old_receipts = and_(inbound.c.certificate_number.is_(None), inbound.c.received_at < before)
    return found + _inbound_rows(conn, old_receipts)


def _sent(
    conn: Connection, numbers: set[str], before: float, received: set[tuple[str, str]]
) -> list[dict[str, Any]]:
    """Our messages to drop: those about these certificates, and our receipts older than
    ``before`` that no kept message of the partner's still answers with (a duplicate of
    it gets that receipt again); ``received`` are the partner's messages being dropped."""
    found: list[dict[str, Any]] = []
    for chunk in _chunks(sorted(numbers)):
        found += _outbound_rows(conn, outbound.c.certificate_number.in_(chunk))
    o = outbound.c
    receipts = _outbound_rows(
        conn, and_(o.certificate_number.is_(None), o.status != "pending", o.updated_at < before)
    )
    answering: set[str] = set()
    for chunk in _chunks(sorted(r["message_id"] for r in receipts)):
        query = select(inbound.c.sender, inbound.c.message_id, inbound.c.receipt_id)
        for sender, message_id, receipt_id in conn.execute(
            query.where(inbound.c.receipt_id.in_(chunk))
        ):
            if (sender, message_id) not in received:
                answering.add(receipt_id)
    return found + [r for r in receipts if r["message_id"] not in answering]


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
            "token": unpacked(r.token).decode("ascii"),
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
            "token": unpacked(r.token).decode("ascii"),
        }
        for r in conn.execute(query.where(where))
    ]


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
