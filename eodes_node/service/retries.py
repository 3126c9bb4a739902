"""Resending what has no receipt yet, giving up when the retry budget is spent, and
noticing verification requests whose reply due date passed unanswered."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence

import structlog

from eodes_node.core.plan import Plan, RetryPolicy, failures
from eodes_node.core.plan.verification import overdue_query, plan_overdue
from eodes_node.core.work import Due, OutboundUpdate, Publication, UnitOfWork
from eodes_node.ports import Clock, Schedule, Store, Transport
from eodes_node.service.metrics import NodeMetrics
from eodes_node.service.outbox import OutboxPublisher

log = structlog.get_logger("eodes_node.service")

CommitPlan = Callable[[Plan], Awaitable[list[tuple[int, Publication]]]]


class ResendAlarm:
    """When the resend loop looks next. A commit that schedules something sooner rings it;
    one that schedules later does not: ringing for every batch cost three store reads per
    batch, under the batches' lock, for a schedule that had not moved."""

    def __init__(self) -> None:
        self.rung = asyncio.Event()
        self._looks_at: float | None = None  # None: a pass is looking now
        self._soonest = math.inf  # the soonest due time scheduled during that pass

    def looking(self) -> None:
        """A pass starts; it may read the schedule before a commit made meanwhile."""
        self._looks_at = None
        self._soonest = math.inf
        self.rung.clear()

    def sleeping_until(self, at: float) -> None:
        """The pass is over; what was scheduled during it and falls sooner rings now."""
        self._looks_at = at
        if self._soonest < at:
            self.rung.set()

    def due(self, at: float) -> None:
        """Something is due at ``at`` (epoch seconds)."""
        if self._looks_at is None:
            self._soonest = min(self._soonest, at)
        elif at < self._looks_at:
            self.rung.set()

    def ring(self) -> None:
        self.rung.set()


class Resender:
    def __init__(
        self,
        *,
        store: Store,
        schedule: Schedule,
        transport: Transport,
        publisher: OutboxPublisher,
        clock: Clock,
        policy: RetryPolicy,
        lock: asyncio.Lock,
        commit_plan: CommitPlan,
        metrics: NodeMetrics | None = None,
    ) -> None:
        self.metrics = metrics or NodeMetrics()
        self.store = store
        self.schedule = schedule
        self.transport = transport
        self.publisher = publisher
        self.clock = clock
        self.policy = policy
        self.lock = lock
        self.commit_plan = commit_plan

    async def resend_due(self, limit: int = 200) -> float | None:
        """Resend what is due, or mark it failed; returns when next to look."""
        now = self.clock.now().timestamp()
        async with self.lock:
            due = await self.schedule.due(now, limit)
            exhausted = [d for d in due if d.attempts >= self.policy.max_attempts]
            published = await self._fail(exhausted) if exhausted else []
            late = await self.schedule.overdue(now, limit)
            if late:
                facts = await self.store.facts(overdue_query(late))
                published += await self.commit_plan(plan_overdue(late, facts))
            resend = [d for d in due if d.attempts < self.policy.max_attempts]
            if resend:
                # The attempt is counted before it is made: when this commit fails nothing
                # is sent, so the retry budget holds whatever fails.
                await self.store.commit(
                    UnitOfWork(outbound_updates=self._next_attempts(resend, now))
                )
        if published:
            await self.publisher.publish(published)
        self.metrics.resent(len(resend))
        await asyncio.gather(*(self._attempt(d) for d in resend))
        if len(due) == limit or len(late) == limit:
            return now
        return await self.schedule.next_due_at()

    async def _fail(self, exhausted: Sequence[Due]) -> list[tuple[int, Publication]]:
        query = failures.query(exhausted)
        facts = await self.store.facts(query)
        return await self.commit_plan(failures.plan(exhausted, facts))

    async def _attempt(self, due: Due) -> None:
        try:
            await self.transport.publish_partner(
                due.token, message_id=due.message_id, kind=due.kind.value
            )
            log.info(
                "resent",
                message_id=due.message_id,
                certificate_number=due.certificate_number,
                attempt=due.attempts + 1,
            )
        except Exception as exc:  # noqa: BLE001 - the attempt counts either way
            log.warning(
                "resend_failed",
                message_id=due.message_id,
                certificate_number=due.certificate_number,
                error=str(exc),
            )

    def _next_attempts(self, resent: Sequence[Due], now: float) -> list[OutboundUpdate]:
        return [
            OutboundUpdate(
                d.message_id,
                "pending",
                attempts=None,  # one more, counted by the store
                next_attempt_at=now + self.policy.backoff_s(d.attempts + 1),
            )
            for d in resent
        ]
