"""The fuzz targets: each takes the fuzzer's bytes and returns quietly when the input was
accepted or refused the documented way (``PeerError`` at the partner door, a dead letter
with its problems at a local door, ``ConfigError`` for a configuration). Anything that
escapes, an assertion included, is a finding.

Targets are plain functions of bytes, so a saved finding replays without the fuzzer.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from eodes_node.config import load_config
from eodes_node.core.decide import CertFacts, OutboundFacts, PriorInbound
from eodes_node.core.envelope import open_envelope, payload_bytes, seal
from eodes_node.core.jws import sign_compact
from eodes_node.core.messages import Kind
from eodes_node.core.plan import feedback, inbound, records
from eodes_node.core.plan.common import (
    DeadLetter,
    EnvelopeLimits,
    Identity,
    Notice,
    Plan,
    RetryPolicy,
    ToPartner,
)
from eodes_node.core.records import parse_certificate
from eodes_node.core.state import Role, State
from eodes_node.core.work import Delivery, Facts
from eodes_node.errors import ConfigError, InvalidRecord, PeerError
from fuzz import seeds
from fuzz.draw import Draw, mutate, to_json

KINDS = tuple(Kind)
_KIND_NAMES = tuple(k.value for k in Kind)  # a tuple: the payload's kind may be unhashable
CN_NODE = Identity("CN", "KR", seeds.CN_KEY, seeds.KR_KEYS)
KR_NODE = Identity("KR", "CN", seeds.KR_KEY, seeds.KR_KEYS)
RECORD_TYPES: tuple[str | None, ...] = (
    "coo",
    "coo-replacement",
    "coo-cancellation",
    None,
    "feedback",
)
MAX_RECORD = 512 * 1024
# Library wording that would mean a refusal leaked an internal error instead of naming
# the problem in the record's terms.
_LEAKS = ("Recursion limit", "Traceback", "has no attribute", "unhashable", "not representable")


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    run: Callable[[bytes], None]
    seeds: Callable[[], list[bytes]]
    max_len: int
    dictionary: str | None = None  # a libFuzzer dictionary beside this file


# --- the partner door --------------------------------------------------------------


def envelope_bytes(data: bytes) -> None:
    with contextlib.suppress(PeerError):
        open_envelope(data, seeds.KR_KEYS, receiver="CN", now=seeds.NOW)


def _plan_inbound(token: bytes, kind: str, draw: Draw) -> None:
    """Open, decide and answer one envelope against facts the input chooses."""
    delivery = Delivery(token, seeds.messages()[0].message_id, kind, {}, False)
    opening = inbound.prepare([delivery], CN_NODE, seeds.NOW, EnvelopeLimits())
    query = inbound.query(opening, CN_NODE)
    facts = Facts()
    states = (None, *State)
    for role, number in query.certificates:
        state = states[draw.below(len(states))]
        if state is not None:
            facts.certificates[(role, number)] = CertFacts(
                number, Role(role), state, seeds.messages()[4].correlation_id or ""
            )
    for mid in query.outbound_ids:
        status = ("pending", "failed", "delivered", "rejected", "sent")[draw.below(5)]
        facts.outbound[mid] = OutboundFacts(mid, KINDS[draw.below(len(KINDS))], None, status)
    for mid in query.message_ids:
        if draw.byte() < 64:
            facts.priors[mid] = PriorInbound("A" * 43, None)
    plan = inbound.plan(opening, facts, CN_NODE, seeds.NOW)
    _no_leaks(plan)


def envelope_signed(data: bytes) -> None:
    """Arbitrary payload bytes, validly signed: everything after the signature is hit."""
    kind = KINDS[data[0] % len(KINDS)] if data else Kind.COO
    token = sign_compact(data[1:], kind.typ, seeds.KR_KEY)
    _plan_inbound(token, kind.value, Draw(data[:1]))


def envelope_structured(data: bytes) -> None:
    """A valid message with some fields broken, canonicalised where possible and signed."""
    draw = Draw(data)
    docs = seeds.message_documents()
    doc = mutate(docs[draw.below(len(docs))], draw)
    kind_name = doc.get("kind") if isinstance(doc, dict) else None
    kind = Kind(kind_name) if kind_name in _KIND_NAMES else Kind.COO
    if draw.byte() < 16:
        kind = KINDS[draw.below(len(KINDS))]
    token = sign_compact(to_json(doc), kind.typ, seeds.KR_KEY)
    _plan_inbound(token, kind.value, draw)


# --- the local doors ---------------------------------------------------------------


def _no_leaks(plan: Plan) -> None:
    for effect in plan.effects:
        reason = effect.reason if isinstance(effect, DeadLetter) else ""
        assert not any(leak in reason for leak in _LEAKS), f"internal wording: {reason}"


def _one_outcome(plan: Plan) -> None:
    """A record is either signed and sent, or dead-lettered with its problems named."""
    sent = [e for e in plan.effects if isinstance(e, ToPartner)]
    dead = [e for e in plan.effects if isinstance(e, DeadLetter)]
    assert len(sent) + len(dead) == 1, f"sent {len(sent)}, dead-lettered {len(dead)}"
    if dead:
        (notice,) = [e for e in plan.effects if isinstance(e, Notice)]
        problems = notice.items[0].get("problems", [])
        assert problems, "a refused record names its problems"
        assert all(p["message"] for p in problems), "every problem says what is wrong"
    _no_leaks(plan)


def _records_door(body: bytes, kind: str | None) -> None:
    delivery = Delivery(body, None, kind, {}, False)
    prepared = records.prepare([delivery], KR_NODE, seeds.NOW, MAX_RECORD)
    _one_outcome(records.plan(prepared, Facts(), KR_NODE, seeds.NOW, RetryPolicy()))
    with contextlib.suppress(InvalidRecord):
        parse_certificate(body)  # what `eodes-node validate` runs


def records_bytes(data: bytes) -> None:
    kind = RECORD_TYPES[data[0] % len(RECORD_TYPES)] if data else None
    _records_door(data[1:], kind)


def records_structured(data: bytes) -> None:
    draw = Draw(data)
    docs = seeds.record_documents()
    kind, doc = docs[draw.below(len(docs))]
    _records_door(to_json(mutate(doc, draw)), kind)


def _feedback_door(body: bytes, state: State) -> None:
    delivery = Delivery(body, None, "feedback", {}, False)
    prepared = feedback.prepare([delivery], MAX_RECORD)
    facts = Facts()
    for role, number in feedback.query(prepared).certificates:
        facts.certificates[(role, number)] = CertFacts(
            number, Role(role), state, seeds.messages()[0].message_id
        )
    _one_outcome(feedback.plan(prepared, facts, CN_NODE, seeds.NOW, RetryPolicy()))


def feedback_bytes(data: bytes) -> None:
    _feedback_door(data[1:], list(State)[data[0] % len(State)] if data else State.AVAILABLE)


def feedback_structured(data: bytes) -> None:
    draw = Draw(data)
    state = State.AVAILABLE if draw.byte() < 192 else list(State)[draw.below(len(State))]
    _feedback_door(to_json(mutate(seeds.feedback_record(), draw)), state)


# --- configuration -----------------------------------------------------------------


@cache
def _config_path() -> Path:
    return Path(tempfile.mkdtemp(prefix="eodes-fuzz-config-")) / "node.toml"


def config_text(data: bytes) -> None:
    """Odd first byte: the bytes as they are; even: as UTF-8 text, so most inputs get past
    the decoding into the TOML parser and the loader behind it."""
    raw = data[1:] if data and data[0] & 1 else data[1:].decode(errors="replace").encode()
    path = _config_path()
    path.write_bytes(raw)
    with contextlib.suppress(ConfigError):
        load_config(path, environ={})


# --- seeds -------------------------------------------------------------------------


def _tokens() -> list[bytes]:
    tokens = [seal(m, seeds.KR_KEY) for m in seeds.messages()]
    deep = b'{"kind":"coo","certificate":' + seeds.nested(300) + b"}"
    deep = sign_compact(deep, Kind.COO.typ, seeds.KR_KEY)
    return [*tokens, deep, tokens[0][:-3], b"e30.e30.AA", b""]


def _signed_payloads() -> list[bytes]:
    out = [
        bytes([KINDS.index(Kind(getattr(m, "kind")))]) + payload_bytes(m)  # noqa: B009
        for m in seeds.messages()
    ]
    for depth in (230, 300, 1030):
        out.append(b"\x00" + b'{"kind":"coo","certificate":' + seeds.nested(depth) + b"}")
    return out


def _record_bodies() -> list[bytes]:
    return [
        bytes([RECORD_TYPES.index(kind)]) + to_json(doc) for kind, doc in seeds.record_documents()
    ] + [b"\x00" + seeds.nested(300), b"\x00" + seeds.nested(1030)]


def _feedback_bodies() -> list[bytes]:
    body = to_json(seeds.feedback_record())
    return [bytes([list(State).index(s)]) + body for s in State] + [b"\x04" + seeds.nested(300)]


def _draws() -> list[bytes]:
    return [bytes([i, j]) + bytes(30) for i in range(4) for j in range(0, 256, 37)]


def _configs() -> list[bytes]:
    root = Path(__file__).resolve().parents[1] / "config"
    files = [p.read_bytes() for p in sorted(root.glob("*.toml"))]
    return [b"\x00" + text for text in [*files, b"[node]\ncountry = 1\n"]]


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("envelope-bytes", envelope_bytes, _tokens, 16384),
        Target("envelope-signed", envelope_signed, _signed_payloads, 16384),
        Target("envelope-structured", envelope_structured, _draws, 512),
        Target("records-bytes", records_bytes, _record_bodies, 16384),
        Target("records-structured", records_structured, _draws, 512),
        Target("feedback-bytes", feedback_bytes, _feedback_bodies, 8192),
        Target("feedback-structured", feedback_structured, _draws, 512),
        Target("config", config_text, _configs, 8192, "config.dict"),
    )
}


def replay(name: str, data: bytes) -> Any:
    """Run one saved input through its target (for a regression test or a debugger)."""
    return TARGETS[name].run(data)
