"""The public side: the verification page (EODES model), our JWK Set, the stylesheet.

Anyone holding a printed certificate of origin enters its reference number and reference
code and learns whether it is authentic, with a summary that carries no tax id, value or
invoice; the signed envelope can be downloaded and checked offline with
``eodes-node verify``. A look-up is limited per client (``http.lookups_per_minute``) and
wrong codes far more strictly (``WRONG_CODES`` per ``WRONG_CODES_PERIOD_S``), so a code
cannot be guessed; every look-up is audit-logged with the client, the reference number
and the outcome, never the code.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlencode

import orjson
import segno
import structlog
from aiohttp import web
from markupsafe import Markup

from eodes_node.adapters.http.context import CONTEXT, HttpContext
from eodes_node.adapters.http.pages import NodeView, error_page, node_of, page, stylesheet
from eodes_node.adapters.http.throttle import TokenBuckets, client_key
from eodes_node.errors import TransientError
from eodes_node.ports import PublicCertificate

audit = structlog.get_logger("eodes_node.verify")

WRONG_CODES: Final = 5  # wrong reference codes a client may give...
WRONG_CODES_PERIOD_S: Final = 900.0  # ...per quarter of an hour, then 429
_CODE = re.compile(r"[A-Za-z0-9]{4,32}")
MAX_REFERENCE = 128


@dataclass(frozen=True, slots=True)
class Limits:
    lookups: TokenBuckets
    wrong_codes: TokenBuckets


LIMITS = web.AppKey("eodes_verify_limits", Limits)


def add_routes(app: web.Application, context: HttpContext) -> None:
    app[LIMITS] = Limits(
        TokenBuckets(context.settings.lookups_per_minute, 60.0, time.monotonic),
        TokenBuckets(WRONG_CODES, WRONG_CODES_PERIOD_S, time.monotonic),
    )
    app.router.add_get("/static/eodes.css", stylesheet)
    app.router.add_get("/.well-known/jwks.json", own_jwks)
    app.router.add_get(r"/verify/keys/{country:[A-Z]{2}}.jwks.json", partner_jwks)
    app.router.add_get("/verify", verify_page)
    app.router.add_post("/verify", verify_page)
    app.router.add_post("/verify/envelope", envelope)
    app.router.add_post("/verify/certificate", printable)
    app.router.add_get("/verify/{tail:.*}", not_here)


def _jwks_response(jwks: Any) -> web.Response:
    return web.Response(
        body=orjson.dumps(jwks),
        content_type="application/jwk-set+json",
        headers={"Cache-Control": "public, max-age=300", "Access-Control-Allow-Origin": "*"},
    )


async def own_jwks(request: web.Request) -> web.Response:
    """Our public keys (RFC 7517): what a partner pins and what checks our envelopes."""
    return _jwks_response(request.app[CONTEXT].own_jwks)


async def partner_jwks(request: web.Request) -> web.Response:
    """The partner's pinned keys, which sign the certificates we received."""
    context = request.app[CONTEXT]
    if request.match_info["country"] != context.partner:
        return await not_here(request)
    return _jwks_response(context.partner_jwks)


async def not_here(request: web.Request) -> web.Response:
    node = node_of(request.app[CONTEXT])
    return error_page(node, 404, "Page not found", f"There is no page at {request.path}.")


async def _form(request: web.Request) -> tuple[str, str]:
    fields: Any = await request.post() if request.method == "POST" else request.query
    return str(fields.get("ref", "")).strip(), str(fields.get("code", "")).strip()


def _verify_form(node: NodeView, status: int, ref: str, problem: str | None) -> web.Response:
    return page("verify.html", status=status, node=node, ref=ref, problem=problem)


async def verify_page(request: web.Request) -> web.Response:
    ref, code = await _form(request)
    node = node_of(request.app[CONTEXT])
    if request.method == "GET" and not ref and not code:
        return _verify_form(node, 200, "", None)
    found = await lookup(request, ref, code, "page")
    if isinstance(found, web.Response):
        return found
    signer = found.signed_by
    return page(
        "verified.html",
        node=node,
        cert=found,
        ref=ref,
        code=code,
        jwks_href=_jwks_href(request.app[CONTEXT], signer),
        jwks_name=f"{signer.lower()}.jwks.json",
        envelope_name=f"{found.number}.jws",
    )


