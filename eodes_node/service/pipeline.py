"""The node's service: each batch runs lock -> query -> plan -> commit -> publish.

Facts are read, decided on and committed under one lock, so two handlers never decide
on the same certificate from the same stale state; publishing happens after, outside
the lock, so broker round trips of different queues still overlap. A handler raises
only ``TransientError`` (retry the batch) or a bug; every problem with a message itself
is answered by the plan: rejection receipt, dead letter, error event.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog

from eodes_node import hops
from eodes_node.config import LimitsSection, RetrySection
from eodes_node.core.decide import CertFacts
from eodes_node.core.messages import Kind
from eodes_node.core.plan import (
    EnvelopeLimits,
    Identity,
    Plan,
    RetryPolicy,
    feedback,
    inbound,
    records,
)
from eodes_node.core.plan.resend import Original, ResendRefused, plan_resend
from eodes_node.core.state import Role
from eodes_node.core.validity import KeyMayNotSign
from eodes_node.core.work import Delivery, Facts, FactsQuery, Publication, UnitOfWork
from eodes_node.errors import StoreConflict, StoreUnavailable
from eodes_node.ports import Clock, NodeStore, SentMessages, Transport
from eodes_node.service.effects import log_notes, render
from eodes_node.service.feed import EventFeed
from eodes_node.service.gate import StoreGate
from eodes_node.service.metrics import NodeMetrics
from eodes_node.service.outbox import OutboxPublisher
from eodes_node.service.repairs import RepairRefused
from eodes_node.service.retries import ResendAlarm, Resender
from eodes_node.service.signing import SigningGate
from eodes_node.topology import Topology

Bound = list[tuple[int, Publication]]
UNCERTAIN_LIMIT = 10_000
REDECIDE_LIMIT = 3  # decisions of one batch refused by concurrent writes before it goes back

log = structlog.get_logger("eodes_node.service")


@dataclass(frozen=True, slots=True)
class NodeIdentity(Identity):
    topology: Topology


class NodeService:
    def __init__(
        self,
        identity: NodeIdentity,
        store: NodeStore,
        transport: Transport,
        clock: Clock,
        *,
        retry: RetrySection,
        limits: LimitsSection,
        metrics: NodeMetrics | None = None,
        sent: SentMessages | None = None,
    ) -> None:
        self.id = identity
        self.metrics = metrics or NodeMetrics()
        self.sent = sent  # where an operator's re-send finds the original message
        self.store = store
        self.clock = clock
        self.topology = identity.topology
        self.limits = limits
        self.envelope_limits = EnvelopeLimits(
            limits.max_message_bytes,
            timedelta(seconds=limits.max_future_skew_s),
            timedelta(seconds=limits.max_age_s),
        )
        self.policy = RetryPolicy(
            retry.first_after_s, retry.multiplier, retry.max_interval_s, retry.max_attempts
        )
        self._lock = asyncio.Lock()
        self._uncertain: dict[str, None] = {}  # bindings of settles with unknown outcome
        # Its copy for plans, which run on the store's thread: replaced whole, never changed.
        self._uncertain_now: frozenset[str] = frozenset()
        self.publisher = OutboxPublisher(store, transport)
        self.resender = Resender(
            store=store,
            schedule=store,
            transport=transport,
            publisher=self.publisher,
            clock=clock,
            policy=self.policy,
            lock=self._lock,
            commit_plan=self._commit_plan,
            metrics=self.metrics,
        )
        # Set when publication marks wait in memory; the runtime flushes them soon.
        self.flush_wanted = asyncio.Event()
        # Rung when a commit schedules a resend sooner than the resend loop would look.
        self.resend_alarm = ResendAlarm()
        self.gate = StoreGate()
        self.signing = SigningGate()  # the runtime opens it when it loads keys
        self.feed = EventFeed()
        self.events = identity.topology.events
        self.max_age = timedelta(seconds=limits.max_age_s)
        self._traced: set[asyncio.Task[None]] = set()  # partner publishes with a hop stamp

    # Each handler reads ``self.id`` once: a key reload between its awaits must not
    # verify a batch with one set of keys and sign its answer with another.

    async def handle_inbound(self, batch: Sequence[Delivery]) -> Bound:
        consumed = time.time_ns()
        identity = self.id
        now = self.clock.now()
        self.metrics.batch("inbound", len(batch))
        opening = inbound.prepare(list(batch), identity, now, self.envelope_limits)
        return await self._decide_and_commit(
            inbound.query(opening, identity),
            lambda facts: inbound.plan(
                opening, facts, identity, now, uncertain=self._uncertain_now
            ),
            _Opened("inbound", batch, consumed, time.time_ns()),
        )

    async def handle_records(self, batch: Sequence[Delivery]) -> Bound:
        consumed = time.time_ns()
        identity = self.id
        now = self.clock.now()
        self.metrics.batch("records", len(batch))
        prepared = records.prepare(list(batch), identity, now, self.limits.max_record_bytes)
        return await self._decide_and_commit(
            records.query(prepared),
            lambda facts: records.plan(prepared, facts, identity, now, self.policy),
            _Opened("records", batch, consumed, time.time_ns()),
        )

    async def handle_feedback(self, batch: Sequence[Delivery]) -> Bound:
        consumed = time.time_ns()
        identity = self.id
        now = self.clock.now()
        self.metrics.batch("feedback", len(batch))
        prepared = feedback.prepare(list(batch), self.limits.max_record_bytes)
        return await self._decide_and_commit(
            feedback.query(prepared),
            lambda facts: feedback.plan(prepared, facts, identity, now, self.policy),
            _Opened("feedback", batch, consumed, time.time_ns()),
        )

    async def _decide_and_commit(
        self, query: FactsQuery, plan: Callable[[Facts], Plan], opened: _Opened | None = None
    ) -> Bound:
        """Decide and commit; publish what is free in the background; return the bound
        local publications the runtime publishes in one broker transaction with the acks."""
        await self.gate.wait()
        try:
            async with self._lock:
                decided, items = await self._decide_fresh(query, plan)
                again = await self.store.bound_unpublished(decided.reissue)
        except StoreUnavailable as exc:
            self.gate.failed(exc)
            raise
        except KeyMayNotSign:
            await self.signing.refused()  # then back to the queue, nothing committed
            raise
        self.gate.succeeded()
        free = [(i, p) for i, p in items if p.bound_to is None]
        if hops.TRACING and opened is not None:
            self._trace(opened, decided, free)
        elif free:
            self.publisher.publish_soon(free)
        return [(i, p) for i, p in items if p.bound_to is not None] + [
            (q.id, q.publication.again()) for q in again
        ]

    def _trace(self, opened: _Opened, decided: Plan, free: Bound) -> None:
        """The batch's hop stamps (``eodes_node.hops``); its partner publishes are awaited
        here instead of in the publisher's background, so their confirm gets a stamp too."""
        numbers = hops.unique(
            [t.number for t in decided.transitions]
            + [r.certificate_number for r in decided.inbound]
        )
        hops.stamp(
            "hop_committed",
            stage=opened.stage,
            ids=hops.unique(d.message_id for d in opened.batch),
            numbers=numbers,
            consumed_ns=opened.consumed_ns,
            verified_ns=opened.verified_ns,
        )
        if free:
            task = asyncio.create_task(self._publish_traced(free, numbers))
            self._traced.add(task)
            task.add_done_callback(self._traced.discard)

    async def _publish_traced(self, free: Bound, numbers: list[str]) -> None:
        await self.publisher.publish(free)
        hops.stamp("hop_confirmed", numbers=numbers)

    async def _decide_fresh(
        self, query: FactsQuery, plan: Callable[[Facts], Plan]
    ) -> tuple[Plan, Bound]:
        """Read, decide, commit, in one store call. A commit refused because another
        writer changed the facts meanwhile (``StoreConflict``: a message received twice at
        once, a state moved) is decided again on the facts as they are now, so a racing
        copy becomes a duplicate instead of a failed batch. After ``REDECIDE_LIMIT``
        refusals the conflict goes up and the batch is redelivered."""
        decided_at = 0.0

        def decide(facts: Facts) -> tuple[Plan, UnitOfWork]:
            # Inside the store's call, between the read and the write: one store call per
            # batch instead of two. It reads only what is replaced whole, never changed.
            nonlocal decided_at
            decision = self._unit_of(plan(facts))
            decided_at = time.perf_counter()
            return decision

        for attempt in range(1, REDECIDE_LIMIT + 1):
            try:
                decided, unit, ids = await self.store.decide(query, decide)
            except StoreConflict as exc:
                if attempt == REDECIDE_LIMIT:
                    raise
                log.info("batch_redecided", attempt=attempt, reason=str(exc))
                continue
            return decided, self._committed(decided, unit, ids, time.perf_counter() - decided_at)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _unit_of(self, decided: Plan) -> tuple[Plan, UnitOfWork]:
        return decided, UnitOfWork(
            inbound=decided.inbound,
            outbound=decided.outbound,
            outbound_updates=decided.outbound_updates,
            transitions=decided.transitions,
            publications=render(decided.effects, self.topology, self.id.partner, self.clock.now()),
            reissue=decided.reissue,
            verifications=decided.verifications,
        )

    async def _commit_plan(self, decided: Plan) -> Bound:
        """Commit a plan decided on facts read earlier (a resend pass, an operator's
        resend: under the batches' lock); returns its publications with outbox ids."""
        _, unit = self._unit_of(decided)
        started = time.perf_counter()
        ids = await self.store.commit(unit) if unit else []
        return self._committed(decided, unit, ids, time.perf_counter() - started)

    def _committed(self, decided: Plan, unit: UnitOfWork, ids: list[int], seconds: float) -> Bound:
        """Log what a committed plan noted, count it, feed its events, set the resend
        alarm; returns its publications with outbox ids."""
        self.metrics.committed(decided, seconds if unit else 0.0)
        log_notes(decided.notes, self.id.partner)
        self.feed.extend(p.body for p in unit.publications if p.destination == self.events)
        scheduled = [r.next_attempt_at for r in unit.outbound if r.next_attempt_at is not None]
        if scheduled:
            self.resend_alarm.due(min(scheduled))
        return list(zip(ids, unit.publications, strict=True))

    async def resend(self, number: str) -> dict[str, Any]:
        """An operator's re-send of a failed or rejected certificate (``core.plan.resend``),
        decided and committed under the batches' lock like any batch, then published."""
        if self.sent is None:
            raise RepairRefused("this node was built without access to its sent messages")
        async with self._lock:
            key = (Role.EXPORTER.value, number)
            cert = (await self.store.facts(FactsQuery(certificates=(key,)))).certificates.get(key)
            original = await self._original(cert)
            try:
                decided = plan_resend(
                    number, cert, original, self.id, self.clock.now(), self.policy, self.max_age
                )
            except ResendRefused as exc:
                raise RepairRefused(str(exc), unknown=exc.unknown) from None
            items = await self._commit_plan(decided)
        self.resend_alarm.ring()
        self.metrics.operator_resends.inc()
        published = await self.publisher.publish(items)
        (moved,) = decided.transitions
        return {
            "certificate_number": number,
            "message_id": moved.message_id,
            "same_message": moved.coo_message_id is None,
            "published": published == len(items),
        }

    async def _original(self, cert: CertFacts | None) -> Original | None:
        if cert is None:
            return None
        assert self.sent is not None  # resend() checked it
        found = await self.sent.sent_message(cert.coo_message_id)
        if found is None:
            return None
        return Original(found.message_id, Kind(found.kind), found.token, found.status)

    def unsettled(self, publications: Sequence[Publication]) -> None:
        """The broker transaction carrying these hand-offs died without an answer: they
        may be lost even if their delivery never comes back redelivered, so a copy of
        their message (a partner's resend) re-issues them."""
        for p in publications:
            if p.bound_to is not None:
                self._uncertain[p.bound_to] = None
        while len(self._uncertain) > UNCERTAIN_LIMIT:
            del self._uncertain[next(iter(self._uncertain))]
        self._uncertain_now = frozenset(self._uncertain)

    async def published(self, ids: Sequence[int]) -> None:
        """Bound publications went out with their acks: make that durable soon."""
        await self.store.mark_published(ids)
        self.flush_wanted.set()

    async def publish_queued(self, items: Sequence[tuple[int, Publication]]) -> int:
        return await self.publisher.publish(items)

    async def relay_outbox(self, limit: int = 500) -> int:
        return await self.publisher.relay(limit)

    async def resend_due(self, limit: int = 200) -> float | None:
        return await self.resender.resend_due(limit)

    async def finish_background(self, within: float) -> None:
        await self.publisher.finish(within)
        if self._traced:
            await asyncio.wait(self._traced, timeout=within)


@dataclass(frozen=True, slots=True)
class _Opened:
    """A batch as the handler began it: when it was taken and when its messages were
    opened (envelopes verified, records parsed), for the hop stamps."""

    stage: str
    batch: Sequence[Delivery]
    consumed_ns: int
    verified_ns: int
