"""The node's events (delivered, rejected, failed, record_rejected) for operators to follow.

The events queue belongs to the local systems: reading it would take their events away.
So the service hands every committed event to this feed as well; a follower (the API's
event stream, ``eodes-node events --follow``) gets the recent ones and then each new one.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, Iterable

RECENT = 100
_FOLLOWER_BACKLOG = 1000  # a follower this far behind is dropped, never the node slowed


class EventFeed:
    def __init__(self) -> None:
        self.recent: deque[bytes] = deque(maxlen=RECENT)
        self._followers: set[asyncio.Queue[bytes | None]] = set()

    def extend(self, events: Iterable[bytes]) -> None:
        for body in events:
            self.recent.append(body)
            for queue in list(self._followers):
                if queue.qsize() >= _FOLLOWER_BACKLOG:
                    self._followers.discard(queue)
                    queue.put_nowait(None)  # ends that follower's stream
                else:
                    queue.put_nowait(body)

    async def follow(
        self, *, recent: bool = True, live: bool = True
    ) -> AsyncGenerator[bytes, None]:
        """The recent events, then (``live``) each new one until the follower stops or
        falls behind."""
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        backlog = list(self.recent) if recent else []
        self._followers.add(queue)
        try:
            for old in backlog:
                yield old
            while live and (new := await queue.get()) is not None:
                yield new
        finally:
            self._followers.discard(queue)
