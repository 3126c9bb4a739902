"""Signed envelopes: round trips, the joserfc oracle, and every JOSE pitfall refused."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from joserfc import jws as oracle
from joserfc.jwk import ECKey, OKPKey

from eodes_node.core.envelope import open_envelope, payload_bytes, seal
from eodes_node.core.jws import (
    KeySet,
    PrivateKey,
    Verified,
    b64url,
    sign_compact,
    thumbprint,
    verify_compact,
)
from eodes_node.core.messages import CooIssued, Kind, MessageBase, new_message_id
from eodes_node.errors import ConfigError, PeerError, RejectionCode
from eodes_node.samples import SampleFactory

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def coo(
    factory: SampleFactory, *, sender: str = "KR", receiver: str = "CN", issued_at: datetime = NOW
) -> CooIssued:
    return CooIssued(
        message_id=new_message_id(),
        sender=sender,
        receiver=receiver,
        issued_at=issued_at,
        certificate=factory.certificate(),
    )


def open_at_cn(token: bytes, keys: KeySet, **kw: object) -> MessageBase:
    return open_envelope(token, keys, receiver="CN", now=NOW, **kw).message  # type: ignore[arg-type]


def rejected(token: bytes, keys: KeySet, code: RejectionCode, **kw: object) -> str:
    with pytest.raises(PeerError) as caught:
        open_at_cn(token, keys, **kw)
    assert caught.value.code is code, caught.value
    return caught.value.reason


def forge(header: Mapping[str, object], payload: bytes, sign: bytes = b"\0" * 64) -> bytes:
    h = b64url(json.dumps(header).encode())
    return h + b"." + b64url(payload) + b"." + b64url(sign)


def resign(key: PrivateKey, header: Mapping[str, object], payload: bytes) -> bytes:
    h = b64url(json.dumps(header).encode())
    signing_input = h + b"." + b64url(payload)
    return signing_input + b"." + b64url(key.sign(signing_input))


def test_round_trip(factory: SampleFactory, kr_key: PrivateKey, kr_keys: KeySet) -> None:
    message = coo(factory)
    assert open_at_cn(seal(message, kr_key), kr_keys) == message


def _oracle_key(key: PrivateKey) -> OKPKey | ECKey:
    pem = key.to_pem()
    return OKPKey.import_key(pem) if key.alg == "Ed25519" else ECKey.import_key(pem)


def test_oracle_verifies_what_we_sign(factory: SampleFactory, kr_key: PrivateKey) -> None:
    message = coo(factory)
    token = seal(message, kr_key)
    public = _oracle_key(kr_key).as_dict(private=False)
    key = OKPKey.import_key(public) if kr_key.alg == "Ed25519" else ECKey.import_key(public)
    result = oracle.deserialize_compact(token, key, algorithms=[kr_key.alg])
    assert result.headers() == {"alg": kr_key.alg, "kid": kr_key.kid, "typ": "eodes-coo+jws"}
    assert result.payload == payload_bytes(message)


def test_we_verify_what_the_oracle_signs(
    factory: SampleFactory, kr_key: PrivateKey, kr_keys: KeySet
) -> None:
    message = coo(factory)
    header = {"alg": kr_key.alg, "kid": kr_key.kid, "typ": Kind.COO.typ}
    token = oracle.serialize_compact(
        header, payload_bytes(message), _oracle_key(kr_key), algorithms=[kr_key.alg]
    )
    assert open_at_cn(token.encode(), kr_keys) == message


def test_kid_is_the_rfc7638_thumbprint(kr_key: PrivateKey) -> None:
    assert kr_key.kid == _oracle_key(kr_key).thumbprint()
    jwks = KeySet({kr_key.kid: kr_key.public}).to_jwks()
    jwks["keys"][0]["kid"] = "chosen-by-attacker"
    with pytest.raises(ConfigError, match="thumbprint"):
        KeySet.from_jwks(json.dumps(jwks).encode())


# --- the pitfalls of reliability.md --------------------------------------------------


def test_alg_none_is_refused(factory: SampleFactory, kr_key: PrivateKey, kr_keys: KeySet) -> None:
    token = forge(
        {"alg": "none", "kid": kr_key.kid, "typ": Kind.COO.typ}, payload_bytes(coo(factory)), b""
    )
    rejected(token, kr_keys, RejectionCode.ALGORITHM_NOT_ALLOWED)


def test_hmac_with_the_public_key_as_secret_is_refused(
    factory: SampleFactory, kr_key: PrivateKey, kr_keys: KeySet
) -> None:
    header = {"alg": "HS256", "kid": kr_key.kid, "typ": Kind.COO.typ}
    h = b64url(json.dumps(header).encode())
    signing_input = h + b"." + b64url(payload_bytes(coo(factory)))
    secret = json.dumps(kr_key.public.jwk()).encode()
    mac = hmac.new(secret, signing_input, hashlib.sha256).digest()
    rejected(signing_input + b"." + b64url(mac), kr_keys, RejectionCode.ALGORITHM_NOT_ALLOWED)


def test_algorithm_comes_from_the_pinned_key(factory: SampleFactory) -> None:
    ed = PrivateKey.generate("Ed25519")
    keys = KeySet({ed.kid: ed.public}, "KR")
    token = forge({"alg": "ES256", "kid": ed.kid, "typ": Kind.COO.typ}, payload_bytes(coo(factory)))
    assert "pinned to Ed25519" in rejected(token, keys, RejectionCode.ALGORITHM_NOT_ALLOWED)


@pytest.mark.parametrize("member", ["jwk", "jku", "x5u", "x5c", "x5t"])
def test_keys_are_never_taken_from_the_header(
    factory: SampleFactory, member: str, kr_keys: KeySet
) -> None:
    attacker = PrivateKey.generate("Ed25519")
    header = {
        "alg": "Ed25519",
        "kid": attacker.kid,
        "typ": Kind.COO.typ,
        member: attacker.public.jwk() if member == "jwk" else "https://evil.example/k",
    }
    token = resign(attacker, header, payload_bytes(coo(factory)))
    rejected(token, kr_keys, RejectionCode.HEADER_NOT_ALLOWED)


def test_unknown_kid_is_refused(factory: SampleFactory, kr_keys: KeySet) -> None:
    attacker = PrivateKey.generate("Ed25519")
    token = seal(coo(factory), attacker)
    rejected(token, kr_keys, RejectionCode.UNKNOWN_KEY)


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ({"crit": ["exp"], "exp": 1}, "unsupported critical header (crit)"),
        ({"zip": "DEF"}, "compressed payloads (zip) are refused"),
        ({"b64": False}, "unknown header parameter(s): b64"),
        ({"cty": "json", "b64": True}, "unknown header parameter(s): b64, cty"),
        # A key-bearing member is named first, whatever else the header holds.
        ({"crit": ["x5t"], "x5t": "AAAA", "zip": "DEF"}, "never taken from the header (x5t)"),
    ],
)
def test_header_extensions_are_refused(
    factory: SampleFactory,
    kr_key: PrivateKey,
    kr_keys: KeySet,
    extra: dict[str, object],
    words: str,
) -> None:
    header = {"alg": kr_key.alg, "kid": kr_key.kid, "typ": Kind.COO.typ, **extra}
    token = resign(kr_key, header, payload_bytes(coo(factory)))
    assert words in rejected(token, kr_keys, RejectionCode.HEADER_NOT_ALLOWED)


def test_es256_der_signature_is_refused(factory: SampleFactory) -> None:
    key = PrivateKey.generate("ES256")
    keys = KeySet({key.kid: key.public}, "KR")
    header = b64url(json.dumps({"alg": "ES256", "kid": key.kid, "typ": Kind.COO.typ}).encode())
    signing_input = header + b"." + b64url(payload_bytes(coo(factory)))
    assert isinstance(key.key, ec.EllipticCurvePrivateKey)
    der = key.key.sign(signing_input, ec.ECDSA(hashes.SHA256()))
    rejected(signing_input + b"." + b64url(der), keys, RejectionCode.BAD_SIGNATURE)


def test_size_is_capped_before_decoding(kr_keys: KeySet) -> None:
    huge = b"!" * 2000  # not even base64: the cap must fire first
    assert "exceeds" in rejected(huge, kr_keys, RejectionCode.TOO_LARGE, max_bytes=1000)


def test_duplicate_member_names_are_refused(
    factory: SampleFactory, kr_key: PrivateKey, kr_keys: KeySet
) -> None:
    h = b'{"alg":"%s","kid":"%s","typ":"%s","typ":"%s"}' % (
        kr_key.alg.encode(),
        kr_key.kid.encode(),
        Kind.COO.typ.encode(),
        Kind.COO.typ.encode(),
    )
    signing_input = b64url(h) + b"." + b64url(payload_bytes(coo(factory)))
    token = signing_input + b"." + b64url(kr_key.sign(signing_input))
    assert "duplicate" in rejected(token, kr_keys, RejectionCode.MALFORMED)

    payload = payload_bytes(coo(factory))
    doubled = payload[:-1] + b',"sender":"KR"}'
    token = sign_compact(doubled, Kind.COO.typ, kr_key)
    assert "duplicate member name 'sender'" in rejected(token, kr_keys, RejectionCode.NOT_CANONICAL)


def test_non_canonical_payload_is_refused(
    factory: SampleFactory, kr_key: PrivateKey, kr_keys: KeySet
) -> None:
    pretty = json.dumps(json.loads(payload_bytes(coo(factory))), indent=1).encode()
    rejected(sign_compact(pretty, Kind.COO.typ, kr_key), kr_keys, RejectionCode.NOT_CANONICAL)


def test_each_kind_has_its_own_typ(
    factory: SampleFactory, kr_key: PrivateKey, kr_keys: KeySet
) -> None:
    token = sign_compact(payload_bytes(coo(factory)), Kind.FEEDBACK.typ, kr_key)
    rejected(token, kr_keys, RejectionCode.TYPE_MISMATCH)
    rejected(seal(coo(factory), kr_key), kr_keys, RejectionCode.TYPE_MISMATCH, kinds=[Kind.RECEIPT])


def test_sender_must_own_the_key(factory: SampleFactory, kr_key: PrivateKey) -> None:
    keys = KeySet({kr_key.kid: kr_key.public}, owner="KR")
    token = seal(coo(factory, sender="SG"), kr_key)
    rejected(token, keys, RejectionCode.WRONG_SENDER)


def test_receiver_must_be_this_node(
    factory: SampleFactory, kr_key: PrivateKey, kr_keys: KeySet
) -> None:
    rejected(seal(coo(factory, receiver="JP"), kr_key), kr_keys, RejectionCode.WRONG_RECEIVER)


def test_clock_skew_and_age_are_bounded(
    factory: SampleFactory, kr_key: PrivateKey, kr_keys: KeySet
) -> None:
    future = seal(coo(factory, issued_at=NOW + timedelta(minutes=10)), kr_key)
    rejected(future, kr_keys, RejectionCode.CLOCK_SKEW)
    ancient = seal(coo(factory, issued_at=NOW - timedelta(days=30)), kr_key)
    rejected(ancient, kr_keys, RejectionCode.CLOCK_SKEW)


def test_expired_or_revoked_key_is_refused(factory: SampleFactory) -> None:
    key = PrivateKey.generate("Ed25519")
    jwk = key.public.jwk() | {"exp": int((NOW - timedelta(hours=1)).timestamp())}
    keys = KeySet.from_jwks(json.dumps({"keys": [jwk]}).encode(), owner="KR")
    rejected(seal(coo(factory), key), keys, RejectionCode.KEY_NOT_VALID)


def test_rollover_overlap_accepts_old_and_new_keys(factory: SampleFactory) -> None:
    old, new = PrivateKey.generate("Ed25519"), PrivateKey.generate("ES256")
    keys = KeySet({old.kid: old.public, new.kid: new.public}, "KR")
    for key in (old, new):
        assert open_at_cn(seal(coo(factory), key), keys).sender == "KR"


def test_non_canonical_base64_is_refused(
    factory: SampleFactory, kr_key: PrivateKey, kr_keys: KeySet
) -> None:
    token = seal(coo(factory), kr_key)
    head, payload, sig = token.split(b".")
    assert len(sig) == 86  # 64 bytes: base64url needs "==" padding, which JWS omits
    padded = sig + b"=="
    wrong_alphabet = b"+" + sig[1:]
    # The last character carries 4 data bits and 2 zero bits; set one of the zero bits.
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(sig[-1:])
    trailing_bits = sig[:-1] + alphabet[last ^ 1 : (last ^ 1) + 1]
    for bad in (padded, wrong_alphabet, trailing_bits):
        rejected(head + b"." + payload + b"." + bad, kr_keys, RejectionCode.MALFORMED)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_change_to_the_envelope_bytes_is_rejected(data: st.DataObject) -> None:
    key = PrivateKey.generate(data.draw(st.sampled_from(["Ed25519", "ES256"])))
    keys = KeySet({key.kid: key.public}, "KR")
    factory = SampleFactory("KCFTA", seed=data.draw(st.integers(0, 10**6)), issue_date=NOW.date())
    token = bytearray(seal(coo(factory), key))
    position = data.draw(st.integers(0, len(token) - 1))
    replacement = data.draw(st.integers(0, 255).filter(lambda b: b != token[position]))
    token[position] = replacement
    with pytest.raises(PeerError):
        open_at_cn(bytes(token), keys)


# --- the protected header --------------------------------------------------------------


def forge_raw(header: bytes, payload: bytes, sign: bytes = b"\0" * 64) -> bytes:
    return b64url(header) + b"." + b64url(payload) + b"." + b64url(sign)


@pytest.mark.parametrize(
    ("header", "words"),
    [
        (b'["alg","kid","typ"]', "not a JSON object"),
        (b'{"alg":"Ed25519",', "not JSON"),
        (b'{"alg":"Ed25519","kid":7,"typ":"eodes-coo+jws"}', "needs a string 'kid'"),
        (b'{"alg":"Ed25519","kid":"k"}', "needs a string 'typ'"),
        (b'{"alg":null,"kid":"k","typ":"eodes-coo+jws"}', "needs a string 'alg'"),
    ],
)
def test_header_must_be_an_object_of_strings(
    factory: SampleFactory, kr_keys: KeySet, header: bytes, words: str
) -> None:
    token = forge_raw(header, payload_bytes(coo(factory)))
    assert words in rejected(token, kr_keys, RejectionCode.MALFORMED)


def test_header_size_is_capped_before_decoding(kr_keys: KeySet) -> None:
    token = b"!" * 1100 + b"." + b64url(b"{}") + b"." + b64url(b"\0" * 64)
    reason = rejected(token, kr_keys, RejectionCode.TOO_LARGE)
    assert reason == "protected header is too large"


def test_header_and_payload_must_be_canonical_base64url(
    factory: SampleFactory, kr_key: PrivateKey, kr_keys: KeySet
) -> None:
    head, payload, sig = seal(coo(factory), kr_key).split(b".")
    assert "protected header is not base64url" in rejected(
        head + b"=." + payload + b"." + sig, kr_keys, RejectionCode.MALFORMED
    )
    # A correctly signed payload part that decodes, but not from its canonical encoding.
    json_text = b'{"a":"bc"}'  # 10 bytes: the last of 14 characters has 4 spare bits
    encoded = b64url(json_text)
    assert len(encoded) == 14
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(encoded[-1:])
    sloppy = encoded[:-1] + alphabet[last ^ 1 : (last ^ 1) + 1]
    signing_input = head + b"." + sloppy
    token = signing_input + b"." + b64url(kr_key.sign(signing_input))
    reason = rejected(token, kr_keys, RejectionCode.MALFORMED)
    assert reason == "payload is not canonical base64url"


def test_token_must_have_three_parts(kr_keys: KeySet) -> None:
    for token in (b"a.b", b"a.b.c.d", b""):
        assert "3 parts" in rejected(token, kr_keys, RejectionCode.MALFORMED)


def test_checks_run_in_protocol_order(
    factory: SampleFactory, kr_key: PrivateKey, kr_keys: KeySet
) -> None:
    """Which code a partner gets when several things are wrong is part of the protocol:
    algorithm before key, key before typ, typ before signature."""
    payload = payload_bytes(coo(factory))
    stranger = PrivateKey.generate("Ed25519").kid
    # An unacceptable algorithm and an unknown kid: the algorithm is named.
    token = forge({"alg": "RS256", "kid": stranger, "typ": "x"}, payload)
    rejected(token, kr_keys, RejectionCode.ALGORITHM_NOT_ALLOWED)
    # An unknown kid, a foreign typ and no valid signature: the key is named.
    token = forge({"alg": kr_key.alg, "kid": stranger, "typ": "x"}, payload)
    rejected(token, kr_keys, RejectionCode.UNKNOWN_KEY)
    # A pinned key, a foreign typ and no valid signature: the typ is named.
    token = forge({"alg": kr_key.alg, "kid": kr_key.kid, "typ": "x"}, payload)
    rejected(token, kr_keys, RejectionCode.TYPE_MISMATCH)


@pytest.mark.parametrize("length", [0, 63, 65])
def test_signature_of_the_wrong_length_is_refused(
    factory: SampleFactory, kr_key: PrivateKey, kr_keys: KeySet, length: int
) -> None:
    head, payload, _ = seal(coo(factory), kr_key).split(b".")
    signature = kr_key.sign(head + b"." + payload)
    forged = (signature * 2)[:length]
    token = head + b"." + payload + b"." + b64url(forged)
    assert rejected(token, kr_keys, RejectionCode.BAD_SIGNATURE) == "signature does not verify"


# --- key validity windows ---------------------------------------------------------------


def _window_keys(key: PrivateKey, **window: int) -> KeySet:
    jwk = key.public.jwk() | window
    return KeySet.from_jwks(json.dumps({"keys": [jwk]}).encode(), owner="KR")


def test_key_not_yet_valid_is_refused(factory: SampleFactory, kr_key: PrivateKey) -> None:
    keys = _window_keys(kr_key, nbf=int((NOW + timedelta(hours=1)).timestamp()))
    reason = rejected(seal(coo(factory), kr_key), keys, RejectionCode.KEY_NOT_VALID)
    assert reason == f"key {kr_key.kid} is not valid yet"


def test_key_is_valid_from_nbf_until_just_before_exp(
    factory: SampleFactory, kr_key: PrivateKey
) -> None:
    now = int(NOW.timestamp())
    token = seal(coo(factory), kr_key)
    assert open_at_cn(token, _window_keys(kr_key, nbf=now, exp=now + 1)).sender == "KR"
    assert "expired" in rejected(
        token, _window_keys(kr_key, nbf=now - 10, exp=now), RejectionCode.KEY_NOT_VALID
    )


def test_an_unsigned_message_learns_nothing_about_key_validity(
    factory: SampleFactory, kr_key: PrivateKey
) -> None:
    """The signature is checked before the key's validity window."""
    keys = _window_keys(kr_key, exp=int((NOW - timedelta(days=1)).timestamp()))
    head, payload, _ = seal(coo(factory), kr_key).split(b".")
    token = head + b"." + payload + b"." + b64url(b"\0" * 64)
    rejected(token, keys, RejectionCode.BAD_SIGNATURE)


