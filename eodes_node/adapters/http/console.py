"""The operator console: server-rendered pages over the ``Reports`` read port.

Dashboard (counts by state, what waits for a receipt, the partner's receipt lag, keys
about to expire), certificate search, a certificate's timeline, and the failed list with
a re-send button. Every page needs a viewer; the re-send needs an operator and is the one
thing the console can change (how a browser signs in: ``sessions``). No JavaScript.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, Final
from urllib.parse import quote, urlencode

import structlog
from aiohttp import web
from pydantic import ValidationError

from eodes_node.adapters.http.access import Role
from eodes_node.adapters.http.api import ListQuery
from eodes_node.adapters.http.console_views import key_rows, receipt_lag, timeline
from eodes_node.adapters.http.context import CONTEXT, HttpContext
from eodes_node.adapters.http.pages import error_page, node_of, page
from eodes_node.adapters.http.sessions import (
    Denied,
    Sessions,
    Viewer,
    check_form,
    viewer,
)
from eodes_node.adapters.http.signin import (
    STATE,
    WRONG_TOKENS,
    ConsoleState,
    login,
    login_form,
    login_page,
    logout,
    safe_next,
    see_other,
)
from eodes_node.adapters.http.throttle import TokenBuckets
from eodes_node.core.state import State
from eodes_node.errors import TransientError
from eodes_node.ports import CertificateFilter
from eodes_node.service.repairs import RepairRefused

log = structlog.get_logger("eodes_node.console")

STATES: Final = tuple(s.value for s in State)


Page = Callable[[web.Request, Viewer], Awaitable[web.StreamResponse]]


def add_routes(app: web.Application, context: HttpContext) -> None:
    app[STATE] = ConsoleState(
        Sessions(time.monotonic), TokenBuckets(WRONG_TOKENS, 900.0, time.monotonic)
    )
    r = app.router
    r.add_get("/console", guarded(Role.VIEWER, dashboard))
    r.add_get("/console/login", login_form)
    r.add_post("/console/login", login)
    r.add_post("/console/logout", guarded(Role.VIEWER, logout))
    r.add_get("/console/certificates", guarded(Role.VIEWER, certificates))
    r.add_get("/console/certificates/{number}", guarded(Role.VIEWER, detail))
    r.add_post("/console/certificates/{number}/resend", guarded(Role.OPERATOR, resend))
    r.add_get("/console/failed", guarded(Role.VIEWER, failed))
    r.add_get("/console/{tail:.*}", guarded(Role.VIEWER, not_here))


def guarded(role: Role, handler: Page) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The page for a caller holding ``role``; a sign-in page (401) or a refusal (403) for
    anyone else, and a clear page for bad input or when the store cannot answer."""

    async def run(request: web.Request) -> web.StreamResponse:
        context = request.app[CONTEXT]
        try:
            who = viewer(request, request.app[STATE].sessions, context.access, role)
        except Denied as exc:
            return _denied(request, exc)
        try:
            return await handler(request, who)
        except Denied as exc:
            return _refused(request, who, exc.status, exc.detail)
        except TransientError as exc:
            log.warning("console_unavailable", path=request.path, error=str(exc))
            return _refused(request, who, 503, f"The node cannot answer now: {exc}.")

    return run


_TITLES: Final = {400: "Not a valid request", 403: "Not allowed", 404: "Not found"}


def _refused(request: web.Request, who: Viewer, status: int, detail: str) -> web.Response:
    title = _TITLES.get(status, "Not available now")
    node = node_of(request.app[CONTEXT])
    return error_page(node, status, title, detail, console=True, session=who)


def _denied(request: web.Request, exc: Denied) -> web.Response:
    if exc.status == 401:
        back = request.path_qs if request.method == "GET" else "/console"
        node = node_of(request.app[CONTEXT])
        return login_page(node, 401, safe_next(back), exc.detail, exc.headers, tone="")
    return error_page(
        node_of(request.app[CONTEXT]), exc.status, "Not allowed", exc.detail, console=True
    )


def _frame(request: web.Request, who: Viewer, here: str) -> dict[str, Any]:
    """What every console page's frame shows: the node, the caller, where we are."""
    flash = None
    if who.session is not None:
        flash, who.session.flash = who.session.flash, None
    return {"node": node_of(request.app[CONTEXT]), "session": who, "here": here, "flash": flash}


