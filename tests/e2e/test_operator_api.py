"""The operator surface over HTTP against a running node pair: health, the JSON API,
access control, bad input. Every response is validated against schemas/openapi.json."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from eodes_node.core.records import as_json_dict
from eodes_node.samples import SampleFactory
from eodes_node.testing import NodePair, Side
from tests.e2e.http_client import Api, Checked, api

pytestmark = pytest.mark.broker

CHECKED = Checked()  # shared: the last test asserts every documented route was exercised


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[NodePair]:
    async with NodePair(tmp_path, http=True) as nodes:
        await nodes.start()
        yield nodes


def records(count: int, seed: int) -> list[dict[str, Any]]:
    return [as_json_dict(c) for c in SampleFactory("KCFTA", seed=seed).certificates(count)]


def number(record: dict[str, Any]) -> str:
    return str(record["header"]["certificate_number"])


def decision(record: dict[str, Any], denied: dict[int, str]) -> dict[str, Any]:
    items = [
        {"item_number": i["item_number"], "granted": i["item_number"] not in denied}
        | ({"reason": denied[i["item_number"]]} if i["item_number"] in denied else {})
        for i in record["items"]
    ]
    granted = sum(1 for i in items if i["granted"])
    return {
        "certificate_number": number(record),
        "decision": "granted" if granted == len(items) else "partial" if granted else "denied",
        "import_declaration": {"reference": "IMP-7", "date": record["header"]["issue_date"]},
        "items": items,
    }


async def until(check: Any, within: float = 30.0) -> Any:
    """Poll ``check`` (an async callable returning a truthy value when done) to a deadline."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not reached within {within} s: last {result!r}")
        await asyncio.sleep(0.1)


async def delivered(client: Api, side: Side, count: int) -> None:
    async def check() -> bool:
        _, page, _ = await client.call(
            "GET", "/api/v1/certificates?state=delivered", token=side.viewer_token
        )
        return bool(page["total"] >= count)

    await until(check)


async def test_health_and_readiness_answer_without_a_token(pair: NodePair) -> None:
    async with api(pair.kr.http_url, CHECKED) as client:
        status, body, _ = await client.call("GET", "/healthz")
        assert (status, body) == (200, {"status": "alive"})

        async def ready() -> bool:
            status, _, _ = await client.call("GET", "/readyz")
            return status == 200

        await until(ready)
        _, body, _ = await client.call("GET", "/readyz")
        assert body == {"status": "ready"}


async def test_readiness_names_what_is_down_while_draining(pair: NodePair) -> None:
    async with api(pair.cn.http_url, CHECKED) as client:
        await until(lambda: _status(client, "/readyz", 200))
        assert pair.cn.node is not None
        await pair.cn.node.broker.stop_consuming()  # the consumers are gone, the rest is up
        status, body, _ = await client.call("GET", "/readyz")
        assert status == 503
        assert body["title"] == "Not ready"
        assert any("no consumer on" in d for d in body["down"]), body


async def _status(client: Api, path: str, wanted: int) -> bool:
    status, _, _ = await client.call("GET", path)
    return status == wanted


