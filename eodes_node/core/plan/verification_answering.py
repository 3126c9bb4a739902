"""The answering side of retrospective verification: the issuing system's answers to
the partner's requests, which we sign and send, once per request unless the partner
never took the answer.

It exists apart from ``verification_asking`` because asking and answering share only
the batch plumbing in ``verification_common``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from eodes_node.core.decide_local import decide_local_verification_response
from eodes_node.core.messages import VerificationResponse, VerificationResponseRecord, issued_now
from eodes_node.core.plan.common import Identity, Plan, RetryPolicy, record_digest
from eodes_node.core.plan.local import parse_body, record_json
from eodes_node.core.plan.verification_common import (
    MAX_ANSWERS,
    RESPONSE,
    Batch,
    ReadyResponse,
    answer_key,
    send_step,
)
from eodes_node.core.records import parse_model
from eodes_node.core.state import Role
from eodes_node.core.verification import NOT_TAKEN
from eodes_node.core.work import Delivery, FactsQuery
from eodes_node.errors import InvalidRecord, Problem

_EXPORTER = Role.EXPORTER.value


def answer_id(request_id: str, attempt: int) -> str:
    """The message id of our ``attempt``-th answer to a request. It follows from the
    request's id, so the records door learns how the earlier answers ended in the same
    trip to the store as every other fact of the batch."""
    return str(uuid.uuid5(uuid.UUID(request_id), f"{RESPONSE.value}/{attempt}"))


def parse_response(delivery: Delivery, max_bytes: int) -> ReadyResponse:
    body = parse_body(delivery, max_bytes)
    record = parse_model(VerificationResponseRecord, record_json(body, delivery.body))
    return ReadyResponse(delivery, record, record_digest(body))


def response_query(ready: Sequence[ReadyResponse]) -> FactsQuery:
    requests = sorted({r.request_id for r in ready})
    attempts = range(1, MAX_ANSWERS + 1)
    return FactsQuery(
        local_keys=tuple(answer_key(rid, n) for rid in requests for n in attempts),
        certificates=tuple((_EXPORTER, n) for n in sorted({r.number for r in ready})),
        outbound_ids=tuple(answer_id(rid, n) for rid in requests for n in attempts),
        verification_ids=tuple(requests),
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
    send_step(result, batch, identity, message, RESPONSE, ready, local_key, now, retry, moves)
    result.note(
        "info",
        "verification_response_accepted",
        message_id,
        number,
        request_id=request_id,
        result=ready.record.result.value,
        **({"replaces": last[0]} if replacing and last is not None else {}),
    )
