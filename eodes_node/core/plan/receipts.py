"""Settling our sent messages from a partner's receipt."""

from __future__ import annotations

from typing import Any

from eodes_node.core.decide import CertFacts, OutboundFacts, applied, decide_receipt
from eodes_node.core.messages import Kind, Receipt
from eodes_node.core.plan.common import Plan, inbound_binding, item
from eodes_node.core.state import Role
from eodes_node.core.work import OutboundUpdate


def settle(
    plan: Plan,
    receipt: Receipt,
    sent: dict[str, OutboundFacts],
    certs: dict[tuple[str, str], CertFacts],
    partner: str,
) -> None:
    """Record each entry's outcome once; ``sent`` and ``certs`` are the batch's overlays,
    so a second receipt in the same batch sees what the first one settled."""
    by_number = {
        number: known for (role, number), known in certs.items() if role == Role.EXPORTER.value
    }
    settled: dict[str, list[dict[str, Any]]] = {"delivered": [], "rejected": []}
    for outcome in decide_receipt(receipt, sent, by_number):
        mine = sent[outcome.message_id]
        if outcome.contradicts:
            plan.note(
                "warning",
                "receipt_contradicts",
                outcome.message_id,
                mine.certificate_number,
                settled=mine.status,
                receipt_says=outcome.status,
                code=outcome.code,
                receipt_id=receipt.message_id,
            )
            continue
        sent[outcome.message_id] = OutboundFacts(
            mine.message_id, mine.kind, mine.certificate_number, outcome.status
        )
        rejected = outcome.status == "rejected"
        plan.note(
            # The partner refused what we sent: the operator must find out why.
            "warning" if rejected else "info",
            "receipt_received",
            outcome.message_id,
            mine.certificate_number,
            status=outcome.status,
            code=outcome.code,
            **({"reason": outcome.text} if rejected else {}),
            was=mine.status,
        )
        plan.outbound_updates.append(
            OutboundUpdate(outcome.message_id, outcome.status, outcome.code, outcome.text)
        )
        plan.transitions.extend(outcome.transitions)
        applied(certs, list(outcome.transitions))
        if mine.kind is not Kind.RECEIPT:
            settled[outcome.status].append(
                item(
                    outcome.message_id,
                    mine.kind.value,
                    mine.certificate_number,
                    outcome.code,
                    outcome.text,
                )
            )
    binding = inbound_binding(partner, receipt.message_id)
    for status, items in settled.items():
        plan.notice(status, items, bound_to=binding)
