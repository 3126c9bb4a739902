"""One exception root for the node.

The split mirrors who must act: a ``LocalError`` is ours to fix (configuration, our keys,
a bad record from our own issuing system); a ``PeerError`` is the partner's (bad signature,
invalid message) and is answered with a rejection receipt; a ``TransientError`` is the
infrastructure's and is retried. Third-party exceptions are translated into these at the
adapter boundary so the service layer never sees aio-pika or database types.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum


class EodesError(Exception):
    """Root of every error the node raises on purpose."""


class LocalError(EodesError):
    """Something on our side is wrong: configuration, keys, a local record."""


class ConfigError(LocalError):
    """The node's configuration or key material cannot be used."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One broken rule, located by a JSON-path-like field path."""

    path: str
    rule: str
    message: str

    def __str__(self) -> str:
        where = self.path or "(record)"
        return f"{where}: {self.message} [{self.rule}]"


class AuditTrailBroken(LocalError):
    """The certificate history's hash chain does not verify: it was edited or truncated."""


class InvalidRecord(LocalError):
    """A record from the local system breaks the schema or a business rule."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(str(p) for p in self.problems))


class RejectionCode(StrEnum):
    """Machine-readable reasons a node rejects a partner message (see docs/protocol.md)."""

    TOO_LARGE = "TOO_LARGE"
    MALFORMED = "MALFORMED"
    HEADER_NOT_ALLOWED = "HEADER_NOT_ALLOWED"
    ALGORITHM_NOT_ALLOWED = "ALGORITHM_NOT_ALLOWED"
    UNKNOWN_KEY = "UNKNOWN_KEY"
    KEY_NOT_VALID = "KEY_NOT_VALID"
    BAD_SIGNATURE = "BAD_SIGNATURE"
    TYPE_MISMATCH = "TYPE_MISMATCH"
    NOT_CANONICAL = "NOT_CANONICAL"
    SCHEMA_INVALID = "SCHEMA_INVALID"
    RULE_VIOLATION = "RULE_VIOLATION"
    WRONG_SENDER = "WRONG_SENDER"
    WRONG_RECEIVER = "WRONG_RECEIVER"
    CLOCK_SKEW = "CLOCK_SKEW"
    ID_CONFLICT = "ID_CONFLICT"
    UNKNOWN_CERTIFICATE = "UNKNOWN_CERTIFICATE"
    STATE_CONFLICT = "STATE_CONFLICT"
    NOT_FOR_THIS_LINK = "NOT_FOR_THIS_LINK"


class PeerError(EodesError):
    """The partner sent something we must refuse; ``code`` goes into the rejection receipt."""

    def __init__(self, code: RejectionCode, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"{code}: {reason}")


class VerificationError(PeerError):
    """A signed envelope failed a JOSE check; nothing in it may be trusted."""


class InvalidMessage(PeerError):
    """A correctly signed message whose content breaks the protocol or a rule."""


class TransientError(EodesError):
    """The broker or the store failed in a way that a retry may cure."""


class BrokerUnavailable(TransientError):
    """The broker could not be reached or did not confirm in time."""


class BrokerRefused(BrokerUnavailable):
    """The broker answered but refused our login or virtual host. At start-up that is a
    configuration error and the node exits; later (credentials changed under a running
    node) it is retried like any lost link, so the operator can fix it without a restart."""


class StoreUnavailable(TransientError):
    """The store could not commit in time."""


class LeadershipLost(StoreUnavailable):
    """Another instance of this link took over the store (PostgreSQL active/standby):
    this one may no longer write, and stops."""


class StoreConflict(TransientError):
    """A decision was based on a state that another commit changed; decide again."""
