"""Rendering a plan's effects into publications on this node's queues, and its notes
into log lines. Pure except for the logging, which happens only after a commit."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

import orjson
import structlog

from eodes_node.core.decide import Local
from eodes_node.core.messages import issued_now, new_message_id
from eodes_node.core.plan import DeadLetter, Door, Effect, Handoff, Note, Notice, ToPartner
from eodes_node.core.work import PARTNER, Publication
from eodes_node.topology import Topology

log = structlog.get_logger("eodes_node.service")

REASON_LIMIT = 4000


def door_queue(topology: Topology, door: Door) -> str:
    return {
        Door.INBOUND: topology.inbound_queue,
        Door.RECORDS: topology.outbound_records,
        Door.FEEDBACK: topology.outbound_feedback,
    }[door]


def _render_one(effect: Effect, topology: Topology, partner: str, at: str) -> Publication:
    match effect:
        case ToPartner():
            return Publication(PARTNER, effect.token, effect.message_id, effect.kind)
        case Handoff():
            queue = topology.clearance if effect.to is Local.CLEARANCE else topology.issuing
            return Publication(
                queue,
                effect.payload,
                effect.message_id,
                effect.kind,
                dict(effect.headers),
                bound_to=effect.bound_to,
            )
        case DeadLetter():
            return Publication(
                topology.dead_letter(door_queue(topology, effect.door)),
                effect.body,
                effect.message_id or new_message_id(),
                effect.kind,
                {"x-eodes-reason": effect.reason[:REASON_LIMIT]},
                "application/octet-stream",
                effect.bound_to,
            )
        case Notice():
            body = {
                "event": effect.event,
                "partner": partner,
                "at": at,
                "items": [dict(i) for i in effect.items],
            }
            return Publication(
                topology.events,
                orjson.dumps(body),
                new_message_id(),
                f"event.{effect.event}",
                bound_to=effect.bound_to,
            )


def render(
    effects: Iterable[Effect], topology: Topology, partner: str, now: datetime
) -> list[Publication]:
    at = issued_now(now).isoformat().replace("+00:00", "Z")
    return [_render_one(e, topology, partner, at) for e in effects]


def log_notes(notes: Sequence[Note], partner: str) -> None:
    """Log what a committed plan noted, each line with its message and certificate."""
    for note in notes:
        with structlog.contextvars.bound_contextvars(
            message_id=note.message_id,
            certificate_number=note.certificate_number,
            partner=partner,
        ):
            getattr(log, note.level)(note.event, **note.fields)
