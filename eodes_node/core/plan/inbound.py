"""Planning a batch of envelopes from the partner: verify, decide, answer with one receipt.

``prepare`` verifies every envelope (pure CPU), ``query`` names the facts the batch
needs, ``plan`` decides message by message against them. Later messages of a batch see
the effects of earlier ones; copies within one batch are answered by the batch's receipt.
Opening the batch lives in ``inbound_opening``, sealing its receipt in ``inbound_receipt``.
"""

from __future__ import annotations

from datetime import datetime

from eodes_node.core.decide import (
    CertFacts,
    InboundDecision,
    OutboundFacts,
    PriorInbound,
    applied,
    decide_inbound,
    rejection_entry,
)
from eodes_node.core.envelope import Opened
from eodes_node.core.jws import digest
from eodes_node.core.messages import (
    Kind,
    Receipt,
    ReceiptEntry,
    certificate_number_of,
    new_message_id,
)
from eodes_node.core.plan.common import (
    DeadLetter,
    Door,
    Handoff,
    Identity,
    Plan,
    claimed_id,
    inbound_binding,
    looks_like_id,
)
from eodes_node.core.plan.inbound_opening import Opening as Opening
from eodes_node.core.plan.inbound_opening import cert_key as cert_key
from eodes_node.core.plan.inbound_opening import prepare as prepare
from eodes_node.core.plan.inbound_opening import query as query
from eodes_node.core.plan.inbound_opening import replaced_key, verification_id
from eodes_node.core.plan.inbound_receipt import seal_answer
from eodes_node.core.plan.receipts import settle
from eodes_node.core.verification import VerificationFacts, folded
from eodes_node.core.work import Delivery, Facts, InboundRow
from eodes_node.errors import InvalidMessage, PeerError

_KIND_NAMES = frozenset(k.value for k in Kind)


def plan(
    opening: Opening,
    facts: Facts,
    identity: Identity,
    now: datetime,
    *,
    uncertain: frozenset[str] = frozenset(),
) -> Plan:
    """``uncertain``: bindings whose settle died without an answer; a copy of their
    message re-issues their unpublished hand-offs even when it is not a redelivery."""
    planner = _InboundPlanner(identity, facts, uncertain)
    for delivery, exc in opening.refused:
        planner.refuse_unverified(delivery, exc)
    for delivery, opened in opening.others:
        planner.take(delivery, opened)
    planner.take_receipts(opening.receipts)
    planner.answer(now)
    return planner.plan


