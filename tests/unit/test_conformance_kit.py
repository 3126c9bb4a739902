"""The conformance kit's own logic, without a broker: each probe breaks exactly what it
claims to, and a wrong answer from a node is reported as a failure that names it."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from eodes_node.conformance import forge, junit, summary, table
from eodes_node.conformance.cases import ACCEPTED, Expect, Probe, first_round, probe, rejected
from eodes_node.conformance.forge import Link
from eodes_node.conformance.verdict import (
    Arrival,
    Outcome,
    feedback_consistency,
    judge,
    resend,
    settled,
)
from eodes_node.core.envelope import open_envelope, seal
from eodes_node.core.jws import KeySet, PrivateKey, PublicKey
from eodes_node.core.messages import Kind, ReceiptEntry, ReceiptStatus, new_message_id
from eodes_node.errors import PeerError, RejectionCode
from eodes_node.samples import SampleFactory

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


@pytest.fixture
def link() -> Link:
    return Link("KR", "CN", PrivateKey.generate("Ed25519"), NOW)


@pytest.fixture
def samples() -> SampleFactory:
    return SampleFactory("KCFTA", exporter="KR", importer="CN", seed=3, issue_date=NOW.date())


def test_each_first_round_probe_earns_its_code_from_the_reference_verifier(
    link: Link, samples: SampleFactory
) -> None:
    expired = PrivateKey.generate("Ed25519")
    pinned = KeySet(
        {
            link.key.kid: link.key.public,
            expired.kid: forge_expired(expired),
        },
        owner="KR",
    )
    round_one = first_round(link, samples, expired)
    assert len({p.name for p in round_one.probes}) == len(round_one.probes)
    for item in round_one.probes:
        code = _refusal(item.token, pinned)
        assert item.expect == (ACCEPTED if code is None else rejected(code)), item.name


def _refusal(token: bytes, pinned: KeySet) -> RejectionCode | None:
    try:
        open_envelope(token, pinned, receiver="CN", now=NOW)
    except PeerError as exc:
        return exc.code
    return None


def forge_expired(key: PrivateKey) -> PublicKey:
    return replace(key.public, expires=int(NOW.timestamp()) - 60)


def _entry(item: Probe, status: str, code: RejectionCode | None, digest: str = "") -> ReceiptEntry:
    return ReceiptEntry(
        message_id=item.message_id,
        kind=Kind(item.kind),
        digest=digest or item.digest,
        status=ReceiptStatus(status),
        code=code,
        text="why" if code else "",
        certificate_number=item.certificate,
    )


@pytest.fixture
def coo_probe(link: Link, samples: SampleFactory) -> Probe:
    message = forge.coo(link, samples.certificate())
    return probe("valid-coo", "accept", "a valid e-CO", message, seal(message, link.key), ACCEPTED)


def test_a_wrong_code_fails_and_names_both(coo_probe: Probe) -> None:
    hostile = replace(coo_probe, expect=rejected(RejectionCode.BAD_SIGNATURE))
    answer = [(b"receipt", _entry(hostile, "rejected", RejectionCode.UNKNOWN_KEY))]
    outcome = judge(hostile, answer, 30)
    assert outcome.status == "fail"
    assert outcome.detail == "code UNKNOWN_KEY, expected BAD_SIGNATURE"


def test_a_receipt_for_other_bytes_fails_and_names_both_digests(coo_probe: Probe) -> None:
    other = "A" * 43
    answer = [(b"receipt", _entry(coo_probe, "accepted", None, digest=other))]
    assert not settled(coo_probe, answer)
    outcome = judge(coo_probe, answer, 30)
    assert outcome.status == "fail"
    assert other in outcome.detail
    assert coo_probe.digest in outcome.detail


def test_silence_fails_with_the_time_waited(coo_probe: Probe) -> None:
    outcome = judge(coo_probe, [], 30)
    assert (outcome.status, outcome.got, outcome.detail) == (
        "fail",
        "no receipt",
        "no receipt entry within 30 s",
    )


def test_a_duplicate_must_get_the_first_receipt_byte_for_byte(coo_probe: Probe) -> None:
    duplicate = replace(coo_probe, expect=Expect("accepted", None, True))
    entry = _entry(duplicate, "accepted", None)
    assert not settled(duplicate, [(b"first", entry)])
    assert judge(duplicate, [(b"first", entry), (b"first", entry)], 30).status == "pass"
    other = judge(duplicate, [(b"first", entry), (b"second", entry)], 30)
    assert other.status == "fail"
    assert "differs from the first copy's receipt bytes" in other.detail


def _arrival(body: bytes, message_id: str) -> Arrival:
    return Arrival(body, message_id, "coo", "application/jose", 2, None)


def test_a_resend_with_new_bytes_or_id_fails() -> None:
    first = _arrival(b"one", "id-1")
    assert resend(first, _arrival(b"one", "id-1"), 60).status == "pass"
    changed = resend(first, _arrival(b"two", "id-1"), 60)
    assert changed.status == "fail"
    assert "bytes differ" in changed.detail
    assert resend(first, None, 60).detail == "no second copy of id-1 within 60 s"


def test_feedback_on_another_message_fails(link: Link, samples: SampleFactory) -> None:
    cert = samples.certificate()
    node = Link("CN", "KR", PrivateKey.generate("Ed25519"), NOW)
    message = forge.feedback(node, samples.feedback(cert), correlation_id=new_message_id())
    token = seal(message, node.key)
    opened = open_envelope(token, KeySet({node.key.kid: node.key.public}, "CN"), receiver="KR",
                           now=NOW)  # fmt: skip
    arrival = Arrival(token, message.message_id, "feedback", "application/jose", 2, opened)
    items = [i.item_number for i in cert.items]
    outcome = feedback_consistency(arrival, "not-our-coo", items, 60)
    assert outcome.status == "fail"
    assert "correlation_id" in outcome.detail
    right = feedback_consistency(arrival, message.correlation_id, items, 60)
    assert right.status == "pass"


def test_the_reports_say_what_failed() -> None:
    outcomes = [
        Outcome("valid-coo", "accept", "t", "accepted", "accepted", "pass"),
        Outcome("wrong-alg", "envelope", "t", "rejected X", "accepted", "fail", "status accepted"),
        Outcome("key-not-valid", "envelope", "t", "-", "-", "skip", "no --expired-key given"),
    ]
    text = table(outcomes)
    assert "wrong-alg" in text
    assert "    status accepted" in text
    assert summary(outcomes, "CN's node") == (
        "conformance of CN's node: 3 cases, 1 passed, 1 failed, 1 skipped"
    )
    suite = ET.fromstring(junit(outcomes, "CN's node", 1.5)).find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "1")
    failure = suite.find("testcase[@name='wrong-alg']/failure")
    assert failure is not None
    assert failure.get("message") == "expected rejected X, got accepted"
