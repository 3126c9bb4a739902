"""HTML rendering shared by the console and the verification pages.

One Jinja2 environment (autoescaped, templates shipped in the package), one stylesheet,
and the response headers every page carries: a strict Content-Security-Policy (no script
at all, styles only from our stylesheet) so nothing injected into a page could run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Final

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from eodes_node.adapters.http.context import HttpContext

HERE = Path(__file__).resolve().parent
STYLESHEET: Final = (HERE / "static" / "eodes.css").read_bytes()

SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}

_TONES: Final = {
    "ok": {"delivered", "available", "granted", "accepted", "authentic"},
    "warn": {"pending", "partial", "replaced", "cancelled"},
    "bad": {"failed", "rejected", "denied"},
}
TONE_OF: Final = {state: tone for tone, states in _TONES.items() for state in states}


@dataclass(frozen=True, slots=True)
class NodeView:
    """The node as every page's frame names it."""

    country: str
    partner: str


def node_of(context: HttpContext) -> NodeView:
    return NodeView(context.own, context.partner)


def timestamp(value: datetime | date | None) -> str:
    """UTC, to the second: operators compare these with log lines, which are UTC."""
    if value is None:
        return "–"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return value.isoformat()


def age(then: datetime, now: datetime) -> str:
    """How long ago, coarse enough to read at a glance."""
    seconds = max(0, int((now - then).total_seconds()))
    if seconds < 120:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 120:
        return f"{minutes} min"
    hours = minutes // 60
    return f"{hours} h" if hours < 48 else f"{hours // 24} d"


def tone(state: str) -> str:
    return TONE_OF.get(state, "")


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"], default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(ts=timestamp, age=age, tone=tone)
    return env


ENV: Final = _environment()


def render_text(template: str, **context: Any) -> str:
    """The page as text; the bench times exactly this."""
    return ENV.get_template(template).render(base_path="", **context)


def page(
    template: str,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> web.Response:
    """A rendered page with the security headers; never cached, since pages show state
    (and the console's show it to one signed-in operator)."""
    return web.Response(
        status=status,
        text=render_text(template, **context),
        content_type="text/html",
        charset="utf-8",
        headers={**SECURITY_HEADERS, "Cache-Control": "no-store", **(headers or {})},
    )


def error_page(
    node: NodeView,
    status: int,
    title: str,
    detail: str,
    *,
    console: bool = False,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> web.Response:
    """The clear page a person gets for bad input, where an API client gets a problem."""
    context.setdefault("retry_after", None)
    context.setdefault("session", None)
    context.setdefault("here", "")
    for name in ("tone", "back", "back_label"):
        context.setdefault(name, None)
    return page(
        "error.html",
        status=status,
        headers=headers,
        node=node,
        title=title,
        detail=detail,
        console=console,
        **context,
    )


async def stylesheet(_request: web.Request) -> web.Response:
    return web.Response(
        body=STYLESHEET,
        content_type="text/css",
        charset="utf-8",
        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )
