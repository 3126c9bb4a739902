"""The SQLite store's files: one node at a time, readable by their owner only, and a WAL
that does not stay at its high-water mark.

A second node on the same file would publish the same outbox twice and fork the audit
chain, so a store takes an exclusive advisory lock (``flock`` on ``<db>.lock``) and holds
it until closed; the kernel drops it when the process dies, so a killed node leaves no
stale lock. The database holds tax ids and signed documents: it is created 0600, and
SQLite gives its -wal and -shm files the database file's mode.

SQLite checkpoints the WAL into the database as it goes, but never shrinks the file: after
a burst, or a long reader that held checkpoints back, it keeps its largest size. Past a
threshold the store truncates it (``PRAGMA wal_checkpoint(TRUNCATE)``).
"""

from __future__ import annotations

import fcntl
import os
import stat
from pathlib import Path

import structlog
from sqlalchemy.engine import Connection

from eodes_node.errors import ConfigError

log = structlog.get_logger("eodes_node.store")

PRIVATE = 0o600
SUFFIXES = ("", "-wal", "-shm")


class StoreInUse(ConfigError):
    """Another process has this SQLite store open."""


def sqlite_path(url: str) -> Path | None:
    """The database file of a ``sqlite:///PATH`` url; None for PostgreSQL or memory."""
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///") :].split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


def create_private(db: Path, *, tighten: bool) -> None:
    """Create the database file 0600 before SQLite does (0644); ``tighten`` also takes
    group and other access away from the files of an existing store."""
    db.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(db, os.O_RDWR | os.O_CREAT, PRIVATE))
    if not tighten:
        return
    for path in (Path(f"{db}{suffix}") for suffix in SUFFIXES):
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            continue
        if mode & 0o077:
            path.chmod(PRIVATE)
            log.warning("store_file_made_private", path=str(path), mode=f"{mode:o}")


class StoreLock:
    """The exclusive lock of one SQLite store, with the holder's pid in the file."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.path = Path(f"{db}.lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, PRIVATE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise StoreInUse(
                f"store {self.db} is already in use{holder}; one node per store "
                f"(lock file {self.path})"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:  # a full disk: the lock holds, only the courtesy is lost
            log.warning("store_lock_pid_not_written", path=str(self.path), error=str(exc))

    def release(self) -> None:
        """Closing the descriptor releases the lock; the file stays (removing it would
        let a waiting opener lock a file a third one no longer sees)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def _holder(fd: int) -> str:
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return f" by pid {text}" if text.isdigit() else ""


def wal_bytes(db: Path) -> int:
    try:
        return os.stat(f"{db}-wal").st_size
    except FileNotFoundError:
        return 0


def truncate_wal(conn: Connection, busy_timeout_s: float) -> bool:
    """Checkpoint the whole WAL and truncate it to zero; False when a reader held it.

    The checkpoint waits for readers through the busy handler: it is switched off for
    it, so a reader delays the truncation instead of the store thread.
    """
    sqlite = conn.connection.driver_connection
    assert sqlite is not None
    sqlite.execute("PRAGMA busy_timeout = 0")
    try:
        busy, _, _ = sqlite.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        sqlite.execute(f"PRAGMA busy_timeout = {round(busy_timeout_s * 1000)}")
    return not busy
