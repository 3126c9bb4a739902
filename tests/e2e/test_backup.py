"""Backup and restore of a running node's SQLite store, with both nodes as processes.

KR's store is backed up online while two certificates are in flight; more traffic
follows; KR is stopped and restored from the older backup. Counting happens at the local
queues by message id, apart from the stores: every certificate reaches CN's clearance
once and every decision KR's issuing once (a copy flagged possible-duplicate under its
first message id is counted apart, docs/protocol.md §5).

What a restore cannot bring back, asserted here as the README states it: certificates
submitted after the backup are unknown to the restored node (the partner holds them, and
refuses them if they are submitted again), and decisions received after the backup
reached the issuing system but the restored store still shows those certificates as
delivered.
"""

from __future__ import annotations

import sqlite3
import stat
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import orjson
import pytest
from aio_pika.abc import AbstractIncomingMessage

from eodes_node.core.records import as_json_dict
from eodes_node.core.work import POSSIBLE_DUPLICATE
from eodes_node.samples import SampleFactory
from eodes_node.testing import NodePair, NodeProcess
from tests.e2e.test_broker_faults import until
from tests.e2e.test_operator_api import decision, number
from tests.e2e.test_operator_cli import cli

pytestmark = pytest.mark.broker


def states(db: Path) -> dict[str, str]:
    """The exporter side's certificate states, read beside the node."""
    with closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT number, state FROM certificates WHERE role = 'exporter'")
        return {str(n): str(s) for n, s in rows}


def first_copies(messages: list[AbstractIncomingMessage]) -> tuple[Counter[str], int]:
    """Unflagged copies per message id, and how many flagged copies there were."""
    plain: Counter[str] = Counter()
    flagged = 0
    for m in messages:
        assert m.message_id is not None
        if (m.headers or {}).get(POSSIBLE_DUPLICATE) == "true":
            flagged += 1
        else:
            plain[m.message_id] += 1
    return plain, flagged


def certificate_of(message: AbstractIncomingMessage) -> str:
    body: Any = orjson.loads(message.body)
    inner = body.get("certificate") or body.get("feedback") or {}
    header = inner.get("header", inner)
    return str(header["certificate_number"])


def all_in(db: Path, records: list[dict[str, Any]], state: str) -> Callable[[], bool]:
    return lambda: all(states(db).get(number(r)) == state for r in records)


