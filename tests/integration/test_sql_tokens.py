"""Signed tokens at rest, on SQLite and PostgreSQL: kept compressed, read back byte for
byte, and a raw token an older store wrote still read as it is."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from eodes_node.adapters.sql.reports import SqlReports
from eodes_node.adapters.sql.tokens import ZSTD_FRAME
from eodes_node.core.decide import Transition
from eodes_node.core.envelope import seal
from eodes_node.core.jws import PrivateKey
from eodes_node.core.messages import CooIssued, Kind, new_message_id
from eodes_node.core.state import Event, Role, State
from eodes_node.ports import InboundRow, OutboundRow, UnitOfWork
from eodes_node.samples import SampleFactory
from tests.integration.test_sql_store import Database, database


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with database(request.param, tmp_path) as opened:
        yield opened


def envelope() -> tuple[str, str, bytes]:
    certificate = SampleFactory("KCFTA", seed=3).certificates(1)[0]
    message = CooIssued(
        message_id=new_message_id(),
        sender="KR",
        receiver="CN",
        issued_at=datetime.now(UTC).replace(microsecond=0),
        certificate=certificate,
    )
    number = certificate.header.certificate_number
    return number, message.message_id, seal(message, PrivateKey.generate())


def sent(number: str, message_id: str, token: bytes) -> UnitOfWork:
    return UnitOfWork(
        outbound=[
            OutboundRow(message_id, Kind.COO, number, None, token, "coo:" + number, "d", 1, 5.0)
        ],
        transitions=[
            Transition(number, Role.EXPORTER, None, State.PENDING, Event.SUBMITTED, message_id)
        ],
    )


async def test_an_envelope_is_stored_compressed_and_resent_byte_for_byte(db: Database) -> None:
    store = await db.open()
    number, message_id, token = envelope()
    await store.commit(sent(number, message_id, token))

    [(stored,)] = db.rows("SELECT token FROM outbound_messages")
    assert bytes(stored).startswith(ZSTD_FRAME)
    assert len(stored) < len(token) * 0.7, (len(stored), len(token))
    [due] = await store.due(10.0, 10)
    assert due.token == token


async def test_a_partner_envelope_is_stored_compressed_and_a_sent_one_reads_back_to_resend(
    db: Database,
) -> None:
    store = await db.open()
    number, message_id, token = envelope()
    await store.commit(sent(number, message_id, token))
    received = InboundRow(
        "CN", "in-1", Kind.COO, "digest", token, "accepted", None, "", "CN-1", None, None
    )
    await store.commit(UnitOfWork(inbound=[received]))

    [(stored,)] = db.rows("SELECT token FROM inbound_messages")
    assert bytes(stored).startswith(ZSTD_FRAME)
    reports = SqlReports(db.url, own="KR", partner="CN")
    await reports.open()
    try:
        shown = await reports.sent_message(message_id)
    finally:
        await reports.close()
    assert shown is not None
    assert shown.token == token


async def test_a_raw_token_an_older_store_wrote_reads_as_it_is(db: Database) -> None:
    store = await db.open()
    number, message_id, token = envelope()
    await store.commit(sent(number, message_id, token))
    literal = f"X'{token.hex()}'" if db.backend == "sqlite" else f"'\\x{token.hex()}'::bytea"
    db.alter(f"UPDATE outbound_messages SET token = {literal}")

    [(stored,)] = db.rows("SELECT token FROM outbound_messages")
    assert bytes(stored) == token
    [due] = await store.due(10.0, 10)
    assert due.token == token
