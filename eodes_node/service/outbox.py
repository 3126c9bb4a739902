"""Publishing committed publications, and relaying what a crash or an outage left behind.

A publication is in the outbox before anything is published, so a failed publish only
delays it: the relay takes it up again. Marks of confirmed publications are kept in the
store so that neither the relay nor a re-issue sends them twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import structlog

from eodes_node.core.work import PARTNER, Publication
from eodes_node.ports import Outbox, Transport

log = structlog.get_logger("eodes_node.service")


class OutboxPublisher:
    def __init__(self, outbox: Outbox, transport: Transport) -> None:
        self.outbox = outbox
        self.transport = transport
        self._background: set[asyncio.Task[int]] = set()

    async def _publish_one(self, item: tuple[int, Publication]) -> int | None:
        outbox_id, p = item
        try:
            if p.destination == PARTNER:
                await self.transport.publish_partner(p.body, message_id=p.message_id, kind=p.kind)
            else:
                await self.transport.publish_local(
                    p.destination,
                    p.body,
                    message_id=p.message_id,
                    kind=p.kind,
                    headers=p.headers,
                    content_type=p.content_type,
                )
        except Exception as exc:  # noqa: BLE001 - kept in the outbox, relayed later
            log.warning(
                "publish_deferred",
                destination=p.destination,
                message_id=p.message_id,
                error=str(exc),
            )
            return None
        return outbox_id

    async def publish(self, items: Sequence[tuple[int, Publication]]) -> int:
        """Publish concurrently (pipelined confirms); mark the confirmed, release the rest."""
        results = await asyncio.gather(*(self._publish_one(item) for item in items))
        done = [r for r in results if r is not None]
        await self.outbox.mark_published(done)
        failed = [i for (i, _), r in zip(items, results, strict=True) if r is None]
        await self.outbox.release(failed)
        return len(done)

    def publish_soon(self, items: Sequence[tuple[int, Publication]]) -> None:
        """Publish in the background: committed already, so the delivery may be acked
        before the partner's broker confirms, and publishing overlaps with settling."""
        task = asyncio.create_task(self.publish(items))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def relay(self, limit: int = 500) -> int:
        """Publish what is left in the outbox; returns how many remain unpublished."""
        await self.outbox.flush_published()
        queued = await self.outbox.unpublished(limit)
        if not queued:
            return 0
        # What the relay takes up may have gone out once already (a confirm lost, marks
        # lost with a killed process): local copies say so.
        published = await self.publish([(q.id, q.publication.again()) for q in queued])
        if published:
            log.info("outbox_relayed", published=published)
        return len(queued) - published

    async def finish(self, within: float) -> None:
        """Wait (bounded) for background publications; the outbox keeps the rest."""
        if self._background:
            await asyncio.wait(set(self._background), timeout=within)
