"""Metrics, the event feed and the replay action on the fakes: what operators read."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from eodes_node.core.jws import PrivateKey, PublicKey
from eodes_node.core.plan import Plan
from eodes_node.service.feed import EventFeed
from eodes_node.service.metrics import NodeMetrics
from eodes_node.service.repairs import RepairRefused, Repairs
from eodes_node.testing.services import ServicePair


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    found = registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def test_notes_of_a_committed_plan_become_counters() -> None:
    metrics = NodeMetrics()
    plan = Plan()
    plan.note("warning", "partner_message_refused", None, None, code="BAD_SIGNATURE")
    plan.note("info", "duplicate_received", "m1", "C1", kind="coo")
    plan.note("warning", "local_record_rejected", None, None, kind="feedback")
    plan.note("error", "delivery_failed", "m2", "C2", kind="coo", attempts=3)
    plan.note("info", "receipt_received", "m3", "C3", status="rejected", code="RULE_VIOLATION")
    metrics.committed(plan, 0.002)
    r = metrics.registry
    assert value(r, "eodes_messages_in_total", kind="unknown", status="refused") == 1
    assert value(r, "eodes_rejections_total", code="BAD_SIGNATURE", by="us") == 1
    assert value(r, "eodes_messages_in_total", kind="coo", status="duplicate") == 1
    assert value(r, "eodes_records_refused_total", door="feedback") == 1
    assert value(r, "eodes_failed_total", kind="coo") == 1
    assert value(r, "eodes_messages_out_total", kind="coo", status="failed") == 1
    assert value(r, "eodes_rejections_total", code="RULE_VIOLATION", by="partner") == 1
    assert value(r, "eodes_store_commit_seconds_count") == 1


def test_keys_report_the_time_left_and_reconnects_count() -> None:
    metrics = NodeMetrics()
    key = PrivateKey.generate("Ed25519").public
    expiring = PublicKey(key.kid, key.alg, key.key, expires=2**40)
    metrics.watch_keys("own", [key])
    metrics.watch_keys("CN", [expiring])
    metrics.reconnected("partner")
    metrics.resent(3)
    metrics.resent(0)
    text = metrics.render().decode()
    assert f'eodes_key_expires_in_seconds{{kid="{key.kid}",owner="own"}} +Inf' in text
    left = value(metrics.registry, "eodes_key_expires_in_seconds", owner="CN", kid=key.kid)
    assert 0 < left < 2**40
    assert value(metrics.registry, "eodes_broker_reconnects_total", link="partner") == 1
    assert value(metrics.registry, "eodes_resends_total") == 3


async def test_followers_get_recent_then_new_events_and_a_slow_one_is_dropped() -> None:
    feed = EventFeed()
    feed.extend([b"old"])
    follower = feed.follow()
    assert await anext(follower) == b"old"  # subscribed from here on
    feed.extend([b"new"])
    assert await anext(follower) == b"new"
    await follower.aclose()
    assert not feed._followers

    slow = feed.follow()
    assert await anext(slow) == b"old"
    feed.extend([b"x"] * 1001)  # far behind: its stream ends rather than the node wait
    remaining = [body async for body in slow]
    assert remaining == [b"new"] + [b"x"] * 1000  # the rest of the backlog, then cut off
    assert not feed._followers
    assert [body async for body in feed.follow(live=False)][-1] == b"x"


class FakeDeadLetters:
    def __init__(self, waiting: int) -> None:
        self.waiting = waiting
        self.moves: list[tuple[str, str, int]] = []

    async def replay(self, dead_letter_queue: str, to_queue: str, limit: int) -> int:
        self.moves.append((dead_letter_queue, to_queue, limit))
        moved = min(limit, self.waiting)
        self.waiting -= moved
        return moved

    async def count(self, queue: str) -> int:
        return self.waiting


async def test_replay_moves_a_doors_dead_letters_back_and_counts_them() -> None:
    pair = ServicePair()
    dead = FakeDeadLetters(waiting=3)
    repairs = Repairs(pair.kr.svc, pair.kr.store, dead, pair.kr.svc.metrics)
    outcome = await repairs.replay_dead("feedback", 2)
    queue = pair.kr.topology.outbound_feedback
    assert outcome == {"door": "feedback", "queue": queue, "moved": 2}
    assert dead.moves == [(f"{queue}.dead", queue, 2)]
    registry = pair.kr.svc.metrics.registry
    assert value(registry, "eodes_dead_letters_replayed_total", door="feedback") == 2
    assert (await repairs.replay_dead("feedback", 10))["moved"] == 1
    assert (await repairs.replay_dead("feedback", 10))["moved"] == 0


async def test_a_service_without_its_sent_messages_cannot_resend() -> None:
    pair = ServicePair()
    with pytest.raises(RepairRefused, match="not sent from this node"):
        await pair.kr.svc.resend("KR2026NOPE")
    pair.kr.svc.sent = None
    with pytest.raises(RepairRefused, match="without access to its sent messages"):
        await pair.kr.svc.resend("KR2026NOPE")
