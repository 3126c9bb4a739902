"""Watching the keys of a running node: expiry warnings, and our signing key's window.

The core refuses to sign outside that window (``core.plan.common.signing_key``); this is
what tells people: one error line when signing stops (again once a day while it lasts),
one ``signing_stopped`` event for the local systems, one line when it resumes.
"""

from __future__ import annotations

from datetime import datetime

import structlog

from eodes_node.core.jws import PublicKey
from eodes_node.core.plan import Notice
from eodes_node.core.validity import ExpiryWarnings, window_problem
from eodes_node.errors import RejectionCode
from eodes_node.ports import Transport
from eodes_node.service.effects import render
from eodes_node.topology import Topology

log = structlog.get_logger("eodes_node.runtime")

KEY_WATCH_S = 3600.0  # how often key expiry is looked at (each key warns once a day)
SIGNING_STOPPED = "signing_stopped"  # the event telling the local systems we sign nothing
DAY_S = 86400


class KeyWatch:
    def __init__(self, warning_days: int) -> None:
        self.expiry = ExpiryWarnings[PublicKey](warning_days * DAY_S)
        self.stopped: tuple[str, str] | None = None  # (kid, why) while our key signs nothing
        self._logged_at = -DAY_S
        self._untold: str | None = None  # why signing stopped, not yet told the local systems

    def warn_expiring(self, tagged: list[tuple[str, PublicKey]], now: int) -> None:
        """``key_expires_soon``, once a day per key, for keys that expire within the days."""
        for owner, soon in self.expiry.due(tagged, now):
            log.warning(
                "key_expires_soon",
                owner=owner,
                kid=soon.key.kid,
                expires=soon.key.expires,
                days_left=round(soon.seconds_left / DAY_S, 1),
            )

    def check_signing(self, own: PublicKey, now: int) -> None:
        """Log that our key signs nothing: once, then once a day, or at once for another
        key or reason; the local systems are told by ``tell``."""
        problem = window_problem(own, now)
        if problem is None:
            if self.stopped is not None:
                log.info("signing_resumed", kid=own.kid)
            self.stopped = self._untold = None
            return
        if self.stopped == (own.kid, problem) and now - self._logged_at < DAY_S:
            return
        self.stopped, self._logged_at, self._untold = (own.kid, problem), now, problem
        log.error(
            "signing_key_not_valid",
            kid=own.kid,
            error=problem,
            note="nothing is signed: records and partner messages wait in their queues "
            "until a key that may sign is loaded (keys rotate, then SIGHUP)",
        )

    async def tell(
        self, transport: Transport, topology: Topology, partner: str, now: datetime
    ) -> None:
        """The ``signing_stopped`` event for the local systems, if one is owed: their
        records wait until we can sign. Not published: owed again at the next look."""
        if self._untold is None:
            return
        entry = {
            "message_id": None,
            "kind": "signing-key",
            "certificate_number": None,
            "code": RejectionCode.KEY_NOT_VALID.value,
            "text": f"{self._untold}: nothing is signed until a key that may sign is loaded",
        }
        (event,) = render([Notice(SIGNING_STOPPED, (entry,))], topology, partner, now)
        try:
            await transport.publish_local(
                event.destination, event.body, message_id=event.message_id, kind=event.kind
            )
        except Exception as exc:  # noqa: BLE001 - the error line said it; owed until published
            log.warning("event_not_published", event=SIGNING_STOPPED, error=str(exc))
            return
        self._untold = None


def next_look(own: PublicKey, now: int) -> float:
    """When to look again: within the hour, and no later than our key's window opens or
    closes, so that signing stops (and is reported) when it does."""
    edges = [t - now for t in (own.not_before, own.expires) if t is not None and t > now]
    return float(min([KEY_WATCH_S, *edges]))
