"""What the console's pages compute from the read port before rendering: key-expiry
warnings, the partner's receipt lag and a certificate's timeline. Plain functions of
values, so the templates only lay them out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from eodes_node.adapters.http.context import HttpContext
from eodes_node.adapters.http.pages import tone
from eodes_node.ports import CertificateDetail, Dashboard

KEY_WARNING_DAYS: Final = 30


@dataclass(frozen=True, slots=True)
class KeyRow:
    owner: str
    kid: str
    alg: str
    expires: datetime | None
    tone: str
    warning: str | None


def key_rows(context: HttpContext, now: datetime) -> list[KeyRow]:
    """Our keys and the partner's pinned ones, each flagged when it expires soon."""
    mine = f"{context.own} (this node)"
    return [
        _key_row(owner, who, jwk, now)
        for owner, who, jwks in (
            (mine, "Our key", context.own_jwks),
            (context.partner, f"{context.partner}'s key", context.partner_jwks),
        )
        for jwk in jwks.get("keys", [])
    ]


def _key_row(owner: str, who: str, jwk: Mapping[str, Any], now: datetime) -> KeyRow:
    exp = jwk.get("exp")
    expires = datetime.fromtimestamp(exp, UTC) if isinstance(exp, int) else None
    kid, alg = str(jwk.get("kid", "?")), str(jwk.get("alg"))
    if expires is None or expires - now > timedelta(days=KEY_WARNING_DAYS):
        return KeyRow(owner, kid, alg, expires, "ok", None)
    if expires <= now:
        text = f"{who} {kid} expired on {expires:%Y-%m-%d}: messages signed with it fail."
        return KeyRow(owner, kid, alg, expires, "bad", text)
    days = (expires - now).days
    text = f"{who} {kid} expires in {days} days ({expires:%Y-%m-%d}); roll it over."
    return KeyRow(owner, kid, alg, expires, "warn", text)


def receipt_lag(dash: Dashboard, now: datetime) -> dict[str, str]:
    """How long we have waited without hearing from the partner, while messages wait."""
    if not dash.pending or dash.oldest_pending_at is None:
        return {"text": "none waiting", "tone": "ok"}
    since = dash.oldest_pending_at
    if dash.last_receipt_at is not None and dash.last_receipt_at > since:
        since = dash.last_receipt_at
    seconds = (now - since).total_seconds()
    level = "ok" if seconds < 60 else "warn" if seconds < 900 else "bad"
    return {"text": _short_age(seconds), "tone": level}


def _short_age(seconds: float) -> str:
    whole = max(0, int(seconds))
    return f"{whole} s" if whole < 120 else f"{whole // 60} min"


@dataclass(frozen=True, slots=True)
class Moment:
    at: datetime
    label: str
    text: str
    tone: str
    message_id: str
    rank: int = 1  # within one second: what opened the certificate, messages, the rest


_OPENING = frozenset({"submitted", "received"})


def timeline(d: CertificateDetail) -> list[Moment]:
    """State changes and messages in one list, oldest first."""
    moments = [
        Moment(
            h.at,
            h.event.replace("_", " "),
            f"{h.before or 'new'} → {h.after}",
            tone(h.after),
            h.message_id,
            0 if h.event in _OPENING else 2,
        )
        for h in d.history
    ]
    for m in d.messages:
        verb = "sent" if m.direction == "out" else "received"
        sends = f", {m.attempts} sends" if m.attempts > 1 else ""
        why = f": {m.code} {m.text}" if m.code else ""
        # A sent message's status is today's, not the one it had when it was sent.
        status = f"now {m.status}" if m.direction == "out" else m.status
        text = f"{status}{sends}{why}"
        moments.append(Moment(m.at, f"{verb} {m.kind}", text, tone(m.status), m.message_id))
    return sorted(moments, key=lambda moment: (moment.at, moment.rank))
