"""`eodes-node broker-setup` on a private RabbitMQ node: users and permissions are never
changed on the shared broker.

Run twice, it leaves the broker as it left it the first time; then the partner's
credentials can do what the link needs and nothing more, and our node runs the link
with the user it was given.
"""

from __future__ import annotations

import asyncio
import functools
import os
import secrets
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import quote

import aio_pika
import aiormq
import orjson
import pytest

import eodes_node.testing.pair as pair_module
from eodes_node.config import load_config
from eodes_node.core.records import as_json_dict
from eodes_node.provision import PARTNER_PASSWORD_ENV, link_access
from eodes_node.rabbitmqctl import Rabbitmqctl, differences
from eodes_node.samples import SampleFactory
from eodes_node.testing import NodePair, Side
from eodes_node.testing.rabbit import CTL, PrivateRabbit
from tests.e2e.test_operator_api import decision, number

pytestmark = [pytest.mark.broker, pytest.mark.timeout(300)]

EXE = str(Path(sys.executable).with_name("eodes-node"))
OURS, THEIRS = "eodes-test-kr", "eodes-test-cn"
NODE_USER, PARTNER_USER = "kr-node", "cn-node"


def root_or_skip() -> None:
    if os.geteuid() != 0 or not Path(CTL).exists():
        pytest.skip("a private RabbitMQ node needs root and Debian's rabbitmq-server")


@pytest.fixture
async def rabbit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[PrivateRabbit]:
    root_or_skip()
    async with PrivateRabbit(tmp_path / "rabbit", "eodes-test-setup") as node:
        # The partner's own broker, here on the same node; ours is left to broker-setup.
        await node.add_vhost(THEIRS)
        monkeypatch.setattr(pair_module, "BROKER", node.url(""))
        yield node


def url(rabbit: PrivateRabbit, user: str, password: str, vhost: str) -> str:
    return f"amqp://{user}:{quote(password, safe='')}@127.0.0.1:{rabbit.port}/{vhost}"


def secret_file(path: Path, secret: str) -> Path:
    path.write_text(secret + "\n")
    path.chmod(0o600)
    return path


