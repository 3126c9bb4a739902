"""Several instances on one store: a key written by another one first is a
``StoreConflict`` at the store boundary, and a batch refused that way is decided again
(it is then a duplicate) instead of failing; the relays of two instances never get one
outbox row, and a publisher's rows stay its own until it releases them or is gone."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from eodes_node.adapters.sql import store as store_module
from eodes_node.adapters.sql.claims import CLAIM_S
from eodes_node.adapters.sql.facts import read_facts
from eodes_node.adapters.sql.statements import Sql
from eodes_node.errors import StoreConflict
from eodes_node.ports import Facts, FactsQuery, UnitOfWork
from eodes_node.testing.services import ServicePair, ServiceSide
from tests.integration.test_sql_store import Database, _received, _unit, database
from tests.unit.test_service import number, records


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with database(request.param, tmp_path) as opened:
        yield opened


async def test_an_inbound_key_written_first_by_another_store_is_a_conflict(db: Database) -> None:
    first = await db.open()
    second = await db.open(exclusive=False)
    await first.commit(UnitOfWork(inbound=[_received("in-1", "r-1")]))
    with pytest.raises(StoreConflict, match="written meanwhile"):
        await second.commit(UnitOfWork(inbound=[_received("in-1", "r-2")]))
    # Refused whole: the conflict rolled the unit back, and the store still works.
    assert db.rows("SELECT receipt_id FROM inbound_messages") == [("r-1",)]
    await second.commit(UnitOfWork(inbound=[_received("in-2", "r-3")]))
    assert db.rows("SELECT count(*) FROM inbound_messages") == [(2,)]


async def test_two_receivers_racing_on_one_message_decide_it_once_and_a_duplicate(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    pair = ServicePair()
    ours, racers = await db.open(), await db.open(exclusive=False)
    cn = ServiceSide("CN", "KR", pair.clock, retry=pair.cn.retry, store=ours)
    racer = ServiceSide("CN", "KR", pair.clock, retry=pair.cn.retry, store=racers)
    racer.key = cn.key
    pair.cn = cn
    for side in (cn, racer):
        side.connect(pair.kr.key)
    pair.kr.connect(cn.key)
    (record,) = records(1, seed=7)
    await pair.kr.submit([record])
    (envelope,) = pair.kr.take_outgoing()

    # Our batch reads its facts (the message is new), then, before our store writes, the
    # racer takes the same message and commits first. Ours may be running on the event
    # loop (SQLite's batches do), so the racer runs on a loop of its own, as the other
    # process it stands for would.
    reading, deciding = read_facts, ours.decide
    raced = threading.Event()
    refused: list[StoreConflict] = []

    def facts_then_race(sql: Sql, query: FactsQuery) -> Facts:
        facts = reading(sql, query)
        if not raced.is_set():  # our first read; the racer's own reads pass through
            raced.set()
            racing = threading.Thread(target=asyncio.run, args=(racer.receive([envelope]),))
            racing.start()
            racing.join(30)
            assert not racing.is_alive(), "the racer did not finish"
        return facts

    async def recording_decide(query: FactsQuery, decide: Any) -> Any:
        try:
            return await deciding(query, decide)
        except StoreConflict as exc:
            refused.append(exc)
            raise

    monkeypatch.setattr(store_module, "read_facts", facts_then_race)
    monkeypatch.setattr(ours, "decide", recording_decide)
    await cn.receive([envelope])  # raises if the conflict reached the batch

    assert len(refused) == 1  # the race happened: our first decision hit the racer's key
    clearance = cn.topology.clearance
    assert [p.message_id for p in racer.local(clearance)] == [envelope.message_id]
    assert cn.local(clearance) == []  # decided again: a duplicate, no second hand-off
    assert db.rows("SELECT count(*) FROM inbound_messages") == [(1,)]
    number_of = number(record)
    assert db.rows(f"SELECT state FROM certificates WHERE number = '{number_of}'") == [
        ("available",)
    ]
    # The duplicate is answered with the receipt the racer sent.
    assert [p.token for p in cn.take_outgoing()] == [p.token for p in racer.take_outgoing()]


async def test_two_relays_never_get_one_row_and_a_publishers_rows_stay_its_own(
    db: Database,
) -> None:
    writer = await db.open()
    relays = [await db.open(exclusive=False) for _ in range(2)]
    ids = await writer.commit(_unit(*(f"m-{n}" for n in range(40))))
    # The writer's publisher holds them: no other instance's relay takes them.
    assert [await r.unpublished(100) for r in relays] == [[], []]
    await writer.release(ids)

    first, second = await asyncio.gather(*(r.unpublished(100) for r in relays))
    got = [q.publication.message_id for q in first + second]
    assert sorted(got) == sorted(f"m-{n}" for n in range(40))  # each row once, none lost
    assert len(set(got)) == len(got)
    # A relay keeps what it claimed; the other one does not get it on its next pass.
    assert [q.id for q in await relays[0].unpublished(100)] == [q.id for q in first]
    assert [q.id for q in await relays[1].unpublished(100)] == [q.id for q in second]

    # A relay that died holding rows: once its claims expire another relay takes them.
    db.clock.at += timedelta(seconds=CLAIM_S + 1)
    assert len(await relays[1].unpublished(100)) == 40


async def test_a_closed_instance_frees_the_rows_it_held(db: Database) -> None:
    writer = await db.open(exclusive=False)
    other = await db.open(exclusive=False)
    await writer.commit(_unit("m-1", "m-2"))
    assert await other.unpublished(100) == []
    await writer.close()
    assert [q.publication.message_id for q in await other.unpublished(100)] == ["m-1", "m-2"]
