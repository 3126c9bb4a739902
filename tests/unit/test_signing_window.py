"""Our signing key outside its published window signs nothing: records and partner
messages wait in their queues and go out once a key that may sign is loaded; a batch
reads the node's keys once; an archive judges each key at the message's issue time."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from eodes_node.cli import main
from eodes_node.core.canonical import canonical_json
from eodes_node.core.jws import KeySet, PrivateKey, parse_header, sign_compact
from eodes_node.core.plan.common import signing_key
from eodes_node.core.validity import KeyMayNotSign
from eodes_node.core.work import FactsQuery
from eodes_node.keyfiles import windowed, write_jwks
from eodes_node.keywatch import KEY_WATCH_S, next_look
from eodes_node.service.signing import SigningGate
from eodes_node.testing.services import START, ServicePair, ServiceSide
from tests.unit.test_gate_and_retries import record


def with_window(
    side: ServiceSide, *, not_before: int | None = None, expires: int | None = None
) -> None:
    """Give the side's signing key the window its JWK Set would publish."""
    public = dataclasses.replace(side.key.public, not_before=not_before, expires=expires)
    side.svc.id = dataclasses.replace(side.svc.id, key=windowed(side.key, public))
    side.svc.signing = SigningGate(first_s=0.0, cap_s=0.0)  # no pause in these tests


def kid_of(token: bytes) -> str:
    return str(parse_header(token.split(b".")[0])["kid"])


@pytest.fixture
def pair() -> ServicePair:
    return ServicePair()


@pytest.mark.parametrize(
    ("window", "reason"),
    [
        ({"expires": int(START.timestamp())}, "has expired or was revoked"),
        ({"not_before": int(START.timestamp()) + 1}, "is not valid yet"),
    ],
)
def test_the_core_refuses_a_key_outside_its_window(
    pair: ServicePair, window: dict[str, int], reason: str
) -> None:
    with_window(pair.kr, **window)
    with pytest.raises(KeyMayNotSign, match=f"our signing key may not sign now: .*{reason}"):
        signing_key(pair.kr.svc.id, START)
    assert signing_key(pair.kr.svc.id, START + timedelta(days=-1 if "expires" in window else 1))


async def test_a_record_waits_in_its_queue_until_our_key_may_sign(pair: ServicePair) -> None:
    with_window(pair.kr, expires=int(START.timestamp()))  # revoked just now
    with pytest.raises(KeyMayNotSign):
        await pair.kr.submit([record()])
    assert pair.kr.take_outgoing() == []
    facts = await pair.kr.store.facts(FactsQuery(local_keys=(f"coo:{number()}",)))
    assert not facts.local_keys  # nothing committed: the record is decided again later

    rotated = PrivateKey.generate()
    pair.kr.svc.id = dataclasses.replace(pair.kr.svc.id, key=rotated)
    pair.cn.svc.id = dataclasses.replace(
        pair.cn.svc.id, partner_keys=KeySet({rotated.kid: rotated.public}, "KR")
    )
    await pair.kr.submit([record()])  # the broker's redelivery, once a valid key is loaded
    (sent,) = pair.kr.take_outgoing()
    assert kid_of(sent.token) == rotated.kid
    pair.kr.forwarded = 0
    await pair.exchange()
    assert [e["certificate_number"] for e in pair.kr.events("delivered")] == [number()]


async def test_partner_messages_wait_unanswered_and_receipts_still_settle(
    pair: ServicePair,
) -> None:
    await pair.kr.submit([record()])
    (envelope,) = pair.kr.take_outgoing()
    with_window(pair.cn, expires=int(START.timestamp()))
    with pytest.raises(KeyMayNotSign):
        await pair.cn.receive([envelope])
    assert pair.cn.take_outgoing() == []  # no receipt the partner would refuse
    assert pair.cn.local(pair.cn.topology.clearance) == []  # and nothing taken yet

    with_window(pair.cn)  # a key that may sign is loaded
    await pair.cn.receive([envelope], redelivered=True)
    (receipt,) = pair.cn.take_outgoing()
    with_window(pair.kr, expires=int(START.timestamp()))
    await pair.kr.receive([receipt])  # settling a receipt signs nothing
    assert [e["certificate_number"] for e in pair.kr.events("delivered")] == [number()]


