"""The in-memory store's rows and the checks a commit runs before it changes anything.

Pure functions over plain values, kept apart from ``InMemoryStore`` so the rules the SQL
store enforces with constraints and ``_apply_transitions`` read as one list here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from eodes_node.adapters.sql.audit import GENESIS
from eodes_node.adapters.sql.audit import chain as chain_hash
from eodes_node.core.decide import CertFacts, Transition
from eodes_node.core.messages import Kind
from eodes_node.core.state import Event, Role, State
from eodes_node.errors import AuditTrailBroken, StoreConflict
from eodes_node.ports import InboundRow, OutboundRow, UnitOfWork

__all__ = [
    "GENESIS",
    "CertKey",
    "HistoryRecord",
    "StoredOutbound",
    "chain_hash",
    "planned_states",
    "refuse_duplicate_rows",
    "verify_chain",
]


CertKey = tuple[str, str]  # (role, number)


@dataclass(frozen=True, slots=True)
class StoredOutbound:
    """An outbound message as the store keeps it: the row plus what happened to it."""

    message_id: str
    kind: Kind
    certificate_number: str | None
    correlation_id: str | None
    token: bytes
    local_key: str | None
    record_digest: str | None
    status: str
    attempts: int
    next_attempt_at: float | None
    receipt_code: str | None
    receipt_text: str | None
    created_at: float
    updated_at: float

    @classmethod
    def of(cls, row: OutboundRow, now: float) -> StoredOutbound:
        return cls(
            row.message_id,
            row.kind,
            row.certificate_number,
            row.correlation_id,
            row.token,
            row.local_key,
            row.record_digest,
            row.status,
            row.attempts,
            row.next_attempt_at,
            None,
            None,
            now,
            now,
        )


@dataclass(frozen=True, slots=True)
class HistoryRecord:
    """One line of a certificate's history; ``chain`` covers every line before it.

    Frozen: a test that tampers with history replaces a record in ``InMemoryStore.history``,
    and ``verify_audit_chain`` must then fail.
    """

    id: int
    role: str
    number: str
    at: float
    event: str
    before: str | None
    after: str
    message_id: str
    chain: str

    @classmethod
    def of(cls, id_: int, t: Transition, at: float, chain: str) -> HistoryRecord:
        before = t.before.value if t.before else None
        return cls(
            id_,
            t.role.value,
            t.number,
            at,
            t.event.value,
            before,
            t.after.value,
            t.message_id,
            chain,
        )

    def transition(self) -> Transition:
        return Transition(
            self.number,
            Role(self.role),
            State(self.before) if self.before else None,
            State(self.after),
            Event(self.event),
            self.message_id,
        )


def verify_chain(history: Iterable[HistoryRecord]) -> int:
    """Recompute the chain over ``history``; returns the rows checked or raises."""
    chain, count = GENESIS, 0
    for h in history:
        chain = chain_hash(chain, h.transition(), h.at)
        if chain != h.chain:
            raise AuditTrailBroken(f"audit chain broken at history row {h.id}")
        count += 1
    return count


def _refuse_repeats(what: str, keys: Iterable[object], existing: Iterable[object]) -> None:
    seen = set(existing)
    for key in keys:
        if key in seen:
            raise StoreConflict(f"{what} {key!r} already exists")
        seen.add(key)


def refuse_duplicate_rows(
    unit: UnitOfWork,
    inbound: Mapping[tuple[str, str], tuple[InboundRow, float]],
    outbound: Mapping[str, object],
    local_keys: Mapping[str, str],
) -> None:
    """The primary and unique keys the SQL schema enforces, checked before any write."""
    _refuse_repeats(
        "inbound message", ((r.sender, r.message_id) for r in unit.inbound), inbound.keys()
    )
    _refuse_repeats("outbound message", (r.message_id for r in unit.outbound), outbound.keys())
    _refuse_repeats(
        "local key",
        (r.local_key for r in unit.outbound if r.local_key is not None),
        local_keys.keys(),
    )


def planned_states(
    transitions: Sequence[Transition], certificates: Mapping[CertKey, CertFacts]
) -> dict[CertKey, State]:
    """Each touched certificate's state after the batch, or ``StoreConflict``.

    The SQL store's ``_apply_transitions`` rule: a move must start from the state the
    store holds (or from the state an earlier move of the same batch left).
    """
    created = [(t.role.value, t.number) for t in transitions if t.before is None]
    _refuse_repeats("certificate", created, certificates.keys())
    fresh = set(created)
    expected: dict[CertKey, State] = {}
    final: dict[CertKey, State] = {}
    for t in transitions:
        key = (t.role.value, t.number)
        if t.before is not None and key in final and final[key] != t.before:
            raise StoreConflict(f"certificate {t.number}: moves of one batch disagree")
        if t.before is not None and key not in final and key not in fresh:
            expected[key] = t.before
        final[key] = t.after
    for key, state in expected.items():
        current = certificates.get(key)
        if current is None or current.state != state:
            # Decided on a state that changed meanwhile: retry with fresh facts.
            raise StoreConflict(f"certificate {key[1]} is no longer {state.value}")
    return final
