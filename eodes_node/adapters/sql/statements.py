"""How every store call reaches the database, and the one place its errors are translated.

Database work runs on one dedicated thread with one kept connection: that makes this
node the single writer (SQLite's model), keeps blocking calls off the event loop, and
saves a pool checkout per call. A call is never abandoned: its caller waits for the
transaction's outcome, even when cancelled, since a transaction that commits behind a
caller's back leaves claims and decisions nobody knows of. The bounds on how long that
takes are the drivers' (SQLite's busy timeout, PostgreSQL's statement and connect
timeouts: ``schema.make_engine``). SQLAlchemy's errors, the drivers' own (raised by the
raw cursor the per-batch statements use) and I/O errors on the store's own files become
``StoreUnavailable`` in ``map_errors`` and nowhere else.

One exception, for SQLite (``[store] sqlite_commit_on_loop``): the transaction of a batch
of a few messages (``store.ON_LOOP_KEYS``) runs on the event loop itself when the thread
is idle, with SQLite's busy handler off, so it either proceeds at once or gives up at
once; one that finds another connection's lock goes to the thread and waits there. Such
a transaction takes a millisecond or two on a local disk, and handing it to a thread and
back cost two thread wake-ups and a GIL hand-off: at 100 certificates a second, about a
tenth of a node's CPU (README, "Where the latency goes").
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

import structlog
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from eodes_node.errors import StoreConflict, StoreUnavailable

T = TypeVar("T")

log = structlog.get_logger("eodes_node.store")

UNIQUE_VIOLATION = "23505"  # PostgreSQL's SQLSTATE
_ALWAYS: tuple[type[Exception], ...] = (SQLAlchemyError, sqlite3.Error, OSError)


def database_errors() -> tuple[type[Exception], ...]:
    """SQLAlchemy's errors, the drivers' and the OS's. psycopg is looked up, not imported:
    while it is not loaded, none of its errors can be raised."""
    psycopg = sys.modules.get("psycopg")
    return _ALWAYS if psycopg is None else (*_ALWAYS, psycopg.Error)


def is_busy(exc: BaseException) -> bool:
    """SQLite found the database locked by another connection (SQLITE_BUSY, with its
    extended codes). Not SQLITE_LOCKED: that one is about our own connection."""
    cause = getattr(exc, "orig", None) or exc
    code = getattr(cause, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF == sqlite3.SQLITE_BUSY


def is_unique_violation(exc: BaseException) -> bool:
    """A key another commit wrote first (a racing receiver, a second writer): SQLite's
    and PostgreSQL's unique and primary-key violations, raw or wrapped by SQLAlchemy."""
    cause = getattr(exc, "orig", None) or exc
    if isinstance(cause, sqlite3.IntegrityError):
        return "UNIQUE constraint failed" in str(cause)
    return getattr(cause, "sqlstate", None) == UNIQUE_VIOLATION


@contextmanager
def map_errors() -> Iterator[None]:
    """The boundary: a unique violation becomes ``StoreConflict`` (the batch is decided
    again on fresh facts, where the key now exists); other database and store-file
    errors become ``StoreUnavailable``, which the pipeline retries; anything else
    escaping a store call is a bug."""
    try:
        yield
    except StoreConflict:
        raise  # a decision to retry with fresh facts, not an outage
    except database_errors() as exc:
        if is_unique_violation(exc):
            raise StoreConflict(f"store: a key was written meanwhile: {exc}") from exc
        raise StoreUnavailable(f"store: {type(exc).__name__}: {exc}") from exc


class _LockedElsewhere(Exception):
    """A transaction on the loop found another connection's lock: the thread waits on it."""


