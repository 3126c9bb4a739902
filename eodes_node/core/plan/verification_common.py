"""What both sides of retrospective verification share: the two kinds, the records
ready to plan, the view a batch keeps of what its earlier records changed, and the one
way either side signs and sends its message.

It exists so the asking side (``verification_asking``) and the answering side
(``verification_answering``) can live apart without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from eodes_node.core.decide import CertFacts, Transition, applied
from eodes_node.core.messages import (
    Kind,
    VerificationRequest,
    VerificationRequestBody,
    VerificationResponse,
    VerificationResponseRecord,
)
from eodes_node.core.plan.common import Identity, Plan, RetryPolicy
from eodes_node.core.plan.local import send
from eodes_node.core.verification import VerificationFacts, VerificationMove, folded
from eodes_node.core.work import Delivery, Facts, FactsQuery

REQUEST = Kind.VERIFICATION_REQUEST
RESPONSE = Kind.VERIFICATION_RESPONSE


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


def send_step(
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
    """Fold the record's moves into the batch, then sign and send its message."""
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
