"""The node's ports: what the service needs from the outside world, and nothing more."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from eodes_node.core.decide import CertFacts, OutboundFacts, PriorInbound, Transition
from eodes_node.core.messages import Kind


class Clock(Protocol):
    def now(self) -> datetime: ...


@dataclass(slots=True)
class Delivery:
    """One message taken from a queue, as the service sees it; ``raw`` is the adapter's."""

    body: bytes
    message_id: str | None
    kind: str | None
    headers: Mapping[str, Any]
    redelivered: bool
    raw: Any


@dataclass(frozen=True, slots=True)
class InboundRow:
    sender: str
    message_id: str
    kind: Kind
    digest: str
    token: bytes
    status: str  # accepted | rejected
    code: str | None
    text: str
    certificate_number: str | None
    receipt_entry: str | None  # the JSON of the entry we answered with
    receipt_id: str | None  # the receipt message that carried that entry


@dataclass(frozen=True, slots=True)
class OutboundRow:
    message_id: str
    kind: Kind
    certificate_number: str | None
    correlation_id: str | None
    token: bytes
    local_key: str | None
    record_digest: str | None
    attempts: int
    next_attempt_at: float | None  # None: never resent (receipts)
    status: str = "pending"


@dataclass(frozen=True, slots=True)
class OutboundUpdate:
    """A settled message (delivered / rejected / failed), or one more attempt made."""

    message_id: str
    status: str
    code: str | None = None
    text: str = ""
    attempts: int | None = None  # with status "pending": the attempt just made
    next_attempt_at: float | None = None


@dataclass(frozen=True, slots=True)
class Publication:
    """Something to publish after commit: to a local queue or to the partner."""

    destination: str  # a local queue name, or PARTNER
    body: bytes
    message_id: str
    kind: str
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    # The delivery that caused it. A bound publication is published in the same broker
    # transaction as that delivery's ack, and re-issued only if the delivery comes back.
    bound_to: str | None = None


PARTNER = "@partner"


@dataclass(slots=True)
class UnitOfWork:
    """Everything one batch changes; the store commits it in one transaction."""

    inbound: list[InboundRow] = field(default_factory=list)
    outbound: list[OutboundRow] = field(default_factory=list)
    outbound_updates: list[OutboundUpdate] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)
    publications: list[Publication] = field(default_factory=list)
    # Bindings whose unpublished publications must go out again with this batch: their
    # delivery came back after a crash between our commit and its broker transaction.
    reissue: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(
            self.inbound
            or self.outbound
            or self.outbound_updates
            or self.transitions
            or self.publications
        )


@dataclass(frozen=True, slots=True)
class Due:
    message_id: str
    kind: Kind
    certificate_number: str | None
    token: bytes
    attempts: int


@dataclass(frozen=True, slots=True)
class QueuedPublication:
    id: int
    publication: Publication


@dataclass(frozen=True, slots=True)
class HistoryLine:
    at: datetime
    event: str
    before: str | None
    after: str
    message_id: str


@dataclass(frozen=True, slots=True)
class CertificateReport:
    number: str
    role: str
    state: str
    coo_message_id: str
    history: Sequence[HistoryLine]
    messages: Sequence[tuple[str, str, str, str, int]]  # direction, kind, id, status, attempts


class Transport(Protocol):
    async def publish_local(
        self,
        queue: str,
        body: bytes,
        *,
        message_id: str,
        kind: str,
        headers: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> None: ...

    async def publish_partner(self, token: bytes, *, message_id: str, kind: str) -> None: ...


@dataclass(frozen=True, slots=True)
class FactsQuery:
    """Everything a batch needs to know, fetched in one trip to the store."""

    sender: str = ""
    message_ids: tuple[str, ...] = ()  # prior copies received from `sender`
    certificates: tuple[tuple[str, str], ...] = ()  # (role, number)
    outbound_ids: tuple[str, ...] = ()  # messages we sent, and their certificates
    local_keys: tuple[str, ...] = ()


@dataclass(slots=True)
class Facts:
    priors: dict[str, PriorInbound] = field(default_factory=dict)
    certificates: dict[tuple[str, str], CertFacts] = field(default_factory=dict)
    outbound: dict[str, OutboundFacts] = field(default_factory=dict)
    local_keys: dict[str, tuple[str, str]] = field(default_factory=dict)


class Store(Protocol):
    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def facts(self, query: FactsQuery) -> Facts: ...
    async def tokens(self, ids: Iterable[str]) -> dict[str, bytes]: ...
    async def commit(self, unit: UnitOfWork) -> list[int]: ...
    async def mark_published(self, ids: Sequence[int]) -> None: ...
    async def release(self, ids: Sequence[int]) -> None: ...
    async def flush_published(self) -> None: ...
    async def unpublished(self, limit: int) -> list[QueuedPublication]: ...
    async def bound_unpublished(self, keys: Iterable[str]) -> list[QueuedPublication]: ...
    async def due(self, now: float, limit: int) -> list[Due]: ...
    async def next_due_at(self) -> float | None: ...
    async def report(self, number: str) -> list[CertificateReport]: ...
    async def verify_audit_chain(self) -> int: ...
