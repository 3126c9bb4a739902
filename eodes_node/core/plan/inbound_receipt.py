"""Sealing the one receipt that answers a batch from the partner.

Kept apart from the decisions: it only signs what the planner gathered, and it is the one
step that can refuse the whole batch (``KeyMayNotSign``).
"""

from __future__ import annotations

from datetime import datetime

from eodes_node.core.envelope import seal
from eodes_node.core.messages import Kind, Receipt, ReceiptEntry, issued_now
from eodes_node.core.plan.common import Identity, Plan, ToPartner, signing_key
from eodes_node.core.work import OutboundRow


def seal_answer(
    plan: Plan,
    identity: Identity,
    receipt_id: str,
    entries: list[ReceiptEntry],
    resend: dict[str, bytes],
    now: datetime,
) -> None:
    """One signed receipt for the batch; duplicates get their earlier receipt again.

    Raises ``KeyMayNotSign`` when our key is outside its window: the partner would
    refuse the receipt, so the batch is not decided and stays in our inbound queue
    (the partner resends meanwhile). A batch of receipts alone needs no signature.
    """
    if entries:
        receipt = Receipt(
            message_id=receipt_id,
            sender=identity.own,
            receiver=identity.partner,
            issued_at=issued_now(now),
            entries=tuple(entries),
        )
        token = seal(receipt, signing_key(identity, now))
        plan.outbound.append(
            OutboundRow(
                receipt_id,
                Kind.RECEIPT,
                None,
                None,
                token,
                None,
                None,
                attempts=1,
                next_attempt_at=None,
                status="sent",
            )
        )
        plan.effects.append(ToPartner(token, receipt_id, Kind.RECEIPT.value))
    for rid, token in resend.items():
        plan.effects.append(ToPartner(token, rid, Kind.RECEIPT.value))
