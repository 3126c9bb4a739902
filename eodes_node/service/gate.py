"""While the store fails, batches wait: growing, capped pauses instead of a tight
requeue loop, and one log line per pause rather than one per redelivery."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger("eodes_node.service")


class StoreGate:
    def __init__(
        self,
        *,
        first_s: float = 0.2,
        cap_s: float = 10.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        monotonic: Callable[[], float] | None = None,
    ) -> None:
        self.first_s = first_s
        self.cap_s = cap_s
        self._sleep = sleep
        self._monotonic = monotonic
        self.delay_s = 0.0  # the current pause; 0 while the store answers
        self._open_at = 0.0

    def _now(self) -> float:
        if self._monotonic is not None:
            return self._monotonic()
        return asyncio.get_running_loop().time()

    async def wait(self) -> None:
        """Returns at once while the store answers; after a failure, when the pause ends."""
        remaining = self._open_at - self._now()
        if remaining > 0:
            await self._sleep(remaining)

    def failed(self, error: Exception) -> float:
        """The store failed: pause longer than last time, up to the cap."""
        self.delay_s = self.first_s if not self.delay_s else min(self.delay_s * 2, self.cap_s)
        self._open_at = self._now() + self.delay_s
        log.warning("store_unavailable", error=str(error), retry_in_s=round(self.delay_s, 3))
        return self.delay_s

    def succeeded(self) -> None:
        if self.delay_s:
            log.info("store_recovered")
        self.delay_s = 0.0
        self._open_at = 0.0