def test_verify_compact_without_expectations_checks_signature_and_canonical_form(
    factory: SampleFactory, kr_key: PrivateKey, kr_keys: KeySet
) -> None:
    """Without ``typs`` any typ passes and without ``now`` no validity window applies."""
    payload = payload_bytes(coo(factory))
    expired = _window_keys(kr_key, exp=1)
    token = sign_compact(payload, "anything+jws", kr_key)
    verified = verify_compact(b"  " + token + b"\n", expired)
    assert verified == Verified(typ="anything+jws", kid=kr_key.kid, payload=payload)
    with pytest.raises(PeerError) as caught:
        verify_compact(token, expired, now=int(NOW.timestamp()))
    assert caught.value.code is RejectionCode.KEY_NOT_VALID


# --- JWK Sets and key files -------------------------------------------------------------


def test_jwks_round_trip_keeps_the_validity_window(kr_key: PrivateKey) -> None:
    jwks = {"keys": [kr_key.public.jwk() | {"nbf": 1_700_000_000, "exp": 1_900_000_000}]}
    keys = KeySet.from_jwks(json.dumps(jwks).encode(), owner="KR")
    (key,) = keys.keys.values()
    assert (key.kid, key.alg, key.not_before, key.expires) == (
        kr_key.kid,
        kr_key.alg,
        1_700_000_000,
        1_900_000_000,
    )
    assert keys.to_jwks() == jwks


