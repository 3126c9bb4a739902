"""Planning verification requests and responses our local systems submit, and the
overdue notices of requests the partner left unanswered.

The clearance system submits a request at the feedback door (AMQP type
``verification-request``); the issuing system answers one at the records door (type
``verification-response``). Each becomes a signed message for the partner, sent and
resent like every other kind; a refused one is dead-lettered with a ``record_rejected``
event, as any local record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from eodes_node.core.decide import CertFacts, Transition, applied, move
from eodes_node.core.decide_local import (
    decide_local_verification_request,
    decide_local_verification_response,
)
from eodes_node.core.messages import (
    Kind,
    VerificationRequest,
    VerificationRequestBody,
    VerificationResponse,
    VerificationResponseRecord,
    issued_now,
    new_message_id,
)
from eodes_node.core.plan.common import Identity, Plan, RetryPolicy, item, record_digest
from eodes_node.core.plan.local import parse_body, record_json, send
from eodes_node.core.records import parse_model
from eodes_node.core.state import Event, IllegalVerificationStep, Role
from eodes_node.core.verification import VerificationFacts, VerificationMove, folded, overdue
from eodes_node.core.work import Delivery, Facts, FactsQuery
from eodes_node.errors import InvalidRecord, Problem

REQUEST = Kind.VERIFICATION_REQUEST
RESPONSE = Kind.VERIFICATION_RESPONSE
OVERDUE_CODE = "REPLY_OVERDUE"
_IMPORTER = Role.IMPORTER.value
_EXPORTER = Role.EXPORTER.value


@dataclass(frozen=True, slots=True)
class ReadyRequest:
    delivery: Delivery
    body: VerificationRequestBody
    digest: str

    @property
    def number(self) -> str:
        return self.body.certificate_number

    @property
    def local_key(self) -> str:
        return f"{REQUEST.value}:{self.number}:{self.body.request_reference}"


@dataclass(frozen=True, slots=True)
class ReadyResponse:
    delivery: Delivery
    record: VerificationResponseRecord
    digest: str

    @property
    def number(self) -> str:
        return self.record.certificate_number

    @property
    def local_key(self) -> str:
        # One answer per request: a second one with other content is refused.
        return f"{RESPONSE.value}:{self.record.correlation_id}"


def parse_request(delivery: Delivery, max_bytes: int) -> ReadyRequest:
    body = parse_body(delivery, max_bytes)
    request = parse_model(VerificationRequestBody, record_json(body, delivery.body))
    return ReadyRequest(delivery, request, record_digest(body))


def parse_response(delivery: Delivery, max_bytes: int) -> ReadyResponse:
    body = parse_body(delivery, max_bytes)
    record = parse_model(VerificationResponseRecord, record_json(body, delivery.body))
    return ReadyResponse(delivery, record, record_digest(body))


def request_query(ready: Sequence[ReadyRequest]) -> FactsQuery:
    return FactsQuery(
        local_keys=tuple(r.local_key for r in ready),
        certificates=tuple((_IMPORTER, n) for n in sorted({r.number for r in ready})),
    )


def response_query(ready: Sequence[ReadyResponse]) -> FactsQuery:
    return FactsQuery(
        local_keys=tuple(r.local_key for r in ready),
        certificates=tuple((_EXPORTER, n) for n in sorted({r.number for r in ready})),
        verification_ids=tuple(sorted({r.record.correlation_id for r in ready})),
    )


def merged(first: FactsQuery, second: FactsQuery) -> FactsQuery:
    """One trip to the store for a batch that mixes records of two sorts."""
    return FactsQuery(
        sender=first.sender or second.sender,
        message_ids=first.message_ids + second.message_ids,
        certificates=tuple(sorted(set(first.certificates) | set(second.certificates))),
        outbound_ids=first.outbound_ids + second.outbound_ids,
        local_keys=first.local_keys + second.local_keys,
        verification_ids=first.verification_ids + second.verification_ids,
    )


@dataclass(slots=True)
class Batch:
    """What earlier records of a batch changed, for the later ones to see."""

    known: dict[str, tuple[str, str]]
    certs: dict[tuple[str, str], CertFacts]
    asked: dict[str, VerificationFacts]

    @classmethod
    def of(cls, facts: Facts) -> Batch:
        return cls(dict(facts.local_keys), dict(facts.certificates), dict(facts.verifications))

    def seen(self, result: Plan, ready: ReadyRequest | ReadyResponse, kind: Kind) -> bool:
        """True when the same record was taken before: it is sent once."""
        first = self.known.get(ready.local_key)
        if first is None or first[1] != ready.digest:
            return False
        result.note(
            "info",
            "local_duplicate_ignored",
            ready.delivery.message_id,
            ready.number,
            kind=kind.value,
            first_message_id=first[0],
        )
        return True


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
    if batch.seen(result, ready, REQUEST):
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
    _send(result, batch, identity, message, REQUEST, ready, now, retry, cert_move, asked)
    result.note(
        "info",
        "verification_request_accepted",
        message_id,
        number,
        reference=ready.body.request_reference,
        reply_due=ready.body.reply_due.isoformat(),
    )


def plan_response(
    result: Plan,
    ready: ReadyResponse,
    batch: Batch,
    identity: Identity,
    now: datetime,
    retry: RetryPolicy,
) -> None:
    """Sign and send the issuing system's answer; ``InvalidRecord`` refuses it."""
    number, message_id = ready.number, new_message_id()
    if batch.seen(result, ready, RESPONSE):
        return
    if ready.local_key in batch.known:
        raise InvalidRecord(
            [
                Problem(
                    "correlation_id",
                    "already_answered",
                    f"request {ready.record.correlation_id} was already answered "
                    "with other content",
                )
            ]
        )
    request_id = ready.record.correlation_id
    cert_move, step = decide_local_verification_response(
        ready.record,
        batch.asked.get(request_id),
        batch.certs.get((_EXPORTER, number)),
        message_id,
    )
    message = VerificationResponse(
        message_id=message_id,
        sender=identity.own,
        receiver=identity.partner,
        issued_at=issued_now(now),
        correlation_id=request_id,
        response=ready.record.body(),
    )
    _send(result, batch, identity, message, RESPONSE, ready, now, retry, cert_move, step)
    result.note(
        "info",
        "verification_response_accepted",
        message_id,
        number,
        request_id=request_id,
        result=ready.record.result.value,
    )


