"""The node's Prometheus metrics: one registry per node, fed from what the service commits.

Counters move only after a commit, from the plan's rows and notes, so a batch whose
commit failed counts nothing (as it logs nothing). Names follow Prometheus conventions:
``eodes_`` prefix, ``_total`` for counters, ``_seconds`` for durations.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from eodes_node.core.jws import PublicKey
from eodes_node.core.plan import DeadLetter, Plan

_IN_FLIGHT_CAP = 200_000  # send times kept for the round-trip histogram
_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)
_COMMIT = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5)
_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class NodeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.messages_in = Counter(
            "eodes_messages_in_total",
            "Partner messages taken in, by kind and status (accepted, rejected, duplicate, "
            "refused: failed verification).",
            ["kind", "status"],
            registry=r,
        )
        self.messages_out = Counter(
            "eodes_messages_out_total",
            "Our messages to the partner, by kind and status (sent, delivered, rejected, failed).",
            ["kind", "status"],
            registry=r,
        )
        self.rejections = Counter(
            "eodes_rejections_total",
            "Rejections by code; by=us for partner messages we refused, by=partner for ours.",
            ["code", "by"],
            registry=r,
        )
        self.refused = Counter(
            "eodes_records_refused_total",
            "Local records refused and dead-lettered, by door (records, feedback).",
            ["door"],
            registry=r,
        )
        self.resends = Counter(
            "eodes_resends_total", "Automatic resends of a message without receipt.", registry=r
        )
        self.operator_resends = Counter(
            "eodes_operator_resends_total",
            "Certificates sent again on an operator's request.",
            registry=r,
        )
        self.failed = Counter(
            "eodes_failed_total", "Messages that spent their retry budget.", ["kind"], registry=r
        )
        self.dead_letters = Counter(
            "eodes_dead_letters_total", "Messages dead-lettered, by door.", ["door"], registry=r
        )
        self.replayed = Counter(
            "eodes_dead_letters_replayed_total",
            "Dead letters moved back to their door by an operator.",
            ["door"],
            registry=r,
        )
        self.pending = Gauge(
            "eodes_pending_messages", "Sent messages without a receipt yet.", registry=r
        )
        self.pending_age = Gauge(
            "eodes_pending_oldest_age_seconds",
            "Age of the oldest sent message without a receipt (0 when none).",
            registry=r,
        )
        self.round_trip = Histogram(
            "eodes_receipt_round_trip_seconds",
            "From the first send of a message to the partner's receipt for it.",
            buckets=_LATENCY,
            registry=r,
        )
        self.batch_size = Histogram(
            "eodes_batch_size",
            "Deliveries handled together, by door.",
            ["door"],
            buckets=_SIZES,
            registry=r,
        )
        self.commit_seconds = Histogram(
            "eodes_store_commit_seconds", "Store commit latency.", buckets=_COMMIT, registry=r
        )
        self.reconnects = Counter(
            "eodes_broker_reconnects_total",
            "Broker connections re-established, by link (local, partner).",
            ["link"],
            registry=r,
        )
        self.key_expiry = Gauge(
            "eodes_key_expires_in_seconds",
            "Seconds until a key expires (+Inf: no expiry); owner=own or the partner.",
            ["owner", "kid"],
            registry=r,
        )
        self.certificates = Gauge(
            "eodes_certificates",
            "Certificates held, by role (exporter, importer) and state.",
            ["role", "state"],
            registry=r,
        )
        self._keys: dict[str, list[PublicKey]] = {}
        self._sent: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def render(self) -> bytes:
        self._key_expiry(time.time())
        return generate_latest(self.registry)

    # -- fed by the service ---------------------------------------------------------------

    def committed(self, plan: Plan, seconds: float) -> None:
        """Count what a committed plan did: rows, settlements, refusals, failures."""
        if seconds:
            self.commit_seconds.observe(seconds)
        now = time.monotonic()
        for row in plan.outbound:
            self.messages_out.labels(row.kind.value, "sent").inc()
            if row.next_attempt_at is not None:
                self._remember(row.message_id, row.kind.value, now)
        for inbound in plan.inbound:
            if inbound.kind.value == "receipt" and inbound.status == "accepted":
                continue  # receipts are counted by what they settle
            self.messages_in.labels(inbound.kind.value, inbound.status).inc()
            if inbound.code:
                self.rejections.labels(inbound.code, "us").inc()
        for note in plan.notes:
            self._note(note.event, note.message_id, note.fields, now)
        for effect in plan.effects:
            if isinstance(effect, DeadLetter):
                self.dead_letters.labels(effect.door.value).inc()

    def _note(
        self, event: str, message_id: str | None, values: Mapping[str, Any], now: float
    ) -> None:
        if event == "receipt_received" and message_id:
            self._settled(message_id, str(values.get("status")), values.get("code"), now)
        elif event == "partner_message_refused":
            self.messages_in.labels("unknown", "refused").inc()
            self.rejections.labels(str(values.get("code")), "us").inc()
        elif event == "duplicate_received":
            self.messages_in.labels(str(values.get("kind")), "duplicate").inc()
        elif event == "local_record_rejected":
            door = "feedback" if values.get("kind") == "feedback" else "records"
            self.refused.labels(door).inc()
        elif event == "delivery_failed":
            kind = str(values.get("kind"))
            self.failed.labels(kind).inc()
            self.messages_out.labels(kind, "failed").inc()
            if message_id:
                self._sent.pop(message_id, None)

    def _settled(self, message_id: str, status: str, code: object, now: float) -> None:
        kind, sent_at = self._sent.pop(message_id, ("unknown", None))
        self.messages_out.labels(kind, status).inc()
        if sent_at is not None:
            self.round_trip.observe(now - sent_at)
        if status == "rejected" and code:
            self.rejections.labels(str(code), "partner").inc()

    def _remember(self, message_id: str, kind: str, at: float) -> None:
        self._sent[message_id] = (kind, at)
        if len(self._sent) > _IN_FLIGHT_CAP:
            self._sent.popitem(last=False)

    def batch(self, door: str, size: int) -> None:
        self.batch_size.labels(door).observe(size)

    def resent(self, count: int) -> None:
        if count:
            self.resends.inc(count)

    def reconnected(self, link: str) -> None:
        self.reconnects.labels(link).inc()

    def store_view(
        self, by_state: Mapping[str, Mapping[str, int]], pending: int, oldest_age_s: float
    ) -> None:
        """What the store says at scrape time: certificates by state, unreceipted sends."""
        for role, states in by_state.items():
            for state, count in states.items():
                self.certificates.labels(role, state).set(count)
        self.pending.set(pending)
        self.pending_age.set(max(oldest_age_s, 0.0))

    def watch_keys(self, owner: str, keys: Iterable[PublicKey]) -> None:
        """Export these keys' time to expiry (their ``exp``) at every scrape; a reload
        calls it again, and keys no longer watched leave the metric."""
        self._keys[owner] = list(keys)
        self.key_expiry.clear()

    def _key_expiry(self, now: float) -> None:
        for owner, keys in self._keys.items():
            for key in keys:
                left = float("inf") if key.expires is None else key.expires - now
                self.key_expiry.labels(owner, key.kid).set(left)
