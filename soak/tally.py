"""Counting at the local queues, by certificate number and message id, apart from the
nodes' own stores: what the clearance and issuing systems really received.

A copy is told from a redelivery by the broker's ``redelivered`` flag: the broker sets
it when it hands the harness again a delivery the harness may not have acked (its
connection died). The node's ``x-eodes-possible-duplicate`` header is the same promise
from the node: a hand-off published again, under its message id, because the node could
not know whether the first publication reached the queue (a broker killed mid-commit).
A flagged copy of a message already counted is not a duplicate, as a local system
deduplicating by message id sees it once; a copy without either flag is a second
publication, so it is, and so is a certificate arriving under two message ids.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections import Counter
from dataclasses import dataclass, field

POLL_S = 0.1


@dataclass
class Arrivals:
    """One local queue: which AMQP message ids arrived, and the extra copies."""

    name: str
    seen: set[str] = field(default_factory=set)
    redelivered: int = 0
    reissued: int = 0  # flagged by the node as a possible second copy
    duplicates: list[str] = field(default_factory=list)

    def first_time(
        self, message_id: str, redelivered: bool, about: str, *, reissued: bool = False
    ) -> bool:
        """Whether this delivery is news; notes a duplicate when it is a second copy."""
        if message_id not in self.seen:
            self.seen.add(message_id)
            return True
        if redelivered:
            self.redelivered += 1
        elif reissued:
            self.reissued += 1
        else:
            self.duplicates.append(f"{self.name}: message {message_id} ({about}) arrived again")
        return False


@dataclass
class Tally:
    count: int
    submitted: dict[str, float] = field(default_factory=dict)  # number -> confirmed at
    cleared: Counter[str] = field(default_factory=Counter)
    decided: Counter[str] = field(default_factory=Counter)
    receipts: Counter[str] = field(default_factory=Counter)  # KR "delivered" for a coo
    feedback_receipts: Counter[str] = field(default_factory=Counter)  # CN, for feedback
    queues: dict[str, Arrivals] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)  # content that arrived altered
    decided_log: list[tuple[float, str]] = field(default_factory=list)
    last_submitted: float = 0.0
    last_cleared: float = 0.0
    last_decided: float = 0.0

    def arrivals(self, name: str) -> Arrivals:
        return self.queues.setdefault(name, Arrivals(name))

    def submit(self, number: str) -> None:
        """The broker confirmed the record: from now on it is the nodes' to deliver."""
        self.last_submitted = self.submitted[number] = time.monotonic()

    def clear(self, number: str) -> bool:
        """Count a certificate at CN's clearance; whether it is its first copy."""
        self.cleared[number] += 1
        self.last_cleared = time.monotonic()
        return self.cleared[number] == 1

    def decide(self, number: str) -> None:
        self.decided[number] += 1
        self.last_decided = time.monotonic()
        self.decided_log.append((self.last_decided, number))

    def note(self, problem: str) -> None:
        self.problems.append(problem)

    # --- what the run is judged on ----------------------------------------------------

    def complete(self, numbers: list[str]) -> bool:
        return all(self.cleared[n] and self.decided[n] for n in numbers)

    def duplicated(self) -> list[str]:
        """Every extra copy: a second message id for a certificate, or a second copy."""
        extra = [d for a in self.queues.values() for d in a.duplicates]
        for label, counts in (
            ("CN clearance", self.cleared),
            ("KR issuing", self.decided),
            ("KR delivered events", self.receipts),
            ("CN delivered events", self.feedback_receipts),
        ):
            extra += [
                f"{label}: {n} arrived {c} times under different message ids"
                for n, c in counts.items()
                if c > 1
            ]
        return extra

    def outstanding(self) -> tuple[int, int]:
        """Certificates submitted but not at clearance; at clearance but not decided."""
        return (
            sum(1 for n in self.submitted if not self.cleared[n]),
            sum(1 for n in self.cleared if not self.decided[n]),
        )

    def round_trip_since(self, since: float) -> float | None:
        """When a certificate submitted after ``since`` was first decided, if one was."""
        start = bisect.bisect_right(self.decided_log, (since, "\uffff"))
        for at, number in self.decided_log[start:]:
            if self.submitted.get(number, -1.0) >= since:
                return at
        return None

    def moved_since(self, since: float) -> bool:
        """A new certificate reached clearance and a new decision reached issuing; or
        everything is through, so nothing more can move."""
        to_clear, to_decide = self.outstanding()
        if len(self.submitted) == self.count and to_clear == to_decide == 0:
            return True
        return min(self.last_cleared, self.last_decided) > since

    async def progress_since(self, since: float, within: float) -> float | None:
        """Seconds from ``since`` until the traffic moved both ways again; None when it did
        not within ``within`` (stuck)."""
        deadline = since + within
        while True:
            if self.moved_since(since):
                return max(0.0, min(self.last_cleared, self.last_decided) - since)
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(POLL_S)

    async def round_trip(self, since: float, within: float) -> float | None:
        """Seconds from ``since`` until a certificate submitted after it had gone the whole
        way (KR, CN's clearance, its decision back at KR's issuing): the recovery a user
        sees. None if none did within ``within`` (or none was submitted)."""
        deadline = since + within
        while True:
            done = self.round_trip_since(since)
            if done is not None:
                return done - since
            none_after = len(self.submitted) == self.count and self.last_submitted < since
            if none_after or time.monotonic() > deadline:
                return None
            await asyncio.sleep(POLL_S)
