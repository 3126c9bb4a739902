"""The probes the kit sends to the tested node, and the receipt each one must earn.

Two rounds: the first needs nothing from the node; the second builds on certificates the
first one delivered (replacing, cancelling, repeating and conflicting with them).
Pure: keys, samples and the clock come in through ``Link`` and the factory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from eodes_node.conformance import forge
from eodes_node.conformance.forge import Link
from eodes_node.core.envelope import seal
from eodes_node.core.jws import PrivateKey, digest
from eodes_node.core.messages import (
    FeedbackBody,
    Kind,
    MessageBase,
    certificate_number_of,
    new_message_id,
)
from eodes_node.core.models import Certificate
from eodes_node.errors import RejectionCode
from eodes_node.samples import SampleFactory
from eodes_node.samples.answers import feedback_on

Group = Literal["accept", "envelope", "payload", "exchange", "node"]


@dataclass(frozen=True, slots=True)
class Expect:
    """The receipt entry a correct node answers with."""

    status: Literal["accepted", "rejected"]
    code: RejectionCode | None = None
    identical_receipt: bool = False  # a duplicate: the first copy's receipt, byte for byte

    def __str__(self) -> str:
        if self.identical_receipt:
            return "identical receipt"
        return self.status + (f" {self.code}" if self.code else "")


ACCEPTED = Expect("accepted")


def rejected(code: RejectionCode) -> Expect:
    return Expect("rejected", code)


@dataclass(frozen=True, slots=True)
class Probe:
    """One envelope sent to the node, with what its receipt entry must say."""

    name: str
    group: Group
    title: str
    token: bytes
    message_id: str  # the AMQP message_id (the payload's own where it has one)
    kind: str  # the AMQP type
    expect: Expect
    certificate: str | None = None

    @property
    def digest(self) -> str:
        return digest(self.token.strip())


def probe(
    name: str,
    group: Group,
    title: str,
    message: MessageBase,
    token: bytes,
    expect: Expect,
    kind: Kind | None = None,
) -> Probe:
    """A probe for ``message`` as ``token``; AMQP type ``kind`` when it must differ."""
    return Probe(
        name,
        group,
        title,
        token,
        message.message_id,
        (kind or Kind(getattr(message, "kind"))).value,  # noqa: B009 - every message has one
        expect,
        certificate_number_of(message),
    )


@dataclass
class Round:
    """The probes of one round, and the certificates later rounds build on."""

    probes: list[Probe] = field(default_factory=list)
    certificates: dict[str, Certificate] = field(default_factory=dict)
    messages: dict[str, MessageBase] = field(default_factory=dict)

    def add(self, item: Probe) -> None:
        self.probes.append(item)


def first_round(link: Link, samples: SampleFactory, expired: PrivateKey | None) -> Round:
    """Valid certificates to build on, and every refusal that needs no prior state."""
    out = Round()
    key = link.key
    for role in ("kept", "cancelled", "replaced"):
        cert = samples.certificate()
        message = forge.coo(link, cert)
        out.certificates[role], out.messages[role] = cert, message
        out.add(
            probe(
                f"valid-coo-{role}" if role != "kept" else "valid-coo",
                "accept",
                "a valid e-CO is accepted",
                message,
                seal(message, key),
                ACCEPTED,
            )
        )
    for item in _envelope_defects(link, samples, expired):
        out.add(item)
    for item in _payload_defects(link, samples):
        out.add(item)
    return out


def _request(link: Link, **broken: Any) -> MessageBase:
    """A verification request, for defects that must not involve a certificate's rules."""
    return forge.verification_request(link, f"{link.node}2026TEST0000001", **broken)


