"""The node's ports: what the service and the runtime need from the outside world.

Split by role, so each adapter and each fake implements only what its caller uses:
``Store`` (facts and commit), ``Outbox`` (what is still to publish), ``Schedule`` (what
is due for a resend), ``Audit`` (reports and the history chain), ``Transport``
(publishing), ``Broker`` and ``Consumer`` (taking deliveries), ``Clock``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeVar

from eodes_node.core.verification import VerificationFacts
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
from eodes_node.readmodel import (
    CertificateDetail,
    CertificateFilter,
    CertificatePage,
    CertificateSummary,
    Dashboard,
    FeedbackLine,
    HistoryLine,
    ItemDecision,
    MessageLine,
    PublicCertificate,
    PublicItem,
    PublicParty,
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
class CertificateReport:
    number: str
    role: str
    state: str
    coo_message_id: str
    history: Sequence[HistoryLine]
    messages: Sequence[tuple[str, str, str, str, int]]  # direction, kind, id, status, attempts


Decision = TypeVar("Decision")
Decide = Callable[[Facts], tuple[Decision, UnitOfWork]]


class Store(Protocol):
    """Facts for a batch, and the batch's effects committed in one transaction."""

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def facts(self, query: FactsQuery) -> Facts: ...
    async def commit(self, unit: UnitOfWork) -> list[int]:
        """Returns the outbox ids of ``unit.publications``, in order; raises
        ``StoreConflict`` when a transition starts from a state that is no longer so."""
        ...

    async def decide(
        self, query: FactsQuery, decide: Decide[Decision]
    ) -> tuple[Decision, UnitOfWork, list[int]]:
        """Read ``query``'s facts, ``decide`` on them and commit the unit it returns, as
        ``commit`` does, in one call; an empty unit is not committed. ``decide`` may run on
        the store's thread, inside the transaction: it does no I/O and reads nothing the
        event loop changes in place. After ``StoreConflict`` the caller calls again."""
        ...


class Outbox(Protocol):
    """Committed publications until the broker confirms them."""

    async def mark_published(self, ids: Sequence[int]) -> None: ...
    async def release(self, ids: Sequence[int]) -> None: ...
    async def flush_published(self) -> None: ...
    async def unpublished(self, limit: int) -> list[QueuedPublication]: ...
    async def bound_unpublished(self, keys: Iterable[str]) -> list[QueuedPublication]: ...


class Schedule(Protocol):
    """Sent messages still waiting for a receipt, and verification requests we sent still
    waiting for their answer."""

    async def due(self, now: float, limit: int) -> list[Due]: ...

    async def next_due_at(self) -> float | None:
        """The next resend or reply due date, whichever comes first."""
        ...

    async def overdue(self, now: float, limit: int) -> list[VerificationFacts]:
        """Requests we sent, still pending after the end of their reply due day."""
        ...


class Audit(Protocol):
    async def report(self, number: str) -> list[CertificateReport]: ...
    async def verify_audit_chain(self) -> int: ...


class NodeStore(Store, Outbox, Schedule, Audit, Protocol):
    """One database plays every role; the composition root hands it out by role."""


class Leadership(Protocol):
    """Which of several instances of one link is active (the others stand by); without
    one, the instance is always active."""

    poll_s: float  # how often a standby tries, and the active one checks it still leads

    async def try_lead(self) -> bool:
        """Take the link if no instance holds it; True once this one holds it."""
        ...

    async def holds(self) -> bool:
        """Whether this instance still leads; False once another may have taken over."""
        ...

    async def resign(self) -> None: ...


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
        unsettled: Callable[[Sequence[Publication]], None] | None = None,
    ) -> Consumer:
        """``published`` gets the outbox ids a settle published; ``unsettled`` gets the
        bound publications of a settle whose outcome is unknown (the link died during
        the broker transaction)."""
        ...

    async def stop_consuming(self) -> None: ...
    async def close(self) -> None: ...


# -- Reports: the read side for operators (HTTP API, console, CLI, verification page) --------


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