class _InboundPlanner:
    """The running state of one batch's decisions: its plan, receipt and overlays."""

    def __init__(self, identity: Identity, facts: Facts, uncertain: frozenset[str]) -> None:
        self.id = identity
        self.uncertain = uncertain
        self.plan = Plan()
        self.entries: list[ReceiptEntry] = []
        self.receipt_id = new_message_id()
        self.priors: dict[str, PriorInbound] = dict(facts.priors)
        self.certs: dict[tuple[str, str], CertFacts] = dict(facts.certificates)
        self.sent: dict[str, OutboundFacts] = dict(facts.outbound)
        self.asked: dict[str, VerificationFacts] = dict(facts.verifications)
        self.resend: dict[str, bytes] = {}  # earlier receipts that answer duplicates

    def refuse_unverified(self, delivery: Delivery, exc: PeerError) -> None:
        """A message that failed verification: dead-letter it, and tell the partner why.

        Nothing in it can be trusted, so the rejection names only the id and type the
        transport claimed, and the digest of the exact bytes we received.
        """
        self.plan.note(
            "warning",
            "partner_message_refused",
            delivery.message_id,
            None,
            code=exc.code,
            reason=exc.reason,
            size=len(delivery.body),
        )
        self._dead_letter(delivery, exc, f"raw:{digest(delivery.body)}")
        kind = delivery.kind if delivery.kind in _KIND_NAMES else None
        if looks_like_id(delivery.message_id) and kind and kind != Kind.RECEIPT.value:
            assert delivery.message_id is not None
            self.entries.append(
                rejection_entry(
                    delivery.message_id,
                    Kind(kind),
                    digest(delivery.body.strip()),
                    exc.code,
                    exc.reason,
                )
            )

    def _dead_letter(self, delivery: Delivery, exc: PeerError, binding: str) -> None:
        self.plan.effects.append(
            DeadLetter(
                Door.INBOUND,
                delivery.body,
                claimed_id(delivery),
                delivery.kind or "unknown",
                f"{exc.code}: {exc.reason}",
                binding,
            )
        )

    def take(self, delivery: Delivery, opened: Opened) -> None:
        m = opened.message
        prior = self.priors.get(m.message_id)
        in_this_batch = prior is not None and prior.receipt_id == self.receipt_id
        if in_this_batch and prior is not None and prior.digest == opened.digest:
            return  # a copy within this batch: this batch's receipt answers it
        key = cert_key(m)
        replaced = replaced_key(m)
        try:
            decision = decide_inbound(
                opened,
                prior=prior,
                certificate=self.certs.get(key) if key else None,
                referenced=self.certs.get(replaced) if replaced else None,
                verification=self.asked.get(verification_id(m) or ""),
            )
        except InvalidMessage as exc:
            self._reject(delivery, opened, prior, exc)
            return
        if decision.duplicate:
            self._duplicate(delivery, opened, prior)
        else:
            self._accept(opened, decision)

    def _reject(
        self, delivery: Delivery, opened: Opened, prior: PriorInbound | None, exc: InvalidMessage
    ) -> None:
        m = opened.message
        number = certificate_number_of(m)
        entry = rejection_entry(
            m.message_id, opened.kind, opened.digest, exc.code, exc.reason, number
        )
        self.plan.note(
            "warning",
            "partner_message_rejected",
            m.message_id,
            number,
            kind=opened.kind.value,
            code=exc.code,
            reason=exc.reason,
        )
        if prior is None:
            self.plan.inbound.append(self._row(opened, "rejected", entry))
            self.priors[m.message_id] = PriorInbound(opened.digest, entry, self.receipt_id)
        self.entries.append(entry)
        self._dead_letter(delivery, exc, inbound_binding(self.id.partner, m.message_id))

    def _duplicate(self, delivery: Delivery, opened: Opened, prior: PriorInbound | None) -> None:
        m = opened.message
        self.plan.note(
            "info",
            "duplicate_received",
            m.message_id,
            certificate_number_of(m),
            kind=opened.kind.value,
            redelivered=delivery.redelivered,
        )
        if prior is not None and prior.receipt_id and prior.receipt_token is not None:
            self.resend[prior.receipt_id] = prior.receipt_token
        self._reissue(delivery, m.message_id)

    def _reissue(self, delivery: Delivery, message_id: str) -> None:
        """A copy of a message we already took: its hand-offs go out again if they may
        not have (the delivery came back, or its settle died without an answer). The
        store returns only those still unpublished."""
        binding = inbound_binding(self.id.partner, message_id)
        if delivery.redelivered or binding in self.uncertain:
            self.plan.reissue.append(binding)

    def _accept(self, opened: Opened, decision: InboundDecision) -> None:
        m = opened.message
        number = certificate_number_of(m)
        assert decision.entry is not None
        self.priors[m.message_id] = PriorInbound(opened.digest, decision.entry, self.receipt_id)
        self.entries.append(decision.entry)
        self.plan.inbound.append(self._row(opened, "accepted", decision.entry))
        self.plan.transitions.extend(decision.transitions)
        applied(self.certs, list(decision.transitions))
        self.plan.verifications.extend(decision.verifications)
        folded(self.asked, list(decision.verifications))
        if decision.deliver_to is not None:
            headers = {"x-eodes-sender": self.id.partner, "x-eodes-digest": opened.digest}
            if number:
                headers["x-eodes-certificate"] = number
            self.plan.effects.append(
                Handoff(
                    decision.deliver_to,
                    opened.payload,
                    m.message_id,
                    opened.kind.value,
                    headers,
                    inbound_binding(self.id.partner, m.message_id),
                )
            )
        self.plan.note(
            "info",
            "partner_message_accepted",
            m.message_id,
            number,
            kind=opened.kind.value,
            delivered_to=decision.deliver_to,
        )

    def _row(self, opened: Opened, status: str, entry: ReceiptEntry | None) -> InboundRow:
        return InboundRow(
            sender=self.id.partner,
            message_id=opened.message.message_id,
            kind=opened.kind,
            digest=opened.digest,
            token=opened.token,
            status=status,
            code=entry.code.value if entry and entry.code else None,
            text=entry.text if entry else "",
            certificate_number=certificate_number_of(opened.message),
            receipt_entry=entry.model_dump_json(exclude_none=True) if entry else None,
            receipt_id=self.receipt_id if entry else None,
        )

    def take_receipts(self, receipts: list[tuple[Delivery, Opened]]) -> None:
        """Settle what the partner's receipts answer; a receipt seen before only re-issues."""
        stored: set[str] = set()
        for delivery, opened in receipts:
            rid = opened.message.message_id
            if rid in self.priors:
                self._reissue(delivery, rid)
                continue
            if rid in stored:
                continue
            stored.add(rid)
            assert isinstance(opened.message, Receipt)
            self.plan.inbound.append(self._row(opened, "accepted", None))
            settle(self.plan, opened.message, self.sent, self.certs, self.id.partner)

    def answer(self, now: datetime) -> None:
        """The batch's receipt, and earlier receipts again for duplicates (may raise
        ``KeyMayNotSign``; see ``inbound_receipt.seal_answer``)."""
        seal_answer(self.plan, self.id, self.receipt_id, self.entries, self.resend, now)
