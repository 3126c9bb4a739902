"""One broker connection with a confirming publish channel.

Its calls are bounded and their failures translated by ``calls``. A broker that answers
but refuses our login or virtual host, or the link's TLS (its certificate, ours, or plain
AMQP on a TLS port: see ``handshake``), is ``BrokerRefused``: a configuration error, which
no retry cures.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Mapping, Sequence
from typing import Any

import aio_pika
import aiormq
import structlog
from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from yarl import URL

from eodes_node.adapters.amqp.calls import BROKER_ERRORS, broker_errors, within
from eodes_node.adapters.amqp.cluster import ClusterConnection
from eodes_node.adapters.amqp.handshake import tls_refusal
from eodes_node.broker_tls import LinkTls, tls_url
from eodes_node.errors import BrokerRefused, BrokerUnavailable

log = structlog.get_logger("eodes_node.adapters.amqp")


def refusal(url: str, exc: BaseException) -> BrokerRefused | None:
    """The broker's refusal of our login or virtual host, in one line an operator acts
    on (the URL without its password); None for a failure of any other kind."""
    where = URL(url)
    user = where.user or "guest"
    vhost = where.path[1:].replace("%2F", "/") if len(where.path) > 1 else "/"
    broker = f"the broker at {where.with_password(None)}"
    if isinstance(exc, aiormq.exceptions.ProbableAuthenticationError):
        return BrokerRefused(
            f"{broker} refused the login of user {user!r} (ACCESS_REFUSED): "
            "wrong user name or password"
        )
    # RabbitMQ answers an Open of a virtual host the user may not use with a
    # Connection.Close (NOT_ALLOWED) that aiormq reports as an unexpected frame.
    text = str(exc)
    not_allowed = isinstance(exc, aiormq.exceptions.ConnectionNotAllowed) or (
        isinstance(exc, aiormq.exceptions.InvalidFrameError)
        and "Connection.OpenOk" in text
        and "Connection.Close" in text
    )
    if not_allowed:
        return BrokerRefused(
            f"{broker} refused virtual host {vhost!r}: it does not exist, is not running, "
            f"or user {user!r} has no access to it (rabbitmqctl add_vhost / set_permissions)"
        )
    return None


def is_up(connection: AbstractRobustConnection) -> bool:
    """Connected now. A robust connection that is reconnecting has no transport, or one
    whose connection has closed: asking it for a channel raises a plain RuntimeError."""
    transport = connection.transport
    return (
        transport is not None
        and not transport.connection.is_closed
        and connection.connected.is_set()
    )


async def open_channel(
    connection: AbstractRobustConnection, timeout_s: float, *, what: str, **options: bool
) -> AbstractChannel:
    """A new channel, or ``BrokerUnavailable`` while the connection is down."""
    down = BrokerUnavailable(f"{what}: the connection is down, reconnecting")
    if not is_up(connection):
        raise down
    with broker_errors(what):
        try:
            return await asyncio.wait_for(connection.channel(**options), timeout_s)
        except RuntimeError:
            # The connection may have gone down since the check: then it is the link's.
            if is_up(connection):
                raise
            raise down from None


def frame_properties(
    *,
    message_id: str,
    kind: str,
    headers: Mapping[str, Any] | None,
    content_type: str,
) -> aiormq.spec.Basic.Properties:
    """The frame properties themselves: building an aio_pika.Message per publish cost more
    than the publish (3% of a node's CPU under load)."""
    return aiormq.spec.Basic.Properties(
        message_id=message_id,
        message_type=kind,
        headers=dict(headers or {}),
        content_type=content_type,
        delivery_mode=int(aio_pika.DeliveryMode.PERSISTENT),
        app_id="eodes-node",
    )


def _shown(url: str) -> str:
    """A URL as logs and errors may show it: without its password."""
    return str(URL(url).with_password(None))


async def _abandon(connection: ClusterConnection, within_s: float) -> None:
    with contextlib.suppress(Exception):  # it never connected: nothing to lose
        await asyncio.wait_for(connection.close(), within_s)


class BrokerLink:
    """One robust connection with a confirming publish channel; over TLS when ``tls`` is
    given (its context is built here, so an unusable file stops the start). Given several
    URLs (the members of a cluster), it connects to the first that answers, and after a
    loss reconnects to the next (``ClusterConnection``)."""

    def __init__(
        self,
        url: str | Sequence[str],
        *,
        name: str,
        timeout_s: float,
        reconnect_s: float,
        tls: LinkTls | None = None,
    ) -> None:
        given = (url,) if isinstance(url, str) else tuple(url)
        if not given:
            raise ValueError(f"{name}: no broker URL")
        self.urls = given if tls is None else tuple(tls_url(u) for u in given)
        self.url = self.urls[0]
        self._member = 0  # where the next new connection starts: the last one that answered
        self.tls = tls
        self.ssl_context: ssl.SSLContext | None = None if tls is None else tls.context()
        self.name = name
        self.timeout_s = timeout_s
        self.reconnect_s = reconnect_s
        self.connection: AbstractRobustConnection | None = None
        self._publish_channel: AbstractChannel | None = None
        self._lock = asyncio.Lock()
        self._channel_lock = asyncio.Lock()
        self._closing = False  # a close we asked for is no loss worth a warning
        self._up = False

    async def connect(self) -> AbstractRobustConnection:
        async with self._lock:
            if self.connection is None or self.connection.is_closed:
                self.connection = await self._first_answering()
                self._closing, self._up = False, True
                self.connection.close_callbacks.add(self._on_lost)
                self.connection.reconnect_callbacks.add(self._on_reconnected)
                self._publish_channel = None
            return self.connection

    async def _first_answering(self) -> ClusterConnection:
        """A connection to the first member that answers, from the last one that did; a
        refusal of our login, vhost or TLS by any member stops the search (a cluster
        shares its users, so the others would refuse it too)."""
        count = len(self.urls)
        for step in range(count):
            member = (self._member + step) % count
            url = self.urls[member]
            what = f"{self.name}: cannot connect" + (f" to {_shown(url)}" if count > 1 else "")
            connection = ClusterConnection(
                self.urls,
                member,
                reconnect_interval=self.reconnect_s,
                client_properties={"connection_name": self.name},
                ssl_context=self.ssl_context,
            )
            try:
                with broker_errors(what):
                    try:
                        await asyncio.wait_for(connection.connect(self.timeout_s), self.timeout_s)
                    except aiormq.exceptions.AMQPError as exc:
                        refused = refusal(url, exc) or await tls_refusal(
                            url, self.tls, self.ssl_context, exc, min(self.timeout_s, 3.0)
                        )
                        if refused is not None:
                            raise refused from None
                        raise
            except BrokerRefused:
                await _abandon(connection, self.timeout_s)
                raise
            except BrokerUnavailable as exc:
                await _abandon(connection, self.timeout_s)
                if step == count - 1:
                    raise
                log.warning("broker_member_unavailable", link=self.name, error=str(exc))
                continue
            self._member = member
            return connection
        raise AssertionError("unreachable: the last member's failure is raised")

    def _on_lost(self, _: object, exc: BaseException | None = None) -> None:
        # Called on every close, failed reconnect attempts included: one line per loss.
        if self._closing or not self._up:
            return
        self._up = False
        # aiormq closes a connection it found stuck with a bare CancelledError.
        cause = f"{type(exc).__name__}: {exc}" if exc else "closed without a reason"
        if isinstance(exc, asyncio.CancelledError):
            cause = "no frame from the broker in time: the connection was stuck"
        log.warning(
            "broker_connection_lost",
            link=self.name,
            cause=cause,
            reconnect_every_s=self.reconnect_s,
        )

    def _on_reconnected(self, connection: object) -> None:
        self._up = True
        if isinstance(connection, ClusterConnection):
            self._member = connection.member
        log.info("broker_reconnected", link=self.name, broker=_shown(str(self.urls[self._member])))

    async def publish_channel(self) -> AbstractChannel:
        """The confirming channel, opened once under the lock: concurrent publishes that
        each found it closed would otherwise each open one and leak all but the last."""
        connection = await self.connect()
        async with self._channel_lock:
            channel = self._publish_channel
            if channel is not None and not channel.is_closed:
                return channel
            self._publish_channel = await open_channel(
                connection,
                self.timeout_s,
                what=f"{self.name}: cannot open a channel",
                publisher_confirms=True,
                on_return_raises=True,
            )
            if channel is not None:
                # A robust channel would come back by itself after a reconnect, unused.
                with contextlib.suppress(*BROKER_ERRORS):
                    await asyncio.wait_for(channel.close(), self.timeout_s)
            return self._publish_channel

    async def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        *,
        message_id: str,
        kind: str,
        headers: Mapping[str, Any] | None = None,
        content_type: str = "application/json",
    ) -> None:
        """Publish and wait for the broker's confirm (``mandatory``: unroutable is an error),
        so a caller that returns normally knows the broker holds the message."""
        channel = await self.publish_channel()
        properties = frame_properties(
            message_id=message_id, kind=kind, headers=headers, content_type=content_type
        )
        with broker_errors(f"{self.name}: publish failed"):
            underlay = await within(self.timeout_s, channel.get_underlay_channel())
            try:
                await within(
                    self.timeout_s,
                    underlay.basic_publish(
                        body,
                        exchange=exchange,
                        routing_key=routing_key,
                        properties=properties,
                        mandatory=True,
                    ),
                )
            except aiormq.exceptions.PublishError:
                raise BrokerUnavailable(
                    f"{self.name}: unroutable: nothing bound to {exchange or '(default)'}"
                    f"/{routing_key}"
                ) from None
            except aiormq.exceptions.DeliveryError as exc:
                # A nack: the broker did not take the message. A channel nacked once may go on
                # nacking (seen on RabbitMQ 3.10 after a quorum queue lost its leader): the
                # next publish takes a new channel.
                await self._discard(channel)
                raise BrokerUnavailable(
                    f"{self.name}: the broker did not take the message (nack): {exc!r}"
                ) from None

    async def _discard(self, channel: AbstractChannel) -> None:
        async with self._channel_lock:
            if self._publish_channel is channel:
                self._publish_channel = None
        with contextlib.suppress(*BROKER_ERRORS):
            await asyncio.wait_for(channel.close(), self.timeout_s)

    async def close(self) -> None:
        self._closing = True
        if self.connection is not None:
            with contextlib.suppress(Exception):  # shutting down: nothing left to do
                await asyncio.wait_for(self.connection.close(), self.timeout_s)
            self.connection = None
