"""The NodeStore port in memory, for tests and for trying a node without a database.

Its reference is the SQL store (``eodes_node.adapters.sql``): atomic commits, stale
moves refused, retry updates only on pending messages, claims, the audit hash chain.
This module holds the tables and the ``Store`` port (facts, decide, commit); the other
ports are mixins beside it (``memory_outbox``, ``memory_schedule``, ``memory_audit``,
``memory_reports``), so the store stays one object, as the SQL database is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from eodes_node.core.decide import CertFacts, OutboundFacts, PriorInbound, Transition
from eodes_node.core.messages import ReceiptEntry
from eodes_node.core.state import Role, State
from eodes_node.core.verification import VerificationFacts, VerificationMove
from eodes_node.errors import StoreConflict, StoreUnavailable
from eodes_node.ports import (
    Clock,
    Decide,
    Decision,
    Facts,
    FactsQuery,
    InboundRow,
    OutboundRow,
    Publication,
    UnitOfWork,
)
from eodes_node.testing.memory_audit import MemoryAudit
from eodes_node.testing.memory_outbox import MemoryOutbox
from eodes_node.testing.memory_reports import MemoryReports
from eodes_node.testing.memory_schedule import MemorySchedule
from eodes_node.testing.tables import (
    GENESIS,
    CertKey,
    HistoryRecord,
    StoredOutbound,
    chain_hash,
    planned_states,
    refuse_duplicate_rows,
)

__all__ = ["InMemoryStore"]


class InMemoryStore(MemoryOutbox, MemorySchedule, MemoryAudit, MemoryReports):
    """The NodeStore and Reports ports in memory, with the SQL store's observable semantics.

    No method awaits anything, so each call is atomic with respect to the event loop, as a
    transaction is. Claims and unflushed marks are the process's memory, as in the SQL
    store; ``restart()`` drops them the way a crash would.
    """

    def __init__(self, clock: Clock, *, own: str = "", partner: str = "") -> None:
        self._clock = clock
        self.own, self.partner = own, partner  # who signed what, for verification look-ups
        self._inbound: dict[tuple[str, str], tuple[InboundRow, float]] = {}
        self._outbound: dict[str, StoredOutbound] = {}
        self._local_keys: dict[str, str] = {}
        self._certificates: dict[tuple[str, str], CertFacts] = {}
        # Verification requests by request id, with their due time and answer.
        self.verifications: dict[str, tuple[VerificationFacts, float, str | None]] = {}
        self.history: list[HistoryRecord] = []
        self._last_chain = GENESIS
        self._next_history_id = 1
        self._outbox: dict[int, Publication] = {}
        self._next_outbox_id = 1
        self._published: set[int] = set()  # marks written to the "database"
        self._published_pending: set[int] = set()  # confirmed, mark not written yet
        self._claimed: set[int] = set()  # handed out by commit, not confirmed or released
        self._failing_commits = 0
        self.commits = 0

    # -- lifecycle and test controls --------------------------------------------------

    async def open(self) -> None:
        """Nothing to open: the tables live as long as the object."""

    async def close(self) -> None:
        """Nothing to close; the data stays readable for assertions."""

    def fail_next_commits(self, n: int = 1) -> None:
        """The next ``n`` commits raise ``StoreUnavailable`` and change nothing."""
        self._failing_commits = n

    def restart(self) -> None:
        """Lose what a crashed process loses: claims and marks not yet flushed."""
        self._claimed.clear()
        self._published_pending.clear()
        self._last_chain = self.history[-1].chain if self.history else GENESIS

    # -- read helpers for tests and integrators ----------------------------------------

    def certificate_facts(self, role: str, number: str) -> CertFacts | None:
        return self._certificates.get((role, number))

    def certificate_state(self, role: str, number: str) -> str | None:
        cert = self._certificates.get((role, number))
        return None if cert is None else cert.state.value

    def inbound_row(self, sender: str, message_id: str) -> InboundRow | None:
        found = self._inbound.get((sender, message_id))
        return None if found is None else found[0]

    def outbound_row(self, message_id: str) -> StoredOutbound | None:
        return self._outbound.get(message_id)

    # -- Store ---------------------------------------------------------------------------

    async def facts(self, query: FactsQuery) -> Facts:
        facts = Facts()
        for message_id in set(query.message_ids):
            found = self._inbound.get((query.sender, message_id))
            if found is not None:
                facts.priors[message_id] = self._prior(found[0])
        wanted = set(query.certificates)
        for message_id in set(query.outbound_ids):
            row = self._outbound.get(message_id)
            if row is None:
                continue
            facts.outbound[message_id] = OutboundFacts(
                message_id, row.kind, row.certificate_number, row.status
            )
            if row.certificate_number:
                wanted.add((Role.EXPORTER.value, row.certificate_number))
        facts.certificates = {k: self._certificates[k] for k in wanted if k in self._certificates}
        for local_key in set(query.local_keys):
            if local_key in self._local_keys:
                row = self._outbound[self._local_keys[local_key]]
                facts.local_keys[local_key] = (row.message_id, row.record_digest or "")
        for request_id in set(query.verification_ids):
            if request_id in self.verifications:
                facts.verifications[request_id] = self.verifications[request_id][0]
        return facts

    def _prior(self, row: InboundRow) -> PriorInbound:
        entry = ReceiptEntry.model_validate_json(row.receipt_entry) if row.receipt_entry else None
        receipt = self._outbound.get(row.receipt_id) if row.receipt_id else None
        token = None if receipt is None else receipt.token
        return PriorInbound(row.digest, entry, row.receipt_id, token)

    async def decide(
        self, query: FactsQuery, decide: Decide[Decision]
    ) -> tuple[Decision, UnitOfWork, list[int]]:
        decision, unit = decide(await self.facts(query) if query else Facts())
        return decision, unit, (await self.commit(unit) if unit else [])

    async def commit(self, unit: UnitOfWork) -> list[int]:
        """Check the whole unit first, then apply it; a refusal changes nothing."""
        if self._failing_commits > 0:
            self._failing_commits -= 1
            raise StoreUnavailable("injected: the store did not answer")
        refuse_duplicate_rows(unit, self._inbound, self._outbound, self._local_keys)
        final = planned_states(unit.transitions, self._certificates)
        self._check_verifications(unit.verifications)
        now = self._clock.now().timestamp()
        for row in unit.inbound:
            self._inbound[(row.sender, row.message_id)] = (row, now)
        for out in unit.outbound:
            self._insert_outbound(out, now)
        self._apply_updates(unit, now)
        self._apply_transitions(unit.transitions, final, now)
        for move in unit.verifications:
            answer = move.message_id if move.result is not None else None
            earlier = self.verifications.get(move.request_id)
            kept = earlier[2] if earlier is not None else None
            self.verifications[move.request_id] = (move.facts(), move.due_at, answer or kept)
        # Marks from earlier batches ride along, as in the SQL store.
        self._published |= self._published_pending
        self._published_pending.clear()
        self.commits += 1
        return [self._enqueue(p) for p in unit.publications]

    def _apply_transitions(
        self, transitions: Sequence[Transition], final: dict[CertKey, State], now: float
    ) -> None:
        """Create new certificates, set every touched one's final state, chain the history."""
        for t in transitions:
            if t.before is None:
                coo = t.coo_message_id or t.message_id
                self._certificates[(t.role.value, t.number)] = CertFacts(
                    t.number, t.role, t.after, coo
                )
        for key, state in final.items():
            self._certificates[key] = replace(self._certificates[key], state=state)
        for t in transitions:
            if t.before is not None and t.coo_message_id:  # a re-send in a new message
                key = (t.role.value, t.number)
                self._certificates[key] = replace(
                    self._certificates[key], coo_message_id=t.coo_message_id
                )
        for t in transitions:
            self._last_chain = chain_hash(self._last_chain, t, now)
            self.history.append(HistoryRecord.of(self._next_history_id, t, now, self._last_chain))
            self._next_history_id += 1

    def _check_verifications(self, moves: Sequence[VerificationMove]) -> None:
        """As the SQL store: a new request's id must be free (the primary key: the
        database refuses the insert, and the store reports it unavailable); a known
        request's first move in a unit must start where it is."""
        created: set[str] = set()
        for move in moves:
            if move.before is None:
                if move.request_id in self.verifications or move.request_id in created:
                    raise StoreUnavailable(
                        "store: IntegrityError: UNIQUE constraint failed: "
                        f"verification_requests.request_id ({move.request_id})"
                    )
                created.add(move.request_id)
        seen: set[str] = set(created)
        for move in moves:
            if move.request_id in seen:
                continue
            seen.add(move.request_id)
            held = self.verifications.get(move.request_id)
            state = None if held is None else held[0].state
            if move.before != state:
                raise StoreConflict(
                    f"verification request {move.request_id} is no longer "
                    f"{move.before.value if move.before else 'new'}"
                )

    def _insert_outbound(self, row: OutboundRow, now: float) -> None:
        self._outbound[row.message_id] = StoredOutbound.of(row, now)
        if row.local_key is not None:
            self._local_keys[row.local_key] = row.message_id

    def _apply_updates(self, unit: UnitOfWork, now: float) -> None:
        # Attempts first, settlements second, as the SQL store runs them.
        for u in unit.outbound_updates:
            row = self._outbound.get(u.message_id)
            if u.status == "pending" and row is not None and row.status in ("pending", "failed"):
                # A retry attempt never overrides a receipt that arrived meanwhile; on a
                # failed message it is an operator's re-send, which reopens it.
                attempts = row.attempts + 1 if u.attempts is None else u.attempts
                self._outbound[u.message_id] = replace(
                    row,
                    status="pending",
                    attempts=attempts,
                    next_attempt_at=u.next_attempt_at,
                    updated_at=now,
                )
        for u in unit.outbound_updates:
            row = self._outbound.get(u.message_id)
            if u.status != "pending" and row is not None:
                self._outbound[u.message_id] = replace(
                    row,
                    status=u.status,
                    receipt_code=u.code,
                    receipt_text=u.text,
                    next_attempt_at=None,
                    updated_at=now,
                )
