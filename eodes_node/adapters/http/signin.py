"""The console's sign-in and sign-out pages (the session mechanism: ``sessions``).

A wrong token costs the client one of ``WRONG_TOKENS`` attempts per quarter of an hour,
then 429; sign-ins and refusals are logged with the client and the token's name, never
the token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import structlog
from aiohttp import web

from eodes_node.adapters.http.context import CONTEXT
from eodes_node.adapters.http.pages import NodeView, error_page, node_of, page
from eodes_node.adapters.http.sessions import (
    CHALLENGE,
    Sessions,
    Viewer,
    check_form,
    clear_cookie,
    set_cookie,
)
from eodes_node.adapters.http.throttle import TokenBuckets, client_key

log = structlog.get_logger("eodes_node.console")

WRONG_TOKENS: Final = 10  # failed sign-ins per client and quarter of an hour, then 429


@dataclass(frozen=True, slots=True)
class ConsoleState:
    sessions: Sessions
    wrong_tokens: TokenBuckets


STATE = web.AppKey("eodes_console", ConsoleState)


def see_other(location: str) -> web.Response:
    """Post/redirect/get: a reload never sends a form twice."""
    return web.Response(status=303, headers={"Location": location})


def login_page(
    node: NodeView,
    status: int,
    back: str,
    problem: str | None,
    headers: dict[str, str],
    *,
    tone: str = "bad",
) -> web.Response:
    """The sign-in form; ``problem`` says why it is shown (``tone`` "" when merely asked)."""
    return page(
        "login.html",
        status=status,
        headers=headers,
        node=node,
        session=None,
        here="",
        next=back,
        problem=problem,
        tone=tone,
    )


def safe_next(value: str) -> str:
    """Only a console page of ours: never an open redirect to another site."""
    ok = value.startswith("/console") and not value.startswith("//") and "\\" not in value
    return value if ok else "/console"


async def login_form(request: web.Request) -> web.Response:
    back = safe_next(request.query.get("next", "/console"))
    return login_page(node_of(request.app[CONTEXT]), 200, back, None, {})


async def login(request: web.Request) -> web.StreamResponse:
    context, state = request.app[CONTEXT], request.app[STATE]
    form = await request.post()
    back = safe_next(str(form.get("next", "/console")))
    key = client_key(request.remote)
    wait = state.wrong_tokens.retry_after(key)
    if wait:
        log.warning("console_login_throttled", client=request.remote)
        return error_page(
            node_of(context),
            429,
            "Too many attempts",
            "Too many wrong tokens were given from this address.",
            headers={"Retry-After": str(wait)},
            retry_after=wait,
            back="/console/login",
        )
    token = str(form.get("token", "")).strip()
    principal = context.access.principal(token) if token else None
    if principal is None:
        state.wrong_tokens.take(key)
        log.warning("console_login_refused", client=request.remote)
        return login_page(node_of(context), 401, back, "That token is not valid here.", CHALLENGE)
    session = state.sessions.start(token)
    log.info("console_login", client=request.remote, by=principal.name)
    response = see_other(back)
    set_cookie(response, request, session)
    return response


async def logout(request: web.Request, who: Viewer) -> web.StreamResponse:
    form = await request.post()
    check_form(request, who, str(form.get("csrf", "")))
    request.app[STATE].sessions.end(who.session.id if who.session else None)
    log.info("console_logout", by=who.name)
    response = see_other("/console/login")
    clear_cookie(response)
    return response
