"""Planning a batch of decisions from the clearance system on certificates received
from the partner: each becomes a signed feedback message for the partner."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from eodes_node.core.decide import CertFacts, applied
from eodes_node.core.decide_local import decide_local_feedback
from eodes_node.core.messages import Feedback, FeedbackBody, Kind, issued_now, new_message_id
from eodes_node.core.plan.common import Door, Identity, Plan, RetryPolicy, record_digest
from eodes_node.core.plan.local import parse_body, record_json, refuse, send
from eodes_node.core.records import parse_model
from eodes_node.core.state import Role
from eodes_node.core.work import Delivery, Facts, FactsQuery
from eodes_node.errors import InvalidRecord, Problem

_IMPORTER = Role.IMPORTER.value
_KIND = Kind.FEEDBACK.value


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


def prepare(batch: list[Delivery], max_bytes: int) -> Prepared:
    prepared = Prepared()
    for delivery in batch:
        try:
            body = parse_body(delivery, max_bytes)
            feedback = parse_model(FeedbackBody, record_json(body, delivery.body))
        except InvalidRecord as exc:
            prepared.refused.append((delivery, exc.problems))
            continue
        prepared.ready.append(Ready(delivery, feedback, record_digest(body)))
    return prepared


def query(prepared: Prepared) -> FactsQuery:
    return FactsQuery(
        local_keys=tuple(r.local_key for r in prepared.ready),
        certificates=tuple((_IMPORTER, n) for n in sorted({r.number for r in prepared.ready})),
    )


def plan(
    prepared: Prepared, facts: Facts, identity: Identity, now: datetime, retry: RetryPolicy
) -> Plan:
    result = Plan()
    for delivery, problems in prepared.refused:
        refuse(result, Door.FEEDBACK, delivery, _KIND, problems)
    known = dict(facts.local_keys)
    certs = dict(facts.certificates)
    for ready in prepared.ready:
        try:
            _decide(result, ready, known, certs, identity, now, retry)
        except InvalidRecord as exc:
            refuse(result, Door.FEEDBACK, ready.delivery, _KIND, exc.problems, ready.number)
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
