"""Signed envelopes: round trips, the joserfc oracle, and every JOSE pitfall refused."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from joserfc import jws as oracle
from joserfc.jwk import ECKey, OKPKey

from eodes_node.core.envelope import open_envelope, payload_bytes, seal
from eodes_node.core.jws import KeySet, PrivateKey, b64url, sign_compact
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
        ({"crit": ["exp"], "exp": 1}, "crit"),
        ({"zip": "DEF"}, "zip"),
        ({"b64": False}, "b64"),
        ({"cty": "json"}, "cty"),
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
