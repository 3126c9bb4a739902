"""The ``Schedule`` port over ``InMemoryStore``'s tables: resends and verification answers due.

A mixin, so the in-memory store stays one object that plays every port, as the SQL
database does; it answers what the SQL store's schedule queries answer.
"""

from __future__ import annotations

from eodes_node.core.state import Role
from eodes_node.core.verification import VerificationFacts
from eodes_node.ports import Due
from eodes_node.testing.tables import StoredOutbound


class MemorySchedule:
    """Needs the outbound and verification tables ``InMemoryStore`` keeps."""

    _outbound: dict[str, StoredOutbound]
    # Verification requests by request id, with their due time and answer.
    verifications: dict[str, tuple[VerificationFacts, float, str | None]]

    # -- Schedule ------------------------------------------------------------------------

    async def due(self, now: float, limit: int) -> list[Due]:
        rows = sorted(
            (
                r
                for r in self._waiting()
                if r.next_attempt_at is not None and r.next_attempt_at <= now
            ),
            key=lambda r: r.next_attempt_at or 0.0,
        )
        return [
            Due(r.message_id, r.kind, r.certificate_number, r.token, r.attempts)
            for r in rows[:limit]
        ]

    async def next_due_at(self) -> float | None:
        times = [r.next_attempt_at for r in self._waiting() if r.next_attempt_at is not None]
        times += [due_at for _, due_at in self._asked_by_us()]
        return min(times, default=None)

    async def overdue(self, now: float, limit: int) -> list[VerificationFacts]:
        late = sorted((due_at, v.request_id, v) for v, due_at in self._asked_by_us())
        return [v for due_at, _, v in late if due_at <= now][:limit]

    def _asked_by_us(self) -> list[tuple[VerificationFacts, float]]:
        """Requests we sent that wait for their answer, with when each is due."""
        return [
            (v, due_at)
            for v, due_at, _ in self.verifications.values()
            if v.role is Role.IMPORTER and v.state.value == "pending"
        ]

    def _waiting(self) -> list[StoredOutbound]:
        return [r for r in self._outbound.values() if r.status == "pending"]
