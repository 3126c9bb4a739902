"""Two node services joined back to back in memory: the core and service of a KR and a
CN node exchanging envelopes without a broker or a database.

Each side runs a real ``NodeService`` on an ``InMemoryStore`` and a ``RecordingTransport``;
``ServicePair.exchange`` carries what one side published to its partner into the other
side's inbound handler, as a broker would, until both are quiet. Bound local
publications are what the consumer would publish with the acks; ``local`` shows them
together with the free ones the transport published.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from eodes_node.config import LimitsSection, RetrySection
from eodes_node.core.jws import KeySet, PrivateKey
from eodes_node.core.work import Delivery, Publication
from eodes_node.service import NodeIdentity, NodeService
from eodes_node.testing.fakes import InMemoryStore, ManualClock, PartnerPublish, RecordingTransport
from eodes_node.topology import Topology

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class ServiceSide:
    """One country's service with its fakes; ``connect`` pins the partner's key."""

    def __init__(
        self,
        own: str,
        partner: str,
        clock: ManualClock,
        *,
        retry: RetrySection,
        store: Any = None,
        reports: Any = None,
    ) -> None:
        self.own, self.partner = own, partner
        self.clock = clock
        self.retry = retry
        self.limits = LimitsSection()
        self.key = PrivateKey.generate("Ed25519")
        self.topology = Topology(own, partner)
        # The fake plays every port; a SQL store comes with its report reader.
        self.store = store if store is not None else InMemoryStore(clock, own=own, partner=partner)
        self.reports = reports if reports is not None else self.store
        self.transport = RecordingTransport()
        self.settled: list[Publication] = []  # bound publications, published with the acks
        self.forwarded = 0  # partner publications already carried to the other side
        self.service: NodeService | None = None

    def connect(self, partner_key: PrivateKey) -> None:
        identity = NodeIdentity(
            own=self.own,
            partner=self.partner,
            key=self.key,
            partner_keys=KeySet({partner_key.kid: partner_key.public}, owner=self.partner),
            topology=self.topology,
        )
        self.service = NodeService(
            identity,
            self.store,
            self.transport,
            self.clock,
            retry=self.retry,
            limits=self.limits,
            sent=self.reports,
        )

    @property
    def svc(self) -> NodeService:
        assert self.service is not None, "connect() first"
        return self.service

    async def _settle(self, bound: list[tuple[int, Publication]]) -> None:
        self.settled.extend(p for _, p in bound)
        await self.svc.published([i for i, _ in bound])
        await self.svc.finish_background(5.0)

    async def submit(
        self, records: Iterable[Any], kind: str = "coo", *, redelivered: bool = False
    ) -> None:
        """One batch of records from the issuing system (dicts are sent as JSON)."""
        batch = [_delivery(r, kind, redelivered) for r in records]
        await self._settle(await self.svc.handle_records(batch))

    async def submit_feedback(self, records: Iterable[Any], *, redelivered: bool = False) -> None:
        batch = [_delivery(r, "feedback", redelivered) for r in records]
        await self._settle(await self.svc.handle_feedback(batch))

    async def receive(
        self, envelopes: Sequence[PartnerPublish], *, redelivered: bool = False
    ) -> None:
        """One batch of envelopes arriving from the partner."""
        batch = [Delivery(e.token, e.message_id, e.kind, {}, redelivered) for e in envelopes]
        await self._settle(await self.svc.handle_inbound(batch))

    def take_outgoing(self) -> list[PartnerPublish]:
        fresh = self.transport.partner[self.forwarded :]
        self.forwarded = len(self.transport.partner)
        return fresh

    def local(self, queue: str) -> list[Publication]:
        """Everything published to one local queue, bound and free."""
        free = [
            Publication(p.queue, p.body, p.message_id, p.kind, p.headers, p.content_type)
            for p in self.transport.local(queue)
        ]
        return [p for p in self.settled if p.destination == queue] + free

    def events(self, event: str) -> list[dict[str, Any]]:
        return [
            entry
            for p in self.local(self.topology.events)
            if p.kind == f"event.{event}"
            for entry in orjson.loads(p.body)["items"]
        ]


def _delivery(record: Any, kind: str, redelivered: bool) -> Delivery:
    body = record if isinstance(record, bytes) else orjson.dumps(record)
    return Delivery(body, None, kind, {}, redelivered)


class ServicePair:
    """KR and CN services back to back; ``exchange`` plays the broker between them."""

    def __init__(self, *, retry: RetrySection | None = None, start: datetime = START) -> None:
        self.clock = ManualClock(start)
        retry = retry or RetrySection(
            first_after_s=1.0, multiplier=2.0, max_interval_s=4.0, max_attempts=4
        )
        self.kr = ServiceSide("KR", "CN", self.clock, retry=retry)
        self.cn = ServiceSide("CN", "KR", self.clock, retry=retry)
        self.kr.connect(self.cn.key)
        self.cn.connect(self.kr.key)

    async def exchange(
        self,
        *,
        drop: Callable[[ServiceSide, PartnerPublish], bool] | None = None,
        rounds: int = 20,
    ) -> int:
        """Carry envelopes both ways, one batch per side per round, until none move.

        ``drop`` loses an envelope on the wire (it was published, never delivered).
        Returns how many envelopes were delivered.
        """
        moved = 0
        for _ in range(rounds):
            progress = 0
            for sender, receiver in ((self.kr, self.cn), (self.cn, self.kr)):
                fresh = sender.take_outgoing()
                if drop is not None:
                    fresh = [e for e in fresh if not drop(sender, e)]
                if fresh:
                    await receiver.receive(fresh)
                    progress += len(fresh)
            if not progress:
                return moved
            moved += progress
        raise AssertionError(f"still exchanging after {rounds} rounds")
