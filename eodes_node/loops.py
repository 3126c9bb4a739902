"""The node's background loops: run a pass, wait as long as it says, back off on failure."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

from eodes_node.errors import TransientError
from eodes_node.ports import Clock
from eodes_node.service.retries import ResendAlarm

log = structlog.get_logger("eodes_node.runtime")


async def every(
    stop: asyncio.Event,
    work: Callable[[], Awaitable[float]],
    clock: Clock,
    alarm: ResendAlarm | None = None,
) -> None:
    """Run ``work`` until stopped; it returns how long to wait before the next run.

    ``alarm`` cuts the wait short (work was scheduled sooner); failures back off, growing
    and capped, with one line each.
    """
    failures = 0
    while not stop.is_set():
        if alarm is not None:
            alarm.looking()
        try:
            wait = await work()
            failures = 0
        except TransientError as exc:
            failures += 1
            wait = min(2.0 * 2 ** (failures - 1), 30.0)
            log.warning("background_deferred", error=str(exc), retry_in_s=wait)
        except Exception:
            failures += 1
            wait = min(5.0 * 2 ** (failures - 1), 60.0)
            log.exception("background_failed", retry_in_s=wait)
        wait = max(wait, 0.05)
        if alarm is not None:
            alarm.sleeping_until(clock.now().timestamp() + wait)
        await first_of(stop, alarm.rung if alarm is not None else None, wait)


async def first_of(stop: asyncio.Event, wake: asyncio.Event | None, within: float) -> None:
    """Wait until ``stop`` or ``wake`` is set, or ``within`` seconds pass."""
    waiters = {asyncio.ensure_future(stop.wait())}
    if wake is not None:
        waiters.add(asyncio.ensure_future(wake.wait()))
    try:
        await asyncio.wait(waiters, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
