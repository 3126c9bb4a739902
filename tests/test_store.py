"""The SQLite store: what the relay may take from the outbox, and when."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from eodes_node.adapters.store_sql import SqlStore
from eodes_node.ports import PARTNER, Publication, UnitOfWork


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    store = SqlStore(f"sqlite:///{tmp_path / 'node.db'}")
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def _unit(*message_ids: str, bound_to: str | None = None) -> UnitOfWork:
    return UnitOfWork(
        publications=[
            Publication(PARTNER, b"token-" + m.encode(), m, "coo", bound_to=bound_to)
            for m in message_ids
        ]
    )


async def _relayable(store: SqlStore) -> list[str]:
    return [q.publication.message_id for q in await store.unpublished(100)]


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
    assert await _relayable(store) == ["m-2"]


async def test_a_restart_relays_what_was_never_confirmed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'node.db'}"
    first = SqlStore(url)
    await first.open()
    ids = await first.commit(_unit("m-1", "m-2", "m-3"))
    await first.mark_published(ids[:1])
    await first.flush_published()
    await first.close()

    again = SqlStore(url)
    await again.open()
    try:
        assert await _relayable(again) == ["m-2", "m-3"]
    finally:
        await again.close()


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
