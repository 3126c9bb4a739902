"""Settling the messages we sent: what a partner's receipt, or its absence, decides.

Kept apart from ``decide`` (which judges messages a partner sends us) because this is
the other direction: the facts are our outbound records, and the outcome is how each
is settled and how the certificate it carried moves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from eodes_node.core.messages import Kind, Receipt, ReceiptEntry, ReceiptStatus
from eodes_node.core.state import Event, IllegalTransition, Role
from eodes_node.core.transitions import CertFacts, Transition, move


@dataclass(frozen=True, slots=True)
class OutboundFacts:
    message_id: str
    kind: Kind
    certificate_number: str | None
    status: str


@dataclass(frozen=True, slots=True)
class ReceiptOutcome:
    message_id: str
    status: str  # delivered | rejected
    code: str | None
    text: str
    transitions: tuple[Transition, ...] = field(default=())
    # The message was settled the other way before: the entry is refused, not applied.
    contradicts: bool = False


# Only these are open to a receipt: a delivered or rejected message stays as it was
# settled, and a receipt of ours is never answered.
SETTLEABLE = frozenset({"pending", "failed"})
SETTLED = frozenset({"delivered", "rejected"})


def decide_receipt(
    receipt: Receipt, outbound: Mapping[str, OutboundFacts], certs: Mapping[str, CertFacts]
) -> list[ReceiptOutcome]:
    """Which of our sent messages a receipt settles, and how their certificates move.

    Entries for messages we never sent are ignored: a receipt cannot create state. An
    entry that repeats a settlement is a no-op; one that contradicts it is returned with
    ``contradicts`` set and must not be applied.
    """
    outcomes = []
    for entry in receipt.entries:
        sent = outbound.get(entry.message_id)
        if sent is None:
            continue
        status = "delivered" if entry.status is ReceiptStatus.ACCEPTED else "rejected"
        code = entry.code.value if entry.code else None
        if sent.status in SETTLEABLE:
            moves = _receipt_moves(sent, certs.get(sent.certificate_number or ""), entry)
            outcomes.append(ReceiptOutcome(entry.message_id, status, code, entry.text, moves))
        elif sent.status in SETTLED and sent.status != status:
            outcomes.append(
                ReceiptOutcome(entry.message_id, status, code, entry.text, contradicts=True)
            )
    return outcomes


def _receipt_moves(
    sent: OutboundFacts, cert: CertFacts | None, entry: ReceiptEntry
) -> tuple[Transition, ...]:
    """The certificate's move when the receipt answers the e-CO that carried it."""
    if sent.kind not in (Kind.COO, Kind.COO_REPLACEMENT) or cert is None:
        return ()
    accepted = entry.status is ReceiptStatus.ACCEPTED
    event = Event.RECEIPT_ACCEPTED if accepted else Event.RECEIPT_REJECTED
    try:
        return (move(cert, Role.EXPORTER, cert.number, event, entry.message_id),)
    except IllegalTransition:
        return ()


def retries_exhausted(cert: CertFacts | None, message_id: str) -> Transition | None:
    """The certificate move when a sent e-CO gets no receipt within its retry budget."""
    if cert is None or cert.coo_message_id != message_id:
        return None
    try:
        return move(cert, Role.EXPORTER, cert.number, Event.RETRIES_EXHAUSTED, message_id)
    except IllegalTransition:
        return None
