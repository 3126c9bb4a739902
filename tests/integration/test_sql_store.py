"""The store, on SQLite and on PostgreSQL: a batch's facts, its commit, what the relay may
take from the outbox, and how database faults surface.

PostgreSQL runs where a server answers at ``EODES_TEST_POSTGRES_URL`` (default: the local
one, trust auth); each test gets a database of its own.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from eodes_node.adapters.sql import SqlStore, StoreSettings
from eodes_node.config import StoreSection
from eodes_node.core.decide import Transition
from eodes_node.core.messages import Kind
from eodes_node.core.state import Event, Role, State
from eodes_node.errors import AuditTrailBroken, StoreConflict
from eodes_node.ports import (
    PARTNER,
    FactsQuery,
    InboundRow,
    OutboundRow,
    OutboundUpdate,
    Publication,
    UnitOfWork,
)

POSTGRES = os.environ.get(
    "EODES_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
# Far from the machine's time, so a timestamp taken from the system clock cannot pass.
T0 = datetime(2031, 5, 17, 8, 0, 0, 250_000, tzinfo=UTC)


class ManualClock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at


@dataclass
class Database:
    """One test's database, and a way to act on it behind the store's back."""

    backend: str  # sqlite | postgresql
    url: str
    clock: ManualClock
    admin: Any = None  # a psycopg connection to the server, for PostgreSQL
    name: str = ""
    opened: list[SqlStore] = field(default_factory=list)
    own_pids: set[int] = field(default_factory=set)  # server processes of `alter`, not a store

    async def open(self, **options: Any) -> SqlStore:
        """A store on this database; the same database again after a close, as a restart."""
        store = SqlStore(self.url, clock=self.clock, **options)
        await store.open()
        self.opened.append(store)
        return store

    def rows(self, query: str) -> list[tuple[Any, ...]]:
        """Read the database behind the store's back, from a connection of its own."""
        if self.backend == "sqlite":
            with closing(sqlite3.connect(self.url[len("sqlite:///") :])) as db:
                return db.execute(query).fetchall()
        import psycopg

        with psycopg.connect(self._dsn(), autocommit=True) as db:
            self.own_pids.add(db.info.backend_pid)
            return db.execute(query).fetchall()

    def alter(self, statement: str) -> None:
        """Run DDL on this database from a connection of its own."""
        if self.backend == "sqlite":
            with closing(sqlite3.connect(self.url[len("sqlite:///") :])) as db:
                db.execute(statement)
                db.commit()
            return
        import psycopg

        with psycopg.connect(self._dsn(), autocommit=True) as db:
            self.own_pids.add(db.info.backend_pid)
            db.execute(statement)

    def terminate_connections(self) -> int:
        """Kill every server process serving this database; returns how many were killed."""
        rows = self.admin.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE datname = %s",
            (self.name,),
        ).fetchall()
        return sum(1 for (killed,) in rows if killed)

    def server_pids(self) -> set[int]:
        """The server processes serving the stores on this database (PostgreSQL)."""
        if self.admin is None:
            return set()
        rows = self.admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s", (self.name,)
        ).fetchall()
        return {pid for (pid,) in rows} - self.own_pids

    def _dsn(self) -> str:
        return POSTGRES.rsplit("/", 1)[0] + "/" + self.name


