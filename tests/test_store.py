"""The store, on SQLite and on PostgreSQL: a batch's facts, its commit, and what the
relay may take from the outbox.

PostgreSQL runs where a server answers at ``EODES_TEST_POSTGRES_URL`` (default: the local
one, trust auth); each test gets a database of its own.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from eodes_node.adapters.store_sql import SqlStore
from eodes_node.core.decide import Transition
from eodes_node.core.messages import Kind
from eodes_node.core.state import Event, Role, State
from eodes_node.errors import StoreConflict
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

Opener = Callable[[], Awaitable[SqlStore]]


def _postgres_admin() -> object:
    psycopg = pytest.importorskip("psycopg")
    try:
        return psycopg.connect(POSTGRES, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL at {POSTGRES} ({exc}); set EODES_TEST_POSTGRES_URL")


@pytest.fixture(params=["sqlite", "postgresql"])
async def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Opener]:
    """Opens stores on one database; the same database again after a close, as a restart."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'node.db'}"
        admin = None
    else:
        admin = _postgres_admin()
        name = "eodes_test_" + secrets.token_hex(6)
        admin.execute(f"CREATE DATABASE {name}")  # type: ignore[attr-defined]
        url = "postgresql+psycopg://" + POSTGRES.split("://", 1)[1].rsplit("/", 1)[0] + "/" + name
    opened: list[SqlStore] = []

    async def opener() -> SqlStore:
        store = SqlStore(url)
        await store.open()
        opened.append(store)
        return store

    try:
        yield opener
    finally:
        for store in opened:
            if store._engine is not None:
                await store.close()
        if admin is not None:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")  # type: ignore[attr-defined]
            admin.close()  # type: ignore[attr-defined]


@pytest.fixture
async def store(open_store: Opener) -> SqlStore:
    return await open_store()


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


async def test_a_batch_reads_back_what_earlier_batches_committed(store: SqlStore) -> None:
    await store.commit(_sent("KR-1", "out-1", "local-1"))
    await store.commit(
        UnitOfWork(
            inbound=[
                InboundRow(
                    "CN",
                    "in-1",
                    Kind.COO,
                    "digest-1",
                    b"jws",
                    "accepted",
                    None,
                    "",
                    "CN-9",
                    None,
                    "receipt-1",
                )
            ],
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


async def test_a_restart_relays_what_was_never_confirmed(open_store: Opener) -> None:
    first = await open_store()
    ids = await first.commit(_unit("m-1", "m-2", "m-3"))
    await first.mark_published(ids[:1])
    await first.flush_published()
    await first.close()
    again = await open_store()
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
