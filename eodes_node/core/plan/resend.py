"""Planning an operator's re-send of a certificate the partner never took.

A **failed** certificate (no receipt within the retry budget) goes again as the same
message, byte for byte, with a fresh retry budget: if the partner had it after all, it
answers the duplicate with its identical receipt. A **rejected** certificate (or a failed
one whose message is too old for the partner's replay window) goes as a new message:
new id, new issue time, the same certificate, signed with our current key. The
partner's node accepts it as it would any e-CO it never accepted before.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from eodes_node.core.canonical import loads_strict
from eodes_node.core.decide import CertFacts, Transition
from eodes_node.core.jws import b64url_decode_strict, sign_compact
from eodes_node.core.messages import BODY_FIELD, Kind, issued_now
from eodes_node.core.plan.common import Identity, Plan, RetryPolicy, ToPartner, signing_key
from eodes_node.core.records import compose
from eodes_node.core.state import Event, IllegalTransition, Role, State, next_state
from eodes_node.core.validity import KeyMayNotSign
from eodes_node.core.work import OutboundRow, OutboundUpdate
from eodes_node.errors import InvalidRecord

# A same-id resend must reach the partner well inside its replay window.
WINDOW_MARGIN = timedelta(hours=1)


class ResendRefused(Exception):
    """Why a certificate cannot be sent again; ``unknown`` when this node never sent it."""

    def __init__(self, reason: str, *, unknown: bool = False) -> None:
        super().__init__(reason)
        self.unknown = unknown


@dataclass(frozen=True, slots=True)
class Original:
    """The message that last carried the certificate, as the store kept it."""

    message_id: str
    kind: Kind
    token: bytes
    status: str


def _payload(token: bytes) -> dict[str, Any]:
    value = loads_strict(b64url_decode_strict(token.split(b".")[1], "payload"))
    assert isinstance(value, dict)  # we signed it: a JSON object
    return value


def _issued_at(payload: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(payload["issued_at"]).replace("Z", "+00:00"))


def plan_resend(
    number: str,
    cert: CertFacts | None,
    original: Original | None,
    identity: Identity,
    now: datetime,
    retry: RetryPolicy,
    max_age: timedelta,
) -> Plan:
    """The re-send's rows, move and publication; raises ``ResendRefused`` when not allowed."""
    if cert is None or cert.role is not Role.EXPORTER:
        raise ResendRefused(
            f"certificate {number} was not sent from this node; only its sender can send it again",
            unknown=cert is None,
        )
    try:
        after = next_state(Role.EXPORTER, cert.state, Event.RESENT)
    except IllegalTransition:
        raise ResendRefused(
            f"certificate {number} is {cert.state.value}; only a failed or rejected "
            "certificate can be sent again"
        ) from None
    if original is None:
        raise ResendRefused(f"the message that carried certificate {number} is not stored")
    payload = _payload(original.token)
    same = original.status == "failed" and now - _issued_at(payload) < max_age - WINDOW_MARGIN
    result = Plan()
    if same:
        _again(result, cert, original, after, now, retry)
    else:
        _anew(result, cert, original, payload, after, identity, now, retry)
    return result


def _again(
    result: Plan,
    cert: CertFacts,
    original: Original,
    after: State,
    now: datetime,
    retry: RetryPolicy,
) -> None:
    """The same message again, reopened with a fresh retry budget."""
    mid = original.message_id
    result.outbound_updates.append(
        OutboundUpdate(
            mid, "pending", attempts=1, next_attempt_at=now.timestamp() + retry.first_after_s
        )
    )
    result.transitions.append(
        Transition(cert.number, Role.EXPORTER, cert.state, after, Event.RESENT, mid)
    )
    result.effects.append(ToPartner(original.token, mid, original.kind.value))
    result.note(
        "info", "certificate_resent", mid, cert.number, kind=original.kind.value, same_message=True
    )


def _anew(
    result: Plan,
    cert: CertFacts,
    original: Original,
    payload: dict[str, Any],
    after: State,
    identity: Identity,
    now: datetime,
    retry: RetryPolicy,
) -> None:
    """A new message (new id, new issue time) carrying the same certificate."""
    kind = original.kind
    try:
        composed = compose(
            kind,
            payload[BODY_FIELD[kind]],
            sender=identity.own,
            receiver=identity.partner,
            issued_at=issued_now(now),
        )
    except InvalidRecord as exc:  # the rules changed since it was first sent
        raise ResendRefused(
            f"certificate {cert.number} no longer passes our checks: {exc}"
        ) from None
    try:
        key = signing_key(identity, now)
    except KeyMayNotSign as exc:  # the operator asks again once a valid key is loaded
        raise ResendRefused(f"certificate {cert.number} cannot be sent anew: {exc}") from None
    mid = composed.message.message_id
    token = sign_compact(composed.payload, kind.typ, key)
    result.outbound.append(
        OutboundRow(
            mid,
            kind,
            cert.number,
            None,
            token,
            None,
            None,
            attempts=1,
            next_attempt_at=now.timestamp() + retry.first_after_s,
        )
    )
    result.transitions.append(
        Transition(
            cert.number, Role.EXPORTER, cert.state, after, Event.RESENT, mid, coo_message_id=mid
        )
    )
    result.effects.append(ToPartner(token, mid, kind.value))
    result.note(
        "info",
        "certificate_resent",
        mid,
        cert.number,
        kind=kind.value,
        same_message=False,
        replaces_message=original.message_id,
    )
