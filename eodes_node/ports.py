"""The node's ports: what the service and the runtime need from the outside world.

Split by role, so each adapter and each fake implements only what its caller uses:
``Store`` (facts and commit), ``Outbox`` (what is still to publish), ``Schedule`` (what
is due for a resend), ``Audit`` (reports and the history chain), ``Transport``
(publishing), ``Broker`` and ``Consumer`` (taking deliveries), ``Clock``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol

from eodes_node.core.work import (
    PARTNER,
    Delivery,
    Due,
    Facts,
    FactsQuery,
    InboundRow,
    OutboundRow,
    OutboundUpdate,
    Publication,
    UnitOfWork,
)

__all__ = [
    "PARTNER",
    "Audit",
    "BatchHandler",
    "Broker",
    "CertificateDetail",
    "CertificateFilter",
    "CertificatePage",
    "CertificateReport",
    "CertificateSummary",
    "Clock",
    "Consumer",
    "Dashboard",
    "DeadLetters",
    "Delivery",
    "Due",
    "Facts",
    "FactsQuery",
    "FeedbackLine",
    "HistoryLine",
    "InboundRow",
    "ItemDecision",
    "MessageLine",
    "NodeStore",
    "OutboundRow",
    "OutboundUpdate",
    "Outbox",
    "PublicCertificate",
    "PublicItem",
    "PublicParty",
    "Publication",
    "QueuedPublication",
    "Reports",
    "Schedule",
    "SentMessage",
    "SentMessages",
    "Store",
    "Transport",
    "UnitOfWork",
]


class Clock(Protocol):
    def now(self) -> datetime: ...


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


class Store(Protocol):
    """Facts for a batch, and the batch's effects committed in one transaction."""

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def facts(self, query: FactsQuery) -> Facts: ...
    async def commit(self, unit: UnitOfWork) -> list[int]:
        """Returns the outbox ids of ``unit.publications``, in order; raises
        ``StoreConflict`` when a transition starts from a state that is no longer so."""
        ...


class Outbox(Protocol):
    """Committed publications until the broker confirms them."""

    async def mark_published(self, ids: Sequence[int]) -> None: ...
    async def release(self, ids: Sequence[int]) -> None: ...
    async def flush_published(self) -> None: ...
    async def unpublished(self, limit: int) -> list[QueuedPublication]: ...
    async def bound_unpublished(self, keys: Iterable[str]) -> list[QueuedPublication]: ...


class Schedule(Protocol):
    """Sent messages still waiting for a receipt."""

    async def due(self, now: float, limit: int) -> list[Due]: ...
    async def next_due_at(self) -> float | None: ...


class Audit(Protocol):
    async def report(self, number: str) -> list[CertificateReport]: ...
    async def verify_audit_chain(self) -> int: ...


class NodeStore(Store, Outbox, Schedule, Audit, Protocol):
    """One database plays every role; the composition root hands it out by role."""


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


# Decides and commits a batch; returns the local publications (with their outbox ids)
# that must be published in the same broker transaction as the batch's acks.
BatchHandler = Callable[[Sequence[Delivery]], Awaitable[list[tuple[int, Publication]]]]


class Consumer(Protocol):
    """Takes deliveries from one queue in batches and settles each exactly once."""

    queue: str

    async def run(self) -> None:
        """Until ``stop``: take a batch, hand it to the handler, settle it."""
        ...

    def stop(self) -> None: ...

    async def wait_idle(self) -> None:
        """Returns when no batch is being handled or settled."""
        ...


class Broker(Transport, Protocol):
    """The broker side the runtime drives: topology, consumers, shutdown."""

    async def declare(self) -> None: ...

    async def consume(
        self,
        queue: str,
        handler: BatchHandler,
        *,
        published: Callable[[Sequence[int]], Awaitable[None]],
    ) -> Consumer: ...

    async def stop_consuming(self) -> None: ...
    async def close(self) -> None: ...


# -- Reports: the read side for operators (HTTP API, console, CLI, verification page) --------


@dataclass(frozen=True, slots=True)
class CertificateFilter:
    """What a certificate listing is narrowed to; every field is optional.

    ``number`` matches the certificate number or the reference number, case-insensitively
    and exactly. ``cursor`` is the opaque ``next_cursor`` of the previous page.
    """

    state: str | None = None
    role: str | None = None  # exporter | importer (the "side")
    agreement: str | None = None  # case-insensitive
    issued_from: date | None = None  # inclusive
    issued_to: date | None = None  # inclusive
    number: str | None = None
    limit: int = 50
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class CertificateSummary:
    """One row of a listing. Fields read from the certificate payload are None until the
    store has indexed it (it does so before answering, so only for a moment at most)."""

    number: str
    role: str
    state: str
    coo_message_id: str
    updated_at: datetime
    agreement: str | None = None
    issue_date: date | None = None
    exporter_country: str | None = None
    importer_country: str | None = None
    reference_number: str | None = None