async def test_listing_and_detail_show_receipts_feedback_and_filters(pair: NodePair) -> None:
    one, two, three = records(3, seed=21)
    two["items"] = [two["items"][0], dict(two["items"][0], item_number=2)]
    await pair.kr.submit([one, two, three])
    await pair.cn.clearance.wait_count(3)
    await pair.cn.submit_feedback(decision(one, {}))
    denied = {2: "QUANTITY_EXCEEDED"}
    await pair.cn.submit_feedback(decision(two, denied))
    await pair.kr.issuing.wait_count(2)
    kr = pair.kr
    async with api(kr.http_url, CHECKED) as client:
        await delivered(client, kr, 1)
        status, page, _ = await client.call("GET", "/api/v1/certificates", token=kr.viewer_token)
        assert status == 200
        assert page["total"] == 3
        assert {i["number"] for i in page["items"]} == {number(r) for r in (one, two, three)}
        assert {i["side"] for i in page["items"]} == {"exporter"}
        assert {i["agreement"] for i in page["items"]} == {"KCFTA"}

        # Paginated with a cursor: two pages, no overlap, nothing missing.
        _, first, _ = await client.call(
            "GET", "/api/v1/certificates?limit=2", token=kr.viewer_token
        )
        assert len(first["items"]) == 2
        assert first["next_cursor"]
        _, second, _ = await client.call(
            "GET",
            f"/api/v1/certificates?limit=2&cursor={first['next_cursor']}",
            token=kr.viewer_token,
        )
        assert second["next_cursor"] is None
        numbers = [i["number"] for i in first["items"] + second["items"]]
        assert sorted(numbers) == sorted(number(r) for r in (one, two, three))

        # Filters: state, agreement (any case), number (any case), issue dates.
        _, granted, _ = await client.call(
            "GET",
            "/api/v1/certificates?state=granted&side=exporter&agreement=kcfta",
            token=kr.viewer_token,
        )
        assert [i["number"] for i in granted["items"]] == [number(one)]
        _, by_number, _ = await client.call(
            "GET", f"/api/v1/certificates?number={number(two).lower()}", token=kr.viewer_token
        )
        assert [i["number"] for i in by_number["items"]] == [number(two)]
        ref = one["header"]["reference_number"].lower()
        _, by_ref, _ = await client.call(
            "GET", f"/api/v1/certificates?number={ref}", token=kr.viewer_token
        )
        assert [i["number"] for i in by_ref["items"]] == [number(one)]
        day = one["header"]["issue_date"]
        _, dated, _ = await client.call(
            "GET",
            f"/api/v1/certificates?issued_from={day}&issued_to={day}",
            token=kr.viewer_token,
        )
        assert number(one) in {i["number"] for i in dated["items"]}
        _, none, _ = await client.call(
            "GET", "/api/v1/certificates?issued_to=2000-01-01", token=kr.viewer_token
        )
        assert none == {"items": [], "total": 0, "next_cursor": None}

        # Detail, looked up in lower case: the receipt, the feedback per item with reasons.
        status, detail, _ = await client.call(
            "GET", f"/api/v1/certificates/{number(two).lower()}", token=kr.viewer_token
        )
        assert status == 200
        (side,) = detail["sides"]
        assert side["number"] == number(two)
        assert side["state"] == "partial"
        coo = [m for m in side["messages"] if m["kind"] == "coo"]
        assert [(m["direction"], m["status"]) for m in coo] == [("out", "delivered")]
        (fb,) = side["feedback"]
        assert fb["decision"] == "partial"
        assert fb["declaration_reference"] == "IMP-7"
        refused = [i for i in fb["items"] if not i["granted"]]
        assert [(i["item_number"], i["reason"]) for i in refused] == list(denied.items())
        assert [h["event"] for h in side["history"]][:2] == ["submitted", "receipt_accepted"]

        _, board, _ = await client.call("GET", "/api/v1/dashboard", token=kr.viewer_token)
        assert board["node"] == "KR"
        assert board["partner"] == "CN"
        assert sum(board["by_state"]["exporter"].values()) == 3
        assert board["last_receipt_at"] is not None

    async with api(pair.cn.http_url, CHECKED) as client:
        _, cn_detail, _ = await client.call(
            "GET", f"/api/v1/certificates/{number(two)}", token=pair.cn.viewer_token
        )
        (side,) = cn_detail["sides"]
        assert side["side"] == "importer"
        assert [m["status"] for m in side["messages"] if m["kind"] == "coo"] == ["accepted"]
        assert side["feedback"][0]["direction"] == "out"


