"""The runtime with several instances of a link: a standby declares and consumes nothing
and says so on /readyz; it becomes active when it takes the link, and an active one that
loses it stops and exits non-zero."""

from __future__ import annotations

import asyncio

import pytest

from eodes_node.config import RetrySection
from eodes_node.errors import LeadershipLost
from eodes_node.surface import OperatorSurface
from tests.unit.test_runtime import Running, until


class SwitchedLeadership:
    """Leads once ``free`` is set; ``holds`` answers ``still`` (heartbeats counted)."""

    poll_s = 0.02

    def __init__(self) -> None:
        self.free = False
        self.still = True
        self.tries = 0
        self.heartbeats = 0
        self.resigned = False

    async def try_lead(self) -> bool:
        self.tries += 1
        return self.free

    async def holds(self) -> bool:
        self.heartbeats += 1
        return self.still

    async def resign(self) -> None:
        self.resigned = True


async def test_a_standby_waits_then_becomes_active_and_stops_when_it_loses_the_link() -> None:
    r = Running(RetrySection())
    leadership = SwitchedLeadership()
    r.node.leadership = leadership
    surface = OperatorSurface(r.node, r.store, admin=None)
    task = asyncio.create_task(r.node.run(r.stop))
    try:
        await until(lambda: leadership.tries >= 3, 5, "standby polls")
        assert r.node.standby
        assert r.broker.declared == 0
        assert not r.broker.consumers
        assert await surface.not_ready() == ["standby"]

        leadership.free = True
        await asyncio.wait_for(r.node.ready.wait(), 5)
        assert not r.node.standby
        assert r.broker.declared == 1
        assert await surface.not_ready() == []

        await until(lambda: leadership.heartbeats >= 2, 5, "heartbeats")
        leadership.still = False
        with pytest.raises(LeadershipLost, match="another instance of this link took over"):
            await asyncio.wait_for(task, 10)
        assert leadership.resigned
        assert not r.node.ready.is_set()
    finally:
        r.stop.set()
        if not task.done():
            await asyncio.wait_for(task, 10)
