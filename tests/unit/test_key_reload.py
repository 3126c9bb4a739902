"""Reloading keys in a running node (what SIGHUP does) and the expiry warnings, on fakes;
the same with two node processes over RabbitMQ is tests/e2e/test_key_rotation.py."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from structlog.testing import capture_logs

from eodes_node.bootstrap import build_node
from eodes_node.config import BrokerSection, KeysSection, NodeConfig, NodeSection, StoreSection
from eodes_node.core.jws import KeySet, PrivateKey
from eodes_node.core.records import as_json_dict
from eodes_node.core.validity import KeyMayNotSign
from eodes_node.core.work import Delivery
from eodes_node.keyfiles import revoke_key, rotate_keys, write_jwks, write_private_key
from eodes_node.keywatch import KEY_WATCH_S
from eodes_node.runtime import Node
from eodes_node.samples import SampleFactory
from eodes_node.service.signing import SigningGate
from eodes_node.surface import OperatorSurface
from eodes_node.testing.fakes import FakeBroker, InMemoryStore, ManualClock

DAY = 86400


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime.now(UTC))


@pytest.fixture
def node(tmp_path: Path, clock: ManualClock) -> Node:
    own, partner = PrivateKey.generate(), PrivateKey.generate()
    write_private_key(tmp_path / "kr.key.pem", own.to_pem())
    write_jwks(tmp_path / "kr.jwks.json", KeySet({own.kid: own.public}))
    write_jwks(tmp_path / "cn.jwks.json", KeySet({partner.kid: partner.public}))
    config = NodeConfig(
        node=NodeSection(country="KR", partner="CN"),
        broker=BrokerSection(local_url="amqp://unused/", partner_url="amqp://unused/"),
        keys=KeysSection(
            private_key=tmp_path / "kr.key.pem",
            partner_jwks=tmp_path / "cn.jwks.json",
            expiry_warning_days=10,
        ),
        store=StoreSection(url="sqlite:///unused"),
    )
    return build_node(config, store=InMemoryStore(clock), broker=FakeBroker(), clock=clock)


def coo_delivery(seed: int = 1) -> Delivery:
    record = SampleFactory("KCFTA", seed=seed, issue_date=datetime.now(UTC).date()).certificate()
    return Delivery(orjson.dumps(as_json_dict(record)), None, "coo", {}, False)


def expiry_metric(node: Node) -> dict[tuple[str, str], float]:
    found = {}
    for line in node.service.metrics.render().decode().splitlines():
        if line.startswith("eodes_key_expires_in_seconds{"):
            labels, value = line.split("} ")
            parts = dict(p.split("=") for p in labels.split("{")[1].split(","))
            found[(parts["owner"].strip('"'), parts["kid"].strip('"'))] = float(value)
    return found


def test_a_reload_swaps_our_key_and_the_partners_set_whole(node: Node) -> None:
    config = node.config.keys
    before = node.service.id
    rotated = rotate_keys(config.private_key, now=int(time.time()), overlap_s=DAY)
    newer = PrivateKey.generate()
    partner = KeySet({**before.partner_keys.keys, newer.kid: newer.public})
    write_jwks(config.partner_jwks, partner)

    assert node.service.id.key.kid == rotated.old_kid  # files alone change nothing
    assert node.reload_keys()
    after = node.service.id
    assert after.key.kid == rotated.new_kid
    assert set(after.partner_keys.keys) == set(partner.keys)
    assert after.partner_keys.owner == "CN"
    assert dataclasses.replace(after, key=before.key, partner_keys=before.partner_keys) == before
    metric = expiry_metric(node)
    assert metric[("own", rotated.new_kid)] == float("inf")
    assert ("own", rotated.old_kid) not in metric
    assert {kid for owner, kid in metric if owner == "CN"} == set(partner.keys)
    # What the HTTP side shows (/.well-known/jwks.json, the console) follows the reload.
    surface = node.surface
    assert isinstance(surface, OperatorSurface)
    shown = {k["kid"] for k in surface.own_jwks["keys"]}
    assert shown == {rotated.old_kid, rotated.new_kid}
    assert {k["kid"] for k in surface.partner_jwks["keys"]} == set(partner.keys)


@pytest.mark.parametrize(
    ("breakage", "kept"),
    [
        pytest.param(
            lambda d: (d / "cn.jwks.json").write_text('{"keys": ['), "partner", id="bad-json"
        ),
        pytest.param(lambda d: (d / "cn.jwks.json").unlink(), "partner", id="missing"),
        pytest.param(lambda d: (d / "kr.key.pem").chmod(0o644), "own", id="key-readable"),
    ],
)
def test_a_file_that_cannot_be_used_keeps_its_keys_and_logs_one_error(
    node: Node, tmp_path: Path, breakage: object, kept: str
) -> None:
    before = node.service.id
    rotated = rotate_keys(node.config.keys.private_key, now=int(time.time()), overlap_s=DAY)
    newer = PrivateKey.generate()
    write_jwks(node.config.keys.partner_jwks, KeySet({newer.kid: newer.public}))
    breakage(tmp_path)  # type: ignore[operator]
    with capture_logs() as logs:
        assert not node.reload_keys()
    after = node.service.id
    failed = [e for e in logs if e["event"] == "keys_reload_failed"]
    assert len(failed) == 1
    assert failed[0]["log_level"] == "error"
    if kept == "partner":
        assert after.partner_keys is before.partner_keys
        assert after.key.kid == rotated.new_kid
    else:
        assert after.key is before.key
        assert set(after.partner_keys.keys) == {newer.kid}


def test_a_reload_with_both_files_broken_changes_nothing(node: Node, tmp_path: Path) -> None:
    before = node.service.id
    (tmp_path / "cn.jwks.json").unlink()
    (tmp_path / "kr.key.pem").chmod(0o644)
    with capture_logs() as logs:
        assert not node.reload_keys()
    assert node.service.id is before
    assert [e["event"] for e in logs] == ["keys_reload_failed", "keys_reload_failed"]


async def test_a_revoked_signing_key_is_swapped_in_and_signs_nothing(
    node: Node, clock: ManualClock
) -> None:
    node.service.signing = SigningGate(first_s=0.0, cap_s=0.0)
    kid = node.service.id.key.kid
    revoke_key(node.config.keys.private_key, kid, now=int(time.time()), force=True)
    with capture_logs() as logs:
        assert node.reload_keys()
    assert node.service.id.key.kid == kid
    assert node.service.id.key.public.expires is not None
    (stopped,) = [e for e in logs if e["event"] == "signing_key_not_valid"]
    assert stopped["log_level"] == "error"
    assert "has expired or was revoked" in stopped["error"]
    with pytest.raises(KeyMayNotSign):
        await node.service.handle_records([coo_delivery()])
    assert isinstance(node.broker, FakeBroker)
    assert node.broker.partner == []
    await node._watch_keys()  # the local systems are told, once
    await node._watch_keys()
    events = [orjson.loads(p.body) for p in node.broker.local(node.service.topology.events)]
    assert [(e["event"], e["items"][0]["code"]) for e in events] == [
        ("signing_stopped", "KEY_NOT_VALID")
    ]


def test_our_broken_key_does_not_hold_back_the_partners_revocation(node: Node) -> None:
    config = node.config.keys
    kid = node.service.id.key.kid
    revoke_key(config.private_key, kid, now=int(time.time()) - 10, force=True)  # ours expired
    partner = next(iter(node.service.id.partner_keys.keys.values()))
    revoked = dataclasses.replace(partner, expires=int(time.time()))  # theirs compromised
    write_jwks(config.partner_jwks, KeySet({partner.kid: revoked}))
    assert node.reload_keys()
    assert node.service.id.partner_keys.keys[partner.kid].expires == revoked.expires


async def test_a_rotation_without_sighup_stops_signing_when_its_overlap_ends(
    node: Node, clock: ManualClock
) -> None:
    node.service.signing = SigningGate(first_s=0.0, cap_s=0.0)
    now = int(clock.now().timestamp())
    rotate_keys(node.config.keys.private_key, now=now, overlap_s=DAY)  # and no SIGHUP
    with capture_logs() as logs:
        assert await node._watch_keys() == KEY_WATCH_S
    assert [e["event"] for e in logs] == ["signing_window_changed", "key_expires_soon"]
    assert node.service.id.key.public.expires == now + DAY
    await node.service.handle_records([coo_delivery()])  # still inside the overlap
    clock.advance(DAY)
    with capture_logs() as logs:
        await node._watch_keys()
    assert [e["event"] for e in logs] == ["signing_key_not_valid"]
    with pytest.raises(KeyMayNotSign):
        await node.service.handle_records([coo_delivery(seed=2)])


async def test_keys_expiring_within_the_configured_days_warn_once_a_day(
    node: Node, clock: ManualClock
) -> None:
    config = node.config.keys
    now = int(clock.now().timestamp())
    rotate_keys(config.private_key, now=now, overlap_s=5 * DAY, expires=now + 60 * DAY)
    assert node.reload_keys()
    partner = next(iter(node.service.id.partner_keys.keys.values()))
    soon = dataclasses.replace(partner, expires=now + 9 * DAY)
    write_jwks(config.partner_jwks, KeySet({soon.kid: soon}))
    assert node.reload_keys()

    with capture_logs() as logs:
        await node._watch_keys()
        await node._watch_keys()
        clock.advance(DAY)
        await node._watch_keys()
    warned = [(e["owner"], e["kid"]) for e in logs if e["event"] == "key_expires_soon"]
    assert warned == [("CN", soon.kid), ("CN", soon.kid)]
    assert all(e["log_level"] == "warning" for e in logs)
    # Our signing key expires in 60 days, beyond the 10 configured: no warning for it.
    clock.advance(51 * DAY)
    with capture_logs() as logs:
        await node._watch_keys()
    assert [e["owner"] for e in logs if e["event"] == "key_expires_soon"] == ["own"]
    clock.advance(timedelta(days=9).total_seconds())
    with capture_logs() as logs:
        await node._watch_keys()
        await node._watch_keys()
    assert [e["event"] for e in logs] == ["signing_key_not_valid"]
