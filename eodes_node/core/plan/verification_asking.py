"""The asking side of retrospective verification: the clearance system's requests we
sign and send to the partner, and the overdue notices of those the partner left
unanswered past their reply due date.

It exists apart from ``verification_answering`` because asking and answering share
only the batch plumbing in ``verification_common``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from eodes_node.core.decide import applied, move
from eodes_node.core.decide_local import decide_local_verification_request
from eodes_node.core.messages import (
    VerificationRequest,
    VerificationRequestBody,
    issued_now,
    new_message_id,
)
from eodes_node.core.plan.common import Identity, Plan, RetryPolicy, item, record_digest
from eodes_node.core.plan.local import parse_body, record_json
from eodes_node.core.plan.verification_common import REQUEST, Batch, ReadyRequest, send_step
from eodes_node.core.records import parse_model
from eodes_node.core.state import Event, IllegalVerificationStep, Role
from eodes_node.core.verification import NOT_TAKEN, VerificationFacts, closed, overdue
from eodes_node.core.work import Delivery, Facts, FactsQuery
from eodes_node.errors import InvalidRecord, Problem

OVERDUE_CODE = "REPLY_OVERDUE"
_IMPORTER = Role.IMPORTER.value


def parse_request(delivery: Delivery, max_bytes: int) -> ReadyRequest:
    body = parse_body(delivery, max_bytes)
    request = parse_model(VerificationRequestBody, record_json(body, delivery.body))
    return ReadyRequest(delivery, request, record_digest(body))


def request_query(ready: Sequence[ReadyRequest]) -> FactsQuery:
    return FactsQuery(
        local_keys=tuple(r.local_key for r in ready),
        certificates=tuple((_IMPORTER, n) for n in sorted({r.number for r in ready})),
    )


def plan_request(
    result: Plan,
    ready: ReadyRequest,
    batch: Batch,
    identity: Identity,
    now: datetime,
    retry: RetryPolicy,
) -> None:
    """Sign and send the clearance system's request; ``InvalidRecord`` refuses it."""
    number, message_id = ready.number, new_message_id()
    if batch.seen(result, ready, ready.local_key):
        return
    if ready.local_key in batch.known:
        raise InvalidRecord(
            [
                Problem(
                    "request_reference",
                    "reference_in_use",
                    f"request {ready.body.request_reference!r} about {number} was already "
                    "submitted with other content; use a new request_reference",
                )
            ]
        )
    cert_move, asked = decide_local_verification_request(
        ready.body, batch.certs.get((_IMPORTER, number)), message_id, now.date()
    )
    message = VerificationRequest(
        message_id=message_id,
        sender=identity.own,
        receiver=identity.partner,
        issued_at=issued_now(now),
        request=ready.body,
    )
    moves = (cert_move, asked)
    send_step(result, batch, identity, message, REQUEST, ready, ready.local_key, now, retry, moves)
    result.note(
        "info",
        "verification_request_accepted",
        message_id,
        number,
        reference=ready.body.request_reference,
        reply_due=ready.body.reply_due.isoformat(),
    )


def overdue_query(requests: Sequence[VerificationFacts]) -> FactsQuery:
    # A request's id is the id of the message that carried it: how that one ended.
    ids = tuple(r.request_id for r in requests)
    return FactsQuery(
        certificates=tuple(sorted({(_IMPORTER, r.number) for r in requests})),
        outbound_ids=ids,
        verification_ids=ids,
    )


def plan_overdue(requests: Sequence[VerificationFacts], facts: Facts) -> Plan:
    """Requests we sent whose reply due date passed unanswered: each becomes overdue
    once, with one ``overdue`` event for all of them. A request answered meanwhile (the
    facts are fresher than the scan) is left alone. A request the partner never took
    (its message failed or was rejected, and the local system had that event) waits
    for no answer: it is closed without a notice."""
    result = Plan()
    certs = dict(facts.certificates)
    entries = []
    for scanned in requests:
        asked = facts.verifications.get(scanned.request_id, scanned)
        sent = facts.outbound.get(asked.request_id)
        ended = sent.status if sent is not None else None
        try:
            result.verifications.append(closed(asked) if ended in NOT_TAKEN else overdue(asked))
        except IllegalVerificationStep:
            continue
        if ended in NOT_TAKEN:
            result.note(
                "info",
                "verification_request_closed",
                asked.request_id,
                asked.number,
                reference=asked.reference,
                message_status=ended,
            )
            continue
        # Every importer state has the row: a request is owed its notice whatever
        # happened to the certificate since.
        cert = certs.get((_IMPORTER, asked.number))
        if cert is not None:
            event = Event.VERIFICATION_OVERDUE
            moved = move(cert, Role.IMPORTER, asked.number, event, asked.request_id)
            result.transitions.append(moved)
            applied(certs, [moved])
        text = (
            f"no verification response to request {asked.reference!r} "
            f"by its reply due date {asked.reply_due.isoformat()}"
        )
        result.note(
            "warning",
            "verification_overdue",
            asked.request_id,
            asked.number,
            reference=asked.reference,
            reply_due=asked.reply_due.isoformat(),
        )
        entries.append(item(asked.request_id, REQUEST.value, asked.number, OVERDUE_CODE, text))
    result.notice("overdue", entries)
    return result
