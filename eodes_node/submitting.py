"""What `eodes-node submit` checks before it publishes: the node's own checks for a
record, so the issuing or clearance developer hears at once what the node would refuse
and why, instead of finding it later on a dead-letter queue."""

from __future__ import annotations

from datetime import datetime

import orjson

from eodes_node.core.messages import FeedbackBody, Kind, issued_now
from eodes_node.core.records import compose, parse_model
from eodes_node.errors import InvalidRecord, Problem

# What `--type` accepts, and the message kind each one becomes.
SUBMIT_KINDS = {
    "coo": Kind.COO,
    "coo-replacement": Kind.COO_REPLACEMENT,
    "coo-cancellation": Kind.COO_CANCELLATION,
    "cancellation": Kind.COO_CANCELLATION,
    "feedback": Kind.FEEDBACK,
}


def refusals(
    kind: Kind, raw: bytes, *, own: str, partner: str, max_bytes: int, now: datetime
) -> list[Problem]:
    """Every problem the node would refuse ``raw`` for on the link ``own`` -> ``partner``
    (size, JSON, schema, agreement rules, the link); empty when it would take it."""
    if len(raw) > max_bytes:
        return [
            Problem(
                "",
                "too_large",
                f"{len(raw)} bytes; the node refuses records over {max_bytes} bytes "
                "([limits] max_record_bytes)",
            )
        ]
    try:
        if kind is Kind.FEEDBACK:
            parse_model(FeedbackBody, raw)
            return []
        body = orjson.loads(raw)
        compose(kind, body, sender=own, receiver=partner, issued_at=issued_now(now))
    except orjson.JSONDecodeError as exc:
        return [Problem("", "json_invalid", f"the record is not valid JSON: {exc}")]
    except InvalidRecord as exc:
        return list(exc.problems)
    return []


async def publish_records(
    url: str, queue: str, records: list[bytes], *, kind: str, timeout_s: float
) -> None:
    """Publish each record to ``queue`` with a confirm, as the local system would."""
    import asyncio

    from eodes_node.adapters.amqp import BrokerLink
    from eodes_node.core.messages import new_message_id

    link = BrokerLink(url, name="eodes-node submit", timeout_s=timeout_s, reconnect_s=1.0)
    try:
        await link.connect()
        channel = await link.publish_channel()
        await channel.declare_queue(queue, durable=True)
        await asyncio.gather(
            *(
                link.publish("", queue, record, message_id=new_message_id(), kind=kind)
                for record in records
            )
        )
    finally:
        await link.close()