@dataclass(frozen=True, slots=True)
class CertificatePage:
    items: Sequence[CertificateSummary]
    total: int  # matching certificates across all pages
    next_cursor: str | None  # None on the last page


@dataclass(frozen=True, slots=True)
class MessageLine:
    """A message about a certificate, with the partner's receipt code and text if any."""

    direction: str  # out (we sent it) | in (the partner sent it)
    kind: str
    message_id: str
    status: str  # out: pending | delivered | rejected | failed; in: accepted | rejected
    attempts: int
    code: str | None  # out: the receipt's rejection code; in: the code we answered with
    text: str
    at: datetime  # sent (first attempt) or received
    updated_at: datetime
    correlation_id: str | None = None


@dataclass(frozen=True, slots=True)
class ItemDecision:
    item_number: int
    granted: bool
    reason: str | None
    remark: str = ""


@dataclass(frozen=True, slots=True)
class FeedbackLine:
    message_id: str
    direction: str
    decision: str  # granted | denied | partial
    at: datetime
    declaration_reference: str | None
    declaration_date: date | None
    items: Sequence[ItemDecision]


@dataclass(frozen=True, slots=True)
class CertificateDetail:
    """Everything known about one certificate in one role."""

    summary: CertificateSummary
    history: Sequence[HistoryLine]
    messages: Sequence[MessageLine]
    feedback: Sequence[FeedbackLine]
    cancellation_reason: str | None
    replaces: str | None  # the certificate this one replaced
    replaced_by: str | None  # the certificate that replaced this one
    valid_until: date | None = None


@dataclass(frozen=True, slots=True)
class Dashboard:
    by_state: Mapping[str, Mapping[str, int]]  # role -> state -> count
    pending: int  # sent messages without a receipt yet
    oldest_pending_at: datetime | None
    last_receipt_at: datetime | None  # the partner's latest receipt
    dead_lettered: int = 0  # not known to the store; filled by the caller that asks the broker


@dataclass(frozen=True, slots=True)
class PublicParty:
    name: str
    country: str


@dataclass(frozen=True, slots=True)
class PublicItem:
    item_number: int
    description: str
    hs_code: str
    origin_criterion: str


@dataclass(frozen=True, slots=True)
class PublicCertificate:
    """What the public verification page may show: no tax ids, no values, no invoices;
    ``envelope`` is the raw signed JWS so anyone can re-verify it against our JWK Set
    (exporter side) or the partner's (importer side)."""

    number: str
    reference_number: str
    role: str
    state: str
    agreement: str
    issue_date: date
    valid_until: date
    issuing_authority: PublicParty
    exporter: PublicParty
    consignee: PublicParty
    items: Sequence[PublicItem]
    signed_by: str  # the country whose key signed ``envelope``
    kid: str
    envelope: bytes
    replaced_by: str | None = None


class Reports(Protocol):
    """Read-only views of the store for operators; nothing here changes a certificate."""

    async def certificates(self, where: CertificateFilter) -> CertificatePage: ...

    async def certificate(self, number: str) -> list[CertificateDetail]:
        """Case-insensitive; one detail per role held (usually one); [] when unknown."""
        ...

    async def dashboard(self) -> Dashboard: ...

    async def verify_reference(
        self, reference_number: str, reference_code: str
    ) -> PublicCertificate | None:
        """The certificate printed with this reference number and code (case-insensitive,
        code compared in constant time), or None: a wrong code and an unknown number are
        indistinguishable to the caller."""
        ...

    async def ping(self) -> None:
        """A cheap query: raises ``StoreUnavailable`` when the store does not answer."""
        ...


@dataclass(frozen=True, slots=True)
class SentMessage:
    """A message we sent, with its signed bytes: what an operator's re-send starts from."""

    message_id: str
    kind: str
    certificate_number: str | None
    token: bytes
    status: str
    attempts: int
    sent_at: datetime


class SentMessages(Protocol):
    async def sent_message(self, message_id: str) -> SentMessage | None: ...


class DeadLetters(Protocol):
    """The dead-letter queues on our broker, for an operator's replay."""

    async def replay(self, dead_letter_queue: str, to_queue: str, limit: int) -> int:
        """Move up to ``limit`` messages (at most those there when called) back to
        ``to_queue``, byte for byte; returns how many moved."""
        ...

    async def count(self, queue: str) -> int: ...
