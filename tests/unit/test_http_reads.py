"""The operators' report index is kept current only while someone reads certificates:
a probe of /healthz, /readyz or /metrics does not count as a reader."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from eodes_node.adapters.http.app import LAST_READ, HttpServer, note_reads
from eodes_node.config import HttpSection


async def ok(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def test_only_reads_of_certificates_count_as_readers() -> None:
    app = web.Application(middlewares=[note_reads])
    app[LAST_READ] = [float("-inf")]
    for path in ("/metrics", "/readyz", "/api/v1/dashboard"):
        app.router.add_get(path, ok)
    server = HttpServer(app, HttpSection())
    async with TestClient(TestServer(app)) as client:
        for probe in ("/metrics", "/readyz"):
            assert (await client.get(probe)).status == 200
        assert not server.read_within(600)
        assert (await client.get("/api/v1/dashboard")).status == 200
        assert server.read_within(600)