async def dashboard(request: web.Request, who: Viewer) -> web.Response:
    context = request.app[CONTEXT]
    dash = await context.reports.dashboard()
    now = context.clock.now()
    keys = key_rows(context, now)
    return page(
        "dashboard.html",
        **_frame(request, who, "/console"),
        dash=dash,
        now=now,
        total=sum(n for states in dash.by_state.values() for n in states.values()),
        lag=receipt_lag(dash, now),
        keys=keys,
        key_warnings=[{"tone": k.tone, "text": k.warning} for k in keys if k.warning],
    )


def _search(request: web.Request) -> ListQuery:
    given = {k: v.strip() for k, v in request.query.items() if v.strip()}
    try:
        query = ListQuery.model_validate(given)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise Denied(400, f"The search is not valid: {problems}.") from None
    if query.issued_from and query.issued_to and query.issued_from > query.issued_to:
        raise Denied(400, "The search is not valid: 'issued from' is after 'issued to'.")
    return query


async def _listing(request: web.Request, query: ListQuery, path: str) -> dict[str, Any]:
    where = CertificateFilter(
        state=query.state,
        role=query.side,
        agreement=query.agreement,
        issued_from=query.issued_from,
        issued_to=query.issued_to,
        number=query.number,
        limit=query.limit,
        cursor=query.cursor,
    )
    try:
        found = await request.app[CONTEXT].reports.certificates(where)
    except ValueError:
        raise Denied(400, "This page link is not valid any more; start the search again.") from None
    params = {k: v for k, v in request.query.items() if v.strip() and k != "cursor"}
    next_link = None
    if found.next_cursor:
        next_link = f"{path}?{urlencode({**params, 'cursor': found.next_cursor})}"
    first_link = f"{path}?{urlencode(params)}" if query.cursor else None
    return {"page": found, "next_link": next_link, "first_link": first_link}


async def certificates(request: web.Request, who: Viewer) -> web.Response:
    query = _search(request)
    listing = await _listing(request, query, "/console/certificates")
    form = query.model_dump(exclude={"limit", "cursor"})
    here = _frame(request, who, "/console/certificates")
    return page("certificates.html", **here, **listing, form=form, states=STATES)


RESENDABLE: Final = ("failed", "rejected")


async def failed(request: web.Request, who: Viewer) -> web.Response:
    """Certificates we sent that the partner never took (failed) or refused (rejected)."""
    state = request.query.get("state", "failed")
    if state not in RESENDABLE:
        raise Denied(400, "The list shows failed or rejected certificates.")
    cursor = request.query.get("cursor") or None
    query = ListQuery(state=state, side="exporter", cursor=cursor)
    listing = await _listing(request, query, "/console/failed")
    frame = _frame(request, who, "/console/failed")
    return page("failed.html", **frame, **listing, state=state)


def _number(request: web.Request) -> str:
    number = request.match_info["number"].strip()
    if not number or len(number) > 64:
        raise Denied(400, "A certificate number has 1 to 64 characters.")
    return number


async def detail(request: web.Request, who: Viewer) -> web.Response:
    number = _number(request)
    found = await request.app[CONTEXT].reports.certificate(number)
    if not found:
        raise Denied(404, f"This node holds no certificate {number}.")
    here = _frame(request, who, "/console/certificates")
    return page("detail.html", **here, details=found, timelines=[timeline(d) for d in found])


async def resend(request: web.Request, who: Viewer) -> web.StreamResponse:
    """Send a failed or rejected certificate again: the console's one write."""
    form = await request.post()
    check_form(request, who, str(form.get("csrf", "")))
    number = _number(request)
    context = request.app[CONTEXT]
    if context.actions is None:
        raise Denied(503, "Re-sending is not available on this node.")
    try:
        outcome = dict(await context.actions.resend(number))
    except RepairRefused as exc:
        if exc.unknown:
            raise Denied(404, str(exc)) from None
        flash = ("bad", f"{number} was not re-sent: {exc}")
    else:
        log.info("operator_action", action="resend", target=number, by=who.name, via="console")
        flash = ("ok", _outcome(number, context.partner, outcome))
    if who.session is not None:
        who.session.flash = flash
    back = f"/console/certificates/{quote(number, safe='')}"
    back_to = str(form.get("back", ""))
    if back_to in RESENDABLE:
        back = f"/console/failed?state={back_to}"
    return see_other(back)


def _outcome(number: str, partner: str, outcome: dict[str, Any]) -> str:
    how = "the same message" if outcome.get("same_message") else "a new message"
    text = f"{number} was sent again to {partner} as {how} ({outcome.get('message_id', '?')})"
    if outcome.get("published") is False:
        return text + "; the broker has not confirmed it yet, the node will keep trying."
    return text + "."


async def not_here(request: web.Request, who: Viewer) -> web.Response:
    raise Denied(404, f"There is no console page at {request.path}.")
