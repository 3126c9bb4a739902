"""Protocol test vectors: fixed keys, one e-CO, KR's envelope for it and CN's receipt.

A partner builds its node from docs/protocol.md; these files let it compare its own
canonical payload, signature, envelope and receipt with ours byte for byte, without
running Python. Every byte is reproducible: the keys are fixed, the ids and clocks are
pinned, and Ed25519 signatures are deterministic. The keys are the published test keys
of RFC 8032 section 7.1 (TEST 1 for KR, TEST 2 for CN): anyone can sign with them, so
they must never serve a real link.

    python -m eodes_node.vectors docs/vectors            # write them (a fresh sample)
    python -m eodes_node.vectors --record docs/vectors/coo-record.json docs/vectors
    python -m eodes_node.vectors --check docs/vectors    # compare with a rebuild

tests/unit/test_protocol_vectors.py proves the committed files are what the node's own
records door and inbound planner produce.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from eodes_node.core.decide import decide_inbound
from eodes_node.core.envelope import open_envelope, payload_bytes, seal
from eodes_node.core.jws import (
    KeySet,
    PrivateKey,
    b64url,
    b64url_decode_strict,
    digest,
    sign_compact,
)
from eodes_node.core.messages import Kind, Receipt, issued_now
from eodes_node.core.records import as_json_dict, compose
from eodes_node.errors import EodesError
from eodes_node.samples import SampleFactory
from eodes_node.topology import Topology

# RFC 8032 section 7.1, TEST 1 and TEST 2: published secret keys, for tests only.
KR_SECRET = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
CN_SECRET = bytes.fromhex("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb")
SENDER, RECEIVER = "KR", "CN"

COO_MESSAGE_ID = "5b0c7f0e-2d0a-4c59-9a43-1f6de8b2c701"
RECEIPT_MESSAGE_ID = "c4e1f2a8-6b3d-4f7e-8a95-0d2b7c9e4f13"
ISSUED_AT = datetime(2026, 3, 2, 9, 30, 0, tzinfo=UTC)  # KR's node signs the e-CO
RECEIVED_AT = datetime(2026, 3, 2, 9, 30, 1, tzinfo=UTC)  # CN's node verifies and answers
SAMPLE_AGREEMENT, SAMPLE_SEED, SAMPLE_ISSUE_DATE = "KCFTA", 4, date(2026, 3, 2)

RECORD_FILE = "coo-record.json"
COO_PAYLOAD_FILE = "coo-payload.json"
COO_ENVELOPE_FILE = "coo-envelope.jws"
RECEIPT_PAYLOAD_FILE = "receipt-payload.json"
RECEIPT_ENVELOPE_FILE = "receipt-envelope.jws"
MANIFEST_FILE = "vectors.json"


def rfc8032_key(secret: bytes) -> PrivateKey:
    """An Ed25519 key from its 32-byte RFC 8032 secret."""
    return PrivateKey("Ed25519", Ed25519PrivateKey.from_private_bytes(secret))


def kr_key() -> PrivateKey:
    return rfc8032_key(KR_SECRET)


def cn_key() -> PrivateKey:
    return rfc8032_key(CN_SECRET)


def pinned(key: PrivateKey, owner: str) -> KeySet:
    """The key as the other side pins it."""
    return KeySet({key.kid: key.public}, owner=owner)


def sample_record() -> dict[str, Any]:
    """A realistic KR -> CN e-CO record from the sample factory, fixed by its seed."""
    factory = SampleFactory(
        SAMPLE_AGREEMENT,
        exporter=SENDER,
        importer=RECEIVER,
        seed=SAMPLE_SEED,
        issue_date=SAMPLE_ISSUE_DATE,
    )
    return as_json_dict(factory.certificate())


@dataclass(frozen=True, slots=True)
class Vectors:
    record: Mapping[str, Any]  # the e-CO record as KR's issuing system submits it
    coo_payload: bytes
    coo_envelope: bytes
    receipt_payload: bytes
    receipt_envelope: bytes


def build(record: Mapping[str, Any]) -> Vectors:
    """KR's node signs the record as its records door does; CN's node verifies the
    envelope, decides on it and answers as its inbound planner does."""
    kr, cn = kr_key(), cn_key()
    composed = compose(
        Kind.COO,
        record,
        sender=SENDER,
        receiver=RECEIVER,
        issued_at=issued_now(ISSUED_AT),
        message_id=COO_MESSAGE_ID,
    )
    envelope = sign_compact(composed.payload, Kind.COO.typ, kr)  # the validated bytes
    opened = open_envelope(envelope, pinned(kr, SENDER), receiver=RECEIVER, now=RECEIVED_AT)
    decision = decide_inbound(opened, prior=None, certificate=None)
    assert decision.entry is not None  # a first e-CO is accepted or refused, never unanswered
    receipt = Receipt(
        message_id=RECEIPT_MESSAGE_ID,
        sender=RECEIVER,
        receiver=SENDER,
        issued_at=issued_now(RECEIVED_AT),
        entries=(decision.entry,),
    )
    return Vectors(record, composed.payload, envelope, payload_bytes(receipt), seal(receipt, cn))


def _pretty(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2) + b"\n"


def private_jwk(key: PrivateKey) -> dict[str, Any]:
    """The public JWK plus ``d``, the 32-byte secret (RFC 8037 section 2)."""
    assert isinstance(key.key, Ed25519PrivateKey)
    secret = key.key.private_bytes_raw()
    jwk = key.public.jwk()
    return {"kty": jwk["kty"], "crv": jwk["crv"], "x": jwk["x"], "d": b64url(secret).decode()} | {
        name: jwk[name] for name in ("kid", "alg", "use")
    }


def _header(token: bytes) -> str:
    return b64url_decode_strict(token.split(b".")[0], "protected header").decode()


def _iso(moment: datetime) -> str:
    return issued_now(moment).isoformat().replace("+00:00", "Z")


def manifest(vectors: Vectors) -> dict[str, Any]:
    """What a reader needs beside the files: the pinned values and the digests."""
    kr, cn = kr_key(), cn_key()
    topology = Topology(own=SENDER, partner=RECEIVER)
    return {
        "warning": "published test keys (RFC 8032 section 7.1); never use them for a real link",
        "keys": {
            SENDER: {
                "role": "sender",
                "rfc8032_test": "TEST 1",
                "kid": kr.kid,
                "private_jwk": "kr.private.jwk.json",
                "jwks": "kr.jwks.json",
            },
            RECEIVER: {
                "role": "receiver",
                "rfc8032_test": "TEST 2",
                "kid": cn.kid,
                "private_jwk": "cn.private.jwk.json",
                "jwks": "cn.jwks.json",
            },
        },
        "coo": {
            "message_id": COO_MESSAGE_ID,
            "issued_at": _iso(ISSUED_AT),
            "record": RECORD_FILE,
            "payload": COO_PAYLOAD_FILE,
            "envelope": COO_ENVELOPE_FILE,
            "protected_header": _header(vectors.coo_envelope),
            "digest": digest(vectors.coo_envelope),
            "amqp": {
                "exchange": topology.inbound_exchange,
                "routing_key": topology.routing_key_at_partner,
                "content_type": "application/jose",
                "delivery_mode": 2,
                "message_id": COO_MESSAGE_ID,
                "type": Kind.COO.value,
                "app_id": "eodes-node",
            },
        },
        "receipt": {
            "message_id": RECEIPT_MESSAGE_ID,
            "issued_at": _iso(RECEIVED_AT),
            "payload": RECEIPT_PAYLOAD_FILE,
            "envelope": RECEIPT_ENVELOPE_FILE,
            "protected_header": _header(vectors.receipt_envelope),
            "digest": digest(vectors.receipt_envelope),
        },
        "verify_at": _iso(RECEIVED_AT),
    }


def files(vectors: Vectors) -> dict[str, bytes]:
    """Every vector file by name. Payloads and envelopes are the exact bytes, with no
    trailing newline; the JSON meant for reading is indented and ends with one."""
    kr, cn = kr_key(), cn_key()
    return {
        "kr.private.jwk.json": _pretty(private_jwk(kr)),
        "kr.jwks.json": _pretty(pinned(kr, SENDER).to_jwks()),
        "cn.private.jwk.json": _pretty(private_jwk(cn)),
        "cn.jwks.json": _pretty(pinned(cn, RECEIVER).to_jwks()),
        RECORD_FILE: _pretty(vectors.record),
        COO_PAYLOAD_FILE: vectors.coo_payload,
        COO_ENVELOPE_FILE: vectors.coo_envelope,
        RECEIPT_PAYLOAD_FILE: vectors.receipt_payload,
        RECEIPT_ENVELOPE_FILE: vectors.receipt_envelope,
        MANIFEST_FILE: _pretty(manifest(vectors)),
    }


def read_record(path: Path) -> dict[str, Any]:
    """An e-CO record from a JSON file, read as the records door reads one."""
    value = orjson.loads(path.read_bytes())
    if not isinstance(value, dict):
        raise ValueError(f"{path}: an e-CO record is a JSON object")
    return value


def differences(directory: Path) -> list[str]:
    """The files in ``directory`` that a rebuild from its own record does not reproduce."""
    expected = files(build(read_record(directory / RECORD_FILE)))
    problems = []
    for name, content in expected.items():
        path = directory / name
        if not path.is_file():
            problems.append(f"{name}: missing")
        elif path.read_bytes() != content:
            problems.append(f"{name}: differs from a rebuild")
    return problems


def write(directory: Path, record: Mapping[str, Any]) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in files(build(record)).items():
        path = directory / name
        path.write_bytes(content)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m eodes_node.vectors",
        description="Write the protocol test vectors, or check them against a rebuild.",
    )
    parser.add_argument("directory", type=Path)
    parser.add_argument("--record", type=Path, help="the e-CO record (default: a fixed sample)")
    parser.add_argument(
        "--check", action="store_true", help="compare the directory with a rebuild; write nothing"
    )
    args = parser.parse_args(argv)
    try:
        if args.check:
            problems = differences(args.directory)
            for problem in problems:
                print(f"{args.directory}/{problem}", file=sys.stderr)
            return 1 if problems else 0
        record = read_record(args.record) if args.record else sample_record()
        for path in write(args.directory, record):
            print(path)
    except (OSError, ValueError, EodesError) as exc:
        print(f"cannot build the vectors: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
