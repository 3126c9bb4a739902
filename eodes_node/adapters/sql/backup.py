"""Backup and restore of a SQLite store, as whole files.

A backup is taken with SQLite's online backup API, page by page inside read
transactions, so the node may keep running and writing meanwhile: the copy is the
database as of one commit. It is a single self-contained file (rollback journal, no WAL
beside it), created 0600 because it holds the same tax ids and signed documents as the
store.

A restore needs the node stopped: it takes the store's one-node lock
(``files.StoreLock``), so a running node makes it refuse with ``StoreInUse``. The store
it replaces is not deleted but kept aside, whole, so a restore from the wrong file can
itself be undone: hard-linked aside first, then the restored file renamed over it, so a
crash at any point leaves a store in place.

PostgreSQL stores are backed up with ``pg_dump``/``pg_restore``, which already do this
properly; nothing here tries to imitate them.
"""

from __future__ import annotations

import os
import sqlite3
import time
from contextlib import closing, suppress
from dataclasses import dataclass
from pathlib import Path

from eodes_node.adapters.sql.files import PRIVATE, SUFFIXES, StoreLock
from eodes_node.errors import ConfigError

# A file without these tables is not a store of this node.
REQUIRED_TABLES = frozenset({"certificates", "certificate_history", "outbound_messages"})


class BackupError(ConfigError):
    """A backup cannot be written, or a file given to restore from cannot be used."""


@dataclass(frozen=True, slots=True)
class Copied:
    path: Path
    size: int
    certificates: int


def backup(db: Path, to: Path) -> Copied:
    """Copy the store at ``db`` into the new file ``to`` (0600), online."""
    if not db.is_file():
        raise BackupError(f"store {db} does not exist; nothing to back up")
    if to.exists():
        raise BackupError(f"{to} exists; a backup never overwrites a file")
    try:
        to.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(to, os.O_RDWR | os.O_CREAT | os.O_EXCL, PRIVATE))
        _copy(source=db, target=to, read_only=False)
        _fsync(to)
    except (sqlite3.Error, OSError) as exc:
        to.unlink(missing_ok=True)
        raise BackupError(f"backup of {db} to {to} failed: {exc}") from None
    return Copied(to, to.stat().st_size, _certificate_count(to))


def restore(db: Path, source: Path) -> tuple[Copied, Path | None]:
    """Replace the store at ``db`` with the backup ``source``; the node must be stopped.

    Returns what was restored and where the replaced store was moved (None if there was
    none). Raises ``StoreInUse`` while a node holds the store.
    """
    check_backup(source)
    db.parent.mkdir(parents=True, exist_ok=True)
    lock = StoreLock(db)
    lock.acquire()
    try:
        staged = db.with_name(f"{db.name}.restoring")
        staged.unlink(missing_ok=True)
        try:
            os.close(os.open(staged, os.O_RDWR | os.O_CREAT | os.O_EXCL, PRIVATE))
            _copy(source=source, target=staged, read_only=True)
            _fsync(staged)
            aside = _keep_aside(db)
            os.replace(staged, db)
            _fsync_dir(db.parent)
        except (sqlite3.Error, OSError) as exc:
            staged.unlink(missing_ok=True)
            raise BackupError(f"restore of {db} from {source} failed: {exc}") from None
    finally:
        lock.release()
    return Copied(db, db.stat().st_size, _certificate_count(db)), aside


def check_backup(path: Path) -> None:
    """Refuse a file that is not an intact store of this node, before touching anything."""
    if not path.is_file():
        raise BackupError(f"backup {path} does not exist or is not a file")
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            verdict = conn.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.Error as exc:
        raise BackupError(f"{path} is not a SQLite store: {exc}") from None
    missing = REQUIRED_TABLES - tables
    if missing:
        raise BackupError(f"{path} is not a store of this node: no {', '.join(sorted(missing))}")
    if verdict != "ok":
        raise BackupError(f"{path} is damaged: {verdict}")


def _copy(*, source: Path, target: Path, read_only: bool) -> None:
    """SQLite's backup API from ``source`` into the empty file ``target``; the result is
    left in rollback-journal mode, so it is one file. A live store in WAL mode is read
    through an ordinary connection (a read-only one would need its shared memory file)."""
    name = f"file:{source}?mode=ro" if read_only else str(source)
    with (
        closing(sqlite3.connect(name, uri=read_only)) as src,
        closing(sqlite3.connect(target)) as dst,
    ):
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=DELETE")
        dst.commit()


def _keep_aside(db: Path) -> Path | None:
    """Checkpoint the replaced store into its main file and hard-link it (and any
    leftover WAL) aside, then unlink the live WAL and shared memory, which belong to the
    replaced file, not the restored one. The live store stays in place until the rename
    over it; None when there was no store."""
    if not db.exists():
        for suffix in SUFFIXES[1:]:
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        return None
    # Best effort: a damaged store, the usual reason for a restore, is kept with its WAL.
    with suppress(sqlite3.Error), closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    aside = _unused(db.with_name(f"{db.name}.before-restore-{time.strftime('%Y%m%dT%H%M%S')}"))
    for suffix in SUFFIXES:
        current = Path(f"{db}{suffix}")
        if current.exists():
            os.link(current, f"{aside}{suffix}")
    _fsync_dir(db.parent)
    for suffix in SUFFIXES[1:]:
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    return aside


def _unused(path: Path) -> Path:
    """``path``, or ``path-N`` when a restore in the same second already took it."""
    candidate, n = path, 1
    while any(Path(f"{candidate}{suffix}").exists() for suffix in SUFFIXES):
        candidate, n = path.with_name(f"{path.name}-{n}"), n + 1
    return candidate


def unsettled_before(db: Path, before: float) -> int:
    """Our messages in the store at ``db`` still awaiting a receipt and created before
    ``before`` (epoch seconds): sent again after a restore, the partner refuses them as
    too old before it could recognise them as duplicates. A store too old to have
    these columns is counted as none: the count only warns, the restore is done."""
    query = "SELECT count(*) FROM outbound_messages WHERE status = 'pending' AND created_at < ?"
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            return int(conn.execute(query, (before,)).fetchone()[0])
    except sqlite3.Error:
        return 0


def _certificate_count(path: Path) -> int:
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        return int(conn.execute("SELECT count(*) FROM certificates").fetchone()[0])


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    _fsync(path)
