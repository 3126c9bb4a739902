"""The committed protocol test vectors (docs/vectors) are what the node really produces.

A partner compares its own bytes with these files, so each must be exactly what our
records door signs and our inbound planner answers, must verify with our own verifier,
and must stop verifying when a single byte changes.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest
from joserfc import jws as oracle
from joserfc.jwk import OKPKey
from nacl.signing import VerifyKey

from eodes_node import vectors
from eodes_node.core import records as core_records
from eodes_node.core.envelope import open_envelope
from eodes_node.core.jws import KeySet, b64url_decode_strict, digest
from eodes_node.core.messages import Kind, Receipt, ReceiptStatus
from eodes_node.core.plan import EnvelopeLimits, Handoff, Identity, RetryPolicy, ToPartner
from eodes_node.core.plan import inbound as inbound_plan
from eodes_node.core.plan import records as records_plan
from eodes_node.core.work import Delivery, Facts
from eodes_node.errors import PeerError

VECTORS = Path(__file__).resolve().parents[2] / "docs" / "vectors"
# RFC 8032 section 7.1: the public keys of TEST 1 and TEST 2, as printed there.
RFC8032_PUBLIC = {
    "kr": "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
    "cn": "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
}
# RFC 8037 appendix A.3: the thumbprint of the TEST 1 key.
RFC8037_TEST1_KID = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def committed(name: str) -> bytes:
    return (VECTORS / name).read_bytes()


def manifest() -> dict[str, Any]:
    value = orjson.loads(committed(vectors.MANIFEST_FILE))
    assert isinstance(value, dict)
    return value


def pinned_from_file(name: str, owner: str) -> KeySet:
    return KeySet.from_jwks(committed(name), owner=owner)


def test_every_file_is_rebuilt_byte_for_byte_from_the_committed_record() -> None:
    expected = vectors.files(vectors.build(vectors.read_record(VECTORS / vectors.RECORD_FILE)))
    for name, content in expected.items():
        assert committed(name) == content, f"docs/vectors/{name} differs from a rebuild"
    assert sorted(p.name for p in VECTORS.iterdir()) == sorted([*expected, "README.md"])


def test_the_records_door_signs_exactly_the_committed_envelope(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """KR's real records planner, given the committed record at the pinned time and id."""
    monkeypatch.setattr(core_records, "new_message_id", lambda: vectors.COO_MESSAGE_ID)
    identity = Identity(
        own="KR",
        partner="CN",
        key=vectors.kr_key(),
        partner_keys=vectors.pinned(vectors.cn_key(), "CN"),
    )
    delivery = Delivery(committed(vectors.RECORD_FILE), None, "coo", {}, False)
    prepared = records_plan.prepare([delivery], identity, vectors.ISSUED_AT, 512 * 1024)
    plan = records_plan.plan(prepared, Facts(), identity, vectors.ISSUED_AT, RetryPolicy())
    (sent,) = [e for e in plan.effects if isinstance(e, ToPartner)]
    assert sent.token == committed(vectors.COO_ENVELOPE_FILE)
    assert (sent.message_id, sent.kind) == (vectors.COO_MESSAGE_ID, "coo")


def test_the_inbound_planner_answers_with_exactly_the_committed_receipt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """CN's real inbound planner, given the committed envelope at the pinned time and id."""
    monkeypatch.setattr(inbound_plan, "new_message_id", lambda: vectors.RECEIPT_MESSAGE_ID)
    identity = Identity(
        own="CN",
        partner="KR",
        key=vectors.cn_key(),
        partner_keys=pinned_from_file("kr.jwks.json", "KR"),
    )
    envelope = committed(vectors.COO_ENVELOPE_FILE)
    delivery = Delivery(envelope, vectors.COO_MESSAGE_ID, "coo", {}, False)
    opening = inbound_plan.prepare([delivery], identity, vectors.RECEIVED_AT, EnvelopeLimits())
    plan = inbound_plan.plan(opening, Facts(), identity, vectors.RECEIVED_AT)
    (answer,) = [e for e in plan.effects if isinstance(e, ToPartner)]
    assert answer.token == committed(vectors.RECEIPT_ENVELOPE_FILE)
    (handoff,) = [e for e in plan.effects if isinstance(e, Handoff)]
    assert handoff.payload == committed(vectors.COO_PAYLOAD_FILE)
    assert handoff.headers["x-eodes-digest"] == manifest()["coo"]["digest"]


def test_the_committed_envelope_verifies_and_carries_the_committed_payload() -> None:
    envelope = committed(vectors.COO_ENVELOPE_FILE)
    opened = open_envelope(
        envelope, pinned_from_file("kr.jwks.json", "KR"), receiver="CN", now=vectors.RECEIVED_AT
    )
    facts = manifest()["coo"]
    assert opened.kind is Kind.COO
    assert opened.payload == committed(vectors.COO_PAYLOAD_FILE)
    assert opened.message.message_id == facts["message_id"] == vectors.COO_MESSAGE_ID
    assert opened.kid == manifest()["keys"]["KR"]["kid"]
    assert opened.digest == digest(envelope) == facts["digest"]
    header = b64url_decode_strict(envelope.split(b".")[0], "header")
    assert header.decode() == facts["protected_header"]
    # The payload is the record as submitted, in its canonical form.
    payload = orjson.loads(opened.payload)
    assert payload["certificate"] == vectors.read_record(VECTORS / vectors.RECORD_FILE)


