"""Active/standby on PostgreSQL: one instance of a link writes, the others wait.

Any number of instances of one link may run on one database. The active one holds a
session-level advisory lock on a key derived from the link, on a connection of its own;
PostgreSQL releases it when that session ends (the process died, the network went, or
the server ended a session that stopped answering: ``idle_session_timeout``), and a
standby polling ``pg_try_advisory_lock`` takes over.

A lock alone does not stop a leader that was paused while another took over from
writing once it wakes. So each takeover increments the link's epoch in ``link_lease``,
and every commit, before its first write, updates that row where the epoch is still
ours (``fence``): a writer fenced out gets zero rows, its transaction is refused
(``LeadershipLost``) and nothing it decided is written, acked or published. The update
also orders commits against a takeover: the new leader's epoch increment waits for any
commit in flight, and a commit waiting behind it finds the new epoch. A commit in flight
that cannot end (its process paused) is the deposed leader's: the new leader ends its
session (``_end_deposed_writers``).
"""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import replace

import structlog
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from eodes_node.adapters.sql.claims import void_claims
from eodes_node.adapters.sql.schema import StoreSettings, make_engine
from eodes_node.adapters.sql.statements import Sql, StoreThread
from eodes_node.errors import LeadershipLost, StoreUnavailable
from eodes_node.ports import Clock

log = structlog.get_logger("eodes_node.store")

# A lock session that stops answering this many polls is ended by the server, which
# releases the lock for a standby (a paused or hung leader, a half-open connection).
SILENT_POLLS = 3


def silent_after_s(poll_s: float) -> float:
    """How long a leader may be silent before the server ends its session: a few missed
    polls and a second."""
    return poll_s * SILENT_POLLS + 1.0


def fenced_settings(settings: StoreSettings) -> StoreSettings:
    """The store's settings under active/standby: a store session idle inside a
    transaction (a leader paused mid-commit) is ended as the silent lock session is, so
    its row lock on the lease cannot hold the standby's takeover."""
    return replace(settings, idle_in_transaction_s=silent_after_s(settings.standby_poll_s))


def advisory_key(link: str) -> int:
    """A signed 64-bit key for ``pg_try_advisory_lock``, stable for one link's name."""
    digest = hashlib.sha256(f"eodes-node link {link}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PgLeadership:
    """Implements ``ports.Leadership`` for one link on a PostgreSQL store."""

    def __init__(
        self,
        url: str,
        link: str,
        *,
        clock: Clock,
        settings: StoreSettings | None = None,
    ) -> None:
        self.url = url
        self.link = link
        self.key = advisory_key(link)
        self._clock = clock
        self._settings = settings or StoreSettings()
        self.poll_s = self._settings.standby_poll_s
        self.holder = f"{socket.gethostname()} pid {os.getpid()}"
        self.epoch: int | None = None
        self._thread = StoreThread()

    async def try_lead(self) -> bool:
        """Take the link if no instance holds it; True once we hold it."""
        if self.epoch is not None:
            return True
        if self._thread.engine is None:
            self._thread.engine = make_engine(self.url, self._settings)
        now = self._clock.now().timestamp()
        self.epoch = await self._thread.run(lambda conn: self._take(conn, now))
        if self.epoch is not None:
            log.info("became_active", link=self.link, epoch=self.epoch, holder=self.holder)
        return self.epoch is not None

    def _take(self, conn: Connection, now: float) -> int | None:
        silent_ms = round(silent_after_s(self.poll_s) * 1000)
        conn.execute(text(f"SET idle_session_timeout = {silent_ms}"))
        if not conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": self.key}).scalar():
            return None
        self._end_deposed_writers(conn)
        epoch = conn.execute(
            text(
                "INSERT INTO link_lease (link, epoch, holder, taken_at) "
                "VALUES (:link, 1, :holder, :now) ON CONFLICT (link) DO UPDATE "
                "SET epoch = link_lease.epoch + 1, holder = :holder, taken_at = :now "
                "RETURNING epoch"
            ),
            {"link": self.link, "holder": self.holder, "now": now},
        ).scalar_one()
        # Whoever held outbox rows is gone or fenced out: its relay claims are void.
        void_claims(Sql(conn))
        return int(epoch)

    def _end_deposed_writers(self, conn: Connection) -> None:
        """End the session of any transaction still holding the lease row: we hold the
        link's lock, so its writer is deposed. A leader paused while the server was
        sending it a result (a relay's batch of envelopes, say) is neither idle in its
        transaction nor cancellable by a statement timeout: its row lock would hold the
        takeover until the process woke or died. Ending another session takes the same
        database role (or membership of ``pg_signal_backend``).

        The row's ``xmax`` names the transaction that locked it: ``fence`` is a plain
        UPDATE, and nothing else locks the row (no foreign key, no ``FOR SHARE``), so it is
        never a multixact. That transaction's holder has the exclusive lock on its id."""
        holders = conn.execute(
            text(
                "SELECT l.pid FROM link_lease t JOIN pg_locks l "
                "ON l.locktype = 'transactionid' AND l.transactionid = t.xmax "
                "AND l.mode = 'ExclusiveLock' AND l.granted "
                "WHERE t.link = :link AND l.pid <> pg_backend_pid()"
            ),
            {"link": self.link},
        ).scalars()
        for pid in holders.all():
            try:
                with conn.begin_nested():  # a refusal must not abort the takeover
                    ended = conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
                    log.warning(
                        "deposed_writer_ended", link=self.link, pid=pid, ended=ended.scalar()
                    )
            except DBAPIError as exc:
                # The takeover then waits on the row, as long as that writer stays paused.
                log.error("deposed_writer_not_ended", link=self.link, pid=pid, error=str(exc))

    async def holds(self) -> bool:
        """Whether we still lead: our lock session answers and the epoch is still ours.
        Asking is also the heartbeat that keeps the session from being ended as silent."""
        if self.epoch is None:
            return False
        epoch = self.epoch
        try:
            current = await self._thread.run(
                lambda conn: conn.execute(
                    text("SELECT epoch FROM link_lease WHERE link = :link"), {"link": self.link}
                ).scalar()
            )
        except StoreUnavailable as exc:
            log.error("leadership_lost", link=self.link, epoch=epoch, error=str(exc))
            self.epoch = None
            return False
        if current != epoch:
            log.error("leadership_lost", link=self.link, epoch=epoch, taken_by_epoch=current)
            self.epoch = None
            return False
        return True

    def fence(self, sql: Sql) -> None:
        """In a commit's transaction, before any write: refuse it unless our epoch is
        current."""
        epoch = self.epoch
        if epoch is None:
            raise LeadershipLost(f"link {self.link}: this instance is not active")
        rows = sql.rows(
            "UPDATE link_lease SET epoch = epoch WHERE link = :link AND epoch = :epoch "
            "RETURNING epoch",
            {"link": self.link, "epoch": epoch},
        )
        if not rows:
            raise LeadershipLost(
                f"link {self.link}: another instance took over (our epoch {epoch}); "
                "this one no longer writes"
            )

    async def resign(self) -> None:
        """End the lock session: the lock goes to a standby at its next poll."""
        self.epoch = None
        await self._thread.close()
