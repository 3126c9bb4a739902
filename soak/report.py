"""The soak's verdict: the fault table, what went wrong and where, and the one result line.

The counting itself is the harness's (at the local queues). Only to say *why* a
certificate is incomplete does the report look into the nodes' stores, read-only: one
the sender still means to resend is stuck; one the system considers done, or never
stored, yet never reached its local system, is lost.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from soak.faults import Episode
from soak.nodes import Crash
from soak.tally import Tally

PENDING = ("pending", "sent")
SHOWN = 10


def _statuses(db: Path, table: str, kind: str) -> dict[str, str]:
    """certificate number -> status of the node's messages of ``kind`` in ``table``."""
    found: dict[str, str] = {}
    with contextlib.suppress(sqlite3.Error):
        connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            rows = connection.execute(
                f"select certificate_number, status from {table} where kind = ?",  # noqa: S608
                (kind,),
            ).fetchall()
        finally:
            connection.close()
        found = {str(number): str(status) for number, status in rows}
    return found


@dataclass
class Verdict:
    lost: dict[str, str] = field(default_factory=dict)
    stuck: dict[str, str] = field(default_factory=dict)


def _why(status: str | None, side: str, queued: int, what: str) -> tuple[bool, str]:
    """(stuck?, reason) for a certificate missing ``what`` given its sender's status."""
    if status is None:
        if queued:
            return True, f"not in {side}'s store; {queued} messages still queued"
        return False, f"{side} never stored it, nothing queued: {what} lost"
    if status in PENDING:
        return True, f"{side} still has it {status}: {what} not done"
    return False, f"{side} has it {status}, yet {what} never happened"


def _receiver(status: str | None, side: str) -> str:
    return f" ({side}'s store: {status or 'never received'})"


Statuses = Callable[[str, str, str], dict[str, str]]


def sqlite_statuses(db: str, table: str, kind: str) -> dict[str, str]:
    return _statuses(Path(db), table, kind)


def classify(
    tally: Tally, stores: dict[str, str], queued: int, statuses: Statuses = sqlite_statuses
) -> Verdict:
    """``stores``: each side's store (a SQLite file, or what ``statuses`` reads)."""
    verdict = Verdict()
    sent = statuses(stores["KR"], "outbound_messages", "coo")
    received = statuses(stores["CN"], "inbound_messages", "coo")
    answered = statuses(stores["CN"], "outbound_messages", "feedback")
    heard = statuses(stores["KR"], "inbound_messages", "feedback")
    for number in sorted(tally.submitted):
        if not tally.cleared[number]:
            stuck, why = _why(sent.get(number), "KR", queued, "clearance delivery")
            why += _receiver(received.get(number), "CN")
        elif not tally.decided[number]:
            stuck, why = _why(answered.get(number), "CN", queued, "the decision at KR issuing")
            why += _receiver(heard.get(number), "KR")
        else:
            continue
        (verdict.stuck if stuck else verdict.lost)[number] = why
    return verdict


def fault_table(episodes: list[Episode], say: Callable[[str], None]) -> None:
    if not episodes:
        return
    say(
        f"{'#':>3}  {'at':>6}  {'fault':<20} {'target':<7} {'down':>7}  {'moving':>7}  "
        f"{'through':>7}  proof"
    )
    for e in episodes:
        moving = "STUCK" if e.stuck else "cut" if e.recovered_s is None else f"{e.recovered_s:.1f}s"
        through = "-" if e.round_trip_s is None else f"{e.round_trip_s:.1f}s"
        mark = "" if e.proved else "  (FAULT NOT PROVED)"
        if e.takeover_s is not None:
            mark += f"; takeover {e.takeover_s:.2f}s"
        say(
            f"{e.number:>3}  {e.at_s:>5.0f}s  {e.fault.kind:<20} {e.fault.target:<7} "
            f"{e.down_s:>6.1f}s  {moving:>7}  {through:>7}  {e.proof}{mark}"
        )


def _listed(label: str, lines: list[str], say: Callable[[str], None]) -> None:
    for line in lines[:SHOWN]:
        say(f"soak: {label}: {line}")
    if len(lines) > SHOWN:
        say(f"soak: ... and {len(lines) - SHOWN} more {label}")


def details(
    tally: Tally, verdict: Verdict, crashes: list[Crash], say: Callable[[str], None]
) -> None:
    """Every failure precisely: which certificate, which node, which log."""
    _listed("lost", [f"{n}: {why}" for n, why in verdict.lost.items()], say)
    _listed("stuck", [f"{n}: {why}" for n, why in verdict.stuck.items()], say)
    _listed("duplicated", tally.duplicated(), say)
    for crash in crashes:
        say(f"soak: crashed: {crash.country} node exited {crash.returncode}; log {crash.log}")
        for line in crash.tail.strip().splitlines()[-5:]:
            say(f"soak:   | {line[:300]}")
    _listed("altered", tally.wrong, say)
    _listed("problem", tally.problems, say)
    redelivered = sum(a.redelivered for a in tally.queues.values())
    reissued = sum(a.reissued for a in tally.queues.values())
    missing = [n for n in tally.submitted if not tally.receipts[n]]
    say(
        f"soak: harness: {redelivered} redelivered copies and {reissued} copies flagged "
        f"possible-duplicate under their first message id (not duplicates); "
        f"{len(missing)} certificates without a 'delivered' event at KR"
    )