def _envelope_defects(
    link: Link, samples: SampleFactory, expired: PrivateKey | None
) -> list[Probe]:
    key = link.key
    changed = forge.coo(link, samples.certificate())
    stranger = PrivateKey.generate(key.alg)
    other = "ES256" if key.alg == "Ed25519" else "Ed25519"
    msg = {name: _request(link) for name in ("kid", "alg", "hmac", "none", "jwk", "pad", "typ")}
    probes = [
        probe("tampered-signature", "envelope", "a payload changed after signing is refused",
              changed, forge.tampered(seal(changed, key)), rejected(RejectionCode.BAD_SIGNATURE)),
        probe("unknown-kid", "envelope", "a key the node does not pin is refused", msg["kid"],
              seal(msg["kid"], stranger), rejected(RejectionCode.UNKNOWN_KEY)),
        probe("wrong-alg", "envelope", f"alg {other} on a key pinned to {key.alg} is refused",
              msg["alg"], forge.other_alg(key, msg["alg"], other),
              rejected(RejectionCode.ALGORITHM_NOT_ALLOWED)),
        probe("hmac-alg", "envelope", "an HMAC algorithm (HS256) is refused", msg["hmac"],
              forge.other_alg(key, msg["hmac"], "HS256"),
              rejected(RejectionCode.ALGORITHM_NOT_ALLOWED)),
        probe("alg-none", "envelope", "an unsigned envelope (alg none) is refused", msg["none"],
              forge.unsigned(key, msg["none"]), rejected(RejectionCode.ALGORITHM_NOT_ALLOWED)),
        probe("header-jwk", "envelope", "a key offered in the header (jwk) is refused",
              msg["jwk"], forge.with_jwk(key, msg["jwk"]),
              rejected(RejectionCode.HEADER_NOT_ALLOWED)),
        probe("bad-base64url", "envelope", "base64 padding in the header is refused", msg["pad"],
              forge.padded_header(key, msg["pad"]), rejected(RejectionCode.MALFORMED)),
        probe("typ-mismatch", "envelope", "a payload whose kind differs from typ is refused",
              msg["typ"], forge.as_typ(key, msg["typ"], Kind.COO),
              rejected(RejectionCode.TYPE_MISMATCH), kind=Kind.COO),
    ]  # fmt: skip
    probes.append(
        Probe("oversized", "envelope", "an envelope over 512 KiB is refused before decoding",
              forge.oversized(key), new_message_id(), Kind.COO.value,
              rejected(RejectionCode.TOO_LARGE))
    )  # fmt: skip
    probes.append(
        Probe("malformed", "envelope", "bytes that are not a compact JWS are refused",
              b"this is not a JWS", new_message_id(), Kind.COO.value,
              rejected(RejectionCode.MALFORMED))
    )  # fmt: skip
    if expired is not None:
        stale = _request(link)
        probes.append(
            probe("key-not-valid", "envelope", "a pinned key past its exp is refused", stale,
                  seal(stale, expired), rejected(RejectionCode.KEY_NOT_VALID))
        )  # fmt: skip
    return probes


