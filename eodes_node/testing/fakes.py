"""In-memory fakes of the node's ports: a manual clock, a recording transport, a store.

They let the service and the runtime be tested without a broker or a database, in
milliseconds. The store (in ``memory``) keeps the SQL store's observable rules, so a test
that passes against it says something about the real node.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from eodes_node.errors import BrokerUnavailable
from eodes_node.testing.memory import InMemoryStore
from eodes_node.testing.tables import HistoryRecord, StoredOutbound

__all__ = [
    "HistoryRecord",
    "InMemoryStore",
    "LocalPublish",
    "ManualClock",
    "PartnerPublish",
    "RecordingTransport",
    "StoredOutbound",
]


class ManualClock:
    """A clock that moves only when the test says so: retries and expiry become exact."""

    def __init__(self, start: datetime) -> None:
        self._now = _aware(start)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> datetime:
        self._now += timedelta(seconds=seconds)
        return self._now

    def set(self, dt: datetime) -> None:
        self._now = _aware(dt)


def _aware(dt: datetime) -> datetime:
    # A naive time would turn into a timestamp through the machine's zone.
    if dt.tzinfo is None:
        raise ValueError("ManualClock needs a timezone-aware datetime")
    return dt.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class LocalPublish:
    queue: str
    body: bytes
    message_id: str
    kind: str
    headers: Mapping[str, str]
    content_type: str


@dataclass(frozen=True, slots=True)
class PartnerPublish:
    token: bytes
    message_id: str
    kind: str


class RecordingTransport:
    """The Transport port that keeps what was published, and fails when told to.

    Failed publications are not recorded: a test sees exactly what reached the "broker".
    """

    def __init__(self) -> None:
        self.local_published: list[LocalPublish] = []
        self.partner: list[PartnerPublish] = []
        self._local_failures: dict[str | None, int] = {}
        self._partner_failures = 0

    def local(self, queue: str | None = None) -> list[LocalPublish]:
        """What went to one local queue (or to every local queue), in publication order."""
        return [p for p in self.local_published if queue is None or p.queue == queue]

    def fail_local(self, times: int = 1, *, queue: str | None = None) -> None:
        """The next ``times`` local publications (to ``queue`` only, if given) fail."""
        self._local_failures[queue] = times

    def fail_partner(self, times: int = 1) -> None:
        self._partner_failures = times

    async def publish_local(
        self,
        queue: str,
        body: bytes,
        *,
        message_id: str,
        kind: str,
        headers: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        for key in (queue, None):
            if self._local_failures.get(key, 0) > 0:
                self._local_failures[key] -= 1
                raise BrokerUnavailable(f"injected failure publishing to {queue}")
        self.local_published.append(
            LocalPublish(queue, body, message_id, kind, dict(headers or {}), content_type)
        )

    async def publish_partner(self, token: bytes, *, message_id: str, kind: str) -> None:
        if self._partner_failures > 0:
            self._partner_failures -= 1
            raise BrokerUnavailable("injected failure publishing to the partner")
        self.partner.append(PartnerPublish(token, message_id, kind))
