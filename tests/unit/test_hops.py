"""The hop stamps the bench's latency breakdown reads: logged only when asked for, with
the keys that join them across the two nodes, and joined per certificate by the bench."""

from __future__ import annotations

import sys
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import orjson
import pytest
from structlog.testing import capture_logs

from eodes_node import hops
from eodes_node.adapters.amqp.consumer import AmqpConsumer
from eodes_node.core.records import as_json_dict
from eodes_node.core.work import Delivery
from eodes_node.samples import SampleFactory
from eodes_node.testing.services import ServicePair

# bench/ is a directory of scripts, imported the way bench/run.py imports its neighbours.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from breakdown import HOPS, PATH, SIDE, Stamps, breakdown, table


def _record() -> dict[str, Any]:
    (cert,) = SampleFactory("KCFTA", seed=3).certificates(1)
    return as_json_dict(cert)


def _hops(logs: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [entry for entry in logs if str(entry["event"]).startswith("hop_")]


async def test_untraced_batches_log_no_hops() -> None:
    pair = ServicePair()
    with capture_logs() as logs:
        await pair.kr.submit([_record()])
        await pair.exchange()
    assert _hops(logs) == []


async def test_traced_batches_stamp_consume_verify_commit_and_confirm(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hops, "TRACING", True)
    pair = ServicePair()
    record = _record()
    number = record["header"]["certificate_number"]
    with capture_logs() as logs:
        await pair.kr.submit([record])
        (coo,) = [p.message_id for p in pair.kr.transport.partner]
        await pair.exchange()
    stamped = _hops(logs)
    committed = [e for e in stamped if e["event"] == "hop_committed"]
    assert [(e["stage"], number in e["numbers"]) for e in committed[:2]] == [
        ("records", True),
        ("inbound", True),
    ]
    assert coo in committed[1]["ids"]  # CN's batch: joined to its settle by message id
    for entry in committed:
        assert entry["consumed_ns"] <= entry["verified_ns"] <= entry["at_ns"]
    confirmed = [e for e in stamped if e["event"] == "hop_confirmed" and number in e["numbers"]]
    assert len(confirmed) == 2  # KR's e-CO, then CN's receipt: both go to the partner
    assert committed[0]["at_ns"] <= confirmed[0]["at_ns"] <= committed[1]["consumed_ns"]
    assert [p.kind for p in pair.kr.transport.partner] == ["coo"]  # still published


class _Settles(AmqpConsumer):
    async def _settle(self, *args: Any, **kwargs: Any) -> None:
        return None


def _consumer() -> AmqpConsumer:
    async def handler(batch: Any) -> list[Any]:
        return []

    async def published(ids: Any) -> None:
        return None

    return _Settles(
        "q",
        channel=None,  # type: ignore[arg-type]
        handler=handler,
        published=published,
        dead_letter_queue="q.dead",
        events_queue="events",
        partner="CN",
        batch_max=10,
        batch_wait_s=0.01,
        timeout_s=1.0,
    )


@pytest.mark.parametrize("tracing", [True, False])
async def test_the_consumer_stamps_a_settled_batch_only_when_tracing(
    monkeypatch: pytest.MonkeyPatch, tracing: bool
) -> None:
    monkeypatch.setattr(hops, "TRACING", tracing)
    batch = [Delivery(b"{}", mid, "coo", {}, False) for mid in ("a", None, "b", "a")]
    with capture_logs() as logs:
        await _consumer()._process(batch)
    expected = [{"queue": "q", "ids": ["a", "b"]}] if tracing else []
    assert [{"queue": e["queue"], "ids": e["ids"]} for e in _hops(logs)] == expected


def _line(event: str, at: int, **fields: Any) -> bytes:
    return orjson.dumps({"event": event, "at_ns": at, **fields})


def test_the_bench_joins_the_stamps_of_both_nodes_per_certificate() -> None:
    ms = 1_000_000
    kr = Stamps.read(
        [
            b"not json",
            _line("record_accepted", 0),
            _line(
                "hop_committed", 4 * ms, stage="records", ids=[], numbers=["N1"],
                consumed_ns=1 * ms, verified_ns=2 * ms,
            ),
            _line("hop_confirmed", 8 * ms, numbers=["N1"]),
            _line(
                "hop_committed", 40 * ms, stage="inbound", ids=["r1"], numbers=["N1"],
                consumed_ns=30 * ms, verified_ns=31 * ms,
            ),
            _line("hop_settled", 45 * ms, queue="in", ids=["r1"]),
        ]
    )  # fmt: skip
    cn = Stamps.read(
        [
            _line(
                "hop_committed", 15 * ms, stage="inbound", ids=["c1"], numbers=["N1"],
                consumed_ns=10 * ms, verified_ns=12 * ms,
            ),
            _line("hop_confirmed", 20 * ms, numbers=["N1"]),
            _line("hop_settled", 22 * ms, queue="in", ids=["c1"]),
        ]
    )  # fmt: skip
    paths = {"N1": 0, "N2": 0, "N3": 0}
    result = breakdown(paths, {"N1": 50 * ms, "N2": 60 * ms}, kr, cn)
    assert result["traced"] == 1  # N2 has no stamps, N3 no receipt: not enough to rank
    assert result["hops"] == {}
    many = breakdown({"N1": 0, "N1b": 0}, {"N1": 50 * ms}, kr, cn)
    assert many["traced"] == 1
    kr.batches[("records", "N1b")] = kr.batches[("records", "N1")]
    kr.batches[("inbound", "N1b")] = kr.batches[("inbound", "N1")]
    cn.batches[("inbound", "N1b")] = cn.batches[("inbound", "N1")]
    kr.confirmed["N1b"] = kr.confirmed["N1"]
    cn.confirmed["N1b"] = cn.confirmed["N1"]
    full = breakdown({"N1": 0, "N1b": 0}, {"N1": 50 * ms, "N1b": 50 * ms}, kr, cn)
    assert list(full["hops"]) == list(HOPS)
    expected = [1, 1, 2, 4, 2, 2, 3, 5, 10, 1, 9, 5, 5]
    assert [full["hops"][h]["p50"] for h in PATH] == expected
    assert sum(expected) == 50  # the hops add up to the latency the bench measured
    assert full["hops"][SIDE[0]]["p50"] == 7
    assert table(full)[1].startswith("KR queue wait")
