"""Planning a batch of records from the issuing system: e-CO, replacement, cancellation,
and answers to the partner's verification requests (``core.plan.verification``).

``prepare`` parses and composes (pure CPU), ``query`` names the facts the batch needs,
``plan`` decides each record against those facts; later records of a batch see the
effects of earlier ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from eodes_node.core.decide import CertFacts, applied
from eodes_node.core.decide_local import decide_local_certificate
from eodes_node.core.messages import (
    CooCancellation,
    CooIssued,
    CooReplacement,
    Kind,
    MessageBase,
    certificate_number_of,
    issued_now,
)
from eodes_node.core.plan.common import Door, Identity, Plan, RetryPolicy, record_digest
from eodes_node.core.plan.local import parse_body, refuse, send
from eodes_node.core.plan.verification import (
    RESPONSE,
    Batch,
    ReadyResponse,
    merged,
    parse_response,
    plan_response,
    response_query,
)
from eodes_node.core.records import compose
from eodes_node.core.state import Role
from eodes_node.core.work import Delivery, Facts, FactsQuery
from eodes_node.errors import InvalidRecord, Problem

RECORD_KINDS = (Kind.COO, Kind.COO_REPLACEMENT, Kind.COO_CANCELLATION)
_DOOR_KINDS = (*RECORD_KINDS, RESPONSE)
_RECORD_KIND_NAMES = frozenset(k.value for k in _DOOR_KINDS)
_EXPORTER = Role.EXPORTER.value


@dataclass(frozen=True, slots=True)
class Ready:
    delivery: Delivery
    kind: Kind
    message: CooIssued | CooReplacement | CooCancellation
    number: str
    digest: str
    payload: bytes

    @property
    def local_key(self) -> str:
        return f"{self.kind.value}:{self.number}"


@dataclass(slots=True)
class Prepared:
    refused: list[tuple[Delivery, str, tuple[Problem, ...]]] = field(default_factory=list)
    ready: list[Ready] = field(default_factory=list)
    responses: list[ReadyResponse] = field(default_factory=list)


def _kind_of(delivery: Delivery) -> Kind:
    name = delivery.kind or Kind.COO.value
    if name not in _RECORD_KIND_NAMES:
        allowed = ", ".join(k.value for k in _DOOR_KINDS)
        raise InvalidRecord(
            [Problem("", "unknown_type", f"AMQP type {name!r} is not one of {allowed}")]
        )
    return Kind(name)


def prepare(batch: list[Delivery], identity: Identity, now: datetime, max_bytes: int) -> Prepared:
    prepared = Prepared()
    issued_at = issued_now(now)
    for delivery in batch:
        try:
            kind = _kind_of(delivery)
            if kind is RESPONSE:
                prepared.responses.append(parse_response(delivery, max_bytes))
                continue
            body = parse_body(delivery, max_bytes)
            composed = compose(
                kind, body, sender=identity.own, receiver=identity.partner, issued_at=issued_at
            )
        except InvalidRecord as exc:
            prepared.refused.append((delivery, delivery.kind or Kind.COO.value, exc.problems))
            continue
        message = composed.message
        assert isinstance(message, CooIssued | CooReplacement | CooCancellation)
        number = certificate_number_of(message) or ""
        prepared.ready.append(
            Ready(delivery, kind, message, number, record_digest(body), composed.payload)
        )
    return prepared


def _replaced_number(message: MessageBase) -> str | None:
    if isinstance(message, CooReplacement) and message.certificate.back_reference:
        return message.certificate.back_reference.certificate_number
    return None


def query(prepared: Prepared) -> FactsQuery:
    numbers = {r.number for r in prepared.ready}
    numbers |= {n for r in prepared.ready if (n := _replaced_number(r.message)) is not None}
    certificates = FactsQuery(
        local_keys=tuple(r.local_key for r in prepared.ready),
        certificates=tuple((_EXPORTER, n) for n in sorted(numbers)),
    )
    return merged(certificates, response_query(prepared.responses))


def plan(
    prepared: Prepared, facts: Facts, identity: Identity, now: datetime, retry: RetryPolicy
) -> Plan:
    result = Plan()
    for delivery, kind_name, problems in prepared.refused:
        refuse(result, Door.RECORDS, delivery, kind_name, problems)
    batch = Batch.of(facts)
    for ready in prepared.ready:
        try:
            _decide(result, ready, batch.known, batch.certs, identity, now, retry)
        except InvalidRecord as exc:
            refuse(
                result, Door.RECORDS, ready.delivery, ready.kind.value, exc.problems, ready.number
            )
    for answer in prepared.responses:
        try:
            plan_response(result, answer, batch, identity, now, retry)
        except InvalidRecord as exc:
            kind = RESPONSE.value
            refuse(result, Door.RECORDS, answer.delivery, kind, exc.problems, answer.number)
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
    message, kind, number = ready.message, ready.kind, ready.number
    if ready.local_key in known:
        first_id, first_digest = known[ready.local_key]
        if first_digest == ready.digest:
            result.note(
                "info",
                "local_duplicate_ignored",
                message.message_id,
                number,
                kind=kind.value,
                first_message_id=first_id,
            )
            return
        raise InvalidRecord(
            [
                Problem(
                    "header.certificate_number",
                    "number_in_use",
                    f"{kind.value} for {number} was already submitted with other "
                    "content; a correction travels as coo-replacement",
                )
            ]
        )
    replaced = _replaced_number(message)
    referenced = certs.get((_EXPORTER, replaced)) if replaced else None
    moves = decide_local_certificate(message, certs.get((_EXPORTER, number)), referenced)
    applied(certs, moves)
    known[ready.local_key] = (message.message_id, ready.digest)
    send(
        result,
        identity,
        message,
        kind,
        number=number,
        local_key=ready.local_key,
        record_digest=ready.digest,
        moves=moves,
        now=now,
        retry=retry,
        payload=ready.payload,
    )
    result.note("info", "record_accepted", message.message_id, number, kind=kind.value)
