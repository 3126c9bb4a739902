"""Planning a batch from the clearance system about certificates received from the
partner: each decision becomes a signed feedback message for the partner, each
verification request (AMQP type ``verification-request``) a signed request."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from eodes_node.core.decide import CertFacts, applied
from eodes_node.core.decide_local import decide_local_feedback
from eodes_node.core.messages import Feedback, FeedbackBody, Kind, issued_now, new_message_id
from eodes_node.core.plan.common import Door, Identity, Plan, RetryPolicy, record_digest
from eodes_node.core.plan.local import parse_body, record_json, refuse, send
from eodes_node.core.plan.verification import (
    REQUEST,
    Batch,
    ReadyRequest,
    merged,
    parse_request,
    plan_request,
    request_query,
)
from eodes_node.core.records import parse_model
from eodes_node.core.state import Role
from eodes_node.core.work import Delivery, Facts, FactsQuery
from eodes_node.errors import InvalidRecord, Problem

_IMPORTER = Role.IMPORTER.value
_KIND = Kind.FEEDBACK.value
_DOOR_KINDS = (_KIND, REQUEST.value)


@dataclass(frozen=True, slots=True)
class Ready:
    delivery: Delivery
    feedback: FeedbackBody
    digest: str

    @property
    def number(self) -> str:
        return self.feedback.certificate_number

    @property
    def local_key(self) -> str:
        return f"feedback:{self.number}"


@dataclass(slots=True)
class Prepared:
    refused: list[tuple[Delivery, tuple[Problem, ...]]] = field(default_factory=list)
    ready: list[Ready] = field(default_factory=list)
    requests: list[ReadyRequest] = field(default_factory=list)


def _kind_name(delivery: Delivery) -> str:
    """Feedback unless the AMQP type says otherwise (no type: feedback, as ever)."""
    return delivery.kind or _KIND


def prepare(batch: list[Delivery], max_bytes: int) -> Prepared:
    prepared = Prepared()
    for delivery in batch:
        try:
            kind = _kind_name(delivery)
            if kind == REQUEST.value:
                prepared.requests.append(parse_request(delivery, max_bytes))
                continue
            if kind != _KIND:
                allowed = ", ".join(_DOOR_KINDS)
                raise InvalidRecord(
                    [Problem("", "unknown_type", f"AMQP type {kind!r} is not one of {allowed}")]
                )
            body = parse_body(delivery, max_bytes)
            feedback = parse_model(FeedbackBody, record_json(body, delivery.body))
        except InvalidRecord as exc:
            prepared.refused.append((delivery, exc.problems))
            continue
        prepared.ready.append(Ready(delivery, feedback, record_digest(body)))
    return prepared


def query(prepared: Prepared) -> FactsQuery:
    decisions = FactsQuery(
        local_keys=tuple(r.local_key for r in prepared.ready),
        certificates=tuple((_IMPORTER, n) for n in sorted({r.number for r in prepared.ready})),
    )
    return merged(decisions, request_query(prepared.requests))


def plan(
    prepared: Prepared, facts: Facts, identity: Identity, now: datetime, retry: RetryPolicy
) -> Plan:
    result = Plan()
    for delivery, problems in prepared.refused:
        refuse(result, Door.FEEDBACK, delivery, _kind_name(delivery), problems)
    batch = Batch.of(facts)
    for ready in prepared.ready:
        try:
            _decide(result, ready, batch.known, batch.certs, identity, now, retry)
        except InvalidRecord as exc:
            refuse(result, Door.FEEDBACK, ready.delivery, _KIND, exc.problems, ready.number)
    for asked in prepared.requests:
        try:
            plan_request(result, asked, batch, identity, now, retry)
        except InvalidRecord as exc:
            kind = REQUEST.value
            refuse(result, Door.FEEDBACK, asked.delivery, kind, exc.problems, asked.number)
    return result


def _decide(
    result: Plan,
    ready: Ready,
    known: dict[str, tuple[str, str]],
    certs: dict[tuple[str, str], CertFacts],
    identity: Identity,
    now: datetime,
    retry: RetryPolicy,
) -> None:
    number = ready.number
    message_id = new_message_id()
    if known.get(ready.local_key, ("", ""))[1] == ready.digest:
        result.note("info", "local_duplicate_ignored", message_id, number, kind=_KIND)
        return
    cert = certs.get((_IMPORTER, number))
    move = decide_local_feedback(ready.feedback, cert, message_id)
    assert cert is not None  # decide_local_feedback refuses an unknown certificate
    message = Feedback(
        message_id=message_id,
        sender=identity.own,
        receiver=identity.partner,
        issued_at=issued_now(now),
        correlation_id=cert.coo_message_id,
        feedback=ready.feedback,
    )
    applied(certs, [move])
    known[ready.local_key] = (message_id, ready.digest)
    send(
        result,
        identity,
        message,
        Kind.FEEDBACK,
        number=number,
        local_key=ready.local_key,
        record_digest=ready.digest,
        moves=[move],
        now=now,
        retry=retry,
    )
    result.note(
        "info", "feedback_accepted", message_id, number, decision=ready.feedback.decision.value
    )
