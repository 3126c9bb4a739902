"""`eodes-node prune` on SQLite and PostgreSQL: settled certificates past the retention
period leave the store for an archive that verifies offline, pending ones stay, and the
audit chain of what is kept still verifies."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import AsyncIterator
from contextlib import closing
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from click.testing import CliRunner
from sqlalchemy import event
from sqlalchemy.engine import Engine

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
    assert "inside the replay window limits.max_age_s + limits.max_future_skew_s" in refused.output
    assert "= 5184000 + 300 s" in refused.output
    # A message stamped ahead of our clock stays acceptable, and so a duplicate to
    # recognise, max_future_skew_s longer.
    skewed = {
        **lowered,
        "EODES_LIMITS_MAX_AGE_S": str(25 * 86400),
        "EODES_LIMITS_MAX_FUTURE_SKEW_S": str(10 * 86400),
    }
    refused = prune(link, "--before", before, "--discard", env=skewed)
    assert refused.exit_code == 1, refused.output
    assert "= 2160000 + 864000 s" in refused.output


def receipt(message_id: str) -> OutboundRow:
    """Our signed receipt, as the inbound planner stores it: about no certificate."""
    return OutboundRow(
        message_id,
        Kind.RECEIPT,
        None,
        None,
        b"receipt-token-" + message_id.encode(),
        None,
        None,
        attempts=1,
        next_attempt_at=None,
        status="sent",
    )


def answered(number: str, message_id: str, token: bytes, receipt_id: str) -> InboundRow:
    return InboundRow(
        "CN",
        message_id,
        Kind.FEEDBACK,
        "g" * 43,
        token,
        "accepted",
        None,
        "",
        number,
        None,
        receipt_id,
    )


def message_ids(db: Database) -> set[str]:
    return {
        str(m)
        for (m,) in db.rows(
            "SELECT message_id FROM outbound_messages UNION SELECT message_id FROM inbound_messages"
        )
    }


async def test_every_receipt_prune_drops_is_in_the_archive(db: Database, tmp_path: Path) -> None:
    link = Link(tmp_path, db.url)
    store = await db.open()
    db.clock.at = OLD
    gone, gone_id, gone_token, gone_record = link.coo(31)
    kept, kept_id, kept_token, kept_record = link.coo(32)
    await store.commit(submitted(gone, gone_id, gone_token))
    await store.commit(submitted(kept, kept_id, kept_token))
    await store.commit(delivered(gone, gone_id))
    # Our receipt for the pruned certificate's feedback; one for a kept certificate's
    # message; one that answers nothing kept any more.
    feedback_id, feedback_token = link.feedback(gone_record, gone_id)
    answer = granted(gone, feedback_id, feedback_token)
    answer = UnitOfWork(
        inbound=[answered(gone, feedback_id, feedback_token, "rcpt-gone")],
        outbound=[receipt("rcpt-gone"), receipt("rcpt-kept"), receipt("rcpt-idle")],
        transitions=answer.transitions,
    )
    await store.commit(answer)
    kept_feedback_id, kept_feedback_token = link.feedback(kept_record, kept_id)
    await store.commit(
        UnitOfWork(inbound=[answered(kept, kept_feedback_id, kept_feedback_token, "rcpt-kept")])
    )
    db.clock.at = LATER
    await store.commit(delivered(kept, kept_id))
    await store.close()
    held = message_ids(db)

    archive = tmp_path / "kr-2012.jsonl"
    result = prune(link, "--before", "2013-01-01", "--archive", str(archive))
    assert result.exit_code == 0, result.output
    archived = {
        line["message_id"]
        for line in map(orjson.loads, archive.read_bytes().splitlines())
        if line["record"] == "message"
    }
    assert held - message_ids(db) == archived
    assert archived == {gone_id, feedback_id, "rcpt-gone", "rcpt-idle"}
    assert "pruned 1 certificate(s), 4 signed message(s)" in result.output
    # A duplicate of the kept certificate's message still gets its receipt again.
    assert {"rcpt-kept", kept_feedback_id} <= message_ids(db)


class LateWriter:
    """Writes a verification request about ``number`` the moment the prune first writes,
    from a connection of its own that does not wait for locks: the write a node could
    commit between the prune's reads and its deletes."""

    def __init__(self, db: Database, number: str) -> None:
        self.db, self.number, self.blocked, self.fired = db, number, False, False

    def hook(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        words = statement.lstrip().upper()
        if self.fired or not words.startswith(("INSERT", "UPDATE", "DELETE")):
            return
        if "OUTBOX" in words or "ALEMBIC_VERSION" in words:
            return  # the migration step before the prune
        self.fired = True
        try:
            self.write()
        except (sqlite3.OperationalError, psycopg.errors.LockNotAvailable):
            self.blocked = True

    def write(self) -> None:
        insert = (
            "INSERT INTO verification_requests (request_id, role, certificate_number, "
            "request_reference, reply_due, due_at, state, updated_at) VALUES ('late-request', "
            f"'exporter', '{self.number}', 'ref', '2031-01-01', 0, 'pending', 2e9)"
        )
        if self.db.backend == "sqlite":
            with closing(sqlite3.connect(self.db.url[len("sqlite:///") :], timeout=0)) as conn:
                conn.execute(insert)
                conn.commit()
            return
        self.db.alter(f"SET lock_timeout = '100ms'; {insert}")


async def test_a_write_racing_with_prune_is_neither_deleted_nor_lost(
    db: Database, tmp_path: Path
) -> None:
    link = Link(tmp_path, db.url)
    store = await db.open()
    db.clock.at = OLD
    gone, gone_id, gone_token, _ = link.coo(41)
    await store.commit(submitted(gone, gone_id, gone_token))
    await store.commit(delivered(gone, gone_id))
    await store.close()

    writer = LateWriter(db, gone)
    event.listen(Engine, "before_cursor_execute", writer.hook)
    try:
        result = prune(link, "--before", "2013-01-01", "--discard")
    finally:
        event.remove(Engine, "before_cursor_execute", writer.hook)
    assert result.exit_code == 0, result.output
    assert writer.fired
    if writer.blocked:
        writer.write()  # the node's retry, once the prune committed
    assert db.rows("SELECT certificate_number FROM verification_requests") == [(gone,)]


async def test_an_archive_open_to_others_is_refused_and_a_new_one_is_synced_into_its_directory(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    link = Link(tmp_path, db.url)
    await db.open()
    shared = tmp_path / "shared.jsonl"
    shared.write_bytes(b"")
    shared.chmod(0o644)
    refused = prune(link, "--before", "2013-01-01", "--archive", str(shared))
    assert refused.exit_code == 1
    assert f"archive {shared} has mode 0644, open to group/others" in refused.output
    assert "Traceback" not in refused.output

    synced: list[tuple[int, int]] = []
    fsync = os.fsync

    def recording(fd: int) -> None:
        info = os.fstat(fd)
        synced.append((info.st_dev, info.st_ino))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", recording)
    archive = tmp_path / "new" / "dir" / "kr.jsonl"
    result = prune(link, "--before", "2013-01-01", "--archive", str(archive))
    assert result.exit_code == 0, result.output
    for directory in (archive.parent, archive.parent.parent):
        info = directory.stat()
        assert (info.st_dev, info.st_ino) in synced, directory


async def test_a_link_no_prune_explains_does_not_hide_a_deleted_row(db: Database) -> None:
    store = await db.open()
    db.clock.at = OLD
    for n in range(3):
        await store.commit(submitted(f"KR-{n}", f"m-{n}", b"jws"))
    assert await store.verify_audit_chain() == 3
    ((deleted, deleted_chain), (second, _)) = db.rows(
        "SELECT id, chain FROM certificate_history ORDER BY id"
    )[1:]
    # The forger drops a row and links the next one onto its hash: one delete, one insert.
    db.alter(f"DELETE FROM certificate_history WHERE id = {deleted}")
    db.alter(
        f"INSERT INTO audit_links (history_id, previous_chain) VALUES ({second}, '{deleted_chain}')"
    )
    with pytest.raises(AuditTrailBroken, match=f"history row {second}"):
        await store.verify_audit_chain()
    # A prune whose cut-off is older than the kept row before the gap explains nothing.
    before = (OLD - timedelta(days=1)).timestamp()
    db.alter(
        "INSERT INTO prune_log (pruned_at, before, certificates, messages, history_rows) "
        f"VALUES ({before}, {before}, 1, 1, 1)"
    )
    with pytest.raises(AuditTrailBroken, match=f"history row {second}"):
        await store.verify_audit_chain()
    # One whose cut-off lies after it does.
    after = (OLD + timedelta(days=1)).timestamp()
    db.alter(
        "INSERT INTO prune_log (pruned_at, before, certificates, messages, history_rows) "
        f"VALUES ({after}, {after}, 1, 1, 1)"
    )
    assert await store.verify_audit_chain() == 2