@pytest.mark.parametrize("door", ["records", "inbound"])
async def test_a_batch_signs_with_the_keys_it_was_verified_with(
    pair: ServicePair, door: str
) -> None:
    await pair.kr.submit([record()])
    (envelope,) = pair.kr.take_outgoing()
    side = pair.kr if door == "records" else pair.cn
    before = side.svc.id.key
    deciding = side.store.decide

    async def reload_then_decide(query: FactsQuery, decide: Any) -> Any:
        side.svc.id = dataclasses.replace(side.svc.id, key=PrivateKey.generate())  # SIGHUP
        return await deciding(query, decide)

    side.store.decide = reload_then_decide  # type: ignore[method-assign]
    if door == "records":
        await side.submit([record(seed=2)])
    else:
        await side.receive([envelope])
    (signed,) = side.take_outgoing()
    assert kid_of(signed.token) == before.kid


async def test_the_gate_pauses_longer_each_time_until_keys_change() -> None:
    gate = SigningGate(first_s=0.01, cap_s=0.04)
    for expected in (0.01, 0.02, 0.04, 0.04):
        await gate.refused()
        assert gate.delay_s == expected
    gate.keys_changed()
    assert gate.delay_s == 0.0
    gate = SigningGate(first_s=60.0, cap_s=60.0)
    waiting = asyncio.ensure_future(gate.refused())
    await asyncio.sleep(0)
    gate.keys_changed()  # a reload cuts the pause short
    await asyncio.wait_for(waiting, 1.0)


def test_the_key_watch_looks_again_when_our_window_closes() -> None:
    key = PrivateKey.generate().public
    assert next_look(key, 1000) == KEY_WATCH_S
    assert next_look(dataclasses.replace(key, expires=1060), 1000) == 60.0
    assert next_look(dataclasses.replace(key, not_before=1030, expires=9999), 1000) == 30.0
    assert next_look(dataclasses.replace(key, expires=900), 1000) == KEY_WATCH_S


def archive_line(key: PrivateKey, message_id: str, issued_at: datetime) -> bytes:
    at = issued_at.isoformat().replace("+00:00", "Z")
    payload = canonical_json({"message_id": message_id, "issued_at": at})
    token = sign_compact(payload, "eodes-receipt+jws", key).decode()
    return orjson.dumps({"record": "message", "message_id": message_id, "token": token})


def test_verify_archive_judges_each_key_when_its_message_was_issued(tmp_path: Path) -> None:
    key = PrivateKey.generate()
    revoked_at = START + timedelta(days=1)
    public = dataclasses.replace(key.public, expires=int(revoked_at.timestamp()))
    write_jwks(tmp_path / "kr.jwks.json", KeySet({key.kid: public}))
    before, after = "0" * 8 + "-0000-4000-8000-" + "0" * 12, "1" * 8 + "-1111-4111-8111-" + "1" * 12
    archive = tmp_path / "archive.jsonl"
    archive.write_bytes(
        archive_line(key, before, START) + b"\n" + archive_line(key, after, revoked_at) + b"\n"
    )
    done = CliRunner().invoke(
        main,
        ["verify-archive", "--archive", str(archive), "--jwks", str(tmp_path / "kr.jwks.json")],
    )
    assert done.exit_code == 1
    assert "1 signed message(s) verified, 0 history row(s), 1 failed" in done.output
    assert f"message {after}: KEY_NOT_VALID: key {key.kid} has expired" in done.output


def number() -> str:
    return str(record()["header"]["certificate_number"])
