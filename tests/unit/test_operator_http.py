"""The HTTP adapter on the fakes: access control, problem documents, health, metrics and
the event stream, through aiohttp's test client (no broker, no database)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from eodes_node.adapters.http.access import Access, Role, parse_tokens
from eodes_node.adapters.http.app import create_app
from eodes_node.adapters.http.context import HttpContext
from eodes_node.config import HttpSection
from eodes_node.errors import ConfigError
from eodes_node.service.feed import EventFeed
from eodes_node.testing.services import ServicePair
from tests.unit.test_service import number, records

OPERATOR = "o" * 20
VIEWER = "v" * 20


class Down:
    def __init__(self) -> None:
        self.down: list[str] = []

    async def __call__(self) -> Sequence[str]:
        return self.down


@pytest.fixture
async def served() -> AsyncIterator[tuple[TestClient[Any, Any], ServicePair, Down, EventFeed]]:
    pair = ServicePair()
    await pair.kr.submit(records(2, seed=3))
    await pair.exchange()
    down, feed = Down(), EventFeed()
    settings = HttpSection(enabled=True, port=0)
    context = HttpContext(
        settings=settings,
        own="KR",
        partner="CN",
        reports=pair.kr.store,
        access=Access(parse_tokens(f"operator:{OPERATOR}:ops,viewer:{VIEWER}", where="test")),
        clock=pair.clock,
        metrics=pair.kr.svc.metrics,
        readiness=down,
        own_jwks={"keys": []},
        partner_jwks={"keys": []},
        events=feed,
    )
    async with TestClient(TestServer(create_app(context))) as client:
        yield client, pair, down, feed


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_errors_are_problem_documents(served: Any) -> None:
    client, _, _, _ = served
    for path, status in (
        ("/nowhere", 404),
        ("/api/v1/certificates?limit=x", 400),
        ("/api/v1/certificates/KR0000", 404),
    ):
        response = await client.get(path, headers=bearer(VIEWER))
        assert response.status == status, path
        assert response.content_type == "application/problem+json"
        body = await response.json(content_type=None)
        assert body["status"] == status
        assert body["type"].startswith("/problems/")
        assert body["instance"] == path.split("?")[0]
    response = await client.delete("/api/v1/certificates", headers=bearer(VIEWER))
    assert response.status == 405
    assert "GET" in response.headers["Allow"]
    response = await client.post(
        f"/api/v1/certificates/{number(records(1, seed=3)[0])}/resend",
        headers={**bearer(OPERATOR), "Content-Type": "text/plain"},
        data=b"please",
    )
    assert response.status == 415


async def test_roles_and_tokens(served: Any) -> None:
    client, _, _, _ = served
    assert (await client.get("/api/v1/dashboard")).status == 401
    assert (
        await client.get("/api/v1/dashboard", headers={"Authorization": "Basic x"})
    ).status == 401
    assert (await client.get("/api/v1/dashboard", headers=bearer("n" * 20))).status == 401
    assert (await client.get("/api/v1/dashboard", headers=bearer(VIEWER))).status == 200
    forbidden = await client.post("/api/v1/dead-letters/records/replay", headers=bearer(VIEWER))
    assert forbidden.status == 403
    assert "viewer-2 is a viewer" in (await forbidden.json(content_type=None))["detail"]
    # No actions wired into this app: an operator gets 503, not a crash.
    refused = await client.post("/api/v1/dead-letters/records/replay", headers=bearer(OPERATOR))
    assert refused.status == 503


def test_token_lists_are_checked() -> None:
    with pytest.raises(ConfigError, match="entry 1: must start with its role"):
        parse_tokens("admin:" + "x" * 20, where="http.tokens")
    # A line holding only a token must not put that token in the error (and the journal).
    secret = "s3cr3t-token-value-0123456789"
    with pytest.raises(ConfigError) as refused:
        parse_tokens(f"viewer:{VIEWER}\n{secret}", where="http.tokens_file")
    assert "entry 2" in str(refused.value)
    assert secret not in str(refused.value)
    with pytest.raises(ConfigError, match="at least 16 characters"):
        parse_tokens("viewer:short", where="http.tokens")
    entries = parse_tokens(f"# ops\noperator:{OPERATOR}:alice\n\nviewer:{VIEWER}", where="f")
    access = Access(entries)
    assert access.token_with(Role.OPERATOR) == OPERATOR
    assert access.token_with(Role.VIEWER) == OPERATOR  # an operator may view
    assert access.principal(VIEWER) is not None
    assert access.principal("x" * 20) is None


def test_a_non_loopback_bind_needs_tls_or_an_override() -> None:
    with pytest.raises(ValueError, match="not loopback"):
        HttpSection(host="0.0.0.0")
    assert HttpSection(host="0.0.0.0", allow_insecure_bind=True).allow_insecure_bind
    with pytest.raises(ValueError, match="go together"):
        HttpSection(tls_cert=Path("cert.pem"))
    assert HttpSection(tokens=SecretStr("secret")).model_dump_json().count("secret") == 0


async def test_readiness_names_what_is_down(served: Any) -> None:
    client, _, down, _ = served
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/readyz")).status == 200
    down.down = ["partner broker link down, reconnecting"]
    response = await client.get("/readyz")
    assert response.status == 503
    body = await response.json(content_type=None)
    assert body["down"] == ["partner broker link down, reconnecting"]


async def test_metrics_show_counters_and_store_gauges(served: Any) -> None:
    client, _, _, _ = served
    text = await (await client.get("/metrics")).text()
    assert 'eodes_messages_out_total{kind="coo",status="delivered"} 2.0' in text
    assert 'eodes_certificates{role="exporter",state="delivered"} 2.0' in text
    assert "eodes_pending_messages 0.0" in text
    assert "eodes_receipt_round_trip_seconds_count 2.0" in text


async def test_the_event_stream_gives_recent_events_then_ends(served: Any) -> None:
    client, _, _, feed = served
    feed.extend([orjson.dumps({"event": "delivered", "items": []})])
    response = await client.get("/api/v1/events?follow=false", headers=bearer(VIEWER))
    assert response.content_type == "application/x-ndjson"
    lines = (await response.read()).splitlines()
    assert [orjson.loads(line)["event"] for line in lines] == ["delivered"]
    bad = await client.get("/api/v1/events?follow=maybe", headers=bearer(VIEWER))
    assert bad.status == 400


async def test_every_route_of_ours_is_in_the_openapi_document(served: Any) -> None:
    from eodes_node.adapters.http.openapi import document

    client, _, _, _ = served
    paths = document()["paths"]
    ours = [
        (route.method.lower(), route.resource.canonical)
        for route in client.server.app.router.routes()
        if route.resource is not None
        and route.method != "HEAD"
        and route.resource.canonical.startswith(("/api/", "/healthz", "/readyz", "/metrics"))
    ]
    assert ours
    missing = [(m, p) for m, p in ours if m not in paths.get(p, {})]
    assert not missing, f"routes missing from schemas/openapi.json: {missing}"
