"""Reloading keys in a running node (what SIGHUP does) and the expiry warnings, on fakes;
the same with two node processes over RabbitMQ is tests/e2e/test_key_rotation.py."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from eodes_node.bootstrap import build_node
from eodes_node.config import BrokerSection, KeysSection, NodeConfig, NodeSection, StoreSection
from eodes_node.core.jws import KeySet, PrivateKey
from eodes_node.keyfiles import revoke_key, rotate_keys, write_jwks, write_private_key
from eodes_node.runtime import Node
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
    "breakage",
    [
        pytest.param(lambda d: (d / "cn.jwks.json").write_text('{"keys": ['), id="bad-json"),
        pytest.param(lambda d: (d / "cn.jwks.json").unlink(), id="missing"),
        pytest.param(lambda d: (d / "kr.key.pem").chmod(0o644), id="key-readable"),
    ],
)
def test_a_failed_reload_keeps_the_keys_in_use_and_logs_one_error(
    node: Node, tmp_path: Path, breakage: object
) -> None:
    before = node.service.id
    breakage(tmp_path)  # type: ignore[operator]
    with capture_logs() as logs:
        assert not node.reload_keys()
    assert node.service.id is before
    assert [entry["event"] for entry in logs] == ["keys_reload_failed"]
    assert logs[0]["log_level"] == "error"


def test_reloading_a_revoked_signing_key_is_refused(node: Node) -> None:
    before = node.service.id
    revoke_key(node.config.keys.private_key, before.key.kid, now=int(time.time()), force=True)
    with capture_logs() as logs:
        assert not node.reload_keys()
    assert "our signing key may not sign now" in logs[0]["error"]
    assert node.service.id is before


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
