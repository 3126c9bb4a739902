"""A node that cannot run says why in one line and exits non-zero: a broker that refuses
its virtual host or its login (real RabbitMQ), and a partner JWK Set that pins our own
key. Each node runs as its own process, as an operator starts it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from eodes_node.testing import NodePair, NodeProcess

pytestmark = pytest.mark.broker


async def _refused(config: Path, log: Path, env: dict[str, str] | None = None) -> str:
    """Run the node; it must exit non-zero with one line of output, which is returned."""
    node = NodeProcess(config, log, env)
    try:
        with pytest.raises(AssertionError, match="did not start"):
            await node.start(within=30)
        assert node.process is not None
        code = await asyncio.wait_for(node.process.wait(), 30)
    finally:
        if node.process is not None and node.process.returncode is None:
            await node.kill()
    output = log.with_suffix(".1.log").read_text().strip().splitlines()
    assert code != 0, output
    assert len(output) == 1, output
    return output[0]


@pytest.mark.timeout(90)
async def test_a_virtual_host_that_does_not_exist_is_one_line(tmp_path: Path) -> None:
    pair = NodePair(tmp_path)
    url = "amqp://guest:guest@127.0.0.1:5672/eodes-no-such-vhost"
    line = await _refused(pair.kr.write_config(), tmp_path / "kr", {"EODES_BROKER_LOCAL_URL": url})
    assert line == (
        "Error: the broker at amqp://guest@127.0.0.1:5672/eodes-no-such-vhost refused "
        "virtual host 'eodes-no-such-vhost': it does not exist, is not running, or user "
        "'guest' has no access to it (rabbitmqctl add_vhost / set_permissions)"
    )


@pytest.mark.timeout(90)
async def test_a_wrong_password_is_a_configuration_error_not_retried(tmp_path: Path) -> None:
    pair = NodePair(tmp_path)
    url = "amqp://guest:not-the-password@127.0.0.1:5672/eodes-test-kr"
    line = await _refused(pair.kr.write_config(), tmp_path / "kr", {"EODES_BROKER_LOCAL_URL": url})
    assert line == (
        "Error: the broker at amqp://guest@127.0.0.1:5672/eodes-test-kr refused the login "
        "of user 'guest' (ACCESS_REFUSED): wrong user name or password"
    )
    assert "not-the-password" not in line


@pytest.mark.timeout(90)
@pytest.mark.parametrize("pinned", ["ours alone", "ours among the partner's"])
async def test_a_partner_key_set_holding_our_own_key_is_refused(
    tmp_path: Path, pinned: str
) -> None:
    pair = NodePair(tmp_path)
    ours = orjson.loads((pair.kr.dir / "kr.jwks.json").read_bytes())["keys"]
    partner_jwks = pair.kr.config.keys.partner_jwks
    theirs = orjson.loads(partner_jwks.read_bytes())["keys"]
    keys = ours if pinned == "ours alone" else [*theirs, *ours]
    partner_jwks.write_bytes(orjson.dumps({"keys": keys}))
    line = await _refused(pair.kr.write_config(), tmp_path / "kr")
    assert line == (
        f"Error: the partner's JWK Set {partner_jwks} holds our own public key "
        f"{pair.kr.key.kid} ([keys] private_key): pin the keys CN's operators sent, never ours"
    )
