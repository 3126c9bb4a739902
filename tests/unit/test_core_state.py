"""The certificate state machine and the pure decisions, without broker or database."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eodes_node.core.decide import (
    CertFacts,
    OutboundFacts,
    PriorInbound,
    applied,
    decide_inbound,
    decide_receipt,
    retries_exhausted,
)
from eodes_node.core.decide_local import decide_local_certificate, decide_local_feedback
from eodes_node.core.envelope import Opened, open_envelope, seal
from eodes_node.core.jws import KeySet, PrivateKey
from eodes_node.core.messages import (
    CooCancellation,
    CooIssued,
    Decision,
    Feedback,
    FeedbackBody,
    ImportDeclaration,
    ItemDecision,
    Kind,
    MessageBase,
    Receipt,
    ReceiptEntry,
    ReceiptStatus,
    certificate_number_of,
    new_message_id,
)
from eodes_node.core.models import Cancellation
from eodes_node.core.state import (
    TRANSITIONS,
    Event,
    IllegalTransition,
    Role,
    State,
    next_state,
)
from eodes_node.errors import InvalidMessage, InvalidRecord, RejectionCode
from eodes_node.samples import SampleFactory

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
KR, CN = PrivateKey.generate(), PrivateKey.generate()
KR_KEYS, CN_KEYS = KeySet({KR.kid: KR.public}, "KR"), KeySet({CN.kid: CN.public}, "CN")


def test_late_receipt_after_failure_still_counts() -> None:
    assert next_state(Role.EXPORTER, State.FAILED, Event.RECEIPT_ACCEPTED) is State.DELIVERED


def test_feedback_may_overtake_the_receipt() -> None:
    assert next_state(Role.EXPORTER, State.PENDING, Event.DENIED) is State.DENIED


@pytest.mark.parametrize("used", [State.GRANTED, State.DENIED, State.PARTIAL])
def test_a_used_certificate_cannot_be_cancelled_or_replaced(used: State) -> None:
    for event in (Event.CANCELLED, Event.REPLACED):
        with pytest.raises(IllegalTransition):
            next_state(Role.IMPORTER, used, event)


def test_illegal_move_names_role_state_and_event() -> None:
    with pytest.raises(IllegalTransition) as caught:
        next_state(Role.IMPORTER, State.CANCELLED, Event.GRANTED)
    assert str(caught.value) == "granted is not allowed for a cancelled certificate (importer side)"


def test_every_state_is_in_the_table_and_only_a_resend_leaves_rejected() -> None:
    for role, table in TRANSITIONS.items():
        for state, moves in table.items():
            for event, after in moves.items():
                assert after in table, f"{role}: {state} --{event}--> {after} leads nowhere"
    assert TRANSITIONS[Role.EXPORTER][State.REJECTED] == {Event.RESENT: State.PENDING}
    assert Event.RESENT not in TRANSITIONS[Role.EXPORTER][State.DELIVERED]
    assert all(Event.RESENT not in moves for moves in TRANSITIONS[Role.IMPORTER].values())


def opened(message: MessageBase, key: PrivateKey = KR, keys: KeySet = KR_KEYS) -> Opened:
    return open_envelope(
        seal(message, key),
        keys,
        receiver="CN" if keys is KR_KEYS else "KR",
        now=NOW,
    )


def coo(seed: int = 1) -> CooIssued:
    return CooIssued(
        message_id=new_message_id(),
        sender="KR",
        receiver="CN",
        issued_at=NOW,
        certificate=SampleFactory("KCFTA", seed=seed, issue_date=NOW.date()).certificate(),
    )


def test_duplicate_gets_the_prior_answer_and_conflict_is_refused() -> None:
    first = opened(coo())
    decision = decide_inbound(first, prior=None, certificate=None)
    assert decision.entry is not None
    assert decision.entry.status is ReceiptStatus.ACCEPTED
    prior = PriorInbound(first.digest, decision.entry, "r1")
    again = decide_inbound(first, prior=prior, certificate=None)
    assert again.duplicate
    assert again.entry == decision.entry
    other = opened(coo(2).model_copy(update={"message_id": first.message.message_id}))
    with pytest.raises(InvalidMessage) as caught:
        decide_inbound(other, prior=prior, certificate=None)
    assert caught.value.code is RejectionCode.ID_CONFLICT


def test_second_copy_of_a_certificate_under_a_new_id_is_refused() -> None:
    message = coo(3)
    known = CertFacts(message.certificate.number, Role.IMPORTER, State.AVAILABLE, "m0")
    again = message.model_copy(update={"message_id": new_message_id()})
    with pytest.raises(InvalidMessage) as caught:
        decide_inbound(opened(again), prior=None, certificate=known)
    assert caught.value.code is RejectionCode.STATE_CONFLICT


def _cancel(number: str) -> CooCancellation:
    cert = SampleFactory("KCFTA", seed=1, issue_date=NOW.date()).certificate()
    return CooCancellation(
        message_id=new_message_id(),
        sender="KR",
        receiver="CN",
        issued_at=NOW,
        cancellation=Cancellation(
            certificate_number=number,
            issuing_authority=cert.header.issuing_authority,
            cancelled_on=NOW.date(),
            reason="withdrawn",
        ),
    )


def test_cancellation_of_an_unknown_certificate_is_refused() -> None:
    with pytest.raises(InvalidMessage) as caught:
        decide_inbound(opened(_cancel("KR2026X0000001")), prior=None, certificate=None)
    assert caught.value.code is RejectionCode.UNKNOWN_CERTIFICATE


def _feedback(number: str, correlation: str, items: int = 1) -> Feedback:
    body = FeedbackBody(
        certificate_number=number,
        decision=Decision.GRANTED,
        import_declaration=ImportDeclaration(reference="I-1", date=NOW.date()),
        items=tuple(ItemDecision(item_number=i, granted=True) for i in range(1, items + 1)),
    )
    return Feedback(
        message_id=new_message_id(),
        sender="CN",
        receiver="KR",
        issued_at=NOW,
        correlation_id=correlation,
        feedback=body,
    )


def test_feedback_must_correlate_to_the_message_that_carried_the_certificate() -> None:
    facts = CertFacts("KR2026X0000002", Role.EXPORTER, State.DELIVERED, new_message_id())
    wrong = opened(_feedback(facts.number, new_message_id()), CN, CN_KEYS)
    with pytest.raises(InvalidMessage) as caught:
        decide_inbound(wrong, prior=None, certificate=facts)
    assert caught.value.code is RejectionCode.UNKNOWN_CERTIFICATE
    right = opened(_feedback(facts.number, facts.coo_message_id), CN, CN_KEYS)
    decision = decide_inbound(right, prior=None, certificate=facts)
    assert [t.after for t in decision.transitions] == [State.GRANTED]


def test_receipts_settle_only_messages_we_sent() -> None:
    sent_id = new_message_id()
    sent = {sent_id: OutboundFacts(sent_id, Kind.COO, "KR2026X0000003", "failed")}
    certs = {"KR2026X0000003": CertFacts("KR2026X0000003", Role.EXPORTER, State.FAILED, sent_id)}
    entries = tuple(
        ReceiptEntry(message_id=mid, kind=Kind.COO, digest="A" * 43, status=ReceiptStatus.ACCEPTED)
        for mid in (sent_id, new_message_id())
    )
    receipt = Receipt(
        message_id=new_message_id(), sender="CN", receiver="KR", issued_at=NOW, entries=entries
    )
    (outcome,) = decide_receipt(receipt, sent, certs)
    assert outcome.status == "delivered"
    assert [t.after for t in outcome.transitions] == [State.DELIVERED]


def test_local_records_follow_the_table() -> None:
    message = coo(4)
    moves = decide_local_certificate(message, None, None)
    assert [(m.before, m.after) for m in moves] == [(None, State.PENDING)]
    with pytest.raises(InvalidRecord, match="already submitted"):
        decide_local_certificate(
            message, CertFacts(message.certificate.number, Role.EXPORTER, State.PENDING, "m"), None
        )
    with pytest.raises(InvalidRecord, match="never sent"):
        decide_local_certificate(_cancel("KR2026X0000004"), None, None)
    cancelled = CertFacts("N1234", Role.IMPORTER, State.CANCELLED, "m")
    body = _feedback("N1234", new_message_id()).feedback
    with pytest.raises(InvalidRecord, match="cannot be used for preference"):
        decide_local_feedback(body, cancelled, new_message_id())
    assert retries_exhausted(CertFacts("N1234", Role.EXPORTER, State.PENDING, "m"), "m") is not None
    assert retries_exhausted(CertFacts("N1234", Role.EXPORTER, State.DELIVERED, "m"), "m") is None


# --- two cores back to back ----------------------------------------------------------


class CorePair:
    """A KR core and a CN core exchanging messages, with what each has decided so far."""

    def __init__(self, seed: int) -> None:
        self.factory = SampleFactory("KCFTA", seed=seed, issue_date=NOW.date())
        self.kr_certs: dict[tuple[str, str], CertFacts] = {}
        self.cn_certs: dict[tuple[str, str], CertFacts] = {}
        self.cn_priors: dict[str, PriorInbound] = {}
        self.sent: list[Opened] = []
        self.clearance: list[str] = []
        self.decided_after_cancel = False

    def cn_receives(self, o: Opened) -> None:
        number = certificate_number_of(o.message)
        assert number is not None
        try:
            d = decide_inbound(
                o,
                prior=self.cn_priors.get(o.message.message_id),
                certificate=self.cn_certs.get(("importer", number)),
            )
        except InvalidMessage:
            return
        if d.duplicate:
            return
        assert d.entry is not None
        self.cn_priors[o.message.message_id] = PriorInbound(o.digest, d.entry, "r")
        applied(self.cn_certs, list(d.transitions))
        if d.deliver_to is not None and isinstance(o.message, CooIssued):
            self.clearance.append(number)

    def send(self) -> None:
        message = CooIssued(
            message_id=new_message_id(),
            sender="KR",
            receiver="CN",
            issued_at=NOW,
            certificate=self.factory.certificate(),
        )
        applied(self.kr_certs, decide_local_certificate(message, None, None))
        o = opened(message)
        self.sent.append(o)
        self.cn_receives(o)

    def resend(self) -> None:
        if self.sent:
            self.cn_receives(self.sent[-1])

    def replay(self) -> None:
        if self.sent:
            self.cn_receives(self.sent[0])

    def feedback(self) -> None:
        if not self.cn_certs:
            return
        (_, number), facts = next(iter(self.cn_certs.items()))
        body = _feedback(number, facts.coo_message_id).feedback
        try:
            move = decide_local_feedback(body, facts, new_message_id())
        except InvalidRecord:
            return
        self.decided_after_cancel |= facts.state is State.CANCELLED
        applied(self.cn_certs, [move])

    def cancel(self) -> None:
        if not self.sent:
            return
        number = self.sent[0].message.certificate.number  # type: ignore[attr-defined]
        cancellation = _cancel(number)
        try:
            moves = decide_local_certificate(
                cancellation, self.kr_certs.get(("exporter", number)), None
            )
        except InvalidRecord:
            return
        applied(self.kr_certs, moves)
        self.cn_receives(opened(cancellation))

    def exhaust(self) -> None:
        """Every e-CO still waiting for its receipt runs out of retries."""
        for facts in list(self.kr_certs.values()):
            exhausted = retries_exhausted(facts, facts.coo_message_id)
            if exhausted is not None:
                applied(self.kr_certs, [exhausted])

    def receipt(self) -> None:
        """CN's receipt accepting every message KR sent reaches KR."""
        if not self.sent:
            return
        ids = {o.message.message_id: o for o in self.sent}
        outbound = {
            mid: OutboundFacts(mid, Kind.COO, o.message.certificate.number, "pending")  # type: ignore[attr-defined]
            for mid, o in ids.items()
        }
        receipt = Receipt(
            message_id=new_message_id(),
            sender="CN",
            receiver="KR",
            issued_at=NOW,
            entries=tuple(
                ReceiptEntry(
                    message_id=mid,
                    kind=Kind.COO,
                    digest=o.digest,
                    status=ReceiptStatus.ACCEPTED,
                )
                for mid, o in ids.items()
            ),
        )
        by_number = {number: f for (_, number), f in self.kr_certs.items()}
        for outcome in decide_receipt(receipt, outbound, by_number):
            applied(self.kr_certs, list(outcome.transitions))


STEPS: dict[str, Callable[[CorePair], None]] = {
    "send": CorePair.send,
    "resend": CorePair.resend,
    "replay": CorePair.replay,
    "receipt": CorePair.receipt,
    "feedback": CorePair.feedback,
    "cancel": CorePair.cancel,
    "exhaust": CorePair.exhaust,
}

# Sampled from the steps themselves, so every step the pair knows is generated.
OPS = st.lists(st.sampled_from(sorted(STEPS)), min_size=1, max_size=25)


@settings(max_examples=150, deadline=None)
@given(ops=OPS, seed=st.integers(0, 1000))
def test_core_pair_invariants(ops: list[str], seed: int) -> None:
    """Any order of sends, resends, replays, receipts, feedback, cancellations and spent
    retry budgets keeps: clearance sees each certificate once; nothing is decided after it
    was cancelled; every state reached is one the table allows."""
    pair = CorePair(seed)
    for op in ops:
        STEPS[op](pair)
    assert len(pair.clearance) == len(set(pair.clearance))
    assert not pair.decided_after_cancel
    for (role, _), facts in {**pair.kr_certs, **pair.cn_certs}.items():
        assert facts.state in TRANSITIONS[Role(role)]
