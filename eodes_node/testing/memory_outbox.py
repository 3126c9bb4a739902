"""The ``Outbox`` port over ``InMemoryStore``'s publication queue, with the SQL store's claims.

A mixin, so the in-memory store stays one object that plays every port, as the SQL
database does. Claims and unflushed marks live in process memory, as in the SQL store.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import islice

from eodes_node.ports import Publication, QueuedPublication


class MemoryOutbox:
    """Needs the queue ``InMemoryStore`` keeps; ``commit`` enqueues through ``_enqueue``."""

    _outbox: dict[int, Publication]
    _next_outbox_id: int
    _published: set[int]  # marks written to the "database"
    _published_pending: set[int]  # confirmed, mark not written yet
    _claimed: set[int]  # handed out by commit, not confirmed or released

    # -- read helpers for tests and integrators ----------------------------------------

    def outbox(self) -> list[QueuedPublication]:
        """Every publication ever committed, published or not, in id order."""
        return [QueuedPublication(i, p) for i, p in self._outbox.items()]

    def is_published(self, outbox_id: int) -> bool:
        return outbox_id in self._published or outbox_id in self._published_pending

    def is_claimed(self, outbox_id: int) -> bool:
        return outbox_id in self._claimed

    def _enqueue(self, publication: Publication) -> int:
        outbox_id = self._next_outbox_id
        self._next_outbox_id += 1
        self._outbox[outbox_id] = publication
        if publication.bound_to is None:
            # Handed to the caller to publish: no relay may take it meanwhile.
            self._claimed.add(outbox_id)
        return outbox_id

    # -- Outbox --------------------------------------------------------------------------

    async def mark_published(self, ids: Sequence[int]) -> None:
        self._published_pending.update(ids)
        self._claimed.difference_update(ids)

    async def release(self, ids: Sequence[int]) -> None:
        """Publishing these failed: hand them to the relay."""
        self._claimed.difference_update(ids)

    async def flush_published(self) -> None:
        self._published |= self._published_pending
        self._published_pending.clear()

    async def unpublished(self, limit: int) -> list[QueuedPublication]:
        """Unbound, unpublished and unclaimed publications, oldest first."""
        free = (
            QueuedPublication(i, p)
            for i, p in self._outbox.items()
            if p.bound_to is None and not self.is_published(i) and i not in self._claimed
        )
        return list(islice(free, limit))

    async def bound_unpublished(self, keys: Iterable[str]) -> list[QueuedPublication]:
        wanted = set(keys)
        return [
            QueuedPublication(i, p)
            for i, p in self._outbox.items()
            if p.bound_to in wanted and not self.is_published(i)
        ]
