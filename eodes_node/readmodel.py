"""The operators' read model: plain values the Reports port returns to the HTTP API, the
console, the CLI and the verification page. No behaviour, no I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime


@dataclass(frozen=True, slots=True)
class HistoryLine:
    at: datetime
    event: str
    before: str | None
    after: str
    message_id: str


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
