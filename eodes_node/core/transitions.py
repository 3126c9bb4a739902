"""Certificate facts and the transitions decisions return over them.

Kept apart from ``decide`` because every kind of decision shares them: inbound partner
messages, receipts and retry exhaustion (``settlement``), and our own systems' records
(``decide_local``). Legality comes from the state table in ``state``; this module only
applies it to the facts the store holds.
"""

from __future__ import annotations

from dataclasses import dataclass

from eodes_node.core.state import Event, Role, State, next_state


@dataclass(frozen=True, slots=True)
class CertFacts:
    number: str
    role: Role
    state: State
    coo_message_id: str


@dataclass(frozen=True, slots=True)
class Transition:
    number: str
    role: Role
    before: State | None
    after: State
    event: Event
    message_id: str
    coo_message_id: str | None = None  # set when the transition creates the certificate


def move(
    facts: CertFacts | None, role: Role, number: str, event: Event, message_id: str
) -> Transition:
    before = facts.state if facts is not None else None
    after = next_state(role, before, event)
    return Transition(
        number,
        role,
        before,
        after,
        event,
        message_id,
        coo_message_id=message_id if before is None else None,
    )


def applied(certs: dict[tuple[str, str], CertFacts], moves: list[Transition]) -> None:
    """Fold moves into a facts overlay, so later messages of a batch see earlier ones."""
    for t in moves:
        known = certs.get((t.role.value, t.number))
        coo = t.coo_message_id or (known.coo_message_id if known else t.message_id)
        certs[(t.role.value, t.number)] = CertFacts(t.number, t.role, t.after, coo)
