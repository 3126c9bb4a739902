"""The JSON API under /api/v1 (described by schemas/openapi.json).

Reading needs a viewer token, the two repairs an operator token. Every malformed query or
body is a 400 problem document naming each bad parameter; an unknown certificate is 404.
Nothing here changes a certificate except ``resend`` and ``replay``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import date
from typing import TYPE_CHECKING, Annotated, Any, Literal

import orjson
import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from eodes_node.adapters.http import views
from eodes_node.adapters.http.access import Role
from eodes_node.adapters.http.context import CONTEXT
from eodes_node.adapters.http.problems import ProblemError
from eodes_node.core.state import State
from eodes_node.errors import TransientError
from eodes_node.ports import CertificateFilter
from eodes_node.service.repairs import DOORS, RepairRefused

if TYPE_CHECKING:
    from eodes_node.adapters.http.context import Actions, HttpContext

log = structlog.get_logger("eodes_node.http")

PREFIX = "/api/v1"


class ListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    state: State | None = None
    side: Literal["exporter", "importer"] | None = None
    agreement: Annotated[str, Field(min_length=1, max_length=40)] | None = None
    issued_from: date | None = None
    issued_to: date | None = None
    number: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    limit: Annotated[int, Field(ge=1, le=500)] = 50
    cursor: Annotated[str, Field(min_length=1, max_length=200)] | None = None


class ReplayBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    limit: Annotated[int, Field(ge=1, le=10_000)] = 1000


def _bad_request(exc: ValidationError, where: str) -> ProblemError:
    errors = [
        {"name": ".".join(str(p) for p in e["loc"]) or where, "reason": e["msg"]}
        for e in exc.errors()
    ]
    detail = "; ".join(f"{e['name']}: {e['reason']}" for e in errors)
    return ProblemError(400, "Bad request", f"invalid {where}: {detail}", errors=errors)


def _query(request: web.Request) -> ListQuery:
    params = request.rel_url.query
    repeated = sorted({k for k in params if len(params.getall(k)) > 1})
    if repeated:
        raise ProblemError(
            400, "Bad request", f"invalid query: {', '.join(repeated)} given more than once"
        )
    try:
        query = ListQuery.model_validate(dict(params))
    except ValidationError as exc:
        raise _bad_request(exc, "query") from None
    if query.issued_from and query.issued_to and query.issued_from > query.issued_to:
        raise ProblemError(400, "Bad request", "invalid query: issued_from is after issued_to")
    return query


async def _json_body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw.strip():
        return {}
    if request.content_type != "application/json":
        raise ProblemError(
            415, "Unsupported media type", "send the body as application/json (or none)"
        )
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ProblemError(400, "Bad request", f"body is not valid JSON: {exc}") from None


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _number(request: web.Request) -> str:
    number = request.match_info["number"].strip()
    if not number or len(number) > 64:
        raise ProblemError(400, "Bad request", "a certificate number has 1 to 64 characters")
    return number


def add_routes(app: web.Application, context: HttpContext) -> None:
    app.router.add_get(f"{PREFIX}/certificates", list_certificates)
    app.router.add_get(f"{PREFIX}/certificates/{{number}}", certificate)
    app.router.add_post(f"{PREFIX}/certificates/{{number}}/resend", resend)
    app.router.add_get(f"{PREFIX}/dashboard", dashboard)
    app.router.add_post(f"{PREFIX}/dead-letters/{{door}}/replay", replay)
    app.router.add_get(f"{PREFIX}/events", events)


def _unavailable(exc: TransientError) -> ProblemError:
    return ProblemError(503, "Unavailable", f"the node cannot answer now: {exc}")


async def list_certificates(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    context.access.require(request, Role.VIEWER)
    q = _query(request)
    where = CertificateFilter(
        state=q.state.value if q.state else None,
        role=q.side,
        agreement=q.agreement,
        issued_from=q.issued_from,
        issued_to=q.issued_to,
        number=q.number,
        limit=q.limit,
        cursor=q.cursor,
    )
    try:
        found = await context.reports.certificates(where)
    except ValueError as exc:  # a cursor that is not one of ours
        raise ProblemError(400, "Bad request", f"invalid query: cursor: {exc}") from None
    except TransientError as exc:
        raise _unavailable(exc) from None
    return _json(views.page(found))


async def certificate(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    context.access.require(request, Role.VIEWER)
    number = _number(request)
    try:
        found = await context.reports.certificate(number)
    except TransientError as exc:
        raise _unavailable(exc) from None
    if not found:
        raise ProblemError(404, "Not found", f"no certificate {number} at this node")
    return _json({"number": found[0].summary.number, "sides": [views.detail(d) for d in found]})


async def dashboard(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    context.access.require(request, Role.VIEWER)
    try:
        view = await context.reports.dashboard()
    except TransientError as exc:
        raise _unavailable(exc) from None
    body = views.dashboard(view, context.clock.now())
    body.update(node=context.own, partner=context.partner)
    return _json(body)


async def resend(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    who = context.access.require(request, Role.OPERATOR)
    number = _number(request)
    if await _json_body(request) != {}:
        raise ProblemError(400, "Bad request", "resend takes no body")
    outcome = await _repair(context, who.name, "resend", number, lambda a: a.resend(number))
    return _json(outcome, status=202)


async def replay(request: web.Request) -> web.Response:
    context = request.app[CONTEXT]
    who = context.access.require(request, Role.OPERATOR)
    door = request.match_info["door"]
    if door not in DOORS:
        raise ProblemError(404, "Not found", f"no door {door!r}; doors are {', '.join(DOORS)}")
    try:
        body = ReplayBody.model_validate(await _json_body(request))
    except ValidationError as exc:
        raise _bad_request(exc, "body") from None
    outcome = await _repair(
        context, who.name, "replay_dead", door, lambda a: a.replay_dead(door, body.limit)
    )
    return _json(outcome)


async def _repair(
    context: HttpContext,
    who: str,
    action: str,
    target: str,
    run: Callable[[Actions], Awaitable[Mapping[str, Any]]],
) -> dict[str, Any]:
    """Run one repair, log who asked (by token name) and map refusals to problems."""
    if context.actions is None:
        raise ProblemError(503, "Unavailable", "repairs are not available on this node")
    try:
        outcome = dict(await run(context.actions))
    except RepairRefused as exc:
        status = 404 if exc.unknown else 409
        raise ProblemError(status, "Not found" if exc.unknown else "Conflict", str(exc)) from None
    except TransientError as exc:
        raise ProblemError(503, "Unavailable", f"the node cannot do this now: {exc}") from None
    log.info("operator_action", action=action, target=target, by=who, outcome=outcome)
    return outcome


async def events(request: web.Request) -> web.StreamResponse:
    """The node's events as NDJSON, recent ones first, until the client goes away."""
    context = request.app[CONTEXT]
    context.access.require(request, Role.VIEWER)
    query = request.rel_url.query
    flags = {name: query.get(name, "true") for name in ("recent", "follow")}
    if set(query) - set(flags) or not set(flags.values()) <= {"true", "false"}:
        raise ProblemError(
            400, "Bad request", "invalid query: only recent and follow, each true or false"
        )
    if context.events is None:
        raise ProblemError(503, "Unavailable", "this node has no event feed")
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    try:
        feed = context.events.follow(
            recent=flags["recent"] == "true", live=flags["follow"] == "true"
        )
        async for body in feed:
            await response.write(body + b"\n")
    except ConnectionResetError:
        pass  # the follower went away
    return response