async def broker_setup(
    rabbit: PrivateRabbit, config: Path, *extra: str, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """The real executable, as an operator runs it on the broker's machine."""
    process = await asyncio.create_subprocess_exec(
        EXE,
        "broker-setup",
        "--config",
        str(config),
        "--rabbitmqctl",
        CTL,
        "--node",
        rabbit.node,
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if not k.startswith("EODES_")} | (env or {}),
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def broker_state(rabbit: PrivateRabbit, vhost: str) -> list[str]:
    """Everything broker-setup may touch, as rabbitmqctl lists it."""
    listed = [
        ("list_users",),
        ("list_permissions", "-p", vhost),
        ("list_topic_permissions", "-p", vhost),
        ("list_exchanges", "-p", vhost, "name", "type", "durable", "auto_delete", "arguments"),
        ("list_queues", "-p", vhost, "name", "durable", "auto_delete", "arguments"),
        ("list_bindings", "-p", vhost),
    ]
    outputs = await asyncio.gather(*(rabbit.ctl(*args, "--quiet") for args in listed))
    return ["\n".join(sorted(out.splitlines())) for out in outputs]


async def refused(
    action: Callable[[aio_pika.abc.AbstractChannel], Awaitable[object]],
    connection: aio_pika.abc.AbstractConnection,
) -> str:
    """The broker's ACCESS_REFUSED for ``action`` on a channel of its own."""
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    with pytest.raises(aiormq.exceptions.ChannelAccessRefused) as caught:
        await action(channel)
    return str(caught.value)


async def count(rabbit: PrivateRabbit, queue: str) -> int:
    listed = await rabbit.ctl(
        "list_queues", "-p", OURS, "name", "messages", "--quiet", "--no-table-headers"
    )
    counts = dict(line.split("\t") for line in listed.splitlines() if "\t" in line)
    return int(counts[queue])


def point_at_provisioned_broker(
    pair: NodePair, rabbit: PrivateRabbit, passwords: dict[str, str]
) -> None:
    """KR consumes from its vhost as its node user; CN publishes there as the partner user."""

    def broker(side: Side, **urls: str) -> None:
        side.config = side.config.model_copy(
            update={"broker": side.config.broker.model_copy(update=urls)}
        )

    broker(pair.kr, local_url=url(rabbit, NODE_USER, passwords[NODE_USER], OURS))
    broker(pair.cn, partner_url=url(rabbit, PARTNER_USER, passwords[PARTNER_USER], OURS))


async def test_broker_setup_gives_the_partner_publish_as_itself_and_nothing_else(
    rabbit: PrivateRabbit, tmp_path: Path
) -> None:
    passwords = {
        NODE_USER: secrets.token_urlsafe(18) + "/:@",
        PARTNER_USER: secrets.token_urlsafe(18),
    }
    pair = NodePair(tmp_path / "nodes")
    point_at_provisioned_broker(pair, rabbit, passwords)
    config = pair.kr.write_config()
    partner_secret = secret_file(tmp_path / "cn-node.password", passwords[PARTNER_USER])
    t = pair.kr.topology

    first = await broker_setup(rabbit, config, "--partner-password-file", str(partner_secret))
    assert first[0] == 0, first
    after_first = await broker_state(rabbit, OURS)
    second = await broker_setup(rabbit, config, "--partner-password-file", str(partner_secret))
    assert second[0] == 0, second
    assert await broker_state(rabbit, OURS) == after_first
    assert "broker-setup: done" in second[1]
    assert f"user {PARTNER_USER} (CN's node): configure '^$'" in second[1]
    # Nothing the node declares is missing, and nothing else was made.
    access = link_access(load_config(config), None)
    assert differences(access, Rabbitmqctl(CTL, rabbit.node)) == []
    listed = await rabbit.ctl("list_queues", "-p", OURS, "name", "--quiet", "--no-table-headers")
    assert sorted(listed.split()) == sorted(access.queues)

    partner = await aio_pika.connect(url(rabbit, PARTNER_USER, passwords[PARTNER_USER], OURS))
    try:
        channel = await partner.channel(publisher_confirms=True, on_return_raises=True)
        inbound = await channel.get_exchange(t.inbound_exchange, ensure=False)
        # CAN: its own country's envelope into our inbound exchange, confirmed and routed.
        await inbound.publish(aio_pika.Message(b"from CN"), routing_key="CN", mandatory=True)
        assert await count(rabbit, t.inbound_queue) == 1
        # CANNOT publish as another country: no binding routes any other code.
        with pytest.raises(aio_pika.exceptions.DeliveryError):
            await inbound.publish(aio_pika.Message(b"as VN"), routing_key="VN", mandatory=True)
        # ... nor straight into a queue, past the inbound exchange, nor into another exchange.
        assert "amq.default" in await refused(
            lambda ch: ch.default_exchange.publish(aio_pika.Message(b"x"), routing_key=t.clearance),
            partner,
        )
        assert "amq.direct" in await refused(
            lambda ch: _publish_to(ch, "amq.direct", "CN"), partner
        )
        # CANNOT read: not the clearance queue, not even its own inbound queue.
        for queue in (t.clearance, t.inbound_queue, t.dead_letter(t.inbound_queue)):
            assert queue in await refused(functools.partial(_get, queue=queue), partner)
            assert queue in await refused(functools.partial(_consume, queue=queue), partner)
        # CANNOT declare or delete an exchange or a queue, nor bind one.
        assert "partner.x" in await refused(
            lambda ch: ch.declare_exchange("partner.x", durable=True), partner
        )
        assert t.inbound_exchange in await refused(
            lambda ch: ch.declare_exchange(t.inbound_exchange, "direct", durable=True), partner
        )
        assert "partner.q" in await refused(lambda ch: ch.declare_queue("partner.q"), partner)
        assert t.inbound_queue in await refused(
            lambda ch: ch.declare_queue(t.inbound_queue, durable=True), partner
        )
        assert t.inbound_exchange in await refused(
            lambda ch: ch.exchange_delete(t.inbound_exchange), partner
        )
        assert t.clearance in await refused(lambda ch: ch.queue_delete(t.clearance), partner)
        assert t.inbound_queue in await refused(
            lambda ch: _bind(ch, t.inbound_queue, t.inbound_exchange, "VN"), partner
        )
    finally:
        await partner.close()
    assert await count(rabbit, t.inbound_queue) == 1, "only the own-country envelope arrived"
    await rabbit.ctl("purge_queue", "-p", OURS, t.inbound_queue)

    # Our local systems are the operator's to provision; here they use guest.
    await rabbit.ctl("set_permissions", "-p", OURS, "guest", ".*", ".*", ".*")
    async with pair:
        await pair.start()
        record = as_json_dict(SampleFactory("KCFTA", seed=83).certificates(1)[0])
        await pair.kr.submit([record])
        await pair.cn.clearance.wait_count(1)
        # The receipt came back through our broker as the partner's user ...
        await pair.kr.events.wait_for(
            lambda _: number(record) in pair.kr.events.certificates_with("delivered")
        )
        # ... and so does CN's decision, which KR's node hands to the issuing system.
        await pair.cn.submit_feedback(decision(record, {}))
        handed = await pair.kr.issuing.wait_count(1)
        assert orjson.loads(handed[0].body)["feedback"]["certificate_number"] == number(record)
        connected = await rabbit.ctl(
            "list_connections", "user", "vhost", "--quiet", "--no-table-headers"
        )
        assert f"{NODE_USER}\t{OURS}" in connected.splitlines()
        assert f"{PARTNER_USER}\t{OURS}" in connected.splitlines()

    # Once the node has run, a run changes nothing and lists who else may use the vhost.
    again = await broker_setup(rabbit, config, "--partner-password-file", str(partner_secret))
    assert again[0] == 0, again
    assert f"also on vhost {OURS}: guest (configure '.*', write '.*', read '.*')" in again[1]


async def _publish_to(channel: aio_pika.abc.AbstractChannel, exchange: str, key: str) -> None:
    target = await channel.get_exchange(exchange, ensure=False)
    await target.publish(aio_pika.Message(b"x"), routing_key=key, mandatory=True)


async def _get(channel: aio_pika.abc.AbstractChannel, queue: str) -> None:
    declared = await channel.get_queue(queue, ensure=False)
    await declared.get(fail=False)


async def _consume(channel: aio_pika.abc.AbstractChannel, queue: str) -> None:
    declared = await channel.get_queue(queue, ensure=False)
    await declared.consume(_ignore)


async def _ignore(message: aio_pika.abc.AbstractIncomingMessage) -> None:
    """A consumer that never gets to run: the broker refuses it."""


async def _bind(channel: aio_pika.abc.AbstractChannel, queue: str, exchange: str, key: str) -> None:
    declared = await channel.get_queue(queue, ensure=False)
    await declared.bind(exchange, routing_key=key)


def password_for_the_command_line() -> str:
    """Hex, never base64url: a password starting with '-' reads to rabbitmqctl as options."""
    return secrets.token_hex(12)


async def test_broker_setup_refuses_what_would_widen_the_partners_rights(
    rabbit: PrivateRabbit, tmp_path: Path
) -> None:
    passwords = {NODE_USER: secrets.token_urlsafe(18), PARTNER_USER: secrets.token_urlsafe(18)}
    pair = NodePair(tmp_path / "nodes")
    point_at_provisioned_broker(pair, rabbit, passwords)
    config = pair.kr.write_config()
    t = pair.kr.topology
    from_env = {PARTNER_PASSWORD_ENV: passwords[PARTNER_USER]}
    before = await broker_state(rabbit, THEIRS)

    code, printed, err = await broker_setup(rabbit, config, "--print", env=from_env)
    assert code == 0, err
    document = orjson.loads(printed)
    assert await broker_state(rabbit, THEIRS) == before, "--print changed the broker"
    assert OURS not in await rabbit.ctl("list_vhosts", "--quiet")

    await rabbit.ctl("add_user", "boss", password_for_the_command_line())
    await rabbit.ctl("set_user_tags", "boss", "administrator")
    code, _, err = await broker_setup(rabbit, config, "--partner-user", "boss", env=from_env)
    assert code == 1
    assert "user 'boss' exists with tags ['administrator']" in err

    # The partner's user already reaches another vhost: not least privilege.
    await rabbit.ctl("add_user", PARTNER_USER, password_for_the_command_line())
    await rabbit.ctl("set_permissions", "-p", THEIRS, PARTNER_USER, "^$", ".*", "^$")
    code, _, err = await broker_setup(rabbit, config, env=from_env)
    assert code == 1
    assert f"also has permissions on vhost(s) {THEIRS}" in err
    await rabbit.ctl("clear_permissions", "-p", THEIRS, PARTNER_USER)

    # Another link shares our vhost and namespace: CN could publish as VN into its queue.
    await rabbit.add_vhost(OURS)
    admin = await aio_pika.connect(rabbit.url(OURS))
    try:
        channel = await admin.channel()
        exchange = await channel.declare_exchange(t.inbound_exchange, "direct", durable=True)
        vn_link = await channel.declare_queue(f"{t.namespace}.vn.inbound", durable=True)
        await vn_link.bind(exchange, routing_key="VN")
        # And CN's own key bound straight to a local door: past the node's checks.
        clearance = await channel.declare_queue(t.clearance, durable=True)
        await clearance.bind(exchange, routing_key="CN")
    finally:
        await admin.close()
    code, _, err = await broker_setup(rabbit, config, env=from_env)
    assert code == 1
    assert f"VN (to {t.namespace}.vn.inbound)" in err
    assert f"CN (to {t.clearance})" in err
    assert "CN's user could publish there as another country or past the node's checks" in err

    access = link_access(load_config(config), None)
    ctl = Rabbitmqctl(CTL, rabbit.node)
    missing = differences(access, ctl)
    assert f"queue {t.inbound_queue} missing" in missing
    assert any(problem.startswith(f"user {PARTNER_USER}: permissions None") for problem in missing)

    # What --print gave an administrator imports as it is, and is the whole link.
    process = await asyncio.create_subprocess_exec(
        CTL,
        "-n",
        rabbit.node,
        "import_definitions",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, import_err = await asyncio.wait_for(process.communicate(printed.encode()), 60)
    assert process.returncode == 0, import_err
    deadline = asyncio.get_running_loop().time() + 30
    while missing := differences(access, ctl):
        assert asyncio.get_running_loop().time() < deadline, missing
        await asyncio.sleep(0.2)
    assert {u["name"] for u in document["users"]} == {NODE_USER, PARTNER_USER}
    partner = await aio_pika.connect(url(rabbit, PARTNER_USER, passwords[PARTNER_USER], OURS))
    await partner.close()
