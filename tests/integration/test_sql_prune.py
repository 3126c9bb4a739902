"""`eodes-node prune` on SQLite and PostgreSQL: settled certificates past the retention
period leave the store for an archive that verifies offline, pending ones stay, and the
audit chain of what is kept still verifies."""

from __future__ import annotations

import stat
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from eodes_node.cli import main
from eodes_node.core.decide import Transition
from eodes_node.core.envelope import seal
from eodes_node.core.jws import KeySet, PrivateKey
from eodes_node.core.messages import Kind
from eodes_node.core.records import as_json_dict, compose
from eodes_node.core.state import Event, Role, State
from eodes_node.errors import AuditTrailBroken
from eodes_node.ports import InboundRow, OutboundRow, OutboundUpdate, UnitOfWork
from eodes_node.samples import SampleFactory
from tests.e2e.test_operator_api import decision
from tests.integration.test_sql_store import Database, database

OLD = datetime(2012, 3, 1, 9, 0, tzinfo=UTC)
LATER = datetime(2014, 6, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with database(request.param, tmp_path) as opened:
        yield opened


class Link:
    """Our key, the partner's, and a config file naming the test's database."""

    def __init__(self, root: Path, url: str) -> None:
        self.kr, self.cn = PrivateKey.generate("Ed25519"), PrivateKey.generate("Ed25519")
        self.jwks = []
        for name, key in (("kr", self.kr), ("cn", self.cn)):
            path = root / f"{name}.jwks.json"
            path.write_bytes(orjson.dumps(KeySet({key.kid: key.public}).to_jwks()))
            self.jwks.append(path)
        self.config = root / "node.toml"
        self.config.write_text(
            '[node]\ncountry = "KR"\npartner = "CN"\n'
            '[broker]\nlocal_url = "amqp://x@localhost/"\npartner_url = "amqp://x@localhost/"\n'
            f'[keys]\nprivate_key = "kr.key.pem"\npartner_jwks = "cn.jwks.json"\n'
            f"[store]\nurl = {orjson.dumps(url).decode()}\n"
        )

    def coo(self, seed: int) -> tuple[str, str, bytes, dict[str, Any]]:
        (record,) = (
            as_json_dict(c)
            for c in SampleFactory("KCFTA", seed=seed, issue_date=OLD.date()).certificates(1)
        )
        message = compose(Kind.COO, record, sender="KR", receiver="CN", issued_at=OLD).message
        number = record["header"]["certificate_number"]
        return number, message.message_id, seal(message, self.kr), record

    def feedback(self, record: dict[str, Any], correlation_id: str) -> tuple[str, bytes]:
        message = compose(
            Kind.FEEDBACK,
            decision(record, {}),
            sender="CN",
            receiver="KR",
            issued_at=OLD,
            correlation_id=correlation_id,
        ).message
        return message.message_id, seal(message, self.cn)


def submitted(number: str, message_id: str, token: bytes) -> UnitOfWork:
    return UnitOfWork(
        outbound=[OutboundRow(message_id, Kind.COO, number, None, token, number, "d" * 64, 1, 5.0)],
        transitions=[
            Transition(number, Role.EXPORTER, None, State.PENDING, Event.SUBMITTED, message_id)
        ],
    )


def delivered(number: str, message_id: str) -> UnitOfWork:
    return UnitOfWork(
        outbound_updates=[OutboundUpdate(message_id, "delivered")],
        transitions=[
            Transition(
                number,
                Role.EXPORTER,
                State.PENDING,
                State.DELIVERED,
                Event.RECEIPT_ACCEPTED,
                message_id,
            )
        ],
    )


def granted(number: str, feedback_id: str, token: bytes) -> UnitOfWork:
    row = InboundRow(
        "CN", feedback_id, Kind.FEEDBACK, "g" * 43, token, "accepted", None, "", number, None, None
    )
    return UnitOfWork(
        inbound=[row],
        transitions=[
            Transition(
                number, Role.EXPORTER, State.DELIVERED, State.GRANTED, Event.GRANTED, feedback_id
            )
        ],
    )


def prune(link: Link, *args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(main, ["prune", "--config", str(link.config), *args], env=env)


async def test_prune_archives_settled_certificates_and_keeps_the_chain_verifiable(
    db: Database, tmp_path: Path
) -> None:
    link = Link(tmp_path, db.url)
    store = await db.open()
    db.clock.at = OLD
    # Interleaved history: the pruned certificate's rows sit between the kept ones'.
    gone, gone_id, gone_token, gone_record = link.coo(11)
    late, late_id, late_token, _ = link.coo(12)
    open_, open_id, open_token, _ = link.coo(13)
    await store.commit(submitted(gone, gone_id, gone_token))
    await store.commit(submitted(late, late_id, late_token))
    await store.commit(delivered(gone, gone_id))
    feedback_id, feedback_token = link.feedback(gone_record, gone_id)
    await store.commit(granted(gone, feedback_id, feedback_token))
    await store.commit(submitted(open_, open_id, open_token))
    db.clock.at = LATER  # settled after the cut-off: kept
    await store.commit(delivered(late, late_id))
    assert await store.verify_audit_chain() == 6
    await store.close()

    refused = prune(link, "--before", "2020-01-01", "--discard")
    assert refused.exit_code == 1
    assert "inside the retention period store.retention_days = 3653" in refused.output
    limit = (datetime.now(UTC) - timedelta(days=3653)).date()
    assert f"the latest day allowed is {limit}" in refused.output
    both = prune(link, "--before", "2013-01-01")
    assert both.exit_code == 2
    assert "give --archive FILE, or --discard" in both.output

    archive = tmp_path / "archive" / "kr-2012.jsonl"
    result = prune(link, "--before", "2013-01-01", "--archive", str(archive))
    assert result.exit_code == 0, result.output
    assert "pruned 1 certificate(s), 2 signed message(s)" in result.output
    assert "3 history row(s) from before 2013-01-01" in result.output
    assert "audit chain verifies: 3 history row(s) kept" in result.output
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600

    lines = [orjson.loads(line) for line in archive.read_bytes().splitlines()]
    messages = {line["message_id"]: line for line in lines if line["record"] == "message"}
    assert set(messages) == {gone_id, feedback_id}
    assert messages[gone_id]["token"] == gone_token.decode()
    assert messages[gone_id]["direction"] == "out"
    assert messages[feedback_id]["direction"] == "in"
    assert [line["event"] for line in lines if line["record"] == "history"] == [
        "submitted",
        "receipt_accepted",
        "granted",
    ]
    assert db.rows("SELECT number, state FROM certificates ORDER BY number") == sorted(
        [(late, "delivered"), (open_, "pending")]
    )
    assert db.rows(f"SELECT count(*) FROM outbound_messages WHERE message_id = '{gone_id}'") == [
        (0,)
    ]
    assert db.rows("SELECT certificates, messages, history_rows FROM prune_log") == [(1, 2, 3)]

    reopened = await db.open()
    assert await reopened.verify_audit_chain() == 3
    # New history chains on; the chain check still catches an edit of a kept row.
    await reopened.commit(delivered(open_, open_id))
    assert await reopened.verify_audit_chain() == 4
    db.alter(f"UPDATE certificate_history SET at = at + 1 WHERE number = '{late}'")
    with pytest.raises(AuditTrailBroken):
        await reopened.verify_audit_chain()

    # The archive verifies offline with both key sets; an edited line does not.
    jwks = [arg for path in link.jwks for arg in ("--jwks", str(path))]
    checked = CliRunner().invoke(main, ["verify-archive", "--archive", str(archive), *jwks])
    assert checked.exit_code == 0, checked.output
    assert "2 signed message(s) verified, 3 history row(s), 0 failed" in checked.output
    ours_only = CliRunner().invoke(
        main, ["verify-archive", "--archive", str(archive), "--jwks", str(link.jwks[0])]
    )
    assert ours_only.exit_code == 1
    assert "UNKNOWN_KEY" in ours_only.output
    forged = tmp_path / "forged.jsonl"
    line = dict(messages[gone_id])
    header, payload, _ = line["token"].split(".")
    other_signature = messages[feedback_id]["token"].rsplit(".", 1)[1]
    line["token"] = f"{header}.{payload}.{other_signature}"
    forged.write_bytes(orjson.dumps(line) + b"\nnot json\n")
    refused = CliRunner().invoke(main, ["verify-archive", "--archive", str(forged), *jwks])
    assert refused.exit_code == 1
    assert f"forged.jsonl:1: message {gone_id}: BAD_SIGNATURE" in refused.output
    assert "forged.jsonl:2: not an archive line" in refused.output


async def test_a_lower_retention_lets_prune_take_more_but_never_pending(
    db: Database, tmp_path: Path
) -> None:
    link = Link(tmp_path, db.url)
    store = await db.open()
    db.clock.at = datetime.now(UTC) - timedelta(days=40)
    done, done_id, done_token, _ = link.coo(21)
    waiting, waiting_id, waiting_token, _ = link.coo(22)
    await store.commit(submitted(done, done_id, done_token))
    await store.commit(submitted(waiting, waiting_id, waiting_token))
    await store.commit(delivered(done, done_id))
    await store.close()
    before = (date.today() - timedelta(days=30)).isoformat()
    assert prune(link, "--before", before, "--discard").exit_code == 1
    lowered = {"EODES_STORE_RETENTION_DAYS": "30"}
    result = prune(link, "--before", before, "--discard", env=lowered)
    assert result.exit_code == 0, result.output
    assert "pruned 1 certificate(s), 1 signed message(s) (discarded, no archive)" in result.output
    assert db.rows("SELECT number, state FROM certificates") == [(waiting, "pending")]
    # The replay window bounds it too: a message younger than it is still recognised.
    longer_window = {**lowered, "EODES_LIMITS_MAX_AGE_S": str(60 * 86400)}
    refused = prune(link, "--before", before, "--discard", env=longer_window)
    assert refused.exit_code == 1
    assert "inside the replay window limits.max_age_s = 5184000" in refused.output