def _payload_defects(link: Link, samples: SampleFactory) -> list[Probe]:
    key = link.key
    third = next(c for c in ("JP", "SG", "AU", "US") if c not in (link.own, link.node))
    canon, schema, deep = _request(link), _request(link), _request(link)
    sender, receiver = _request(link, sender=third), _request(link, receiver=third)
    ahead = _request(link, at=link.now + timedelta(hours=1))
    stale = _request(link, at=link.now - timedelta(days=8))
    long_valid = samples.certificate()
    header = long_valid.header.model_copy(
        update={"valid_until": long_valid.header.valid_until + timedelta(days=60)}
    )
    rule = forge.coo(link, long_valid.model_copy(update={"header": header}))
    reverse = SampleFactory(
        samples.agreement.code, exporter=link.node, importer=link.own
    ).certificate()
    foreign = forge.coo(link, reverse)
    return [
        probe("not-canonical", "payload", "a payload that is not RFC 8785 canonical is refused",
              canon, forge.not_canonical(key, canon), rejected(RejectionCode.NOT_CANONICAL)),
        probe("schema-invalid", "payload", "a payload missing a required member is refused",
              schema, forge.without(key, schema, "request", "questions"),
              rejected(RejectionCode.SCHEMA_INVALID)),
        probe("deeply-nested", "payload", "a payload nested 5,000 levels deep is refused",
              deep, forge.deeply_nested(key, deep), rejected(RejectionCode.SCHEMA_INVALID)),
        probe("rule-violation", "payload", "a certificate valid longer than its agreement "
              "allows is refused", rule, seal(rule, key), rejected(RejectionCode.RULE_VIOLATION)),
        probe("not-for-this-link", "payload", f"a certificate exported from {link.node} to "
              f"{link.own} is refused on this link", foreign, seal(foreign, key),
              rejected(RejectionCode.NOT_FOR_THIS_LINK)),
        probe("wrong-sender", "payload", f"a payload claiming sender {third} is refused", sender,
              seal(sender, key), rejected(RejectionCode.WRONG_SENDER)),
        probe("wrong-receiver", "payload", f"a payload addressed to {third} is refused",
              receiver, seal(receiver, key), rejected(RejectionCode.WRONG_RECEIVER)),
        probe("clock-skew-future", "payload", "a message issued an hour ahead is refused", ahead,
              seal(ahead, key), rejected(RejectionCode.CLOCK_SKEW)),
        probe("clock-skew-old", "payload", "a message issued 8 days ago is refused", stale,
              seal(stale, key), rejected(RejectionCode.CLOCK_SKEW)),
    ]  # fmt: skip


def second_round(link: Link, samples: SampleFactory, first: Round, sent: dict[str, bytes]) -> Round:
    """What builds on the first round's certificates: replacement, cancellation, the same
    envelope again, the same id with other content, the same certificate under a new id."""
    key, out = link.key, Round()
    kept = first.messages["kept"]
    replacing = forge.replacement(link, samples.replacement(first.certificates["replaced"]))
    cancel = forge.cancellation(link, samples.cancellation(first.certificates["cancelled"]))
    conflict = forge.coo(link, samples.certificate(), message_id=kept.message_id)
    again = forge.coo(link, first.certificates["kept"])
    strange = samples.certificate()
    unknown_cancel = forge.cancellation(link, samples.cancellation(strange))
    unknown_feedback = forge.feedback(
        link, _feedback_on_ours(samples, strange), correlation_id=new_message_id()
    )
    out.probes = [
        probe("valid-coo-replacement", "accept", "a replacement of a delivered e-CO is accepted",
              replacing, seal(replacing, key), ACCEPTED),
        probe("valid-coo-cancellation", "accept", "the cancellation of an unused e-CO is "
              "accepted", cancel, seal(cancel, key), ACCEPTED),
        probe("duplicate", "exchange", "the same envelope again gets the identical receipt",
              kept, sent["valid-coo"], Expect("accepted", identical_receipt=True)),
        probe("id-conflict", "exchange", "a message id reused for other content is refused",
              conflict, seal(conflict, key), rejected(RejectionCode.ID_CONFLICT)),
        probe("certificate-again", "exchange", "a delivered certificate under a new message id "
              "is refused", again, seal(again, key), rejected(RejectionCode.STATE_CONFLICT)),
        probe("unknown-certificate-cancellation", "exchange", "cancelling a certificate the "
              "node never received is refused", unknown_cancel, seal(unknown_cancel, key),
              rejected(RejectionCode.UNKNOWN_CERTIFICATE)),
        probe("unknown-certificate-feedback", "exchange", "feedback on a certificate the node "
              "never sent is refused", unknown_feedback, seal(unknown_feedback, key),
              rejected(RejectionCode.UNKNOWN_CERTIFICATE)),
    ]  # fmt: skip
    return out


def _feedback_on_ours(samples: SampleFactory, cert: Certificate) -> FeedbackBody:
    """Feedback on ``cert``, which the kit exported itself: the node never sent it."""
    return feedback_on(cert, samples.rng)
