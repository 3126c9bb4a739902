"""What every route module of the HTTP side shares: the node's context and its key.

A handler finds it as ``request.app[CONTEXT]``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from eodes_node.adapters.http.access import Access
from eodes_node.config import HttpSection
from eodes_node.ports import Clock, Reports
from eodes_node.service.feed import EventFeed
from eodes_node.service.metrics import NodeMetrics


class Actions(Protocol):
    """The two repairs an operator may ask for; nothing else an HTTP client sends changes
    a certificate. Both raise ``service.repairs.RepairRefused`` when they cannot."""

    async def resend(self, number: str) -> Mapping[str, Any]: ...
    async def replay_dead(self, door: str, limit: int) -> Mapping[str, Any]: ...


# Names what is not ready ([] when ready): store, broker links, consumers.
Readiness = Callable[[], Awaitable[Sequence[str]]]


@dataclass(frozen=True, slots=True)
class HttpContext:
    settings: HttpSection
    own: str
    partner: str
    reports: Reports
    access: Access
    clock: Clock
    metrics: NodeMetrics
    readiness: Readiness
    own_jwks: Mapping[str, Any]  # our public JWK Set, as /.well-known/jwks.json serves it
    partner_jwks: Mapping[str, Any]  # the partner's pinned JWK Set
    actions: Actions | None = None
    events: EventFeed | None = None  # the node's events, for GET /api/v1/events


CONTEXT = web.AppKey("eodes_context", HttpContext)