async def test_bad_input_unknown_certificates_and_tokens(pair: NodePair) -> None:
    kr = pair.kr
    async with api(kr.http_url, CHECKED) as client:
        for query, named in (
            ("limit=abc", "limit"),
            ("limit=0", "limit"),
            ("state=lost", "state"),
            ("issued_from=2026-13-01", "issued_from"),
            ("colour=red", "colour"),
            ("issued_from=2026-02-01&issued_to=2026-01-01", "issued_from"),
            ("limit=1&limit=2", "limit"),
            ("cursor=not-a-cursor", "cursor"),
        ):
            status, body, response = await client.call(
                "GET", f"/api/v1/certificates?{query}", token=kr.viewer_token
            )
            assert status == 400, query
            assert response.content_type == "application/problem+json"
            assert named in body["detail"], (query, body)
        status, body, _ = await client.call(
            "GET", "/api/v1/certificates/KR2099NOPE", token=kr.viewer_token
        )
        assert (status, body["title"]) == (404, "Not found")
        assert "KR2099NOPE" in body["detail"]

        status, body, response = await client.call("GET", "/api/v1/certificates")
        assert status == 401
        assert "Bearer" in response.headers["WWW-Authenticate"]
        status, body, _ = await client.call("GET", "/api/v1/certificates", token="x" * 32)
        assert status == 401
        assert "not valid" in body["detail"]
        status, body, _ = await client.call(
            "POST", "/api/v1/certificates/KR2099NOPE/resend", token=kr.viewer_token
        )
        assert status == 403
        assert "operator" in body["detail"]
        status, body, _ = await client.call(
            "POST", "/api/v1/certificates/KR2099NOPE/resend", token=kr.operator_token
        )
        assert status == 404
        status, body, _ = await client.call(
            "POST",
            "/api/v1/dead-letters/records/replay",
            token=kr.operator_token,
            data=b"{not json",
            headers={"Content-Type": "application/json"},
        )
        assert status == 400
        assert "not valid JSON" in body["detail"]
        status, body, _ = await client.call(
            "POST",
            "/api/v1/dead-letters/records/replay",
            token=kr.operator_token,
            json={"limit": -1},
        )
        assert status == 400
        assert body["errors"][0]["name"] == "limit"


async def test_a_delivered_certificate_cannot_be_resent(pair: NodePair) -> None:
    (record,) = records(1, seed=33)
    await pair.kr.submit([record])
    async with api(pair.kr.http_url, CHECKED) as client:
        await delivered(client, pair.kr, 1)
        status, body, _ = await client.call(
            "POST", f"/api/v1/certificates/{number(record)}/resend", token=pair.kr.operator_token
        )
        assert status == 409
        assert "only a failed or rejected" in body["detail"]
    async with api(pair.cn.http_url, CHECKED) as client:
        status, body, _ = await client.call(
            "POST", f"/api/v1/certificates/{number(record)}/resend", token=pair.cn.operator_token
        )
        assert status == 409
        assert "only its sender" in body["detail"]


async def test_metrics_count_the_traffic_in_prometheus_format(pair: NodePair) -> None:
    batch = records(4, seed=41)
    await pair.kr.submit(batch)
    await pair.kr.publish(pair.kr.topology.outbound_records, b"{not json", kind="coo")
    await pair.cn.clearance.wait_count(4)
    await pair.kr.events.wait_for(lambda _: len(pair.kr.events.event_items("delivered")) >= 4)
    async with api(pair.kr.http_url, CHECKED) as client:

        async def scraped() -> str | None:
            status, body, response = await client.call("GET", "/metrics")
            assert status == 200
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = body.decode()
            done = 'eodes_messages_out_total{kind="coo",status="delivered"} 4.0' in text
            return text if done else None

        text = await until(scraped)
        status, stream, _ = await client.call(
            "GET", "/api/v1/events?follow=false", token=pair.kr.viewer_token
        )
        events = [orjson.loads(line) for line in stream.splitlines()]
        assert status == 200
        assert {"delivered", "record_rejected"} <= {e["event"] for e in events}
    for sample in (
        'eodes_messages_out_total{kind="coo",status="sent"} 4.0',
        'eodes_records_refused_total{door="records"} 1.0',
        'eodes_dead_letters_total{door="records"} 1.0',
        "eodes_pending_messages 0.0",
        'eodes_certificates{role="exporter",state="delivered"} 4.0',
        'eodes_key_expires_in_seconds{kid="',
        "eodes_receipt_round_trip_seconds_count 4.0",
        'eodes_batch_size_count{door="records"}',
        "eodes_store_commit_seconds_count",
    ):
        assert sample in text, sample
    async with api(pair.cn.http_url, CHECKED) as client:
        _, body, _ = await client.call("GET", "/metrics")
    assert 'eodes_messages_in_total{kind="coo",status="accepted"} 4.0' in body.decode()


async def test_every_documented_route_was_exercised() -> None:
    """Runs last in this module: the document describes no route the tests never met."""
    documented = {
        (method.upper(), path) for path, item in CHECKED.doc["paths"].items() for method in item
    }
    met = {(method, path) for method, path, _ in CHECKED.seen}
    if not met:
        pytest.skip("run with the other tests of this module")
    missing = documented - met
    assert not missing, f"documented but never called: {sorted(missing)}"
