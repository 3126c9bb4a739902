"""While our signing key may not sign, batches that need a signature pause before they
go back to their queue: growing, capped pauses instead of a tight requeue loop, cut
short when new keys are loaded. The runtime logs the reason once and tells the local
systems; a deferred batch adds nothing to that."""

from __future__ import annotations

import asyncio
import contextlib


class SigningGate:
    def __init__(self, *, first_s: float = 1.0, cap_s: float = 30.0) -> None:
        self.first_s = first_s
        self.cap_s = cap_s
        self.delay_s = 0.0  # the current pause; 0 while our key signs
        self._keys_changed = asyncio.Event()

    async def refused(self) -> None:
        """A batch could not be signed: wait longer than last time, up to the cap, or
        until new keys are loaded."""
        self.delay_s = self.first_s if not self.delay_s else min(self.delay_s * 2, self.cap_s)
        self._keys_changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._keys_changed.wait(), self.delay_s)

    def keys_changed(self) -> None:
        """New keys (or a new window for ours): paused batches try again now."""
        self.delay_s = 0.0
        self._keys_changed.set()