class StoreThread:
    """Runs each unit of work in one transaction on the store thread (or, see the module's
    docstring, a SQLite batch on the event loop)."""

    def __init__(self, *, sqlite_busy_ms: int | None = None) -> None:
        """``sqlite_busy_ms``: the SQLite connection's busy timeout, given when a batch
        may run on the event loop (restored after each such call)."""
        self.engine: Engine | None = None
        self._conn: Connection | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._sqlite_busy_ms = sqlite_busy_ms
        self._on_thread = 0  # calls handed to the thread and not yet back

    async def run(
        self,
        work: Callable[[Connection], T],
        *,
        fsync: bool = True,
        committed: Callable[[T], None] | None = None,
        abandoned: Callable[[T], None] | None = None,
        on_loop: bool = False,
    ) -> T:
        """``work`` in one transaction. ``fsync=False`` relaxes SQLite's sync for it;
        ``committed`` runs once it is durable, before any other work; ``abandoned`` gets
        the result of one that committed after its caller was cancelled. ``on_loop``
        marks a batch's short transaction, which SQLite may run on the event loop."""
        busy_ms = self._sqlite_busy_ms
        if on_loop and busy_ms is not None and self._on_thread == 0 and self._conn is not None:
            with suppress(_LockedElsewhere):
                return self._on_loop(work, fsync, committed, busy_ms)
        return await self._call(self._in_transaction, (work, fsync, committed), abandoned)

    def _on_loop(
        self,
        work: Callable[[Connection], T],
        fsync: bool,
        committed: Callable[[T], None] | None,
        busy_ms: int,
    ) -> T:
        """Run the transaction here, with SQLite's busy handler off; ``_LockedElsewhere``
        when another connection holds the lock, for the thread to wait on it instead.
        Nothing else of this node's can run meanwhile, and the thread is idle: the
        connection is this call's alone."""
        conn = self._conn
        assert conn is not None
        with map_errors():
            sqlite = conn.connection.driver_connection
            assert sqlite is not None
            sqlite.execute("PRAGMA busy_timeout=0")
            try:
                return self._in_transaction(work, fsync, committed)
            except database_errors() as exc:
                if is_busy(exc):
                    raise _LockedElsewhere from None
                raise
            finally:
                self._restore_busy_timeout(conn, busy_ms)

    def _restore_busy_timeout(self, conn: Connection, busy_ms: int) -> None:
        """Back to waiting for other connections' locks; a connection that cannot be set
        back is dropped (the next one is opened with the bound)."""
        if self._conn is not conn:
            return  # dropped meanwhile
        sqlite = conn.connection.driver_connection
        try:
            assert sqlite is not None
            sqlite.execute(f"PRAGMA busy_timeout={busy_ms}")
        except database_errors():
            self._drop()

    async def run_bare(self, work: Callable[[Connection], T]) -> T:
        """``work`` on the kept connection outside any transaction (a WAL checkpoint)."""
        return await self._call(self._on_connection, (work,), None)

    async def close(self) -> None:
        engine, self.engine = self.engine, None
        try:
            if engine is not None:
                await self._call(self._dispose, (engine,), None)
        finally:
            # Every call waits for its outcome, so the thread is idle by now.
            self._executor.shutdown(wait=True)

    async def _call(
        self, fn: Callable[..., T], args: tuple[Any, ...], abandoned: Callable[[T], None] | None
    ) -> T:
        with map_errors():
            try:
                future = self._executor.submit(fn, *args)
            except RuntimeError:  # the executor is shut down
                raise StoreUnavailable("store is closed") from None
            self._on_thread += 1
            try:
                return await _outcome(future, abandoned)
            finally:
                self._on_thread -= 1

    def _in_transaction(
        self,
        work: Callable[[Connection], T],
        fsync: bool,
        committed: Callable[[T], None] | None,
    ) -> T:
        def transaction(conn: Connection) -> T:
            with _sync_relaxed(conn, relaxed=not fsync), conn.begin():
                result = work(conn)
            if committed is not None:
                committed(result)
            return result

        return self._on_connection(transaction)

    def _on_connection(self, work: Callable[[Connection], T]) -> T:
        try:
            return work(self._connection())
        except database_errors() as exc:
            # The connection may be dead (a restarted PostgreSQL) or left in an unknown
            # state (a failed pragma switch): the next call opens a fresh one. Another
            # connection's lock says nothing about ours, unless it left our transaction
            # open (a COMMIT refused as busy is not rolled back by SQLAlchemy).
            if not is_busy(exc) or self._in_open_transaction():
                self._drop()
            raise

    def _in_open_transaction(self) -> bool:
        conn = self._conn
        raw = conn.connection.driver_connection if conn is not None else None
        return bool(getattr(raw, "in_transaction", True))

    def _connection(self) -> Connection:
        if self._conn is None:
            if self.engine is None:
                raise StoreUnavailable("store is not open")
            self._conn = self.engine.connect()
        return self._conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with suppress(*database_errors()):
                conn.invalidate()
                conn.close()

    def _dispose(self, engine: Engine) -> None:
        self._drop()
        engine.dispose()


async def _outcome(future: Future[T], abandoned: Callable[[T], None] | None) -> T:
    try:
        return await asyncio.wrap_future(future)
    except asyncio.CancelledError:
        if future.cancel():
            raise  # it had not started: nothing happened
        waiter = asyncio.wrap_future(future)
        while not waiter.done():
            # Already running: it commits or fails whatever we do; wait to know which.
            with suppress(asyncio.CancelledError):
                await asyncio.wait({waiter})
        error = waiter.exception()
        log.warning("store_call_outlived_its_caller", failed=str(error) if error else None)
        if error is None and abandoned is not None:
            abandoned(waiter.result())
        raise


@contextmanager
def _sync_relaxed(conn: Connection, *, relaxed: bool) -> Iterator[None]:
    if not relaxed or conn.dialect.name != "sqlite":
        yield
        return
    sqlite = conn.connection.driver_connection
    assert sqlite is not None
    sqlite.execute("PRAGMA synchronous=NORMAL")
    try:
        yield
    finally:
        sqlite.execute("PRAGMA synchronous=FULL")


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
        return self.rows(*self.with_in(head, column, values, params))

    def run_in(self, head: str, column: str, values: Iterable[Any], params: dict[str, Any]) -> None:
        self.run(*self.with_in(head, column, values, params))

    @staticmethod
    def with_in(
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
