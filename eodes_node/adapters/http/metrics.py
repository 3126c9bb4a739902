"""``GET /metrics``: the node's Prometheus metrics, with store gauges read at scrape time.

Public like the health checks (bind it to loopback or a monitoring network): it holds
counts and ages, never certificate contents or tokens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from eodes_node.errors import TransientError
from eodes_node.service.metrics import CONTENT_TYPE

if TYPE_CHECKING:
    from eodes_node.adapters.http.context import HttpContext


def add_routes(app: web.Application, context: HttpContext) -> None:
    async def metrics(_request: web.Request) -> web.Response:
        try:
            view = await context.reports.dashboard()
        except TransientError:
            pass  # the store is down: /readyz says so; the counters still render
        else:
            age = 0.0
            if view.oldest_pending_at is not None:
                age = context.clock.now().timestamp() - view.oldest_pending_at.timestamp()
            context.metrics.store_view(view.by_state, view.pending, age)
        return web.Response(body=context.metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    app.router.add_get("/metrics", metrics)
