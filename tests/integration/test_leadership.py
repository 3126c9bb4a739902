"""Active/standby on PostgreSQL: two instances of one link on one database, one active;
the standby takes over once the active one's lock session ends (closed, killed, or
silent too long), and a writer fenced out by a takeover writes nothing."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError
from structlog.testing import capture_logs

from eodes_node.adapters.sql import SqlStore, StoreSettings
from eodes_node.adapters.sql.leadership import PgLeadership, fenced_settings
from eodes_node.adapters.sql.schema import make_engine
from eodes_node.core.decide import Transition
from eodes_node.core.state import Event, Role, State
from eodes_node.errors import LeadershipLost
from eodes_node.ports import UnitOfWork
from tests.integration.test_sql_migrations import HEAD
from tests.integration.test_sql_store import Database, database

LINK = "KR:CN:eodes"
POLL_S = 0.2


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    async with database("postgresql", tmp_path) as opened:
        yield opened


@pytest.fixture
async def instances(db: Database) -> AsyncIterator[Callable[[], Awaitable[Instance]]]:
    made: list[Instance] = []

    async def make() -> Instance:
        leadership = PgLeadership(
            db.url, LINK, clock=db.clock, settings=StoreSettings(standby_poll_s=POLL_S)
        )
        store = await db.open(leadership=leadership)
        made.append(Instance(store, leadership))
        return made[-1]

    yield make
    for instance in made:
        await instance.leadership.resign()


class Instance:
    def __init__(self, store: SqlStore, leadership: PgLeadership) -> None:
        self.store, self.leadership = store, leadership


def sent(number: str) -> UnitOfWork:
    return UnitOfWork(
        transitions=[
            Transition(number, Role.EXPORTER, None, State.PENDING, Event.SUBMITTED, f"m-{number}")
        ]
    )


async def takes_over(instance: Instance, within: float) -> float:
    """Poll as a standby does, with a deadline; returns how long the takeover took."""
    began = time.monotonic()
    while not await instance.leadership.try_lead():
        if time.monotonic() - began > within:
            raise AssertionError(f"the standby did not take over within {within} s")
        await asyncio.sleep(POLL_S)
    return time.monotonic() - began


@contextmanager
def inside_a_commit(db: Database) -> Iterator[tuple[Connection, int]]:
    """A store session of the active instance between its fence and its commit, and its
    server process: the lease row stays locked until that session ends."""
    engine = make_engine(db.url, fenced_settings(StoreSettings(standby_poll_s=POLL_S)))
    paused = engine.connect()
    try:
        paused.begin()
        paused.execute(text("UPDATE link_lease SET holder = holder WHERE link = :l"), {"l": LINK})
        yield paused, paused.execute(text("SELECT pg_backend_pid()")).scalar_one()
    finally:
        paused.invalidate()
        engine.dispose()


async def blocked_sending_a_result(db: Database, paused: Connection, pid: int) -> None:
    """Ask for 64 MB and never read it: the sockets' buffers fill and the server process
    ``pid`` blocks writing, inside the transaction."""
    raw = paused.connection.driver_connection
    assert raw is not None
    raw.pgconn.send_query(b"SELECT repeat('x', 1048576) FROM generate_series(1, 64)")
    deadline = time.monotonic() + 10.0
    while waiting_on(db, pid) != "ClientWrite":
        assert time.monotonic() < deadline, "the server never blocked writing to it"
        await asyncio.sleep(0.05)


def waiting_on(db: Database, pid: int) -> str | None:
    """What the server process ``pid`` waits for (``ClientWrite``: the client to read)."""
    rows = db.admin.execute(
        "SELECT wait_event FROM pg_stat_activity WHERE pid = %s", (pid,)
    ).fetchall()
    return rows[0][0] if rows else None


def lock_holders(db: Database) -> list[int]:
    """Server processes holding an advisory lock of the link (the active one's session)."""
    rows = db.admin.execute(
        "SELECT l.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND a.datname = %s",
        (db.name,),
    ).fetchall()
    return [pid for (pid,) in rows]


async def test_one_instance_is_active_and_the_standby_takes_over_when_it_closes(
    db: Database, instances: Callable[[], Awaitable[Instance]]
) -> None:
    first, second = await instances(), await instances()
    assert await first.leadership.try_lead()
    assert not await second.leadership.try_lead()
    assert await first.leadership.holds()
    await first.store.commit(sent("KR-1"))
    with pytest.raises(LeadershipLost, match="not active"):
        await second.store.commit(sent("KR-2"))

    await first.leadership.resign()  # its session ends, as when its process dies
    await takes_over(second, within=5 * POLL_S)
    assert second.leadership.epoch == 2
    await second.store.commit(sent("KR-2"))
    assert db.rows("SELECT number FROM certificates ORDER BY number") == [("KR-1",), ("KR-2",)]


async def test_a_writer_fenced_out_by_a_takeover_writes_nothing_and_learns_it_lost(
    db: Database, instances: Callable[[], Awaitable[Instance]]
) -> None:
    first, second = await instances(), await instances()
    assert await first.leadership.try_lead()
    (holder,) = lock_holders(db)
    db.admin.execute("SELECT pg_terminate_backend(%s, 5000)", (holder,))
    await takes_over(second, within=5 * POLL_S)

    # The first instance has not noticed (paused, say): it still believes it leads.
    assert first.leadership.epoch == 1
    with pytest.raises(LeadershipLost, match=r"another instance took over \(our epoch 1\)"):
        await first.store.commit(sent("KR-9"))
    assert db.rows("SELECT count(*) FROM certificates") == [(0,)]
    assert db.rows("SELECT count(*) FROM certificate_history") == [(0,)]
    assert not await first.leadership.holds()
    await second.store.commit(sent("KR-10"))
    assert db.rows("SELECT number FROM certificates") == [("KR-10",)]


async def test_a_leader_that_stops_answering_loses_the_link_to_the_standby(
    db: Database, instances: Callable[[], Awaitable[Instance]]
) -> None:
    first, second = await instances(), await instances()
    assert await first.leadership.try_lead()
    # No heartbeat from the first any more: the server ends its silent session after
    # SILENT_POLLS polls and a second, and the standby's next poll takes the link.
    took = await takes_over(second, within=10.0)
    assert took >= 3 * POLL_S  # the lock was held until the silence ran out
    with pytest.raises(LeadershipLost):
        await first.store.commit(sent("KR-1"))
    assert db.rows("SELECT count(*) FROM certificates") == [(0,)]


async def test_a_leader_paused_inside_a_commit_does_not_hold_the_takeover(
    db: Database, instances: Callable[[], Awaitable[Instance]]
) -> None:
    """A leader stopped (SIGSTOP) between its fence and its commit keeps the lease row
    locked; the server must end that store session as it ends the silent lock session."""
    first, second = await instances(), await instances()
    assert await first.leadership.try_lead()
    with inside_a_commit(db) as (paused, paused_pid):
        # A heartbeat after the commit began: the lock session falls silent last, so the
        # server ends the paused one before any standby could (and would end it itself).
        assert await first.leadership.holds()
        # Without the idle-in-transaction bound the standby's takeover waits on that row
        # until its statement timeout (30 s) and fails, again and again.
        await takes_over(second, within=10.0)
        assert paused_pid not in [pid for (pid,) in db.rows("SELECT pid FROM pg_stat_activity")]
        with pytest.raises(DBAPIError, match="idle-in-transaction timeout"):
            paused.execute(text("SELECT 1"))


async def test_a_leader_paused_while_reading_a_result_does_not_hold_the_takeover(
    db: Database, instances: Callable[[], Awaitable[Instance]]
) -> None:
    """A leader stopped while the server sends it a large result (a relay's envelopes),
    after its fence: the server waits to write, neither idle in the transaction nor
    cancellable by a statement timeout, and the lease row stays locked until the process
    wakes. The standby, holding the link's lock, ends that session itself."""
    first, second = await instances(), await instances()
    assert await first.leadership.try_lead()
    with inside_a_commit(db) as (paused, paused_pid):
        await blocked_sending_a_result(db, paused, paused_pid)
        deadline = time.monotonic() + 10.0
        await first.leadership.resign()  # its lock session ends, as when it is SIGKILLed
        with capture_logs() as logs:
            await takes_over(second, within=10.0)
        assert second.leadership.epoch == 2
        ended = [e for e in logs if e["event"] == "deposed_writer_ended"]
        assert [(e["pid"], e["ended"]) for e in ended] == [(paused_pid, True)]
        while paused_pid in [pid for (pid,) in db.rows("SELECT pid FROM pg_stat_activity")]:
            assert time.monotonic() < deadline + 10.0, "the paused session was not ended"
            await asyncio.sleep(0.05)
        await second.store.commit(sent("KR-1"))


async def test_a_standby_refused_ending_a_deposed_writer_says_so_and_waits_for_it(
    db: Database, instances: Callable[[], Awaitable[Instance]]
) -> None:
    """Ending another role's session is refused (a superuser's, here, to a plain role): the
    new leader logs it as an error and takes over once that session ends by other means."""
    first = await instances()
    assert await first.leadership.try_lead()
    role, password = f"eodes_standby_{secrets.token_hex(4)}", secrets.token_hex(8)
    db.admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    grants = make_engine(db.url).execution_options(isolation_level="AUTOCOMMIT")
    with grants.connect() as conn:
        conn.execute(text(f"GRANT SELECT, INSERT, UPDATE ON link_lease, outbox TO {role}"))
    url = make_url(db.url).set(username=role, password=password)
    standby = PgLeadership(
        url.render_as_string(hide_password=False),
        LINK,
        clock=db.clock,
        settings=StoreSettings(standby_poll_s=POLL_S),
    )
    try:
        with inside_a_commit(db) as (paused, paused_pid), capture_logs() as logs:
            await blocked_sending_a_result(db, paused, paused_pid)
            await first.leadership.resign()
            taking = asyncio.create_task(standby.try_lead())
            deadline = time.monotonic() + 10.0
            while not [e for e in logs if e["event"] == "deposed_writer_not_ended"]:
                assert time.monotonic() < deadline, "the refusal was not logged"
                await asyncio.sleep(0.05)
            assert not taking.done()  # waiting on the row the deposed writer holds
            db.admin.execute("SELECT pg_terminate_backend(%s)", (paused_pid,))
            assert await asyncio.wait_for(taking, 10.0)
        [refused] = [e for e in logs if e["event"] == "deposed_writer_not_ended"]
        assert (refused["log_level"], refused["pid"]) == ("error", paused_pid)
        assert "superuser" in refused["error"]
        assert standby.epoch == 2
    finally:
        await standby.resign()
        with grants.connect() as conn:
            conn.execute(text(f"DROP OWNED BY {role}"))
        grants.dispose()
        db.admin.execute(f"DROP ROLE {role}")


async def test_instances_opening_an_empty_database_at_once_all_succeed(db: Database) -> None:
    stores = [SqlStore(db.url, clock=db.clock) for _ in range(4)]
    db.opened.extend(stores)
    await asyncio.gather(*(store.open() for store in stores))
    assert db.rows("SELECT version_num FROM alembic_version") == [(HEAD,)]
