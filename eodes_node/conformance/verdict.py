"""Judging the node's answers: receipts against probes, and what the node itself sends.

Pure: every function takes what arrived and returns an ``Outcome`` saying pass or fail and,
when it fails, what was expected and what came instead, in words an integrator can act on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from eodes_node.conformance.cases import Probe
from eodes_node.core.envelope import Opened
from eodes_node.core.messages import Feedback, ReceiptEntry, ReceiptStatus

Status = Literal["pass", "fail", "skip"]


@dataclass(frozen=True, slots=True)
class Outcome:
    name: str
    group: str
    title: str
    expected: str
    got: str
    status: Status
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Arrival:
    """One delivery the node pushed to the kit, verified against the node's pinned keys."""

    body: bytes
    message_id: str | None
    kind: str | None
    content_type: str | None
    delivery_mode: int | None
    opened: Opened | None  # None when it did not verify
    refusal: str = ""  # why it did not verify


Answer = tuple[bytes, ReceiptEntry]  # a receipt's exact bytes, and its entry for a probe


def settled(probe: Probe, answers: Sequence[Answer]) -> bool:
    """Whether enough has arrived to judge ``probe``: one entry for its exact bytes, two
    for a duplicate (the first copy's receipt, then the one the duplicate earned)."""
    matching = [a for a in answers if a[1].digest == probe.digest]
    return len(matching) >= (2 if probe.expect.identical_receipt else 1)


def _outcome(probe: Probe, got: str, problems: list[str]) -> Outcome:
    status: Status = "fail" if problems else "pass"
    return Outcome(
        probe.name, probe.group, probe.title, str(probe.expect), got, status, "; ".join(problems)
    )


def judge(probe: Probe, answers: Sequence[Answer], waited_s: float) -> Outcome:
    """The verdict on ``probe`` from the receipt entries that name its message id."""
    matching = [a for a in answers if a[1].digest == probe.digest]
    if not matching:
        if answers:
            other = answers[0][1]
            return _outcome(
                probe,
                _said(other),
                [
                    f"the entry for message {probe.message_id} has digest {other.digest}; the "
                    f"SHA-256 of the bytes sent is {probe.digest}"
                ],
            )
        return _outcome(probe, "no receipt", [f"no receipt entry within {waited_s:.0f} s"])
    if probe.expect.identical_receipt:
        return _judge_duplicate(probe, matching, waited_s)
    entry = matching[0][1]
    return _outcome(probe, _said(entry), _entry_problems(probe, entry))


def _said(entry: ReceiptEntry) -> str:
    return entry.status.value + (f" {entry.code.value}" if entry.code else "")


def _entry_problems(probe: Probe, entry: ReceiptEntry) -> list[str]:
    problems = []
    expect = probe.expect
    if entry.status.value != expect.status:
        problems.append(f"status {entry.status.value}, expected {expect.status}")
    elif expect.code is not None and entry.code != expect.code:
        problems.append(f"code {entry.code}, expected {expect.code}")
    if entry.status is ReceiptStatus.REJECTED and not entry.text.strip():
        problems.append("a rejection must say why in text")
    if entry.kind.value != probe.kind:
        problems.append(f"kind {entry.kind.value}, the message was {probe.kind}")
    if (
        expect.status == "accepted"
        and entry.status is ReceiptStatus.ACCEPTED
        and probe.certificate
        and entry.certificate_number != probe.certificate
    ):
        problems.append(
            f"certificate_number {entry.certificate_number}, the message concerns "
            f"{probe.certificate}"
        )
    return problems


def _judge_duplicate(probe: Probe, matching: Sequence[Answer], waited_s: float) -> Outcome:
    if len(matching) < 2:
        return _outcome(
            probe,
            "no second receipt",
            [f"the duplicate was not answered within {waited_s:.0f} s"],
        )
    (first, entry), (second, _) = matching[0], matching[1]
    problems = _entry_problems(probe, entry)
    if second != first:
        problems.append("the duplicate's receipt differs from the first copy's receipt bytes")
    return _outcome(probe, "identical receipt" if second == first else "other receipt", problems)


