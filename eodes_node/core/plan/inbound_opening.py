"""Opening a batch from the partner, apart from deciding on it.

Verifying each envelope and naming the facts the batch needs happen before the store is
read; the planner in ``inbound`` uses the same keys to look those facts up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from eodes_node.core.envelope import Opened, open_envelope
from eodes_node.core.messages import (
    CooReplacement,
    Feedback,
    MessageBase,
    Receipt,
    VerificationRequest,
    VerificationResponse,
    certificate_number_of,
)
from eodes_node.core.plan.common import EnvelopeLimits, Identity
from eodes_node.core.state import Role
from eodes_node.core.work import Delivery, FactsQuery
from eodes_node.errors import PeerError


@dataclass(slots=True)
class Opening:
    """A batch after verification, split by what happens to each envelope next."""

    refused: list[tuple[Delivery, PeerError]] = field(default_factory=list)
    receipts: list[tuple[Delivery, Opened]] = field(default_factory=list)
    others: list[tuple[Delivery, Opened]] = field(default_factory=list)


def prepare(
    batch: list[Delivery], identity: Identity, now: datetime, limits: EnvelopeLimits
) -> Opening:
    opening = Opening()
    for delivery in batch:
        try:
            opened = open_envelope(
                delivery.body,
                identity.partner_keys,
                receiver=identity.own,
                now=now,
                max_bytes=limits.max_bytes,
                max_future_skew=limits.max_future_skew,
                max_age=limits.max_age,
            )
        except PeerError as exc:
            opening.refused.append((delivery, exc))
            continue
        if isinstance(opened.message, Receipt):
            opening.receipts.append((delivery, opened))
        else:
            opening.others.append((delivery, opened))
    return opening


def cert_key(message: MessageBase) -> tuple[str, str] | None:
    """The certificate a partner message concerns, seen from our side."""
    number = certificate_number_of(message)
    if number is None:
        return None
    role = Role.EXPORTER if isinstance(message, Feedback | VerificationRequest) else Role.IMPORTER
    return (role.value, number)


def replaced_key(message: MessageBase) -> tuple[str, str] | None:
    if isinstance(message, CooReplacement) and message.certificate.back_reference:
        return (Role.IMPORTER.value, message.certificate.back_reference.certificate_number)
    return None


def query(opening: Opening, identity: Identity) -> FactsQuery:
    keys = {k for _, o in opening.others if (k := cert_key(o.message)) is not None}
    keys |= {k for _, o in opening.others if (k := replaced_key(o.message)) is not None}
    entries = [
        e.message_id
        for _, o in opening.receipts
        if isinstance(o.message, Receipt)
        for e in o.message.entries
    ]
    return FactsQuery(
        sender=identity.partner,
        message_ids=tuple(o.message.message_id for _, o in (*opening.others, *opening.receipts)),
        certificates=tuple(sorted(keys)),
        outbound_ids=tuple(entries),
        verification_ids=tuple(
            request_id for _, o in opening.others if (request_id := verification_id(o.message))
        ),
    )


def verification_id(message: MessageBase) -> str | None:
    """The verification row a message needs: the request a response answers, or the row
    that may already hold a request's id (ours share the table)."""
    if isinstance(message, VerificationResponse):
        return message.correlation_id
    if isinstance(message, VerificationRequest):
        return message.message_id
    return None
