"""What `eodes-node submit` checks before it publishes: the node's own checks for a
record, so the issuing or clearance developer hears at once what the node would refuse
and why, instead of finding it later on a dead-letter queue."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import BaseModel

from eodes_node.core.decide_local import due_date_problem
from eodes_node.core.messages import (
    BODY_FIELD,
    MODEL_BY_KIND,
    FeedbackBody,
    Kind,
    MessageBase,
    VerificationRequestBody,
    VerificationResponseRecord,
    certificate_number_of,
    issued_now,
)
from eodes_node.core.models import Certificate
from eodes_node.core.records import compose, parse_model
from eodes_node.errors import InvalidRecord, Problem
from eodes_node.topology import QueueKind

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eodes_node.broker_tls import LinkTls

# What `--type` accepts, and the message kind each one becomes.
SUBMIT_KINDS = {
    "coo": Kind.COO,
    "coo-replacement": Kind.COO_REPLACEMENT,
    "coo-cancellation": Kind.COO_CANCELLATION,
    "cancellation": Kind.COO_CANCELLATION,
    "feedback": Kind.FEEDBACK,
    "verification-request": Kind.VERIFICATION_REQUEST,
    "verification-response": Kind.VERIFICATION_RESPONSE,
}
# The records the clearance system submits (feedback queue); the rest go to records.
CLEARANCE_KINDS = frozenset({Kind.FEEDBACK, Kind.VERIFICATION_REQUEST})

# A record's kind in the words of its authors.
_WORDS = {
    Kind.COO: "e-CO",
    Kind.COO_REPLACEMENT: "replacement e-CO",
    Kind.COO_CANCELLATION: "cancellation",
    Kind.FEEDBACK: "feedback",
}
# Where no link is named (`validate`), a record is checked on one it could travel: the
# envelope's countries are ours to fill in, and problems are reported on the record.
_ANY_LINK = ("KR", "CN")


def kind_words(kind: Kind) -> str:
    return _WORDS.get(kind, kind.value)


def type_name(kind: Kind) -> str:
    """The shortest `--type` that means ``kind``."""
    return min((name for name, k in SUBMIT_KINDS.items() if k is kind), key=len, default=kind.value)


def _body_model(kind: Kind) -> type[BaseModel] | None:
    annotation = MODEL_BY_KIND[kind].model_fields[BODY_FIELD[kind]].annotation
    return (
        annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    )


def _telling_fields() -> dict[Kind, frozenset[str]]:
    """For each kind of record, the fields no other kind has: the ones that tell it."""
    models: dict[type[BaseModel], Kind] = {}
    for kind in dict.fromkeys(SUBMIT_KINDS.values()):
        model = _body_model(kind)
        if model is not None:
            models.setdefault(model, kind)
    telling = {}
    for model, kind in models.items():
        others = {name for other in models if other is not model for name in other.model_fields}
        telling[kind] = frozenset(model.model_fields) - others
    return telling


_TELLING = _telling_fields()


def _family(kind: Kind) -> Kind:
    """An e-CO and its replacement are the same record; the rest are themselves."""
    return Kind.COO if kind is Kind.COO_REPLACEMENT else kind


def _told_by(record: Any) -> dict[Kind, list[str]]:
    """The kinds whose telling fields ``record`` has, with those fields."""
    if not isinstance(record, dict):
        return {}
    found = {kind: sorted(fields & record.keys()) for kind, fields in _TELLING.items()}
    return {kind: names for kind, names in found.items() if names}


def detect_kind(record: Any) -> Kind | None:
    """The kind of record ``record`` (JSON values) is, when its fields say so plainly:
    fields only one kind has. None when they name none, or several."""
    told = _told_by(record)
    if len(told) != 1:
        return None
    (kind,) = told
    reference = record.get("back_reference")
    if kind is Kind.COO and isinstance(reference, dict) and reference.get("kind") == "replaces":
        return Kind.COO_REPLACEMENT
    return kind


_ECO_FIELDS = frozenset(Certificate.model_fields)
_RECORD_FIELDS = frozenset(
    name
    for kind in SUBMIT_KINDS.values()
    if (model := _body_model(kind)) is not None
    for name in model.model_fields
)


def checked_as_eco(record: Any) -> bool:
    """Whether a record whose kind its fields do not tell is checked as an e-CO, the
    kind most records are: when it has any field of one, or no field any kind has (``{}``,
    not a JSON object), since then nothing points elsewhere."""
    if not isinstance(record, dict):
        return True
    return bool(_ECO_FIELDS & record.keys()) or not (_RECORD_FIELDS & record.keys())


@dataclass(frozen=True, slots=True)
class Checked:
    """One record as the node would take it: its problems, or what it is."""

    kind: Kind
    problems: list[Problem]
    message: MessageBase | FeedbackBody | None = None

    def summary(self) -> str:
        """One line on a record that passed: what it is, and which certificate."""
        match self.message:
            case FeedbackBody() as feedback:
                count = len(feedback.items)
                return (
                    f"valid feedback on {feedback.certificate_number} "
                    f"({feedback.decision.value}, {count} item{'s' if count != 1 else ''})"
                )
            case MessageBase() as message:
                certificate = getattr(message, "certificate", None)
                number = certificate_number_of(message) or "(no certificate number)"
                if certificate is None:
                    return f"valid {kind_words(self.kind)} of {number}"
                count = len(certificate.items)
                return (
                    f"valid {kind_words(self.kind)} {number} ({certificate.header.agreement}, "
                    f"{count} item{'s' if count != 1 else ''})"
                )
        return f"valid {kind_words(self.kind)}"


def check(
    kind: Kind,
    raw: bytes,
    *,
    max_bytes: int,
    now: datetime,
    own: str | None = None,
    partner: str | None = None,
) -> Checked:
    """``raw`` checked as a record of ``kind``, as the node checks it: size, JSON, schema,
    agreement rules, a verification request's reply due date against ``now`` and, given
    ``own`` -> ``partner``, the link."""
    if len(raw) > max_bytes:
        too_large = Problem(
            "",
            "too_large",
            f"{len(raw)} bytes; the node refuses records over {max_bytes} bytes "
            "([limits] max_record_bytes)",
        )
        return Checked(kind, [too_large])
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return Checked(kind, [Problem("", "json_invalid", f"the record is not valid JSON: {exc}")])
    wrong = _wrong_type(kind, body)
    if wrong is not None:
        return Checked(kind, [wrong])
    try:
        if kind is Kind.FEEDBACK:
            return Checked(kind, [], parse_model(FeedbackBody, raw))
        if kind is Kind.VERIFICATION_REQUEST:
            request = parse_model(VerificationRequestBody, raw)
            late = due_date_problem(request.reply_due, now.astimezone(UTC).date())
            return Checked(kind, [late] if late is not None else [])
        if kind is Kind.VERIFICATION_RESPONSE:
            parse_model(VerificationResponseRecord, raw)
            return Checked(kind, [])
        sender, receiver = (own, partner) if own and partner else _ANY_LINK
        composed = compose(
            kind,
            body,
            sender=sender,
            receiver=receiver,
            issued_at=issued_now(now),
            check_link=bool(own and partner),
        )
    except InvalidRecord as exc:
        return Checked(kind, list(exc.problems))
    return Checked(kind, [], composed.message)


def _wrong_type(kind: Kind, record: Any) -> Problem | None:
    """A record plainly of another kind is refused as that, not field by field: an e-CO
    checked as feedback would only list every field of feedback as missing."""
    told = _told_by(record)
    if len(told) != 1 or _family(kind) in told:
        return None
    ((other, fields),) = told.items()
    return Problem(
        "",
        "wrong_type",
        f"this is {_a(kind_words(other))} record (it has {', '.join(fields)}), not "
        f"{_a(kind_words(kind))} record: pass --type {type_name(other)}",
    )


def _a(words: str) -> str:
    return f"an {words}" if words[:1] in "aeiou" else f"a {words}"


def refusals(
    kind: Kind,
    raw: bytes,
    *,
    own: str | None = None,
    partner: str | None = None,
    max_bytes: int,
    now: datetime,
) -> list[Problem]:
    """Every problem the node would refuse ``raw`` for on the link ``own`` -> ``partner``
    (size, JSON, schema, agreement rules, the link); empty when it would take it."""
    return check(kind, raw, own=own, partner=partner, max_bytes=max_bytes, now=now).problems


async def publish_records(
    url: str | Sequence[str],
    queue: str,
    records: list[bytes],
    *,
    kind: str,
    timeout_s: float,
    tls: LinkTls | None = None,
    queues: QueueKind | None = None,
) -> None:
    """Publish each record to ``queue`` with a confirm, as the local system would; the
    queue is declared as the node declares it (``queues``: the configured queue type), and
    one that exists with other arguments is ``BrokerRefused`` with one line."""
    import asyncio

    from eodes_node.adapters.amqp import BrokerLink
    from eodes_node.adapters.amqp.declare import declare_queue
    from eodes_node.core.messages import new_message_id

    link = BrokerLink(url, name="eodes-node submit", timeout_s=timeout_s, reconnect_s=1.0, tls=tls)
    try:
        await link.connect()
        channel = await link.publish_channel()
        await declare_queue(
            channel,
            queue,
            queues or QueueKind(),
            timeout_s=timeout_s,
            what=f"cannot declare {queue}",
        )
        await asyncio.gather(
            *(
                link.publish("", queue, record, message_id=new_message_id(), kind=kind)
                for record in records
            )
        )
    finally:
        await link.close()
