"""JWS compact serialization (RFC 7515) with keys pinned per partner.

The verifier trusts nothing in the protected header except as a lookup: the algorithm
comes from the pinned key, ``kid`` only selects among pinned keys, and any header member
that could bring in keys, compression or critical extensions is refused.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
from collections.abc import Container, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from eodes_node.core.canonical import DuplicateMember, TooDeep, canonical_problem, loads_strict
from eodes_node.core.validity import window_problem
from eodes_node.errors import ConfigError, InvalidMessage, RejectionCode, VerificationError

Algorithm = Literal["Ed25519", "ES256"]
ALGORITHMS: tuple[Algorithm, ...] = ("Ed25519", "ES256")
DEFAULT_MAX_TOKEN_BYTES = 512 * 1024
MAX_HEADER_BYTES = 1024
ALLOWED_HEADER = frozenset({"alg", "kid", "typ"})
_KEY_BEARING = frozenset({"jwk", "jku", "x5u", "x5c", "x5t", "x5t#S256"})
_B64URL = re.compile(rb"[A-Za-z0-9_-]*")


def b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def b64url_decode_strict(part: bytes, what: str) -> bytes:
    if not _B64URL.fullmatch(part) or len(part) % 4 == 1:
        raise VerificationError(RejectionCode.MALFORMED, f"{what} is not base64url")
    data = base64.urlsafe_b64decode(part + b"=" * (-len(part) % 4))
    if b64url(data) != part:
        raise VerificationError(RejectionCode.MALFORMED, f"{what} is not canonical base64url")
    return data


def _int_b64(value: int, size: int) -> str:
    return b64url(value.to_bytes(size, "big")).decode()


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint over the key's required members."""
    if jwk.get("kty") == "OKP":
        members = {"crv": jwk["crv"], "kty": "OKP", "x": jwk["x"]}
    elif jwk.get("kty") == "EC":
        members = {"crv": jwk["crv"], "kty": "EC", "x": jwk["x"], "y": jwk["y"]}
    else:
        raise ConfigError(f"unsupported key type {jwk.get('kty')!r}; use OKP (Ed25519) or EC")
    text = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    return b64url(hashlib.sha256(text).digest()).decode()


PublicKeyType = Ed25519PublicKey | ec.EllipticCurvePublicKey
PrivateKeyType = Ed25519PrivateKey | ec.EllipticCurvePrivateKey


def _public_jwk_members(key: PublicKeyType) -> dict[str, str]:
    if isinstance(key, Ed25519PublicKey):
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw).decode()}
    numbers = key.public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": _int_b64(numbers.x, 32),
        "y": _int_b64(numbers.y, 32),
    }


def _ed25519_verifier(key: Ed25519PublicKey) -> VerifyKey:
    """libsodium verifies Ed25519 in 69 µs where OpenSSL 3 takes 125 µs (4 KB message):
    verification is the largest single cost of a receiving node."""
    return _verifier_of(
        key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )


@functools.lru_cache(maxsize=256)
def _verifier_of(raw: bytes) -> VerifyKey:
    return VerifyKey(raw)


