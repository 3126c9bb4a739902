"""The data a batch is decided on and what it changes: plain values, no behaviour.

A delivery batch goes into a planner together with the ``Facts`` its ``FactsQuery`` asked
for; the planner returns a ``UnitOfWork`` that the store commits in one transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from eodes_node.core.decide import CertFacts, OutboundFacts, PriorInbound, Transition
from eodes_node.core.messages import Kind
from eodes_node.core.verification import VerificationFacts, VerificationMove


@dataclass(slots=True)
class Delivery:
    """One message taken from a queue, as the service sees it; ``raw`` is the adapter's."""

    body: bytes
    message_id: str | None
    kind: str | None
    headers: Mapping[str, Any]
    redelivered: bool
    raw: Any = None


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
    # With status "pending": None counts one more attempt in the store (attempts + 1 in
    # SQL, so a count read before another instance's send still adds up); a number sets
    # the count (an operator's re-send starts a fresh budget at 1).
    attempts: int | None = None
    next_attempt_at: float | None = None


PARTNER = "@partner"

# Set on a local hand-off published again when the node cannot know whether an earlier
# publication of it reached the queue (a broker killed mid-commit, a confirm lost). The
# copy keeps the message id, so a local system that deduplicates by message id, as it
# must for the broker's own ``redelivered`` copies, sees it once.
POSSIBLE_DUPLICATE = "x-eodes-possible-duplicate"


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

    def again(self) -> Publication:
        """This publication once more: a local copy says it may be a second one."""
        if self.destination == PARTNER:
            return self  # the partner deduplicates by (sender, message id) by protocol
        return replace(self, headers={**self.headers, POSSIBLE_DUPLICATE: "true"})


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
    verifications: list[VerificationMove] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(
            self.inbound
            or self.outbound
            or self.outbound_updates
            or self.transitions
            or self.publications
            or self.verifications
        )


@dataclass(frozen=True, slots=True)
class FactsQuery:
    """Everything a batch needs to know, fetched in one trip to the store."""

    sender: str = ""
    message_ids: tuple[str, ...] = ()  # prior copies received from `sender`
    certificates: tuple[tuple[str, str], ...] = ()  # (role, number)
    outbound_ids: tuple[str, ...] = ()  # messages we sent, and their certificates
    local_keys: tuple[str, ...] = ()
    verification_ids: tuple[str, ...] = ()  # verification requests, by their message id

    def __bool__(self) -> bool:
        return bool(
            self.message_ids
            or self.certificates
            or self.outbound_ids
            or self.local_keys
            or self.verification_ids
        )


@dataclass(slots=True)
class Facts:
    priors: dict[str, PriorInbound] = field(default_factory=dict)
    certificates: dict[tuple[str, str], CertFacts] = field(default_factory=dict)
    outbound: dict[str, OutboundFacts] = field(default_factory=dict)
    local_keys: dict[str, tuple[str, str]] = field(default_factory=dict)
    verifications: dict[str, VerificationFacts] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Due:
    message_id: str
    kind: Kind
    certificate_number: str | None
    token: bytes
    attempts: int
