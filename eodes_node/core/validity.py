"""Key validity windows (the ``nbf``/``exp`` members of a JWK): pure checks on NumericDates.

One place decides whether a key may be used at a moment, so that verifying a partner's
message, refusing to sign with our own key and warning of an expiry all agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from eodes_node.errors import TransientError

__all__ = [
    "Expiring",
    "ExpiryWarnings",
    "KeyMayNotSign",
    "Windowed",
    "expiring_within",
    "window_problem",
]


class Windowed(Protocol):
    """Anything with a key id and an optional validity window (``PublicKey`` is one)."""

    @property
    def kid(self) -> str: ...
    @property
    def not_before(self) -> int | None: ...
    @property
    def expires(self) -> int | None: ...


K = TypeVar("K", bound=Windowed)


def window_problem(key: Windowed, now: int) -> str | None:
    """Why ``key`` may not be used at ``now`` (seconds since the epoch), or None.

    The window is half-open, [nbf, exp): a key whose ``exp`` is now (how a revocation is
    written) is already out.
    """
    if key.not_before is not None and now < key.not_before:
        return f"key {key.kid} is not valid yet"
    if key.expires is not None and now >= key.expires:
        return f"key {key.kid} has expired or was revoked"
    return None


class KeyMayNotSign(TransientError):
    """Our signing key is outside its window, so a batch that needs a signature is not
    decided: nothing is committed, its deliveries go back to their queue, and it is
    decided again (and signed) once a key that may sign is loaded. Signing anyway would
    only earn ``KEY_NOT_VALID`` from the partner."""


@dataclass(frozen=True, slots=True)
class Expiring(Generic[K]):
    key: K
    seconds_left: int  # always more than zero


def expiring_within(keys: Iterable[K], now: int, horizon_s: int) -> list[Expiring[K]]:
    """The keys whose ``exp`` falls within ``horizon_s`` from now, soonest first.

    A key already expired is left out: a partner's old key stays pinned, harmlessly, after
    a rollover; our own signing key is checked with ``window_problem`` instead.
    """
    found = [
        Expiring(key, key.expires - now)
        for key in keys
        if key.expires is not None and 0 < key.expires - now < horizon_s
    ]
    return sorted(found, key=lambda item: item.seconds_left)


class ExpiryWarnings(Generic[K]):
    """Which expiring keys to warn about now: each at most once per ``every_s``.

    Keys come tagged with their owner (``own`` or the partner's country). Past warnings
    are remembered by kid, so a reload does not repeat a warning given an hour ago.
    """

    def __init__(self, horizon_s: int, every_s: int = 24 * 3600) -> None:
        self.horizon_s = horizon_s
        self.every_s = every_s
        self._last: dict[str, int] = {}

    def due(self, keys: Sequence[tuple[str, K]], now: int) -> list[tuple[str, Expiring[K]]]:
        owners = {key.kid: owner for owner, key in keys}
        found = []
        for item in expiring_within((key for _, key in keys), now, self.horizon_s):
            last = self._last.get(item.key.kid)
            if last is None or now - last >= self.every_s:
                self._last[item.key.kid] = now
                found.append((owners[item.key.kid], item))
        return found
