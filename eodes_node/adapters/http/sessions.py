"""How a browser holds the console's bearer token: a server-side session.

The operator signs in once by pasting a token. The token stays on the server, in memory;
the browser gets only a random session id in an HttpOnly, SameSite=Strict cookie scoped to
``/console`` (Secure over TLS), so no script and no other site can read or send it. The
token is checked again on every request, so taking it out of the configuration ends its
sessions. Each session has a CSRF token that every console form carries back. Scripts can
skip all this and send ``Authorization: Bearer`` as to the API.
"""

from __future__ import annotations

import hmac
import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from aiohttp import web

from eodes_node.adapters.http.access import Access, Principal, Role
from eodes_node.adapters.http.problems import ProblemError

COOKIE: Final = "eodes_console"
COOKIE_PATH: Final = "/console"
# A 401 names the scheme (RFC 9110): Bearer, which no browser turns into a password dialog.
CHALLENGE: Final = {"WWW-Authenticate": 'Bearer realm="eodes-node"'}
IDLE_S: Final = 3600.0  # signed out after an hour without a request...
MAX_AGE_S: Final = 12 * 3600.0  # ...and after twelve hours in any case


@dataclass(slots=True)
class Session:
    id: str
    token: str = field(repr=False)
    csrf: str = field(repr=False)
    started: float
    seen: float
    flash: tuple[str, str] | None = None  # (tone, text) shown once after a redirect


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is looking at a console page, as the templates see it."""

    name: str
    role: str  # viewer | operator
    csrf: str  # "" for a bearer-header caller, who needs none
    session: Session | None = None

    @property
    def operator(self) -> bool:
        return self.role == Role.OPERATOR.name.lower()


class Denied(Exception):
    """A request the console answers with a page other than the one asked for: not signed
    in (401), not allowed (403), and, raised by its handlers, bad input (400), unknown
    (404) or unavailable (503)."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail
        self.headers = headers or (dict(CHALLENGE) if status == 401 else {})


class Sessions:
    def __init__(self, now: Callable[[], float], *, max_sessions: int = 1000) -> None:
        self._now = now
        self._max = max_sessions
        self._open: OrderedDict[str, Session] = OrderedDict()

    def start(self, token: str) -> Session:
        now = self._now()
        session = Session(secrets.token_urlsafe(32), token, secrets.token_urlsafe(32), now, now)
        self._open[session.id] = session
        while len(self._open) > self._max:
            self._open.popitem(last=False)  # the least recently used goes first
        return session

    def find(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        session = self._open.get(session_id)
        if session is None:
            return None
        now = self._now()
        if now - session.seen > IDLE_S or now - session.started > MAX_AGE_S:
            del self._open[session_id]
            return None
        session.seen = now
        self._open.move_to_end(session_id)
        return session

    def end(self, session_id: str | None) -> None:
        if session_id:
            self._open.pop(session_id, None)


def set_cookie(response: web.StreamResponse, request: web.Request, session: Session) -> None:
    response.set_cookie(
        COOKIE,
        session.id,
        path=COOKIE_PATH,
        httponly=True,
        samesite="Strict",
        secure=request.secure,
        max_age=int(MAX_AGE_S),
    )


def clear_cookie(response: web.StreamResponse) -> None:
    response.del_cookie(COOKIE, path=COOKIE_PATH)


def _from_header(request: web.Request, access: Access, role: Role) -> Viewer:
    try:
        who = access.require(request, role)
    except ProblemError as exc:
        raise Denied(exc.status, exc.detail, exc.headers) from None
    return Viewer(who.name, who.role.name.lower(), "")


def _allowed(principal: Principal | None, role: Role) -> Principal:
    if principal is None:
        raise Denied(401, "Your session has ended or its token is no longer valid.")
    if principal.role < role:
        raise Denied(
            403,
            f"This needs the {role.name.lower()} role; you are signed in as "
            f"{principal.name}, a {principal.role.name.lower()}.",
        )
    return principal


def viewer(request: web.Request, sessions: Sessions, access: Access, role: Role) -> Viewer:
    """The caller, by bearer header or session cookie; raises ``Denied`` otherwise."""
    if "Authorization" in request.headers:
        return _from_header(request, access, role)
    session = sessions.find(request.cookies.get(COOKIE))
    if session is None:
        raise Denied(401, "Sign in with an access token of this node to use the console.")
    principal = _allowed(access.principal(session.token), role)
    return Viewer(principal.name, principal.role.name.lower(), session.csrf, session)


def check_form(request: web.Request, who: Viewer, form_csrf: str) -> None:
    """A state-changing form must come from our own page: same origin and, for a cookie
    session, the session's CSRF token. A bearer-header caller sends no ambient credential."""
    origin = request.headers.get("Origin")
    if origin is not None and origin != str(request.url.origin()):
        raise Denied(403, "This form was sent from another site; it was refused.")
    if who.session is None:
        return
    if not hmac.compare_digest(form_csrf.encode(), who.csrf.encode()):
        raise Denied(403, "This form has expired; open the page again and retry.")
