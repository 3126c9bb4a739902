"""Signing keys and pinned key sets: Ed25519/ES256 keys, JWKs (RFC 7517/7638), JWK Sets.

Kept apart from the compact JWS (``jws``) so that key loading, serialization and
thumbprints can be read and changed without the wire-verification rules, and so the
JWS module is only about tokens. base64url lives here because JWKs need it first.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
from collections.abc import Mapping
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

from eodes_node.core.canonical import DuplicateMember, loads_strict
from eodes_node.errors import ConfigError, RejectionCode, VerificationError

Algorithm = Literal["Ed25519", "ES256"]
ALGORITHMS: tuple[Algorithm, ...] = ("Ed25519", "ES256")
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
