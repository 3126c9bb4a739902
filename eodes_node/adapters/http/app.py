"""The node's HTTP side: one aiohttp application inside the node process.

``create_app(context)`` builds it; ``HttpServer`` binds it and is started and stopped by
the runtime (started before the consumers, so ``/readyz`` says 503 while the node comes
up; stopped after the drain). Routes, by module:

- ``health``:  GET /healthz, GET /readyz (public)
- ``metrics``: GET /metrics (public on its port, Prometheus text format)
- ``api``:     /api/v1/... (bearer token; actions need the operator role), described by
  ``schemas/openapi.json``
- ``console`` and ``verify``, when present: each module exposes
  ``add_routes(app: web.Application, context: HttpContext) -> None`` and is called here.
  They read ``context.reports`` (the ``ports.Reports`` read port), protect console pages
  with ``context.access.require(request, Role.VIEWER)``, answer errors with
  ``problems.ProblemError`` (or HTML of their own), and find the context in a handler as
  ``request.app[CONTEXT]``. ``context.own_jwks`` is our public JWK Set,
  ``context.partner_jwks`` the partner's pinned one.
"""

from __future__ import annotations

import importlib
import ssl
import time

import structlog
from aiohttp import web

from eodes_node.adapters.http import api, health, metrics
from eodes_node.adapters.http.context import CONTEXT, Actions, HttpContext, Readiness
from eodes_node.adapters.http.problems import Handler, problems
from eodes_node.config import HttpSection
from eodes_node.errors import ConfigError

log = structlog.get_logger("eodes_node.http")

__all__ = ["CONTEXT", "Actions", "HttpContext", "HttpServer", "Readiness", "create_app"]

# Modules another part of the project adds; each has add_routes(app, context).
OPTIONAL_ROUTES = ("console", "verify")
MAX_BODY_BYTES = 64 * 1024


# When a person or a script last read certificates (not a health or metrics probe): the
# report index is kept current only while someone reads, so it costs the traffic nothing
# otherwise (a read still brings it up to date before answering).
LAST_READ = web.AppKey("last_read", list[float])
READ_PREFIXES = ("/console", "/api", "/verify")


@web.middleware
async def note_reads(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(READ_PREFIXES):
        request.app[LAST_READ][0] = time.monotonic()
    return await handler(request)


def create_app(context: HttpContext) -> web.Application:
    app = web.Application(middlewares=[note_reads, problems], client_max_size=MAX_BODY_BYTES)
    app[CONTEXT] = context
    app[LAST_READ] = [float("-inf")]
    health.add_routes(app, context)
    metrics.add_routes(app, context)
    api.add_routes(app, context)
    for name in OPTIONAL_ROUTES:
        try:
            module = importlib.import_module(f"eodes_node.adapters.http.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"eodes_node.adapters.http.{name}":
                raise
            continue
        module.add_routes(app, context)
    return app


def ssl_context(settings: HttpSection) -> ssl.SSLContext | None:
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    return context


class HttpServer:
    """Binds an application; ``port`` is the bound one (useful with port 0)."""

    def read_within(self, seconds: float) -> bool:
        """Whether certificates were read over HTTP in the last ``seconds``."""
        return time.monotonic() - self.app[LAST_READ][0] <= seconds

    def __init__(self, app: web.Application, settings: HttpSection) -> None:
        self.app = app
        self.settings = settings
        self.port: int | None = None
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=2.0
        )

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(
            self._runner,
            self.settings.host,
            self.settings.port,
            ssl_context=ssl_context(self.settings),
        )
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            where = f"{self.settings.host}:{self.settings.port}"
            raise ConfigError(f"cannot serve HTTP on {where}: {exc.strerror or exc}") from None
        server = site._server  # aiohttp exposes the bound sockets only here
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self.settings.port
        log.info(
            "http_started",
            host=self.settings.host,
            port=self.port,
            tls=self.settings.tls_cert is not None,
        )

    async def stop(self) -> None:
        await self._runner.cleanup()
        log.info("http_stopped")