@pytest.mark.timeout(300)
async def test_a_node_restored_from_an_older_backup_loses_no_message(tmp_path: Path) -> None:
    async with NodePair(tmp_path) as pair:
        kr_config, kr_db = pair.kr.write_config(), pair.kr.dir / "node.db"
        kr = NodeProcess(kr_config, pair.kr.dir / "node")
        cn = NodeProcess(pair.cn.write_config(), pair.cn.dir / "node")
        records = [as_json_dict(c) for c in SampleFactory("KCFTA", seed=83).certificates(11)]
        settled, in_flight, after, late = records[:4], records[4:6], records[6:9], records[9:]
        backup_file = tmp_path / "backups" / "kr.db"
        issuing = pair.kr.issuing

        async def decide(*decided: dict[str, Any]) -> None:
            for record in decided:
                await pair.cn.submit_feedback(decision(record, {}))

        def decisions(count: int) -> Callable[[], Awaitable[bool]]:
            async def enough() -> bool:
                return len(first_copies(issuing.messages)[0]) >= count

            return enough

        try:
            await cn.start()
            await kr.start()
            await pair.kr.submit(settled)
            await until(all_in(kr_db, settled, "delivered"), 60, "first four delivered")
            await decide(*settled[:2])
            await until(decisions(2), 60, "two decisions at KR's issuing")
            # Two in flight when the backup is taken: CN is down, no receipt yet.
            await cn.terminate()
            await pair.kr.submit(in_flight)
            await until(all_in(kr_db, in_flight, "pending"), 60, "two pending at KR")

            code, out, err = await cli(
                "backup", "--config", str(kr_config), "--to", str(backup_file)
            )
            assert code == 0, err
            assert "backup:" in out
            assert "6 certificate row(s)" in out
            assert stat.S_IMODE(backup_file.stat().st_mode) == 0o600
            code, _, err = await cli("backup", "--config", str(kr_config), "--to", str(backup_file))
            assert code == 1
            assert "exists; a backup never overwrites" in err

            # After the backup: receipts for the two, four decisions, three certificates.
            await cn.start()
            await until(all_in(kr_db, in_flight, "delivered"), 60, "in-flight delivered")
            await pair.kr.submit(after)
            await until(all_in(kr_db, after, "delivered"), 60, "later three delivered")
            await decide(*settled[2:], after[0])
            await until(all_in(kr_db, [*settled, after[0]], "granted"), 60, "decided at KR")
            await until(decisions(5), 60, "five decisions at KR's issuing")

            code, _, err = await cli(
                "restore", "--config", str(kr_config), "--from", str(backup_file)
            )
            assert code == 1
            assert f"is already in use by pid {kr.pid}" in err
            assert "stop the node before a restore" in err

            assert await kr.terminate() == 0
            code, out, err = await cli(
                "restore", "--config", str(kr_config), "--from", str(backup_file)
            )
            assert code == 0, err
            aside = next(pair.kr.dir.glob("node.db.before-restore-*"))
            assert f"kept as {aside}" in out
            assert stat.S_IMODE(kr_db.stat().st_mode) == 0o600
            restored = states(kr_db)
            assert set(restored) == {number(r) for r in [*settled, *in_flight]}
            assert {restored[number(r)] for r in in_flight} == {"pending"}
            assert states(aside)[number(after[0])] == "granted"  # the replaced store, whole

            # Restarted: the two in flight are sent again under their ids; CN's dedup
            # answers with its receipt, and hands nothing to clearance again.
            await kr.start()
            await until(all_in(kr_db, in_flight, "delivered"), 60, "resends settled")
            await pair.kr.submit(late)
            await until(all_in(kr_db, late, "delivered"), 60, "new certificates delivered")
            await decide(in_flight[0], late[0])
            await until(decisions(7), 60, "seven decisions at KR's issuing")

            # What the restore could not bring back: a certificate submitted after the
            # backup is unknown to KR; submitted again, the partner refuses the second
            # copy (same number, new message id), so it is still cleared once.
            assert number(after[1]) not in states(kr_db)
            await pair.kr.submit([after[1]])
            await until(
                lambda: states(kr_db).get(number(after[1])) == "rejected", 60, "resubmission"
            )
            (refusal,) = [
                item
                for item in pair.kr.events.event_items("rejected")
                if item["certificate_number"] == number(after[1])
            ]
            assert refusal["code"] == "STATE_CONFLICT"
            assert "already received" in refusal["text"]
            # A decision received after the backup reached issuing, but the store forgot it.
            assert states(kr_db)[number(settled[2])] == "delivered"
        finally:
            for process in (kr, cn):
                if process.process is not None and process.process.returncode is None:
                    await process.terminate()

    cleared, _ = first_copies(pair.cn.clearance.messages)
    assert set(cleared.values()) == {1}, "a certificate reached clearance twice unflagged"
    by_certificate = Counter(
        certificate_of(m) for m in pair.cn.clearance.messages if m.message_id in cleared
    )
    assert len(cleared) == len(records)
    assert by_certificate == Counter({number(r): 1 for r in records})

    decided, _ = first_copies(issuing.messages)
    assert set(decided.values()) == {1}, "a decision reached issuing twice unflagged"
    decided_certificates = Counter(
        certificate_of(m) for m in issuing.messages if m.message_id in decided
    )
    expected = [*settled, after[0], in_flight[0], late[0]]
    assert decided_certificates == Counter({number(r): 1 for r in expected})
