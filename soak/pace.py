"""When KR's issuing system may submit its next record: a trickle, plus a wave before
each fault so the fault lands while hundreds of messages are in flight (a node killed
while idle proves little), and everything left once the faults are over."""

from __future__ import annotations

import asyncio
import time

POLL_S = 0.05


class Pacer:
    def __init__(
        self, count: int, trickle: float, wave: int, wave_rate: float, faults: int
    ) -> None:
        self.count, self.trickle, self.wave_size, self.wave_rate = count, trickle, wave, wave_rate
        self.faults = faults
        # The trickle's share; it never runs ahead of the faults, however long they take.
        self.trickled = count - wave * faults
        self.started = time.monotonic()
        self.waves: list[float] = []
        self.probes = 0
        self.open = False

    def wave(self) -> float:
        """Release one wave now; returns how long submitting it takes."""
        self.waves.append(time.monotonic())
        return self.wave_size / self.wave_rate

    def probe(self, count: int) -> None:
        """Release a few now, right after a fault healed, to time a round trip."""
        self.probes += count

    def finish(self) -> None:
        """No more faults: what is left may go at once."""
        self.open = True

    def allowed(self) -> float:
        if self.open:
            return self.count
        now = time.monotonic()
        waves = sum(min(self.wave_size, self.wave_rate * (now - w)) for w in self.waves)
        trickle = self.trickle * (now - self.started)
        if self.faults:
            trickle = min(trickle, self.trickled * (len(self.waves) + 1) / (self.faults + 1))
        return min(self.count, 1 + trickle + waves + self.probes)

    async def pace(self, index: int) -> None:
        """Return once the record at ``index`` may be submitted."""
        while True:
            if index < self.allowed():
                return
            await asyncio.sleep(POLL_S)