def node_message(
    name: str, title: str, arrival: Arrival | None, kind: str, waited_s: float
) -> Outcome:
    """A message the node sent us: it verifies, and its AMQP properties match the protocol."""
    if arrival is None:
        return Outcome(name, "node", title, f"a signed {kind}", "nothing", "fail",
                       f"no {kind} from the node within {waited_s:.0f} s")  # fmt: skip
    if arrival.opened is None:
        return Outcome(name, "node", title, f"a signed {kind}", "unverifiable", "fail",
                       arrival.refusal)  # fmt: skip
    message = arrival.opened.message
    problems = []
    if arrival.message_id != message.message_id:
        problems.append(f"AMQP message_id {arrival.message_id}, payload {message.message_id}")
    if arrival.kind != kind:
        problems.append(f"AMQP type {arrival.kind}, expected {kind}")
    if arrival.content_type != "application/jose":
        problems.append(f"content_type {arrival.content_type}, expected application/jose")
    if arrival.delivery_mode != 2:
        problems.append(f"delivery_mode {arrival.delivery_mode}, expected 2 (persistent)")
    status: Status = "fail" if problems else "pass"
    return Outcome(name, "node", title, f"a signed {kind}", f"a signed {kind}", status,
                   "; ".join(problems))  # fmt: skip


def resend(first: Arrival | None, again: Arrival | None, waited_s: float) -> Outcome:
    """Without our receipt the node sends the message again: same id, same bytes."""
    name, title = "withheld-receipt", "without a receipt the node resends the same bytes"
    expected = "same id and bytes"
    if first is None:
        return Outcome(name, "node", title, expected, "nothing", "fail",
                       "needs a message from the node first")  # fmt: skip
    if again is None:
        return Outcome(name, "node", title, expected, "no resend", "fail",
                       f"no second copy of {first.message_id} within {waited_s:.0f} s")  # fmt: skip
    problems = []
    if again.body != first.body:
        problems.append("the resend's bytes differ from the first copy (a new signature?)")
    if again.message_id != first.message_id:
        problems.append(f"the resend has message_id {again.message_id}, not {first.message_id}")
    got = "same id and bytes" if not problems else "changed"
    return Outcome(name, "node", title, expected, got, "fail" if problems else "pass",
                   "; ".join(problems))  # fmt: skip


def feedback_consistency(
    arrival: Arrival | None, coo_message_id: str, items: Sequence[int], waited_s: float
) -> Outcome:
    """The node's feedback on our certificate refers to it and agrees with itself."""
    name, title = "node-feedback", "the node's feedback names our e-CO and agrees with itself"
    expected = "consistent feedback"
    if arrival is None or arrival.opened is None:
        why = arrival.refusal if arrival else f"no feedback within {waited_s:.0f} s"
        return Outcome(name, "node", title, expected, "nothing valid", "fail", why)
    message = arrival.opened.message
    if not isinstance(message, Feedback):
        return Outcome(name, "node", title, expected, message.__class__.__name__, "fail",
                       "expected a feedback message")  # fmt: skip
    problems = []
    if message.correlation_id != coo_message_id:
        problems.append(f"correlation_id {message.correlation_id}, our e-CO was {coo_message_id}")
    decided = [d.item_number for d in message.feedback.items]
    strangers = sorted(set(decided) - set(items))
    if strangers:
        problems.append(f"decides items {strangers} the certificate does not have")
    got = f"{message.feedback.decision.value}, {len(decided)} item(s)"
    return Outcome(name, "node", title, expected, got, "fail" if problems else "pass",
                   "; ".join(problems))  # fmt: skip


def skipped(name: str, group: str, title: str, why: str) -> Outcome:
    return Outcome(name, group, title, "-", "-", "skip", why)