def _postgres_admin() -> Any:
    psycopg = pytest.importorskip("psycopg")
    try:
        return psycopg.connect(POSTGRES, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL at {POSTGRES} ({exc}); set EODES_TEST_POSTGRES_URL")


@asynccontextmanager
async def database(backend: str, tmp_path: Path) -> AsyncIterator[Database]:
    """A fresh database of this backend, dropped (and its stores closed) afterwards."""
    clock = ManualClock(T0)
    if backend == "sqlite":
        db = Database("sqlite", f"sqlite:///{tmp_path / 'node.db'}", clock)
    else:
        admin = _postgres_admin()
        name = "eodes_test_" + secrets.token_hex(6)
        admin.execute(f"CREATE DATABASE {name}")
        url = "postgresql+psycopg://" + POSTGRES.split("://", 1)[1].rsplit("/", 1)[0] + "/" + name
        db = Database("postgresql", url, clock, admin, name)
    try:
        yield db
    finally:
        for store in db.opened:
            await store.close()
        if db.admin is not None:
            db.admin.execute(f"DROP DATABASE {db.name} WITH (FORCE)")
            db.admin.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with database(request.param, tmp_path) as opened:
        yield opened


@pytest.fixture
async def store(db: Database) -> SqlStore:
    return await db.open()


def _unit(*message_ids: str, bound_to: str | None = None) -> UnitOfWork:
    return UnitOfWork(
        publications=[
            Publication(PARTNER, b"token-" + m.encode(), m, "coo", bound_to=bound_to)
            for m in message_ids
        ]
    )


async def _relayable(store: SqlStore) -> list[str]:
    return [q.publication.message_id for q in await store.unpublished(100)]


def _sent(number: str, message_id: str, local_key: str) -> UnitOfWork:
    return UnitOfWork(
        outbound=[
            OutboundRow(message_id, Kind.COO, number, None, b"jws", local_key, "d" * 64, 1, 5.0)
        ],
        transitions=[
            Transition(number, Role.EXPORTER, None, State.PENDING, Event.SUBMITTED, message_id)
        ],
    )


def _received(message_id: str, receipt_id: str | None) -> InboundRow:
    return InboundRow(
        "CN",
        message_id,
        Kind.COO,
        "digest-1",
        b"jws",
        "accepted",
        None,
        "",
        "CN-9",
        None,
        receipt_id,
    )


async def test_a_batch_reads_back_what_earlier_batches_committed(store: SqlStore) -> None:
    await store.commit(_sent("KR-1", "out-1", "local-1"))
    await store.commit(
        UnitOfWork(
            inbound=[_received("in-1", "receipt-1")],
            transitions=[
                Transition("CN-9", Role.IMPORTER, None, State.AVAILABLE, Event.RECEIVED, "in-1")
            ],
        )
    )
    facts = await store.facts(
        FactsQuery(
            sender="CN",
            message_ids=("in-1", "in-unknown"),
            certificates=(("importer", "CN-9"), ("exporter", "CN-9")),
            outbound_ids=("out-1",),
            local_keys=("local-1", "local-unknown"),
        )
    )
    assert facts.priors["in-1"].digest == "digest-1"
    assert facts.priors["in-1"].receipt_id == "receipt-1"
    assert set(facts.priors) == {"in-1"}
    assert facts.outbound["out-1"].certificate_number == "KR-1"
    # The certificate of a message we sent comes along with it.
    assert set(facts.certificates) == {("importer", "CN-9"), ("exporter", "KR-1")}
    assert facts.certificates[("exporter", "KR-1")].state is State.PENDING
    assert facts.local_keys == {"local-1": ("out-1", "d" * 64)}


async def test_a_prior_comes_with_the_signed_receipt_that_answered_it(store: SqlStore) -> None:
    answer = OutboundRow(
        "receipt-1", Kind.RECEIPT, "CN-9", "in-1", b"signed-receipt", None, None, 1, None, "sent"
    )
    await store.commit(
        UnitOfWork(
            inbound=[_received("in-1", "receipt-1"), _received("in-2", None)],
            outbound=[answer],
        )
    )
    facts = await store.facts(FactsQuery(sender="CN", message_ids=("in-1", "in-2")))
    assert facts.priors["in-1"].receipt_token == b"signed-receipt"
    assert facts.priors["in-2"].receipt_token is None
    # Another sender's message of the same id is not a prior.
    assert (await store.facts(FactsQuery(sender="KR", message_ids=("in-1",)))).priors == {}


async def test_attempts_are_counted_by_the_store_and_a_resend_resets_them(
    store: SqlStore,
) -> None:
    """Two instances that each read one attempt and each send once count three, not two;
    an operator's re-send of a failed message starts again at one."""
    await store.commit(_sent("KR-1", "out-1", "local-1"))
    for _ in range(2):  # each from the same stale read: attempts was 1
        await store.commit(
            UnitOfWork(outbound_updates=[OutboundUpdate("out-1", "pending", next_attempt_at=9.0)])
        )
    assert [d.attempts for d in await store.due(10.0, 10)] == [3]
    await store.commit(UnitOfWork(outbound_updates=[OutboundUpdate("out-1", "failed")]))
    await store.commit(
        UnitOfWork(
            outbound_updates=[OutboundUpdate("out-1", "pending", attempts=1, next_attempt_at=9.0)]
        )
    )
    assert [d.attempts for d in await store.due(10.0, 10)] == [1]


async def test_a_move_from_a_stale_state_is_refused_and_changes_nothing(
    store: SqlStore,
) -> None:
    await store.commit(_sent("KR-1", "out-1", "local-1"))
    receipt = Transition(
        "KR-1", Role.EXPORTER, State.PENDING, State.DELIVERED, Event.RECEIPT_ACCEPTED, "r-1"
    )
    await store.commit(
        UnitOfWork(outbound_updates=[OutboundUpdate("out-1", "delivered")], transitions=[receipt])
    )
    with pytest.raises(StoreConflict, match="KR-1 is no longer pending"):
        await store.commit(UnitOfWork(transitions=[receipt], publications=_unit("x").publications))
    facts = await store.facts(FactsQuery(certificates=(("exporter", "KR-1"),)))
    assert facts.certificates[("exporter", "KR-1")].state is State.DELIVERED
    assert await _relayable(store) == []
    assert await store.verify_audit_chain() == 2
    [report] = await store.report("KR-1")
    assert [line.event for line in report.history] == ["submitted", "receipt_accepted"]
    assert report.messages[0][3] == "delivered"


async def test_committed_publications_are_not_relayed_while_their_publisher_holds_them(
    store: SqlStore,
) -> None:
    ids = await store.commit(_unit("m-1", "m-2"))
    assert await _relayable(store) == []
    await store.mark_published(ids[:1])
    assert await _relayable(store) == []


async def test_released_publications_go_to_the_relay(store: SqlStore) -> None:
    ids = await store.commit(_unit("m-1", "m-2"))
    await store.release(ids[1:])
    [queued] = await store.unpublished(100)
    assert queued.publication == _unit("m-2").publications[0]


async def test_a_restart_relays_what_was_never_confirmed(db: Database) -> None:
    first = await db.open()
    ids = await first.commit(_unit("m-1", "m-2", "m-3"))
    await first.mark_published(ids[:1])
    await first.flush_published()
    await first.close()
    again = await db.open()
    assert await _relayable(again) == ["m-2", "m-3"]


async def test_bound_publications_are_never_relayed(store: SqlStore) -> None:
    ids = await store.commit(_unit("m-1", bound_to="delivery-1"))
    await store.release(ids)
    assert await _relayable(store) == []
    assert [q.publication.message_id for q in await store.bound_unpublished(["delivery-1"])] == [
        "m-1"
    ]


async def test_a_flush_beside_a_commit_keeps_marks_made_meanwhile(store: SqlStore) -> None:
    first, second, third = await store.commit(_unit("m-1", "m-2", "m-3"))
    await store.mark_published([first])
    commit = asyncio.create_task(store.commit(UnitOfWork()))
    flush = asyncio.create_task(store.flush_published())
    await asyncio.sleep(0)  # both have taken the marks they write
    await store.mark_published([second])
    await asyncio.gather(commit, flush)
    await store.release([third])
    assert await _relayable(store) == ["m-3"]


async def test_a_mark_written_twice_never_deletes_a_later_row(store: SqlStore) -> None:
    """A commit and a flush may both write the mark of the newest row. Had the commit's
    new row taken the deleted row's id, the flush would delete it unpublished: a hand-off
    its delivery's redelivery could no longer find (seen in the soak after a broker kill)."""
    (newest,) = await store.commit(_unit("m-1"))
    await store.mark_published([newest])
    commit = asyncio.create_task(store.commit(_unit("hand-off", bound_to="delivery-1")))
    flush = asyncio.create_task(store.flush_published())
    await asyncio.sleep(0)  # both have taken the mark of `newest` to write
    (hand_off,) = await commit
    await flush
    assert hand_off > newest, "an outbox id was used twice"
    assert [q.publication.message_id for q in await store.bound_unpublished(["delivery-1"])] == [
        "hand-off"
    ]


async def test_timestamps_come_from_the_injected_clock(db: Database, store: SqlStore) -> None:
    db.clock.at = T0 + timedelta(seconds=60)
    await store.commit(_sent("KR-1", "out-1", "local-1"))
    # Earlier by the clock, later by the machine: the store must follow the clock.
    db.clock.at = T0
    cancellation = OutboundRow(
        "out-2", Kind.COO_CANCELLATION, "KR-1", None, b"jws", "local-2", None, 1, 5.0
    )
    await store.commit(
        UnitOfWork(
            outbound=[cancellation],
            transitions=[
                Transition(
                    "KR-1", Role.EXPORTER, State.PENDING, State.CANCELLED, Event.CANCELLED, "out-2"
                )
            ],
        )
    )
    [report] = await store.report("KR-1")
    assert [line.at for line in report.history] == [T0 + timedelta(seconds=60), T0]
    assert [m[2] for m in report.messages] == ["out-2", "out-1"]  # by creation time
    assert await store.verify_audit_chain() == 2


async def test_the_relay_gets_free_rows_behind_a_page_of_claimed_ones(store: SqlStore) -> None:
    await store.commit(_unit("m-1", "m-2"))  # held by their publisher
    free = await store.commit(_unit("m-3", "m-4"))
    await store.release(free)
    assert [q.publication.message_id for q in await store.unpublished(2)] == ["m-3", "m-4"]
    assert [q.publication.message_id for q in await store.unpublished(1)] == ["m-3"]


async def test_confirmed_publications_leave_the_outbox_and_the_envelopes_stay(
    db: Database, store: SqlStore
) -> None:
    await store.commit(_sent("KR-1", "out-1", "local-1"))
    for n in range(20):
        ids = await store.commit(_unit(f"m-{n}-a", f"m-{n}-b"))
        # Confirmed; the mark rides along with the next commit or the next flush.
        await store.mark_published(ids)
    bound = await store.commit(_unit("hand-off", bound_to="delivery-1"))
    await store.mark_published(bound)
    assert db.rows("SELECT count(*) FROM outbox") != [(0,)]
    await store.flush_published()
    assert db.rows("SELECT count(*) FROM outbox") == [(0,)]
    # The signed envelope sent stays, for the audit.
    assert db.rows("SELECT token FROM outbound_messages") == [(b"jws",)]
    assert await _relayable(store) == []
    assert await store.bound_unpublished(["delivery-1"]) == []


async def test_an_older_store_drops_the_published_rows_it_kept(db: Database) -> None:
    first = await db.open()
    ids = await first.commit(_unit("m-1", "m-2"))
    await first.close()
    # As a store was before: a published row kept.
    db.alter(f"UPDATE outbox SET published = true WHERE id = {ids[0]}")
    await db.open()
    assert db.rows("SELECT message_id FROM outbox") == [("m-2",)]


async def test_an_edited_history_row_is_found_by_the_chain_check(
    db: Database, store: SqlStore
) -> None:
    await store.commit(_sent("KR-1", "out-1", "local-1"))
    await store.commit(_sent("KR-2", "out-2", "local-2"))
    assert await store.verify_audit_chain() == 2
    [(first,)] = db.rows("SELECT min(id) FROM certificate_history")
    db.alter(f"UPDATE certificate_history SET \"after\" = 'delivered' WHERE id = {first}")
    with pytest.raises(AuditTrailBroken, match=f"history row {first}"):
        await store.verify_audit_chain()


def test_the_store_section_of_the_config_is_the_store_settings() -> None:
    section = StoreSection(url="sqlite:///x.db", busy_timeout_s=2.5, wal_truncate_mb=4)
    settings = StoreSettings(**section.model_dump(exclude={"url"}))
    assert settings == StoreSettings(busy_timeout_s=2.5, wal_truncate_mb=4)
    assert StoreSettings() == StoreSettings(**StoreSection(url="x").model_dump(exclude={"url"}))