@dataclass(frozen=True, slots=True)
class PublicKey:
    kid: str
    alg: Algorithm
    key: PublicKeyType
    # Optional validity window (NumericDate seconds): rollover overlap and revocation.
    not_before: int | None = None
    expires: int | None = None

    def verify(self, signature: bytes, data: bytes) -> bool:
        try:
            if isinstance(self.key, Ed25519PublicKey):
                if len(signature) != 64:
                    return False
                _ed25519_verifier(self.key).verify(data, signature)
            else:
                if len(signature) != 64:
                    return False
                r = int.from_bytes(signature[:32], "big")
                s = int.from_bytes(signature[32:], "big")
                self.key.verify(encode_dss_signature(r, s), data, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, BadSignatureError):
            return False
        return True

    def jwk(self) -> dict[str, Any]:
        out: dict[str, Any] = {**_public_jwk_members(self.key), "kid": self.kid}
        out.update(alg=self.alg, use="sig")
        if self.not_before is not None:
            out["nbf"] = self.not_before
        if self.expires is not None:
            out["exp"] = self.expires
        return out

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any]) -> PublicKey:
        if "d" in jwk:
            raise ConfigError("a JWK Set of public keys must not contain private key material")
        alg = jwk.get("alg")
        if alg not in ALGORITHMS:
            raise ConfigError(
                f"each pinned key must name its algorithm: alg must be Ed25519 or ES256, "
                f"got {alg!r}"
            )
        kty, crv = jwk.get("kty"), jwk.get("crv")
        try:
            key: PublicKeyType
            if alg == "Ed25519" and kty == "OKP" and crv == "Ed25519":
                key = Ed25519PublicKey.from_public_bytes(
                    b64url_decode_strict(str(jwk["x"]).encode(), "x")
                )
            elif alg == "ES256" and kty == "EC" and crv == "P-256":
                x = int.from_bytes(b64url_decode_strict(str(jwk["x"]).encode(), "x"), "big")
                y = int.from_bytes(b64url_decode_strict(str(jwk["y"]).encode(), "y"), "big")
                key = ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
            else:
                raise ConfigError(f"key type {kty}/{crv} does not match alg {alg}")
        except (KeyError, ValueError, VerificationError) as exc:
            raise ConfigError(f"invalid {alg} public key: {exc}") from None
        kid = thumbprint(jwk)
        if jwk.get("kid", kid) != kid:
            raise ConfigError(f"kid {jwk.get('kid')!r} is not the RFC 7638 thumbprint {kid}")
        not_before, expires = _opt_int(jwk, "nbf"), _opt_int(jwk, "exp")
        if not_before is not None and expires is not None and expires <= not_before:
            raise ConfigError(f"key {kid}: exp ({expires}) must come after nbf ({not_before})")
        return cls(kid, cast(Algorithm, alg), key, not_before, expires)


def _opt_int(jwk: Mapping[str, Any], name: str) -> int | None:
    value = jwk.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"JWK member {name} must be an integer NumericDate")
    return value


@dataclass(frozen=True, slots=True)
class PrivateKey:
    alg: Algorithm
    key: PrivateKeyType
    public: PublicKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        public = self.key.public_key()
        kid = thumbprint(_public_jwk_members(public))
        object.__setattr__(self, "public", PublicKey(kid=kid, alg=self.alg, key=public))

    @property
    def kid(self) -> str:
        return self.public.kid

    def sign(self, data: bytes) -> bytes:
        if isinstance(self.key, Ed25519PrivateKey):
            return self.key.sign(data)
        r, s = decode_dss_signature(self.key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    @classmethod
    def generate(cls, alg: Algorithm = "Ed25519") -> PrivateKey:
        if alg == "Ed25519":
            return cls(alg, Ed25519PrivateKey.generate())
        return cls(alg, ec.generate_private_key(ec.SECP256R1()))

    def to_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @classmethod
    def from_pem(cls, pem: bytes) -> PrivateKey:
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"cannot read private key: {exc}") from None
        if isinstance(key, Ed25519PrivateKey):
            return cls("Ed25519", key)
        if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
            return cls("ES256", key)
        raise ConfigError("private key must be Ed25519 or EC P-256")


@dataclass(frozen=True, slots=True)
class KeySet:
    """The keys pinned for one partner; ``owner`` is the partner's country code."""

    keys: Mapping[str, PublicKey]
    owner: str | None = None

    @classmethod
    def from_jwks(cls, data: bytes, owner: str | None = None) -> KeySet:
        try:
            doc = loads_strict(data)
        except (ValueError, DuplicateMember) as exc:
            raise ConfigError(f"JWK Set is not valid JSON: {exc}") from None
        except RecursionError:  # the standard parser recurses once per level
            raise ConfigError("JWK Set is not valid JSON: nested too deeply") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
            raise ConfigError('a JWK Set is a JSON object with a "keys" array (RFC 7517)')
        if not doc["keys"]:
            raise ConfigError("the JWK Set holds no keys")
        keys = [PublicKey.from_jwk(jwk) for jwk in doc["keys"]]
        return cls({k.kid: k for k in keys}, owner)

    def to_jwks(self) -> dict[str, Any]:
        return {"keys": [k.jwk() for k in self.keys.values()]}


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
