"""The operator surface under a broker fault, on a private RabbitMQ node (the shared one
is never disturbed): readiness says what is down, reconnects are counted, both recover."""

from __future__ import annotations

from pathlib import Path

import pytest

import eodes_node.testing.pair as pair_module
from eodes_node.testing import NodePair
from eodes_node.testing.rabbit import PrivateRabbit
from tests.e2e.http_client import Api, api
from tests.e2e.test_operator_api import CHECKED, until
from tests.e2e.test_operator_repairs import metric

pytestmark = pytest.mark.broker


async def _ready(client: Api) -> bool:
    status, _, _ = await client.call("GET", "/readyz")
    return status == 200


@pytest.mark.timeout(240)
async def test_closed_connections_are_counted_and_readiness_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with PrivateRabbit(tmp_path / "rabbit") as rabbit:
        for vhost in ("eodes-test-kr", "eodes-test-cn"):
            await rabbit.add_vhost(vhost)
        monkeypatch.setattr(pair_module, "BROKER", rabbit.url(""))
        async with NodePair(tmp_path / "nodes", http=True) as pair:
            await pair.start()
            async with api(pair.kr.http_url, CHECKED) as client:
                await until(lambda: _ready(client))  # the partner link is up too
                closed = await rabbit.close_connections("operator surface fault test")
                assert closed >= 4  # both nodes' local and partner links, at least

                async def reconnected() -> bool:
                    _, body, _ = await client.call("GET", "/metrics")
                    text = body.decode()
                    local = metric(text, "eodes_broker_reconnects_total", link="local")
                    partner = metric(text, "eodes_broker_reconnects_total", link="partner")
                    return local >= 1 and partner >= 1

                await until(reconnected, within=60)
                await until(lambda: _ready(client), within=60)
