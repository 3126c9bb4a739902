"""The in-memory fakes keep the contract of the ports they stand in for.

Pure: no broker, no database. The store's reference is the SQL store, so each rule here
is one the SQL store enforces too.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from eodes_node.core.decide import Transition
from eodes_node.core.messages import Kind, ReceiptEntry, ReceiptStatus
from eodes_node.core.state import Event, Role, State
from eodes_node.core.work import POSSIBLE_DUPLICATE
from eodes_node.errors import AuditTrailBroken, BrokerUnavailable, StoreConflict, StoreUnavailable
from eodes_node.ports import (
    PARTNER,
    Audit,
    Clock,
    FactsQuery,
    InboundRow,
    NodeStore,
    OutboundRow,
    OutboundUpdate,
    Outbox,
    Publication,
    Schedule,
    Store,
    Transport,
    UnitOfWork,
)
from eodes_node.service.outbox import OutboxPublisher
from eodes_node.testing import InMemoryStore, ManualClock, RecordingTransport
from eodes_node.testing.tables import GENESIS, chain_hash

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
NUMBER = "KR2026KCFTA0000001"
DIGEST = "A" * 43
EXPORTER, IMPORTER = Role.EXPORTER.value, Role.IMPORTER.value


def mid() -> str:
    return str(uuid.uuid4())


def sent(
    message_id: str,
    *,
    number: str | None = NUMBER,
    kind: Kind = Kind.COO,
    next_at: float | None = 100.0,
    local_key: str | None = None,
) -> OutboundRow:
    return OutboundRow(
        message_id, kind, number, None, b"token-" + message_id.encode(), local_key, "d", 1, next_at
    )


def move(before: State | None, after: State, event: Event, message_id: str) -> Transition:
    return Transition(NUMBER, Role.EXPORTER, before, after, event, message_id)


def submitted(message_id: str) -> Transition:
    return move(None, State.PENDING, Event.SUBMITTED, message_id)


def publication(destination: str = "clearance", bound_to: str | None = None) -> Publication:
    return Publication(destination, b"{}", mid(), "coo", bound_to=bound_to)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def store(clock: ManualClock) -> InMemoryStore:
    return InMemoryStore(clock)


def as_ports(
    store: InMemoryStore, transport: RecordingTransport, clock: ManualClock
) -> tuple[NodeStore, Store, Outbox, Schedule, Audit, Transport, Clock]:
    """mypy checks here that each fake implements its port."""
    return store, store, store, store, store, transport, clock


async def test_commit_then_facts_reads_back(store: InMemoryStore) -> None:
    coo, receipt, inbound_id = mid(), mid(), mid()
    entry = ReceiptEntry(
        message_id=inbound_id, kind=Kind.FEEDBACK, digest=DIGEST, status=ReceiptStatus.ACCEPTED
    )
    unit = UnitOfWork(
        inbound=[
            InboundRow(
                "CN",
                inbound_id,
                Kind.FEEDBACK,
                DIGEST,
                b"in",
                "accepted",
                None,
                "",
                NUMBER,
                entry.model_dump_json(),
                receipt,
            )
        ],
        outbound=[
            sent(coo, local_key="rec-1"),
            sent(receipt, kind=Kind.RECEIPT, number=None, next_at=None),
        ],
        transitions=[submitted(coo)],
    )
    assert await store.commit(unit) == []

    facts = await store.facts(
        FactsQuery(
            sender="CN",
            message_ids=(inbound_id, mid()),
            outbound_ids=(coo,),
            local_keys=("rec-1", "rec-2"),
        )
    )

    prior = facts.priors[inbound_id]
    assert set(facts.priors) == {inbound_id}
    assert (prior.digest, prior.receipt_entry, prior.receipt_id) == (DIGEST, entry, receipt)
    assert prior.receipt_token == b"token-" + receipt.encode()
    assert facts.outbound[coo].status == "pending"
    # The exporter certificate of a sent message comes along without being asked for.
    assert facts.certificates[(EXPORTER, NUMBER)].state is State.PENDING
    assert facts.certificates[(EXPORTER, NUMBER)].coo_message_id == coo
    assert facts.local_keys == {"rec-1": (coo, "d")}
    other_sender = await store.facts(FactsQuery(sender="JP", message_ids=(inbound_id,)))
    assert other_sender.priors == {}


async def test_a_stale_move_changes_nothing(store: InMemoryStore) -> None:
    coo = mid()
    await store.commit(UnitOfWork(outbound=[sent(coo)], transitions=[submitted(coo)]))
    await store.commit(
        UnitOfWork(transitions=[move(State.PENDING, State.DELIVERED, Event.RECEIPT_ACCEPTED, coo)])
    )
    before = (list(store.history), store.outbox(), store.commits)

    stale = UnitOfWork(
        inbound=[
            InboundRow(
                "CN", mid(), Kind.RECEIPT, DIGEST, b"r", "accepted", None, "", NUMBER, None, None
            )
        ],
        outbound=[sent(mid(), local_key="rec-9")],
        outbound_updates=[OutboundUpdate(coo, "failed")],
        transitions=[move(State.PENDING, State.FAILED, Event.RETRIES_EXHAUSTED, coo)],
        publications=[publication()],
    )
    with pytest.raises(StoreConflict, match="no longer pending"):
        await store.commit(stale)

    assert store.certificate_state(EXPORTER, NUMBER) == "delivered"
    assert store.inbound_row("CN", stale.inbound[0].message_id) is None
    assert store.outbound_row(stale.outbound[0].message_id) is None
    assert store.outbound_row(coo) is not None
    assert store.outbound_row(coo).status == "pending"  # type: ignore[union-attr]
    assert (list(store.history), store.outbox(), store.commits) == before
    assert (await store.facts(FactsQuery(local_keys=("rec-9",)))).local_keys == {}
    # The refused publication did not use up an outbox id either.
    assert await store.commit(UnitOfWork(publications=[publication()])) == [1]


CONFLICTS: dict[str, Callable[[], UnitOfWork]] = {
    "moves-of-one-batch-disagree": lambda: UnitOfWork(
        transitions=[
            move(State.PENDING, State.DELIVERED, Event.RECEIPT_ACCEPTED, "m"),
            move(State.PENDING, State.FAILED, Event.RETRIES_EXHAUSTED, "m"),
        ]
    ),
    "certificate-exists": lambda: UnitOfWork(transitions=[submitted("again")]),
    "outbound-id-exists": lambda: UnitOfWork(outbound=[sent("coo-1")]),
    "local-key-exists": lambda: UnitOfWork(outbound=[sent("other", local_key="rec-1")]),
    "local-key-twice-in-one-batch": lambda: UnitOfWork(
        outbound=[sent("x", local_key="k"), sent("y", local_key="k")]
    ),
}


@pytest.mark.parametrize("conflict", CONFLICTS)
async def test_conflicts_refuse_the_whole_unit(store: InMemoryStore, conflict: str) -> None:
    await store.commit(
        UnitOfWork(outbound=[sent("coo-1", local_key="rec-1")], transitions=[submitted("coo-1")])
    )
    unit = CONFLICTS[conflict]()
    unit.outbound_updates.append(OutboundUpdate("coo-1", "delivered"))
    unit.publications.append(publication())

    with pytest.raises(StoreConflict):
        await store.commit(unit)

    assert store.certificate_state(EXPORTER, NUMBER) == "pending"
    assert [m for m in ("x", "y", "other") if store.outbound_row(m)] == []
    assert store.outbound_row("coo-1").status == "pending"  # type: ignore[union-attr]
    assert store.outbox() == []
    assert len(store.history) == 1


async def test_moves_chained_in_one_batch_apply(store: InMemoryStore) -> None:
    coo = mid()
    await store.commit(
        UnitOfWork(
            transitions=[
                submitted(coo),
                move(State.PENDING, State.DELIVERED, Event.RECEIPT_ACCEPTED, mid()),
                move(State.DELIVERED, State.GRANTED, Event.GRANTED, mid()),
            ]
        )
    )
    assert store.certificate_state(EXPORTER, NUMBER) == "granted"
    assert store.certificate_facts(EXPORTER, NUMBER).coo_message_id == coo  # type: ignore[union-attr]
    assert store.certificate_state(IMPORTER, NUMBER) is None


async def test_duplicate_inbound_is_a_conflict(store: InMemoryStore) -> None:
    row = InboundRow("CN", mid(), Kind.COO, DIGEST, b"t", "accepted", None, "", NUMBER, None, None)
    await store.commit(UnitOfWork(inbound=[row]))
    with pytest.raises(StoreConflict):
        await store.commit(UnitOfWork(inbound=[replace(row, digest="B" * 43)]))
    assert store.inbound_row("CN", row.message_id) == row


async def test_claims_marks_and_relay(store: InMemoryStore) -> None:
    first, second, bound = publication(), publication(PARTNER), publication(bound_to="d-1")
    ids = await store.commit(UnitOfWork(publications=[first, second, bound]))
    assert ids == [1, 2, 3]
    # Handed to the committer: a relay must not take them meanwhile.
    assert await store.unpublished(10) == []
    assert [store.is_claimed(i) for i in ids] == [True, True, False]

    await store.release([1])
    await store.mark_published([2])
    relayable = await store.unpublished(10)
    assert [(q.id, q.publication) for q in relayable] == [(1, first)]
    assert [q.id for q in await store.bound_unpublished(["d-1", "d-2"])] == [3]
    assert await store.bound_unpublished([]) == []

    await store.mark_published([1, 3])
    assert await store.unpublished(10) == []
    assert await store.bound_unpublished(["d-1"]) == []


async def test_a_relayed_local_copy_says_it_may_be_a_second_one(store: InMemoryStore) -> None:
    """The relay cannot know whether an earlier publish went out before its confirm was
    lost: a local system deduplicating by message id needs the flag, the partner not."""
    local, partner = publication("events"), publication(PARTNER)
    ids = await store.commit(UnitOfWork(publications=[local, partner]))
    await store.release(ids)
    transport = RecordingTransport()
    assert await OutboxPublisher(store, transport).relay() == 0
    (copy,) = transport.local("events")
    assert (copy.message_id, copy.body) == (local.message_id, local.body)
    assert copy.headers == {POSSIBLE_DUPLICATE: "true"}
    assert [p.message_id for p in transport.partner] == [partner.message_id]


async def test_relay_takes_the_oldest_first_up_to_the_limit(store: InMemoryStore) -> None:
    ids = await store.commit(UnitOfWork(publications=[publication() for _ in range(4)]))
    await store.release(list(reversed(ids)))
    assert [q.id for q in await store.unpublished(2)] == ids[:2]


async def test_restart_frees_claims_and_forgets_unflushed_marks(store: InMemoryStore) -> None:
    ids = await store.commit(UnitOfWork(publications=[publication() for _ in range(3)]))
    await store.mark_published([ids[0]])
    await store.flush_published()
    await store.mark_published([ids[1]])

    store.restart()

    assert [q.id for q in await store.unpublished(10)] == ids[1:]


async def test_a_commit_makes_earlier_marks_durable(store: InMemoryStore) -> None:
    ids = await store.commit(UnitOfWork(publications=[publication()]))
    await store.mark_published(ids)
    await store.commit(UnitOfWork(transitions=[submitted(mid())]))
    store.restart()
    assert await store.unpublished(10) == []


async def test_due_in_resend_order(store: InMemoryStore) -> None:
    late, early, middle, receipt = mid(), mid(), mid(), mid()
    await store.commit(
        UnitOfWork(
            outbound=[
                sent(late, next_at=30.0),
                sent(early, next_at=10.0),
                sent(middle, next_at=20.0),
                sent(receipt, kind=Kind.RECEIPT, next_at=None),
            ]
        )
    )
    assert [d.message_id for d in await store.due(25.0, 10)] == [early, middle]
    assert [d.message_id for d in await store.due(100.0, 2)] == [early, middle]
    assert await store.due(5.0, 10) == []
    assert await store.next_due_at() == 10.0
    due = (await store.due(10.0, 1))[0]
    assert (due.kind, due.token, due.attempts) == (Kind.COO, b"token-" + early.encode(), 1)


async def test_a_retry_attempt_never_overrides_a_receipt(store: InMemoryStore) -> None:
    settled, waiting = mid(), mid()
    await store.commit(UnitOfWork(outbound=[sent(settled, next_at=10.0), sent(waiting)]))
    await store.commit(
        UnitOfWork(
            outbound_updates=[
                OutboundUpdate(settled, "delivered", text="stored"),
            ]
        )
    )
    await store.commit(
        UnitOfWork(
            outbound_updates=[
                OutboundUpdate(settled, "pending", attempts=2, next_attempt_at=5.0),
                OutboundUpdate(waiting, "pending", attempts=2, next_attempt_at=50.0),
            ]
        )
    )

    row = store.outbound_row(settled)
    assert row is not None
    assert (row.status, row.attempts, row.next_attempt_at, row.receipt_text) == (
        "delivered",
        1,
        None,
        "stored",
    )
    assert [d.message_id for d in await store.due(60.0, 10)] == [waiting]
    assert (await store.due(60.0, 10))[0].attempts == 2
    assert await store.next_due_at() == 50.0


async def test_an_attempt_without_a_count_adds_one_to_the_stored_count(
    store: InMemoryStore,
) -> None:
    m = mid()
    await store.commit(UnitOfWork(outbound=[sent(m)]))
    for _ in range(2):
        await store.commit(
            UnitOfWork(outbound_updates=[OutboundUpdate(m, "pending", next_attempt_at=5.0)])
        )
    assert [d.attempts for d in await store.due(10.0, 10)] == [3]


async def test_settled_in_the_same_batch_as_an_attempt_stays_settled(
    store: InMemoryStore,
) -> None:
    m = mid()
    await store.commit(UnitOfWork(outbound=[sent(m)]))
    await store.commit(
        UnitOfWork(
            outbound_updates=[
                OutboundUpdate(m, "rejected", code="BAD_SIGNATURE", text="no"),
                OutboundUpdate(m, "pending", attempts=3, next_attempt_at=1.0),
            ]
        )
    )
    row = store.outbound_row(m)
    assert row is not None
    # Attempts are written before settlements, as the SQL store runs them.
    assert (row.status, row.receipt_code, row.attempts) == ("rejected", "BAD_SIGNATURE", 3)
    assert row.next_attempt_at is None
    assert await store.next_due_at() is None


async def test_the_audit_chain_verifies_and_tampering_shows(
    store: InMemoryStore, clock: ManualClock
) -> None:
    coo = mid()
    await store.commit(UnitOfWork(transitions=[submitted(coo)]))
    clock.advance(1.5)
    await store.commit(
        UnitOfWork(
            transitions=[
                move(State.PENDING, State.DELIVERED, Event.RECEIPT_ACCEPTED, coo),
                move(State.DELIVERED, State.GRANTED, Event.GRANTED, mid()),
            ]
        )
    )
    assert await store.verify_audit_chain() == 3

    intact = list(store.history)
    store.history[1] = replace(store.history[1], after="rejected")
    with pytest.raises(AuditTrailBroken, match="row 2"):
        await store.verify_audit_chain()

    store.history[:] = [intact[0], intact[2]]  # a deleted line shows as well
    with pytest.raises(AuditTrailBroken, match="row 3"):
        await store.verify_audit_chain()


async def test_the_chain_is_the_sql_stores(store: InMemoryStore) -> None:
    from eodes_node.adapters.sql.audit import GENESIS as SQL_GENESIS
    from eodes_node.adapters.sql.audit import chain

    t = submitted(mid())
    await store.commit(UnitOfWork(transitions=[t]))
    at = START.timestamp()
    assert GENESIS == SQL_GENESIS
    assert store.history[0].chain == chain_hash(GENESIS, t, at) == chain(SQL_GENESIS, t, at)


async def test_report(store: InMemoryStore, clock: ManualClock) -> None:
    coo, receipt_id, feedback_id = mid(), mid(), mid()
    await store.commit(UnitOfWork(outbound=[sent(coo)], transitions=[submitted(coo)]))
    clock.advance(2)
    await store.commit(
        UnitOfWork(
            inbound=[
                InboundRow(
                    "CN",
                    receipt_id,
                    Kind.RECEIPT,
                    DIGEST,
                    b"r",
                    "accepted",
                    None,
                    "",
                    NUMBER,
                    None,
                    None,
                ),
                InboundRow(
                    "CN",
                    feedback_id,
                    Kind.FEEDBACK,
                    DIGEST,
                    b"f",
                    "rejected",
                    "STATE_CONFLICT",
                    "late",
                    NUMBER,
                    None,
                    None,
                ),
            ],
            outbound_updates=[OutboundUpdate(coo, "delivered")],
            transitions=[move(State.PENDING, State.DELIVERED, Event.RECEIPT_ACCEPTED, coo)],
        )
    )

    (report,) = await store.report(NUMBER)

    assert (report.role, report.state, report.coo_message_id) == (EXPORTER, "delivered", coo)
    assert [(h.event, h.before, h.after) for h in report.history] == [
        ("submitted", None, "pending"),
        ("receipt_accepted", "pending", "delivered"),
    ]
    assert report.history[1].at == START + timedelta(seconds=2)
    # A receipt is listed only when the history names it; other received kinds always.
    assert list(report.messages) == [
        ("out", "coo", coo, "delivered", 1),
        ("in", "feedback", feedback_id, "rejected", 1),
    ]
    assert await store.report("KR2026KCFTA0000404") == []


async def test_injected_commit_failures_then_recovery(store: InMemoryStore) -> None:
    store.fail_next_commits(2)
    unit = UnitOfWork(transitions=[submitted(mid())], publications=[publication()])
    for _ in range(2):
        with pytest.raises(StoreUnavailable):
            await store.commit(unit)
    assert store.certificate_state(EXPORTER, NUMBER) is None
    assert await store.commit(unit) == [1]
    assert store.certificate_state(EXPORTER, NUMBER) == "pending"


async def test_transport_failures_raise_then_recover() -> None:
    transport = RecordingTransport()
    transport.fail_partner(times=2)
    for _ in range(2):
        with pytest.raises(BrokerUnavailable):
            await transport.publish_partner(b"t", message_id="m", kind="coo")
    await transport.publish_partner(b"t", message_id="m", kind="coo")
    assert [(p.token, p.message_id, p.kind) for p in transport.partner] == [(b"t", "m", "coo")]

    transport.fail_local(queue="clearance")
    await transport.publish_local("events", b"e", message_id="e1", kind="event.delivered")
    with pytest.raises(BrokerUnavailable):
        await transport.publish_local("clearance", b"c", message_id="c1", kind="coo")
    await transport.publish_local(
        "clearance", b"c", message_id="c1", kind="coo", headers={"x": "1"}
    )
    assert [p.message_id for p in transport.local()] == ["e1", "c1"]
    (delivered,) = transport.local("clearance")
    assert (delivered.body, delivered.headers, delivered.content_type) == (
        b"c",
        {"x": "1"},
        "application/json",
    )


async def test_transport_failure_on_any_queue() -> None:
    transport = RecordingTransport()
    transport.fail_local()
    with pytest.raises(BrokerUnavailable):
        await transport.publish_local("events", b"e", message_id="e1", kind="event.delivered")
    await transport.publish_local("events", b"e", message_id="e1", kind="event.delivered")
    assert len(transport.local("events")) == 1


def test_manual_clock() -> None:
    clock = ManualClock(START)
    assert clock.advance(90) == START + timedelta(seconds=90)
    assert clock.now() == START + timedelta(seconds=90)
    clock.set(START)
    assert clock.now() == START
    with pytest.raises(ValueError, match="timezone-aware"):
        ManualClock(datetime(2026, 1, 1))
