"""What a message the handler keeps failing on leaves behind: the message itself on its
door's dead-letter queue, for replay, and an ``internal_error`` event telling the local
systems, in the same body shape as the node's other events."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from eodes_node.core.messages import issued_now, new_message_id
from eodes_node.ports import Delivery, Publication

INTERNAL_ERROR = "internal_error"
TEXT_LIMIT = 4000


def reason_of(exc: BaseException) -> str:
    return f"internal error: {exc!r}"[:TEXT_LIMIT]


def dead_letter(delivery: Delivery, dead_letter_queue: str, exc: BaseException) -> Publication:
    """Parks the message as it came, with the reason, for a human to see and replay."""
    return Publication(
        dead_letter_queue,
        delivery.body,
        delivery.message_id or "unknown",
        delivery.kind or "unknown",
        {"x-eodes-reason": reason_of(exc)},
        "application/octet-stream",
        bound_to="poison",
    )


def internal_error_event(
    delivery: Delivery,
    *,
    events_queue: str,
    dead_letter_queue: str,
    partner: str,
    exc: BaseException,
    now: datetime | None = None,
) -> Publication:
    at = issued_now(now or datetime.now(UTC)).isoformat().replace("+00:00", "Z")
    item = {
        "message_id": delivery.message_id,
        "kind": delivery.kind,
        "certificate_number": None,  # the message could not be read far enough to know
        "text": f"{reason_of(exc)}; the message is kept on {dead_letter_queue}",
    }
    body = {"event": INTERNAL_ERROR, "partner": partner, "at": at, "items": [item]}
    return Publication(
        events_queue,
        orjson.dumps(body),
        new_message_id(),
        f"event.{INTERNAL_ERROR}",
        bound_to="poison",
    )