def _jwks_href(context: HttpContext, signer: str) -> str:
    return "/.well-known/jwks.json" if signer == context.own else f"/verify/keys/{signer}.jwks.json"


async def envelope(request: web.Request) -> web.Response:
    """The signed envelope, byte for byte as it travelled: proof that needs no trust in us."""
    ref, code = await _form(request)
    found = await lookup(request, ref, code, "envelope")
    if isinstance(found, web.Response):
        return found
    return web.Response(
        body=found.envelope,
        content_type="application/jose",
        headers={
            "Content-Disposition": f'attachment; filename="{found.number}.jws"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


def verification_url(request: web.Request, ref: str, code: str) -> str:
    return f"{request.url.origin()}/verify?{urlencode({'ref': ref, 'code': code})}"


def qr_svg(url: str) -> Markup:
    """The QR code as inline SVG: scaled by the stylesheet, printed sharp at any size.
    segno writes only path data (the URL is not in the markup), so it is safe to inline."""
    code = segno.make(url, error="m")
    return Markup(code.svg_inline(scale=1, border=4, omitsize=True, dark="#000", light="#fff"))  # noqa: S704


async def printable(request: web.Request) -> web.Response:
    """The certificate as a page to print, with a QR code that opens its verification."""
    ref, code = await _form(request)
    found = await lookup(request, ref, code, "printable")
    if isinstance(found, web.Response):
        return found
    url = verification_url(request, found.reference_number, code)
    return page(
        "printable.html",
        node=node_of(request.app[CONTEXT]),
        cert=found,
        code=code,
        verify_url=url,
        qr_svg=qr_svg(url),
    )


def _input_problem(ref: str, code: str) -> str | None:
    if not ref or not code:
        return "Enter both the reference number and the reference code."
    if len(ref) > MAX_REFERENCE:
        return f"A reference number has at most {MAX_REFERENCE} characters."
    if not _CODE.fullmatch(code):
        return "A reference code is 4 to 32 letters and digits, as printed on the certificate."
    return None


def _throttled(request: web.Request, key: str) -> int:
    """Seconds the client must wait, or 0; a look-up spends one of its tokens."""
    limits = request.app[LIMITS]
    return limits.wrong_codes.retry_after(key) or limits.lookups.take(key)


async def lookup(
    request: web.Request, ref: str, code: str, what: str
) -> PublicCertificate | web.Response:
    """The certificate for (ref, code), or the page that says why not; audit-logged."""
    context = request.app[CONTEXT]
    node = node_of(context)
    key = client_key(request.remote)
    shown_ref = ref[:MAX_REFERENCE]

    def logged(outcome: str, **extra: Any) -> None:
        audit.info(
            "verification_lookup",
            client=request.remote,
            reference_number=shown_ref,
            outcome=outcome,
            what=what,
            **extra,
        )

    wait = _throttled(request, key)
    if wait:
        logged("throttled")
        return _too_many(node, wait)
    problem = _input_problem(ref, code)
    if problem is not None:
        logged("invalid")
        return _verify_form(node, 400, shown_ref, problem)
    try:
        found = await context.reports.verify_reference(ref, code)
    except TransientError as exc:
        logged("unavailable")
        return error_page(node, 503, "Not available now", f"The node cannot answer: {exc}.")
    if found is None:
        request.app[LIMITS].wrong_codes.take(key)
        logged("not_found")
        return _verify_form(node, 404, shown_ref, _NOT_FOUND)
    logged("authentic", certificate_number=found.number, state=found.state)
    return found


_NOT_FOUND: Final = (
    "No certificate of origin matches this reference number and reference code. Check both "
    "against the printed certificate; a certificate that cannot be found here is not proven "
    "authentic by this node."
)


def _too_many(node: NodeView, wait: int) -> web.Response:
    return error_page(
        node,
        429,
        "Too many look-ups",
        "This address has made too many look-ups or given too many wrong reference codes.",
        headers={"Retry-After": str(wait)},
        retry_after=wait,
        tone="warn",
    )
