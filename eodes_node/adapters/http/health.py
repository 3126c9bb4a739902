"""Liveness and readiness, for a supervisor or a load balancer; no token needed.

``/healthz`` answers while the process serves HTTP at all. ``/readyz`` answers 200 only
when the store answers a cheap query, both broker links are connected and every
consumer is consuming; otherwise 503 with a problem document naming what is down.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson
from aiohttp import web

from eodes_node.adapters.http.problems import problem_response

if TYPE_CHECKING:
    from eodes_node.adapters.http.context import HttpContext

_NO_STORE = {"Cache-Control": "no-store"}


def add_routes(app: web.Application, context: HttpContext) -> None:
    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(
            body=orjson.dumps({"status": "alive"}),
            content_type="application/json",
            headers=_NO_STORE,
        )

    async def readyz(request: web.Request) -> web.Response:
        down = list(await context.readiness())
        if down:
            return problem_response(
                503,
                "Not ready",
                "; ".join(down),
                instance=request.path,
                headers=_NO_STORE,
                down=down,
            )
        return web.Response(
            body=orjson.dumps({"status": "ready"}),
            content_type="application/json",
            headers=_NO_STORE,
        )

    app.router.add_get("/healthz", healthz, allow_head=True)
    app.router.add_get("/readyz", readyz, allow_head=True)
