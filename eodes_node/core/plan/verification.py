"""Planning verification requests and responses our local systems submit, and the
overdue notices of requests the partner left unanswered.

The clearance system submits a request at the feedback door (AMQP type
``verification-request``); the issuing system answers one at the records door (type
``verification-response``). Each becomes a signed message for the partner, sent and
resent like every other kind; a refused one is dead-lettered with a ``record_rejected``
event, as any local record.
"""

from __future__ import annotations

import uuid
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
from eodes_node.core.verification import (
    NOT_TAKEN,
    VerificationFacts,
    VerificationMove,
    closed,
    folded,
    overdue,
)
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
    def request_id(self) -> str:
        return self.record.correlation_id


# One answer per request, but an answer the partner never took (it failed or was
# rejected) answers nothing, and the next one takes its place, up to this many in all.
MAX_ANSWERS = 10


def answer_key(request_id: str, attempt: int) -> str:
    """The local key of our ``attempt``-th answer to a request (the first: 1)."""
    key = f"{RESPONSE.value}:{request_id}"
    return key if attempt == 1 else f"{key}/{attempt}"


def answer_id(request_id: str, attempt: int) -> str:
    """The message id of our ``attempt``-th answer to a request. It follows from the
    request's id, so the records door learns how the earlier answers ended in the same
    trip to the store as every other fact of the batch."""
    return str(uuid.uuid5(uuid.UUID(request_id), f"{RESPONSE.value}/{attempt}"))


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
    requests = sorted({r.request_id for r in ready})
    attempts = range(1, MAX_ANSWERS + 1)
    return FactsQuery(
        local_keys=tuple(answer_key(rid, n) for rid in requests for n in attempts),
        certificates=tuple((_EXPORTER, n) for n in sorted({r.number for r in ready})),
        outbound_ids=tuple(answer_id(rid, n) for rid in requests for n in attempts),
        verification_ids=tuple(requests),
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
    ended: dict[str, str]  # how our sent messages stand: pending, delivered, failed...

    @classmethod
    def of(cls, facts: Facts) -> Batch:
        return cls(
            dict(facts.local_keys),
            dict(facts.certificates),
            dict(facts.verifications),
            {mid: sent.status for mid, sent in facts.outbound.items()},
        )

    def seen(self, result: Plan, ready: ReadyRequest | ReadyResponse, local_key: str) -> bool:
        """True when the same record was taken before: it is sent once."""
        first = self.known.get(local_key)
        if first is None or first[1] != ready.digest:
            return False
        result.note(
            "info",
            "local_duplicate_ignored",
            ready.delivery.message_id,
            ready.number,
            kind=(REQUEST if isinstance(ready, ReadyRequest) else RESPONSE).value,
            first_message_id=first[0],
        )
        return True

    def last_answer(self, request_id: str) -> tuple[int, tuple[str, str] | None]:
        """How many answers we gave a request, and the last one (message id, digest)."""
        attempt, last = 0, None
        while attempt < MAX_ANSWERS and answer_key(request_id, attempt + 1) in self.known:
            attempt += 1
            last = self.known[answer_key(request_id, attempt)]
        return attempt, last


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
    _send(result, batch, identity, message, REQUEST, ready, ready.local_key, now, retry, moves)
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
    """Sign and send the issuing system's answer; ``InvalidRecord`` refuses it.

    A request is answered once. An answer the partner never took (its message failed or
    was rejected) answers nothing: the same record or a corrected one is then sent as a
    new answer, in its place."""
    number, request_id = ready.number, ready.request_id
    attempt, last = batch.last_answer(request_id)
    replacing = last is not None and batch.ended.get(last[0]) in NOT_TAKEN
    if last is not None and not replacing:
        if batch.seen(result, ready, answer_key(request_id, attempt)):
            return
        raise InvalidRecord(
            [
                Problem(
                    "correlation_id",
                    "already_answered",
                    f"request {request_id} was already answered with other content",
                )
            ]
        )
    if attempt == MAX_ANSWERS:
        raise InvalidRecord(
            [
                Problem(
                    "correlation_id",
                    "too_many_answers",
                    f"request {request_id} was answered {MAX_ANSWERS} times and the partner "
                    "took none of the answers; settle it with the partner another way",
                )
            ]
        )
    message_id = answer_id(request_id, attempt + 1)
    cert_move, step = decide_local_verification_response(
        ready.record,
        batch.asked.get(request_id),
        batch.certs.get((_EXPORTER, number)),
        message_id,
        replacing=replacing,
    )
    message = VerificationResponse(
        message_id=message_id,
        sender=identity.own,
        receiver=identity.partner,
        issued_at=issued_now(now),
        correlation_id=request_id,
        response=ready.record.body(),
    )
    local_key = answer_key(request_id, attempt + 1)
    moves = (cert_move, step)
    _send(result, batch, identity, message, RESPONSE, ready, local_key, now, retry, moves)
    result.note(
        "info",
        "verification_response_accepted",
        message_id,
        number,
        request_id=request_id,
        result=ready.record.result.value,
        **({"replaces": last[0]} if replacing and last is not None else {}),
    )


def _send(
    result: Plan,
    batch: Batch,
    identity: Identity,
    message: VerificationRequest | VerificationResponse,
    kind: Kind,
    ready: ReadyRequest | ReadyResponse,
    local_key: str,
    now: datetime,
    retry: RetryPolicy,
    moves: tuple[Transition, VerificationMove],
) -> None:
    cert_move, step = moves
    applied(batch.certs, [cert_move])
    folded(batch.asked, [step])
    batch.known[local_key] = (message.message_id, ready.digest)
    result.verifications.append(step)
    send(
        result,
        identity,
        message,
        kind,
        number=ready.number,
        local_key=local_key,
        record_digest=ready.digest,
        moves=[cert_move],
        now=now,
        retry=retry,
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
