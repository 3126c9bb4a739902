"""Part of the composition root: the operator surface (HTTP side, report reader, broker
admin, repairs) wired around a built node.

Only here and in ``bootstrap`` are adapters picked. Without ``[http] enabled`` the node
still gets its report reader (the repairs and metrics use it) but binds no port.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any, Protocol

from eodes_node.adapters.amqp import AmqpBroker
from eodes_node.adapters.amqp.admin import BrokerAdmin
from eodes_node.adapters.http.access import Access
from eodes_node.adapters.http.app import HttpServer, create_app
from eodes_node.adapters.http.context import HttpContext
from eodes_node.adapters.sql import SqlStore
from eodes_node.adapters.sql.reports import SqlReports
from eodes_node.core.jws import KeySet
from eodes_node.errors import TransientError
from eodes_node.ports import Reports, SentMessages
from eodes_node.runtime import Node
from eodes_node.service.repairs import Repairs

UPKEEP_S = 1.0


class ReportReader(Reports, SentMessages, Protocol):
    pass


class OperatorSurface:
    """Implements ``runtime.Surface``: report reader, broker watch and HTTP server."""

    def __init__(self, node: Node, reports: ReportReader, admin: BrokerAdmin | None) -> None:
        self.node = node
        self.reports = reports
        self.admin = admin
        self.server: HttpServer | None = None
        # The JWK Sets the HTTP side shows, updated in place when the node reloads its keys.
        self.own_jwks: dict[str, Any] = {}
        self.partner_jwks: dict[str, Any] = {}

    def keys_reloaded(self, published: KeySet, partner: KeySet) -> None:
        """Show what the node now signs and verifies with (one synchronous swap, so a
        request sees the old sets or the new ones)."""
        for shown, keys in ((self.own_jwks, published), (self.partner_jwks, partner)):
            shown.clear()
            shown.update(keys.to_jwks())

    async def start(self) -> None:
        opener = getattr(self.reports, "open", None)
        if opener is not None:
            await opener()
        if self.server is not None:
            await self.server.start()

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
        closer = getattr(self.reports, "close", None)
        if closer is not None:
            await closer()

    async def upkeep(self) -> float:
        """Keep both broker links watched and, while someone may read (HTTP on), the
        report index current, so a page never waits for a backlog to be indexed."""
        catch_up = getattr(self.reports, "catch_up", None)
        with contextlib.suppress(TransientError):  # readiness reports a store outage
            if catch_up is not None and self.server is not None and self.server.read_within(600):
                await catch_up()
        if self.admin is not None:
            if self.admin.broker.partner.connection is None:
                await self.admin.connect_partner()
            self.admin.watch()
        return UPKEEP_S

    async def not_ready(self) -> Sequence[str]:
        if self.node.standby:
            return ["standby"]  # another instance of the link is active
        down: list[str] = []
        if not self.node.ready.is_set():
            down.append("the node is not consuming (starting or draining)")
        try:
            await self.reports.ping()
        except TransientError as exc:
            down.append(f"the store does not answer: {exc}")
        gate = self.node.service.gate
        if gate.delay_s:
            down.append(f"the store failed; batches wait {gate.delay_s:.1f} s")
        if self.admin is not None and not down:
            topo = self.node.service.topology
            queues = (topo.inbound_queue, topo.outbound_records, topo.outbound_feedback)
            down += await self.admin.not_ready(self.node.consumers, queues)
        return down


def attach_surface(node: Node, own_keys: KeySet, partner_keys: KeySet) -> OperatorSurface:
    """Give a built node its report reader, repairs, metrics feeds and (if enabled) HTTP."""
    config, service = node.config, node.service
    reports: Any = node.store
    if isinstance(node.store, SqlStore):
        reports = SqlReports(config.store.url, own=config.node.country, partner=config.node.partner)
    admin = None
    if isinstance(node.broker, AmqpBroker):
        admin = BrokerAdmin(node.broker, reconnected=service.metrics.reconnected)
    service.sent = reports
    service.metrics.watch_keys("own", own_keys.keys.values())
    service.metrics.watch_keys(config.node.partner, partner_keys.keys.values())
    surface = OperatorSurface(node, reports, admin)
    surface.keys_reloaded(own_keys, partner_keys)
    if config.http.enabled:
        context = HttpContext(
            settings=config.http,
            own=config.node.country,
            partner=config.node.partner,
            reports=reports,
            access=Access.from_config(
                config.http.tokens.get_secret_value(), config.http.tokens_file
            ),
            clock=node.clock,
            metrics=service.metrics,
            readiness=surface.not_ready,
            own_jwks=surface.own_jwks,
            partner_jwks=surface.partner_jwks,
            actions=Repairs(service, reports, admin, service.metrics),
            events=service.feed,
        )
        surface.server = HttpServer(create_app(context), config.http)
    node.surface = surface
    return surface
