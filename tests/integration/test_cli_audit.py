"""`eodes-node audit verify` on SQLite and PostgreSQL: counts the history rows of an
intact chain while the node holds its store, and names the first row of a broken one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from eodes_node.cli import main
from eodes_node.core.decide import Transition
from eodes_node.core.state import Event, Role, State
from eodes_node.ports import UnitOfWork
from tests.integration.test_sql_prune import Link
from tests.integration.test_sql_store import Database, database


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with database(request.param, tmp_path) as opened:
        yield opened


def created(number: str) -> UnitOfWork:
    return UnitOfWork(
        transitions=[
            Transition(number, Role.EXPORTER, None, State.PENDING, Event.SUBMITTED, f"m-{number}")
        ]
    )


def verify(link: Link) -> Result:
    return CliRunner().invoke(main, ["audit", "verify", "--config", str(link.config)])


async def test_verify_counts_the_rows_beside_a_running_store_then_names_a_broken_row(
    db: Database, tmp_path: Path
) -> None:
    link = Link(tmp_path, db.url)
    store = await db.open()  # holds SQLite's one-node lock throughout
    for n in range(3):
        await store.commit(created(f"KR-{n}"))

    intact = verify(link)
    assert intact.exit_code == 0, intact.output
    assert "audit chain verifies: 3 history row(s) checked" in intact.output

    second = db.rows("SELECT id FROM certificate_history ORDER BY id")[1][0]
    db.alter(f"UPDATE certificate_history SET message_id = 'forged' WHERE id = {second}")
    broken = verify(link)
    assert broken.exit_code == 1
    assert f"audit chain broken at history row {second}" in broken.output
    await store.close()


def test_verify_refuses_a_store_that_does_not_exist(tmp_path: Path) -> None:
    link = Link(tmp_path, f"sqlite:///{tmp_path / 'missing.db'}")
    result = verify(link)
    assert result.exit_code == 1
    assert "does not exist" in result.output
    assert not (tmp_path / "missing.db").exists()
