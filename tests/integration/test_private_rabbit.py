"""The private RabbitMQ node that fault tests and the soak kill, instead of the shared one.

Each test proves the fault it offers really happens: the killed node's beam process is
gone, a closed connection is really closed, and stopping leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import pytest

from eodes_node.testing.rabbit import PrivateRabbit

pytestmark = [pytest.mark.broker, pytest.mark.timeout(300)]

VHOST = "eodes-private-test"


def gone(pid: int) -> bool:
    """Dead: no such process, or a zombie its parent (init) has not reaped yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def closing(connection: aio_pika.abc.AbstractConnection) -> asyncio.Future[str]:
    """Resolved with the reason once the broker or the client has closed ``connection``."""
    closed: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def note(_: object, reason: BaseException | None = None) -> None:
        if not closed.done():
            closed.set_result(repr(reason))

    connection.close_callbacks.add(note)
    return closed


def root_or_skip() -> None:
    if os.geteuid() != 0 or not Path("/usr/lib/rabbitmq/bin/rabbitmq-server").exists():
        pytest.skip("a private RabbitMQ node needs root and Debian's rabbitmq-server")


@pytest.fixture
async def rabbit(tmp_path: Path) -> AsyncIterator[PrivateRabbit]:
    root_or_skip()
    async with PrivateRabbit(tmp_path, "eodes-test-private") as node:
        await node.add_vhost(VHOST)
        yield node


async def test_a_persistent_message_on_a_durable_queue_survives_kill_and_restart(
    rabbit: PrivateRabbit,
) -> None:
    assert rabbit.port != 5672
    assert rabbit.node.endswith("@localhost")
    connection = await aio_pika.connect(rabbit.url(VHOST), timeout=10)
    channel = await connection.channel(publisher_confirms=True)
    await channel.declare_queue("kept", durable=True)
    await channel.default_exchange.publish(
        aio_pika.Message(b"survivor", delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
        routing_key="kept",
    )
    beam = rabbit.pid
    assert beam is not None
    dropped = closing(connection)

    await rabbit.kill()

    assert gone(beam)
    await asyncio.wait_for(dropped, 10)
    await rabbit.restart()
    assert rabbit.pid != beam
    again = await aio_pika.connect(rabbit.url(VHOST), timeout=10)
    try:
        queue = await (await again.channel()).declare_queue("kept", durable=True)
        # A restarted node answers AMQP before each durable queue has read its messages
        # back: poll, with a deadline, rather than take the first empty answer.
        deadline = asyncio.get_running_loop().time() + 30
        while (message := await queue.get(timeout=5, fail=False)) is None:
            assert asyncio.get_running_loop().time() < deadline, "the message did not survive"
            await asyncio.sleep(0.2)
        assert message.body == b"survivor"
        await message.ack()
    finally:
        await again.close()


async def test_close_connections_really_closes_every_client_connection(
    rabbit: PrivateRabbit,
) -> None:
    connection = await aio_pika.connect(rabbit.url(VHOST), timeout=10)
    closed = closing(connection)

    count = await rabbit.close_connections("test")

    assert count >= 1
    assert "CONNECTION_FORCED - test" in await asyncio.wait_for(closed, 10)
    assert await rabbit.close_connections("nothing left") == 0


async def test_stop_app_refuses_clients_and_start_app_serves_them_again(
    rabbit: PrivateRabbit,
) -> None:
    await rabbit.stop_app()
    with pytest.raises(aio_pika.exceptions.AMQPConnectionError):
        await aio_pika.connect(rabbit.url(VHOST), timeout=3)
    await rabbit.start_app()
    connection = await aio_pika.connect(rabbit.url(VHOST), timeout=10)
    await connection.close()


async def test_stop_removes_the_node_and_its_directory_and_may_be_repeated(
    tmp_path: Path,
) -> None:
    root_or_skip()
    node = PrivateRabbit(tmp_path, "eodes-test-private")
    await node.start()
    beam = node.pid
    assert beam is not None
    assert node.dir.is_dir()

    await node.stop()
    await node.stop()

    assert not node.dir.exists()
    assert gone(beam)
    with pytest.raises(aio_pika.exceptions.AMQPConnectionError):
        await aio_pika.connect(node.url(), timeout=3)
