"""JWS compact serialization (RFC 7515) with keys pinned per partner.

The verifier trusts nothing in the protected header except as a lookup: the algorithm
comes from the pinned key, ``kid`` only selects among pinned keys, and any header member
that could bring in keys, compression or critical extensions is refused. Keys and key
sets live in ``keys``; their names are re-exported here for existing importers.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Container, Mapping
from dataclasses import dataclass
from typing import Any

from eodes_node.core.canonical import DuplicateMember, TooDeep, canonical_problem, loads_strict
from eodes_node.core.keys import ALGORITHMS as ALGORITHMS
from eodes_node.core.keys import Algorithm as Algorithm
from eodes_node.core.keys import KeySet as KeySet
from eodes_node.core.keys import PrivateKey as PrivateKey
from eodes_node.core.keys import PrivateKeyType as PrivateKeyType
from eodes_node.core.keys import PublicKey as PublicKey
from eodes_node.core.keys import PublicKeyType as PublicKeyType
from eodes_node.core.keys import b64url as b64url
from eodes_node.core.keys import b64url_decode_strict as b64url_decode_strict
from eodes_node.core.keys import thumbprint as thumbprint
from eodes_node.core.validity import window_problem
from eodes_node.errors import InvalidMessage, RejectionCode, VerificationError

DEFAULT_MAX_TOKEN_BYTES = 512 * 1024
MAX_HEADER_BYTES = 1024
ALLOWED_HEADER = frozenset({"alg", "kid", "typ"})
_KEY_BEARING = frozenset({"jwk", "jku", "x5u", "x5c", "x5t", "x5t#S256"})


@dataclass(frozen=True, slots=True)
class Verified:
    typ: str
    kid: str
    payload: bytes


@functools.lru_cache(maxsize=64)
def _protected_header(alg: str, kid: str, typ: str) -> bytes:
    return b64url(json.dumps({"alg": alg, "kid": kid, "typ": typ}, separators=(",", ":")).encode())


def sign_compact(payload: bytes, typ: str, key: PrivateKey) -> bytes:
    signing_input = _protected_header(key.alg, key.kid, typ) + b"." + b64url(payload)
    return signing_input + b"." + b64url(key.sign(signing_input))


def _reject(code: RejectionCode, reason: str) -> VerificationError:
    return VerificationError(code, reason)


def parse_header(part: bytes) -> dict[str, Any]:
    header = _header_object(part)
    _refuse_extra_members(header)
    for name in ("alg", "kid", "typ"):
        if not isinstance(header.get(name), str):
            raise _reject(RejectionCode.MALFORMED, f"protected header needs a string {name!r}")
    return header


def _header_object(part: bytes) -> dict[str, Any]:
    """The protected header as a JSON object: size first, then base64url, then JSON."""
    if len(part) > MAX_HEADER_BYTES:
        raise _reject(RejectionCode.TOO_LARGE, "protected header is too large")
    raw = b64url_decode_strict(part, "protected header")
    try:
        header = loads_strict(raw)
    except DuplicateMember as exc:
        raise _reject(RejectionCode.MALFORMED, f"protected header has a {exc}") from None
    except ValueError:
        raise _reject(RejectionCode.MALFORMED, "protected header is not JSON") from None
    if not isinstance(header, dict):
        raise _reject(RejectionCode.MALFORMED, "protected header is not a JSON object")
    return header


def _refuse_extra_members(header: dict[str, Any]) -> None:
    """Refuse any member beyond alg/kid/typ, naming the most dangerous kind first."""
    extra = set(header) - ALLOWED_HEADER
    if extra & _KEY_BEARING:
        raise _reject(
            RejectionCode.HEADER_NOT_ALLOWED,
            f"keys are never taken from the header ({', '.join(sorted(extra & _KEY_BEARING))})",
        )
    if "crit" in extra:
        raise _reject(RejectionCode.HEADER_NOT_ALLOWED, "unsupported critical header (crit)")
    if "zip" in extra:
        raise _reject(RejectionCode.HEADER_NOT_ALLOWED, "compressed payloads (zip) are refused")
    if extra:
        raise _reject(
            RejectionCode.HEADER_NOT_ALLOWED,
            f"unknown header parameter(s): {', '.join(sorted(extra))}",
        )


def verify_compact(
    token: bytes,
    keys: KeySet,
    *,
    typs: Container[str] | None = None,
    now: int | None = None,
    max_bytes: int = DEFAULT_MAX_TOKEN_BYTES,
) -> Verified:
    """Check a compact JWS against pinned keys; the payload must be canonical JSON.

    The order of the checks is part of the protocol (it decides which rejection code a
    partner gets): size, shape, header, algorithm and key, typ, signature, key validity
    window, payload encoding, nesting depth, canonical form.
    """
    header_part, payload_part, signature_part = _compact_parts(token, max_bytes)
    header = parse_header(header_part)
    key = _pinned_key(header, keys)
    typ = header["typ"]
    if typs is not None and typ not in typs:
        raise _reject(RejectionCode.TYPE_MISMATCH, f"typ {typ!r} is not expected here")
    signature = b64url_decode_strict(signature_part, "signature")
    if not key.verify(signature, header_part + b"." + payload_part):
        raise _reject(RejectionCode.BAD_SIGNATURE, "signature does not verify")
    if now is not None:
        _check_validity_window(key, now)
    payload = b64url_decode_strict(payload_part, "payload")
    try:
        problem = canonical_problem(payload)
    except TooDeep as exc:
        # Possibly valid JCS (RFC 8785 sets no depth limit), but no schema nests this deep.
        raise InvalidMessage(
            RejectionCode.SCHEMA_INVALID, f"payload is {exc}; no message nests more than five"
        ) from None
    if problem is not None:
        raise _reject(RejectionCode.NOT_CANONICAL, problem)
    return Verified(typ=typ, kid=key.kid, payload=payload)


def _compact_parts(token: bytes, max_bytes: int) -> list[bytes]:
    """The three dot-separated parts, after the size cap (checked before any decoding)."""
    if len(token) > max_bytes:
        raise _reject(RejectionCode.TOO_LARGE, f"message exceeds {max_bytes} bytes")
    parts = token.strip().split(b".")
    if len(parts) != 3:
        raise _reject(RejectionCode.MALFORMED, "not a JWS compact serialization (3 parts)")
    return parts


def _pinned_key(header: Mapping[str, Any], keys: KeySet) -> PublicKey:
    """The pinned key ``kid`` selects; the header's alg must be the one pinned to it."""
    alg = header["alg"]
    if alg not in ALGORITHMS:
        raise _reject(
            RejectionCode.ALGORITHM_NOT_ALLOWED,
            f"algorithm {alg!r} is not accepted (only {', '.join(ALGORITHMS)})",
        )
    key = keys.keys.get(header["kid"])
    if key is None:
        raise _reject(RejectionCode.UNKNOWN_KEY, f"kid {header['kid']!r} is not a pinned key")
    if alg != key.alg:
        raise _reject(
            RejectionCode.ALGORITHM_NOT_ALLOWED,
            f"key {key.kid} is pinned to {key.alg}, the header says {alg}",
        )
    return key


def _check_validity_window(key: PublicKey, now: int) -> None:
    problem = window_problem(key, now)
    if problem is not None:
        raise _reject(RejectionCode.KEY_NOT_VALID, problem)


def digest(token: bytes) -> str:
    return b64url(hashlib.sha256(token).digest()).decode()