def test_the_committed_receipt_verifies_and_accepts_the_envelope() -> None:
    receipt_envelope = committed(vectors.RECEIPT_ENVELOPE_FILE)
    opened = open_envelope(
        receipt_envelope,
        pinned_from_file("cn.jwks.json", "CN"),
        receiver="KR",
        now=vectors.RECEIVED_AT,
        kinds=[Kind.RECEIPT],
    )
    assert opened.payload == committed(vectors.RECEIPT_PAYLOAD_FILE)
    receipt = opened.message
    assert isinstance(receipt, Receipt)
    (entry,) = receipt.entries
    assert entry.status is ReceiptStatus.ACCEPTED
    assert entry.message_id == vectors.COO_MESSAGE_ID
    assert entry.digest == digest(committed(vectors.COO_ENVELOPE_FILE))
    assert digest(receipt_envelope) == manifest()["receipt"]["digest"]


def test_the_keys_are_the_published_rfc8032_test_keys() -> None:
    for side, secret in (("kr", vectors.KR_SECRET), ("cn", vectors.CN_SECRET)):
        private = orjson.loads(committed(f"{side}.private.jwk.json"))
        assert b64url_decode_strict(private["d"].encode(), "d") == secret
        public = b64url_decode_strict(private["x"].encode(), "x")
        assert public.hex() == RFC8032_PUBLIC[side]
        (pinned_key,) = orjson.loads(committed(f"{side}.jwks.json"))["keys"]
        assert pinned_key == {k: v for k, v in private.items() if k != "d"}
    assert manifest()["keys"]["KR"]["kid"] == RFC8037_TEST1_KID


@pytest.mark.parametrize(
    ("envelope", "jwks"),
    [(vectors.COO_ENVELOPE_FILE, "kr.jwks.json"), (vectors.RECEIPT_ENVELOPE_FILE, "cn.jwks.json")],
)
def test_a_plain_ed25519_library_verifies_the_committed_signatures(
    envelope: str, jwks: str
) -> None:
    """What a partner without an RFC 9864 JOSE library does: Ed25519 over the ASCII of
    BASE64URL(header) "." BASE64URL(payload)."""
    header, payload, signature = committed(envelope).split(b".")
    (key,) = orjson.loads(committed(jwks))["keys"]
    verify_key = VerifyKey(b64url_decode_strict(key["x"].encode(), "x"))
    verify_key.verify(header + b"." + payload, b64url_decode_strict(signature, "signature"))


@pytest.mark.parametrize(
    ("side", "payload", "typ", "envelope"),
    [
        ("kr", vectors.COO_PAYLOAD_FILE, Kind.COO.typ, vectors.COO_ENVELOPE_FILE),
        ("cn", vectors.RECEIPT_PAYLOAD_FILE, Kind.RECEIPT.typ, vectors.RECEIPT_ENVELOPE_FILE),
    ],
)
def test_an_independent_jose_library_signs_the_same_bytes(
    side: str, payload: str, typ: str, envelope: str
) -> None:
    """joserfc, from the private JWK and the payload file alone, reproduces each envelope."""
    private = orjson.loads(committed(f"{side}.private.jwk.json"))
    header = {"alg": "Ed25519", "kid": private["kid"], "typ": typ}
    token = oracle.serialize_compact(
        header, committed(payload), OKPKey.import_key(private), algorithms=["Ed25519"]
    )
    assert token.encode() == committed(envelope)


@pytest.mark.parametrize(
    ("envelope", "jwks", "owner", "receiver"),
    [
        (vectors.COO_ENVELOPE_FILE, "kr.jwks.json", "KR", "CN"),
        (vectors.RECEIPT_ENVELOPE_FILE, "cn.jwks.json", "CN", "KR"),
    ],
)
def test_any_single_changed_byte_of_a_committed_envelope_is_refused(
    envelope: str, jwks: str, owner: str, receiver: str
) -> None:
    token, keys = committed(envelope), pinned_from_file(jwks, owner)
    for at in range(len(token)):
        replacement = b"B" if token[at : at + 1] == b"A" else b"A"
        tampered = token[:at] + replacement + token[at + 1 :]
        with pytest.raises(PeerError):
            open_envelope(tampered, keys, receiver=receiver, now=vectors.RECEIVED_AT)


def test_check_names_a_file_that_differs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "vectors"
    shutil.copytree(VECTORS, copy)
    assert vectors.main(["--check", str(copy)]) == 0
    envelope = copy / vectors.COO_ENVELOPE_FILE
    token = envelope.read_bytes()
    envelope.write_bytes(token[:-1] + (b"A" if token[-1:] != b"A" else b"B"))
    assert vectors.main(["--check", str(copy)]) == 1
    assert f"{vectors.COO_ENVELOPE_FILE}: differs from a rebuild" in capsys.readouterr().err


def test_the_generator_writes_the_committed_files_from_the_committed_record(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    assert vectors.main(["--record", str(VECTORS / vectors.RECORD_FILE), str(out)]) == 0
    for path in out.iterdir():
        assert path.read_bytes() == committed(path.name), path.name


def test_the_default_sample_makes_vectors_the_receiver_accepts() -> None:
    """Without --record the generator draws its sample; the committed record came from it."""
    built = vectors.build(vectors.sample_record())
    receipt = orjson.loads(built.receipt_payload)
    assert [e["status"] for e in receipt["entries"]] == ["accepted"]


def test_a_record_that_is_not_an_object_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    record = tmp_path / "record.json"
    record.write_bytes(b"[1, 2]")
    assert vectors.main(["--record", str(record), str(tmp_path / "out")]) == 2
    assert "an e-CO record is a JSON object" in capsys.readouterr().err
