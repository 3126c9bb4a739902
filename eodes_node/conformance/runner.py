"""The kit's script: three rounds against the tested node, each waited for with a deadline.

1. Valid e-COs and every refusal that needs no prior state, all at once.
2. What builds on round 1: replacement, cancellation, duplicate, id conflict, the same
   certificate again, unknown certificates.
3. The node as sender: its e-CO (signed, well-formed), resent unchanged while we withhold
   the receipt; our feedback and verification request on it; its feedback on ours.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from eodes_node.config import NodeConfig
from eodes_node.conformance import forge, verdict
from eodes_node.conformance.cases import ACCEPTED, Probe, Round, first_round, probe, second_round
from eodes_node.conformance.forge import Link
from eodes_node.conformance.verdict import Arrival, Outcome
from eodes_node.conformance.wire import Inbox, KitError, KitWire, submit_to_node
from eodes_node.core.envelope import seal
from eodes_node.core.jws import KeySet, PrivateKey
from eodes_node.core.messages import certificate_number_of
from eodes_node.core.models import Certificate
from eodes_node.core.records import as_json_dict
from eodes_node.errors import ConfigError
from eodes_node.samples import SampleFactory, link_agreement
from eodes_node.samples.answers import feedback_on
from eodes_node.topology import Topology


@dataclass(frozen=True, slots=True)
class KitOptions:
    node_local_url: str | None = None  # the tested node's own broker, to trigger it
    node_namespace: str | None = None  # its namespace, when not the kit's
    expired_key: PrivateKey | None = None  # pinned by the node with an exp in the past
    agreement: str | None = None
    answer_within_s: float = 30.0
    resend_within_s: float = 120.0
    node_within_s: float = 120.0


def _keys(config: NodeConfig) -> tuple[PrivateKey, KeySet]:
    try:
        own = PrivateKey.from_pem(config.keys.private_key.read_bytes())
        node = KeySet.from_jwks(config.keys.partner_jwks.read_bytes(), owner=config.node.partner)
    except (OSError, ConfigError) as exc:
        raise KitError(f"cannot use the kit's keys: {exc}") from None
    return own, node


class Kit:
    """One run: the link as the kit plays it, the wire, and what the rounds left behind."""

    def __init__(self, config: NodeConfig, options: KitOptions, say: Callable[[str], None]):
        self.options, self.say = options, say
        own, node = config.node.country, config.node.partner
        key, node_keys = _keys(config)
        self.link = Link(own, node, key, datetime.now(UTC))
        agreement = options.agreement or link_agreement(own, node)
        self.samples = SampleFactory(agreement, exporter=own, importer=node)
        self.theirs = SampleFactory(agreement, exporter=node, importer=own)
        (local_url, local_tls), (partner_url, partner_tls) = (
            config.broker.link_target(link) for link in ("local", "partner")
        )
        self.wire = KitWire(
            local_url=local_url,
            partner_url=partner_url,
            local_tls=local_tls,
            partner_tls=partner_tls,
            topology=Topology(own, node, config.node.namespace),
            inbox=Inbox(node_keys, own),
            queues=config.broker.queue_kind,
        )
        self.node_topology = Topology(node, own, options.node_namespace or config.node.namespace)

    async def exchange(self, probes: Sequence[Probe]) -> list[Outcome]:
        """Send every probe, wait until each is answered (or the deadline), judge them."""
        inbox = self.wire.inbox
        for item in probes:
            await self.wire.send(item.token, message_id=item.message_id, kind=item.kind)
        began = time.monotonic()
        await inbox.wait(
            lambda: all(verdict.settled(p, inbox.answers_for(p.message_id)) for p in probes),
            self.options.answer_within_s,
        )
        waited = max(time.monotonic() - began, self.options.answer_within_s)
        return [verdict.judge(p, inbox.answers_for(p.message_id), waited) for p in probes]

    async def answer(self, arrival: Arrival) -> None:
        """Our accepted receipt for something the node sent, as a partner node would."""
        if arrival.opened is None:
            return
        receipt_id, token = forge.receipt(self.link, arrival.opened.message, arrival.opened.digest)
        await self.wire.send(token, message_id=receipt_id, kind="receipt")


async def run_kit(
    config: NodeConfig, options: KitOptions, say: Callable[[str], None]
) -> list[Outcome]:
    """Play our side against the node ``config.node.partner``; the outcomes, in order."""
    kit = Kit(config, options, say)
    purged = await kit.wire.open()
    try:
        link = kit.link
        say(
            f"conformance: {link.own} playing against {link.node} "
            f"({kit.samples.agreement.code}); dropped {purged} stale message(s)"
        )
        first = first_round(link, kit.samples, options.expired_key)
        outcomes = await kit.exchange(first.probes)
        sent = {p.name: p.token for p in first.probes}
        if options.expired_key is None:
            outcomes.append(
                verdict.skipped("key-not-valid", "envelope", "a pinned key past its exp is "
                                "refused", "no --expired-key given")
            )  # fmt: skip
        say(f"conformance: round 1 done ({len(first.probes)} messages)")
        second = second_round(link, kit.samples, first, sent)
        outcomes += await kit.exchange(second.probes)
        say(f"conformance: round 2 done ({len(second.probes)} messages)")
        outcomes += await _node_round(kit, first)
        outcomes.append(_all_verified(kit.wire.inbox.arrivals))
        return outcomes
    finally:
        await kit.wire.close()


async def _node_round(kit: Kit, first: Round) -> list[Outcome]:
    opts, inbox, link = kit.options, kit.wire.inbox, kit.link
    since = len(inbox.arrivals)
    cert = kit.theirs.certificate()
    if opts.node_local_url:
        record = orjson.dumps(as_json_dict(cert))
        await submit_to_node(opts.node_local_url, kit.node_topology.outbound_records, record, "coo")
        kit.say(f"conformance: submitted e-CO {cert.number} at {link.node}'s issuing queue")
    else:
        kit.say(
            f"conformance: waiting up to {opts.node_within_s:.0f} s for an e-CO from "
            f"{link.node}: have {link.node}'s issuing system send one to {link.own}"
        )
    wanted = cert.number if opts.node_local_url else None
    found = await inbox.first(lambda a: _is(a, "coo", wanted), since, opts.node_within_s)
    index, arrival = found if found else (since, None)
    outcomes = [
        verdict.node_message("node-coo", "the node's e-CO is signed, addressed to us, "
                             "persistent", arrival, "coo", opts.node_within_s),
    ]  # fmt: skip
    again = None
    if arrival is not None:
        same = await inbox.first(
            lambda a: a.message_id == arrival.message_id, index + 1, opts.resend_within_s
        )
        again = same[1] if same else None
    outcomes.append(verdict.resend(arrival, again, opts.resend_within_s))
    if arrival is not None:
        await kit.answer(arrival)
    outcomes += await _on_their_certificate(kit, arrival)
    outcomes.append(await _their_feedback(kit, first))
    answered = {arrival.message_id} if arrival is not None else set()
    for later in inbox.arrivals[since:]:
        if (
            later.opened is not None
            and later.kind != "receipt"
            and later.message_id not in answered
        ):
            answered.add(later.message_id)
            await kit.answer(later)
    return outcomes


def _is(arrival: Arrival, kind: str, certificate: str | None) -> bool:
    if arrival.kind != kind:
        return False
    if certificate is None or arrival.opened is None:
        return True
    return certificate_number_of(arrival.opened.message) == certificate


async def _on_their_certificate(kit: Kit, arrival: Arrival | None) -> list[Outcome]:
    """Our valid feedback and verification request on the e-CO the node sent us."""
    names = ("valid-feedback", "valid-verification-request")
    if arrival is None or arrival.opened is None:
        return [
            Outcome(name, "accept", "needs the node's e-CO", "accepted", "-", "fail",
                    "the node sent no verifiable e-CO to answer")
            for name in names
        ]  # fmt: skip
    message = arrival.opened.message
    cert: Certificate = getattr(message, "certificate")  # noqa: B009 - a coo carries one
    link = kit.link
    decision = forge.feedback(link, feedback_on(cert, kit.samples.rng), message.message_id)
    request = forge.verification_request(link, cert.number)
    probes = [
        probe(names[0], "accept", "our feedback on the node's e-CO is accepted", decision,
              seal(decision, link.key), ACCEPTED),
        probe(names[1], "accept", "a verification request on the node's e-CO is accepted",
              request, seal(request, link.key), ACCEPTED),
    ]  # fmt: skip
    return await kit.exchange(probes)


async def _their_feedback(kit: Kit, first: Round) -> Outcome:
    """The node's feedback on the e-CO we delivered in round 1."""
    opts, inbox, link = kit.options, kit.wire.inbox, kit.link
    ours, sent = first.certificates["kept"], first.messages["kept"]
    since = len(inbox.arrivals)
    if opts.node_local_url:
        body = orjson.dumps(as_json_dict(feedback_on(ours, kit.theirs.rng)))
        await submit_to_node(
            opts.node_local_url, kit.node_topology.outbound_feedback, body, "feedback"
        )
        kit.say(f"conformance: submitted feedback on {ours.number} at {link.node}'s clearance")
    else:
        kit.say(
            f"conformance: waiting up to {opts.node_within_s:.0f} s for {link.node}'s "
            f"feedback on {ours.number}: have its clearance system decide on it"
        )
    found = await inbox.first(lambda a: _is(a, "feedback", ours.number), since, opts.node_within_s)
    arrival = found[1] if found else None
    items = [item.item_number for item in ours.items]
    return verdict.feedback_consistency(arrival, sent.message_id, items, opts.node_within_s)


def _all_verified(arrivals: Sequence[Arrival]) -> Outcome:
    refused = [a for a in arrivals if a.opened is None]
    title = "everything the node sent verifies against its pinned keys"
    got = f"{len(arrivals) - len(refused)} of {len(arrivals)} verified"
    detail = "; ".join(f"{a.kind} {a.message_id}: {a.refusal}" for a in refused[:5])
    if not arrivals:
        detail = "the node sent nothing at all: is it running, and does it publish to this broker?"
    failed = bool(refused) or not arrivals
    return Outcome(
        "node-signatures", "node", title, "all verified", got, "fail" if failed else "pass", detail
    )