def _ed25519_jwk() -> dict[str, object]:
    return PrivateKey.generate("Ed25519").public.jwk()


def _es256_jwk() -> dict[str, object]:
    return PrivateKey.generate("ES256").public.jwk()


@pytest.mark.parametrize(
    ("document", "words"),
    [
        (b"{keys", "not valid JSON"),
        (b'{"keys":[],"keys":[]}', "duplicate member name 'keys'"),
        (b"[]", '"keys" array'),
        (b'{"keys":{}}', '"keys" array'),
        (b'{"keys":[]}', "holds no keys"),
        (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
    ],
)
def test_jwks_document_errors_are_named(document: bytes, words: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(words)):
        KeySet.from_jwks(document)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda j: j | {"d": j["x"]}, "must not contain private key material"),
        (lambda j: {k: v for k, v in j.items() if k != "alg"}, "must name its algorithm"),
        (lambda j: j | {"alg": "RS256"}, "alg must be Ed25519 or ES256, got 'RS256'"),
        (lambda j: j | {"alg": "ES256"}, "key type OKP/Ed25519 does not match alg ES256"),
        (lambda j: {k: v for k, v in j.items() if k != "x"}, "invalid Ed25519 public key"),
        (lambda j: j | {"x": j["x"] + "="}, "x is not base64url"),
        (lambda j: j | {"x": j["x"][:-2]}, "invalid Ed25519 public key"),
        (lambda j: j | {"nbf": "2026-01-01"}, "nbf must be an integer NumericDate"),
        (lambda j: j | {"exp": True}, "exp must be an integer NumericDate"),
    ],
)
def test_bad_ed25519_jwk_is_refused(change: Callable[[dict[str, Any]], Any], words: str) -> None:
    jwks = {"keys": [change(_ed25519_jwk())]}
    with pytest.raises(ConfigError, match=re.escape(words)):
        KeySet.from_jwks(json.dumps(jwks).encode())


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda j: j | {"crv": "P-384"}, "key type EC/P-384 does not match alg ES256"),
        (lambda j: j | {"alg": "Ed25519"}, "key type EC/P-256 does not match alg Ed25519"),
        (lambda j: {k: v for k, v in j.items() if k != "y"}, "invalid ES256 public key"),
        # y of the point (x, y) replaced by x: not on the curve.
        (lambda j: j | {"y": j["x"]}, "invalid ES256 public key"),
    ],
)
def test_bad_es256_jwk_is_refused(change: Callable[[dict[str, Any]], Any], words: str) -> None:
    jwks = {"keys": [change(_es256_jwk())]}
    with pytest.raises(ConfigError, match=re.escape(words)):
        KeySet.from_jwks(json.dumps(jwks).encode())


def test_thumbprint_names_unsupported_key_types() -> None:
    with pytest.raises(ConfigError, match="unsupported key type 'RSA'"):
        thumbprint({"kty": "RSA", "n": "AQAB", "e": "AQAB"})


def test_private_key_pem_round_trip(kr_key: PrivateKey) -> None:
    again = PrivateKey.from_pem(kr_key.to_pem())
    assert (again.alg, again.kid) == (kr_key.alg, kr_key.kid)
    signing_input = b"header.payload"
    assert kr_key.public.verify(again.sign(signing_input), signing_input)


def test_unreadable_private_key_file_is_a_config_error(kr_key: PrivateKey) -> None:
    with pytest.raises(ConfigError, match="cannot read private key"):
        PrivateKey.from_pem(b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    encrypted = kr_key.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    with pytest.raises(ConfigError, match="cannot read private key"):
        PrivateKey.from_pem(encrypted)


def test_private_key_of_another_curve_is_refused() -> None:
    pem = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(ConfigError, match="private key must be Ed25519 or EC P-256"):
        PrivateKey.from_pem(pem)
