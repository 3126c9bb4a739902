"""RFC 9457 problem documents: every error the HTTP side answers with, in one shape.

Handlers raise ``ProblemError``; the middleware turns it, aiohttp's own HTTP errors
(unknown route, wrong method, body too large) and any bug into a problem document, so a
client never has to parse two error formats. A bug is logged, never shown.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
import structlog
from aiohttp import web

log = structlog.get_logger("eodes_node.http")

PROBLEM_TYPE = "application/problem+json"
# Problem types are relative URIs naming the problem; documented in schemas/openapi.json.
_TYPES = {
    400: "bad-request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    409: "conflict",
    413: "too-large",
    415: "unsupported-media-type",
    429: "too-many-requests",
    500: "internal-error",
    503: "unavailable",
}


class ProblemError(Exception):
    """Raised by a handler: answered as a problem document with this status."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail
        self.headers = dict(headers or {})
        self.extra = extra


def problem_response(
    status: int,
    title: str,
    detail: str,
    *,
    instance: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> web.Response:
    body: dict[str, Any] = {
        "type": f"/problems/{_TYPES.get(status, 'error')}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    body.update(extra)
    return web.Response(
        status=status,
        body=orjson.dumps(body),
        content_type=PROBLEM_TYPE,
        headers=headers,
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def problems(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ProblemError as exc:
        return problem_response(
            exc.status,
            exc.title,
            exc.detail,
            instance=request.path,
            headers=exc.headers,
            **exc.extra,
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _from_http_exception(request, exc)
    except Exception:
        log.exception("http_handler_failed", method=request.method, path=request.path)
        return problem_response(
            500, "Internal error", "the node failed to answer; see its log", instance=request.path
        )


def _from_http_exception(request: web.Request, exc: web.HTTPException) -> web.Response:
    detail = {
        404: f"no resource at {request.path}",
        405: f"{request.method} is not allowed on {request.path}",
    }.get(exc.status, exc.text or exc.reason)
    headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
    return problem_response(
        exc.status, exc.reason, str(detail), instance=request.path, headers=headers
    )