def _send(
    result: Plan,
    batch: Batch,
    identity: Identity,
    message: VerificationRequest | VerificationResponse,
    kind: Kind,
    ready: ReadyRequest | ReadyResponse,
    now: datetime,
    retry: RetryPolicy,
    cert_move: Transition,
    step: VerificationMove,
) -> None:
    applied(batch.certs, [cert_move])
    folded(batch.asked, [step])
    batch.known[ready.local_key] = (message.message_id, ready.digest)
    result.verifications.append(step)
    send(
        result,
        identity,
        message,
        kind,
        number=ready.number,
        local_key=ready.local_key,
        record_digest=ready.digest,
        moves=[cert_move],
        now=now,
        retry=retry,
    )


def overdue_query(requests: Sequence[VerificationFacts]) -> FactsQuery:
    return FactsQuery(
        certificates=tuple(sorted({(_IMPORTER, r.number) for r in requests})),
        verification_ids=tuple(r.request_id for r in requests),
    )


def plan_overdue(requests: Sequence[VerificationFacts], facts: Facts) -> Plan:
    """Requests we sent whose reply due date passed unanswered: each becomes overdue
    once, with one ``overdue`` event for all of them. A request answered meanwhile (the
    facts are fresher than the scan) is left alone."""
    result = Plan()
    certs = dict(facts.certificates)
    entries = []
    for scanned in requests:
        asked = facts.verifications.get(scanned.request_id, scanned)
        try:
            result.verifications.append(overdue(asked))
        except IllegalVerificationStep:
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
