"""The two repairs an operator may ask for: send a certificate again, replay dead letters.

Both go through the same doors as normal work: a re-send is planned and committed like
any batch (``core.plan.resend``), and a replayed dead letter is handled again by its
door's consumer, with every check it met the first time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import structlog

from eodes_node.core.plan import Door
from eodes_node.core.state import Role
from eodes_node.ports import DeadLetters, Reports
from eodes_node.service.effects import door_queue
from eodes_node.service.metrics import NodeMetrics

if TYPE_CHECKING:
    from eodes_node.service.pipeline import NodeService

log = structlog.get_logger("eodes_node.service")

DOORS: tuple[str, ...] = tuple(d.value for d in Door)


class RepairRefused(Exception):
    """A repair that cannot be done; ``unknown`` when the certificate does not exist here."""

    def __init__(self, reason: str, *, unknown: bool = False) -> None:
        super().__init__(reason)
        self.unknown = unknown


class Repairs:
    """The operator's actions as the HTTP API and the CLI call them."""

    def __init__(
        self,
        service: NodeService,
        reports: Reports,
        dead_letters: DeadLetters | None,
        metrics: NodeMetrics,
    ) -> None:
        self.service = service
        self.reports = reports
        self.dead_letters = dead_letters
        self.metrics = metrics

    async def resend(self, number: str) -> Mapping[str, Any]:
        """Send a failed or rejected certificate again; the number is case-insensitive."""
        found = await self.reports.certificate(number)
        if not found:
            raise RepairRefused(f"no certificate {number} at this node", unknown=True)
        ours = [d for d in found if d.summary.role == Role.EXPORTER.value]
        if not ours:
            raise RepairRefused(
                f"certificate {found[0].summary.number} was received from the partner; "
                "only its sender can send it again"
            )
        return await self.service.resend(ours[0].summary.number)

    async def replay_dead(self, door: str, limit: int) -> Mapping[str, Any]:
        """Move a door's dead letters back into it: each is handled again, with every check."""
        if door not in DOORS:
            raise RepairRefused(f"no door {door!r}; doors are {', '.join(DOORS)}", unknown=True)
        if self.dead_letters is None:
            raise RepairRefused("this node was built without access to its broker")
        topology = self.service.topology
        queue = door_queue(topology, Door(door))
        dead = topology.dead_letter(queue)
        moved = await self.dead_letters.replay(dead, queue, limit)
        if moved:
            self.metrics.replayed.labels(door).inc(moved)
        log.info("dead_letters_replayed", door=door, queue=queue, moved=moved)
        return {"door": door, "queue": queue, "moved": moved}
