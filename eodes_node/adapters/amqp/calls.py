"""How a broker call is bounded, and how a failure of the link is told from our own.

aio-pika and aiormq exceptions stop at the adapter: ``broker_errors`` turns them into
``BrokerUnavailable``, so nothing above it ever sees a broker library type. Only failures
of the link are translated; anything else is a bug and passes unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Iterator
from typing import TypeVar

import aiormq

from eodes_node.errors import BrokerUnavailable

T = TypeVar("T")


async def within(timeout_s: float, call: Awaitable[T]) -> T:
    """``call`` bounded by ``timeout_s`` in the caller's own task. On the paths every
    message takes, this replaces ``asyncio.wait_for`` and the timeouts aiormq applies with
    it: each of those starts a task, several per message, and at a few messages a second
    those tasks were a good share of a node's CPU."""
    async with asyncio.timeout(timeout_s):
        return await call


# What a broker call can fail with when the link, not our code, is at fault. No bare
# RuntimeError: its one legitimate use in aio-pika and aiormq (a channel asked of a
# connection that is down) is told apart in ``open_channel``; any other one is a bug.
BROKER_ERRORS: tuple[type[Exception], ...] = (
    TimeoutError,
    aiormq.exceptions.AMQPError,
    aiormq.exceptions.ChannelInvalidStateError,
    ConnectionError,
    OSError,
)


def cancelled_by_the_link() -> bool:
    """A CancelledError nobody asked this task for: aiormq fails the calls pending on a
    connection it closed that way (a stuck or forced-closed connection)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() == 0


# What settling meets when the link fails; a CancelledError among them only when
# ``cancelled_by_the_link``, which ``reraise_cancellation`` checks.
LINK_FAILURES: tuple[type[BaseException], ...] = (*BROKER_ERRORS, asyncio.CancelledError)


def reraise_cancellation(exc: BaseException) -> None:
    """Raise ``exc`` again when it is a cancellation of this task, not a link failure."""
    if isinstance(exc, asyncio.CancelledError) and not cancelled_by_the_link():
        raise exc


@contextlib.contextmanager
def broker_errors(what: str) -> Iterator[None]:
    """Translate a failure of the link into ``BrokerUnavailable`` naming ``what`` failed."""
    try:
        yield
    except BROKER_ERRORS as exc:
        raise BrokerUnavailable(f"{what}: {exc!r}") from None
    except asyncio.CancelledError:
        if not cancelled_by_the_link():
            raise
        raise BrokerUnavailable(f"{what}: the connection was closed under the call") from None
