"""A paired KR/CN node harness over a real broker.

Used by the test suite, and usable by integration testers who want two nodes and the
local systems around them inside one asyncio program.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import orjson
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from pydantic import SecretStr

from eodes_node.bootstrap import build_node
from eodes_node.config import (
    BrokerSection,
    HttpSection,
    KeysSection,
    NodeConfig,
    NodeSection,
    RetrySection,
    StoreSection,
)
from eodes_node.core.jws import KeySet, PrivateKey
from eodes_node.keyfiles import write_private_key
from eodes_node.ports import Clock
from eodes_node.runtime import Node
from eodes_node.topology import Topology

__all__ = ["BROKER", "NodePair", "Seen", "Side"]

BROKER = "amqp://guest:guest@127.0.0.1:5672/"


@dataclass
class Seen:
    """Messages taken from one local queue, with a way to wait for a condition on them."""

    name: str
    messages: list[AbstractIncomingMessage] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def add(self, message: AbstractIncomingMessage) -> None:
        async with self.changed:
            self.messages.append(message)
            self.changed.notify_all()

    async def wait_for(
        self, predicate: Callable[[list[AbstractIncomingMessage]], bool], within: float = 30.0
    ) -> list[AbstractIncomingMessage]:
        async def until() -> None:
            async with self.changed:
                await self.changed.wait_for(lambda: predicate(self.messages))

        try:
            await asyncio.wait_for(until(), within)
        except TimeoutError:
            raise AssertionError(
                f"{self.name}: condition not met within {within} s; "
                f"have {len(self.messages)} message(s)"
            ) from None
        return self.messages

    async def wait_count(self, count: int, within: float = 30.0) -> list[AbstractIncomingMessage]:
        return await self.wait_for(lambda m: len(m) >= count, within)

    def json(self) -> list[Any]:
        return [orjson.loads(m.body) for m in self.messages]

    def of_type(self, kind: str) -> list[AbstractIncomingMessage]:
        return [m for m in self.messages if m.type == kind]

    def event_items(self, event: str) -> list[dict[str, Any]]:
        """The items of every `event` message seen (events batch several messages)."""
        return [
            item
            for m in self.messages
            if m.type == f"event.{event}"
            for item in orjson.loads(m.body)["items"]
        ]

    def certificates_with(self, event: str) -> set[str]:
        return {str(item["certificate_number"]) for item in self.event_items(event)}


class Side:
    """One country's node plus the local systems and broker plumbing around it."""

    def __init__(
        self,
        own: str,
        partner: str,
        vhost: str,
        partner_vhost: str,
        namespace: str,
        root: Path,
        *,
        retry: RetrySection,
        batch_max: int = 64,
        http: bool = False,
        consume_dead_letters: bool = True,
    ) -> None:
        self.own, self.partner = own, partner
        # False leaves dead letters in their queues, for a test of their replay.
        self.consume_dead_letters = consume_dead_letters
        # Bearer tokens of the HTTP side, when it is on (a free port, loopback).
        self.operator_token = secrets.token_urlsafe(24)
        self.viewer_token = secrets.token_urlsafe(24)
        self.vhost = vhost
        self.topology = Topology(own, partner, namespace)
        self.dir = root / own.lower()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.key = PrivateKey.generate("Ed25519")
        key_path = self.dir / f"{own.lower()}.key.pem"
        write_private_key(key_path, self.key.to_pem())
        (self.dir / f"{own.lower()}.jwks.json").write_bytes(
            orjson.dumps(KeySet({self.key.kid: self.key.public}).to_jwks())
        )
        self.config = NodeConfig(
            node=NodeSection(country=own, partner=partner, namespace=namespace),
            broker=BrokerSection(
                local_url=BROKER + vhost,
                partner_url=BROKER + partner_vhost,
                prefetch=128,
                batch_max=batch_max,
                batch_wait_ms=2.0,
                io_timeout_s=5.0,
                reconnect_interval_s=0.5,
            ),
            keys=KeysSection(
                private_key=key_path,
                partner_jwks=root / partner.lower() / f"{partner.lower()}.jwks.json",
            ),
            store=StoreSection(url=f"sqlite:///{self.dir / 'node.db'}"),
            retry=retry,
            http=HttpSection(
                enabled=http,
                port=0,
                tokens=SecretStr(
                    f"operator:{self.operator_token}:ops,viewer:{self.viewer_token}:watch"
                ),
            ),
        )
        self.node: Node | None = None
        self.clock: Clock | None = None  # set before start: the node's clock (default: real)
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self.connection: AbstractRobustConnection | None = None
        self.clearance = Seen(f"{own} clearance")
        self.issuing = Seen(f"{own} issuing")
        self.events = Seen(f"{own} events")
        self.wiretap = Seen(f"{own} inbound wiretap")
        self.dead: dict[str, Seen] = {}

    async def connect_local_systems(self) -> None:
        self.connection = await aio_pika.connect_robust(
            BROKER + self.vhost,
            client_properties={"connection_name": f"test {self.own}"},
            reconnect_interval=0.5,
        )
        channel = await self.connection.channel()
        t = self.topology
        exchange = await channel.declare_exchange(t.inbound_exchange, "direct", durable=True)
        # A copy of everything the partner pushes to us, to assert on the wire itself.
        tap = await channel.declare_queue(f"{t.inbound_queue}.wiretap", durable=True)
        await tap.bind(exchange, routing_key=self.partner)
        await tap.consume(self.wiretap.add, no_ack=True)
        for seen, queue in (
            (self.clearance, t.clearance),
            (self.issuing, t.issuing),
            (self.events, t.events),
        ):
            declared = await channel.declare_queue(
                queue, durable=True, arguments=self.config.broker.queue_kind.arguments(queue)
            )
            await declared.consume(seen.add, no_ack=True)
        for queue in (t.inbound_queue, t.outbound_records, t.outbound_feedback):
            seen = Seen(f"{self.own} {queue}.dead")
            dead = t.dead_letter(queue)
            declared = await channel.declare_queue(
                dead, durable=True, arguments=self.config.broker.queue_kind.arguments(dead)
            )
            if self.consume_dead_letters:
                await declared.consume(seen.add, no_ack=True)
            self.dead[queue] = seen

    @property
    def http_url(self) -> str:
        """Where this side's HTTP API answers (``http=True`` and started)."""
        surface = self.node.surface if self.node is not None else None
        server = getattr(surface, "server", None)
        if server is None or server.port is None:
            raise AssertionError(f"{self.own} node serves no HTTP; pass http=True and start it")
        return f"http://127.0.0.1:{server.port}"

    async def start(self) -> Node:
        self._stop = asyncio.Event()
        self.node = build_node(self.config, clock=self.clock)
        self._task = asyncio.create_task(self.node.run(self._stop))
        ready = asyncio.ensure_future(self.node.ready.wait())
        done, _ = await asyncio.wait(
            {ready, self._task}, timeout=30, return_when=asyncio.FIRST_COMPLETED
        )
        if ready not in done:
            ready.cancel()
            if self._task in done:
                self._task.result()
            raise AssertionError(f"{self.own} node did not become ready")
        return self.node

    async def stop(self) -> None:
        if self._task is not None:
            self._stop.set()
            await asyncio.wait_for(self._task, 30)
            self._task = None

    async def publish(
        self, queue: str, body: bytes, *, kind: str | None = None, message_id: str | None = None
    ) -> None:
        assert self.connection is not None
        channel = await self.connection.channel(publisher_confirms=True)
        await channel.default_exchange.publish(
            aio_pika.Message(
                body,
                type=kind,
                message_id=message_id,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=queue,
        )
        await channel.close()

    async def submit(self, records: Sequence[Any], kind: str = "coo") -> None:
        for record in records:
            await self.publish(self.topology.outbound_records, orjson.dumps(record), kind=kind)

    async def submit_feedback(self, record: Any) -> None:
        await self.publish(self.topology.outbound_feedback, orjson.dumps(record), kind="feedback")

    async def inject(self, token: bytes, *, kind: str, message_id: str | None) -> None:
        """Push an envelope into our inbound exchange as the partner would."""
        assert self.connection is not None
        channel = await self.connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(self.topology.inbound_exchange)
        await exchange.publish(
            aio_pika.Message(
                token, type=kind, message_id=message_id, content_type="application/jose"
            ),
            routing_key=self.partner,
        )
        await channel.close()

    def write_config(self) -> Path:
        """The same configuration as a TOML file, for running the node as a process."""
        c = self.config
        lines = []
        for section, values in c.model_dump(mode="json").items():
            lines.append(f"[{section}]")
            if section == "http":
                values["tokens"] = c.http.tokens.get_secret_value()
            for key, value in values.items():
                if value is not None:  # TOML has no null: left out is the default
                    lines.append(f"{key} = {orjson.dumps(value).decode()}")
        path = self.dir / "node.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    async def cleanup(self) -> None:
        await self.stop()
        if self.connection is None:
            return
        channel = await self.connection.channel()
        t = self.topology
        names = [
            *t.local_queues(),
            *(t.dead_letter(q) for q in t.local_queues()),
            f"{t.inbound_queue}.wiretap",
        ]
        for name in names:
            with contextlib.suppress(Exception):
                await channel.queue_delete(name)
        with contextlib.suppress(Exception):
            await channel.exchange_delete(t.inbound_exchange)
        await self.connection.close()


class NodePair:
    """A KR node and a CN node on two vhosts, each with its local systems."""

    def __init__(
        self,
        root: Path,
        *,
        retry: RetrySection | None = None,
        vhosts: tuple[str, str] = ("eodes-test-kr", "eodes-test-cn"),
        batch_max: int = 64,
        http: bool = False,
        consume_dead_letters: bool = True,
    ) -> None:
        namespace = "t" + secrets.token_hex(5)
        retry = retry or RetrySection(
            first_after_s=1.0, multiplier=2.0, max_interval_s=4.0, max_attempts=8
        )
        self.kr = Side(
            "KR",
            "CN",
            vhosts[0],
            vhosts[1],
            namespace,
            root,
            retry=retry,
            batch_max=batch_max,
            http=http,
            consume_dead_letters=consume_dead_letters,
        )
        self.cn = Side(
            "CN",
            "KR",
            vhosts[1],
            vhosts[0],
            namespace,
            root,
            retry=retry,
            batch_max=batch_max,
            http=http,
            consume_dead_letters=consume_dead_letters,
        )

    async def __aenter__(self) -> NodePair:
        await self.kr.connect_local_systems()
        await self.cn.connect_local_systems()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.kr.cleanup()
        await self.cn.cleanup()

    async def start(self) -> None:
        await self.cn.start()
        await self.kr.start()
