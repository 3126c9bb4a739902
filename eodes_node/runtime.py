"""Lifecycle: start under a TaskGroup, run the consumers and background loops, drain on stop.

The runtime drives ports only (``Broker``, ``Consumer``, ``NodeStore``, ``Clock``); how a
delivery is batched and settled is the broker adapter's business.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from typing import Protocol

import structlog

from eodes_node.config import NodeConfig
from eodes_node.core.jws import KeySet
from eodes_node.errors import (
    BrokerRefused,
    ConfigError,
    LeadershipLost,
    StoreUnavailable,
    TransientError,
)
from eodes_node.keyfiles import KeyMaterial
from eodes_node.keywatch import KeyWatch
from eodes_node.loops import every, first_of
from eodes_node.ports import BatchHandler, Broker, Clock, Consumer, Leadership, NodeStore
from eodes_node.runtime_keys import NodeKeys
from eodes_node.service import NodeService

log = structlog.get_logger("eodes_node.runtime")


class Surface(Protocol):
    """The operator surface (HTTP: health, metrics, API) as the runtime runs it: up before
    the consumers, so readiness says 503 while the node starts; down after the drain."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...

    async def upkeep(self) -> float:
        """Background upkeep (the report index); returns how long to wait before the next."""
        ...

    def keys_reloaded(self, published: KeySet, partner: KeySet) -> None:
        """The node reloaded its keys: show the new JWK Sets."""
        ...


class Node(NodeKeys):
    """One node: the service wired to its broker and store, with its lifecycle."""

    def __init__(
        self,
        config: NodeConfig,
        service: NodeService,
        *,
        store: NodeStore,
        broker: Broker,
        clock: Clock,
        surface: Surface | None = None,
    ) -> None:
        self.config = config
        self.service = service
        self.store = store
        self.broker = broker
        self.clock = clock
        self.surface = surface
        self.ready = asyncio.Event()
        self.consumers: list[Consumer] = []
        # Set by the composition root: the keys in use and how to read them again.
        self.keys: KeyMaterial | None = None
        self.key_loader: Callable[[], KeyMaterial] | None = None
        # Set by the composition root when several instances of the link may run
        # (PostgreSQL): this one consumes only while it leads.
        self.leadership: Leadership | None = None
        self.active = False
        self.leadership_lost = False
        self.reload_wanted = asyncio.Event()  # SIGHUP sets it
        self.key_watch = KeyWatch(config.keys.expiry_warning_days)

    def _handlers(self) -> tuple[tuple[str, BatchHandler], ...]:
        topo = self.service.topology
        return (
            (topo.inbound_queue, self.service.handle_inbound),
            (topo.outbound_records, self.service.handle_records),
            (topo.outbound_feedback, self.service.handle_feedback),
        )

    async def _start_consuming(self, stop: asyncio.Event) -> bool:
        """Connect and declare, retrying with backoff until it works or we are told to stop:
        a node started before its broker must come up by itself when the broker does. A
        broker that refuses our login or virtual host is a configuration error, not
        retried: the node cannot run until the configuration is fixed."""
        delay = 0.5
        while not stop.is_set():
            try:
                await self.broker.declare()
                for queue, handler in self._handlers():
                    consumer = await self.broker.consume(
                        queue,
                        handler,
                        published=self.service.published,
                        unsettled=self.service.unsettled,
                    )
                    self.consumers.append(consumer)
                return True
            except BrokerRefused as exc:
                raise ConfigError(str(exc)) from None
            except TransientError as exc:
                log.warning("broker_unavailable", error=str(exc), retry_in_s=delay)
                await self.broker.stop_consuming()
                self.consumers.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(delay * 2, 30.0)
        return False

    async def _open_store(self, stop: asyncio.Event) -> bool:
        """Open the store, retrying while it is unavailable: a node started before its
        database comes up by itself when the database does. A configuration error (a
        store already in use, a bad URL) is not retried."""
        delay = 0.5
        while not stop.is_set():
            try:
                await self.store.open()
                return True
            except StoreUnavailable as exc:
                log.warning("store_unavailable", error=str(exc), retry_in_s=delay)
                await first_of(stop, None, delay)
                delay = min(delay * 2, 30.0)
        return False

    @property
    def standby(self) -> bool:
        """Another instance of the link is active, or may be: this one waits."""
        return self.leadership is not None and not self.active

    async def _lead(self, stop: asyncio.Event) -> bool:
        """Wait until this instance is the link's active one, before any queue is declared
        or consumed: a standby polls, and takes over once the active one's lock session
        ends. At once without leadership (SQLite's store lock already refused others)."""
        leadership = self.leadership
        if leadership is None:
            self.active = True
            return True
        announced = False
        while not stop.is_set():
            try:
                if await leadership.try_lead():
                    self.active = True
                    return True
            except StoreUnavailable as exc:
                log.warning("store_unavailable", error=str(exc), retry_in_s=leadership.poll_s)
            if not announced:
                log.info("standby", poll_s=leadership.poll_s)
                announced = True
            await first_of(stop, None, leadership.poll_s)
        return False

    async def _keep_leading(self, stop: asyncio.Event, leadership: Leadership) -> None:
        """Check each poll that we still lead; once not, stop (the node exits non-zero and
        its supervisor starts it again, as a standby). Commits are fenced meanwhile, so
        nothing decided after the takeover is written, acked or published."""
        while not stop.is_set():
            await first_of(stop, None, leadership.poll_s)
            if not stop.is_set() and not await leadership.holds():
                self.active = False
                self.leadership_lost = True
                stop.set()

    async def _retry_pass(self) -> float:
        next_due = await self.service.resend_due()
        if next_due is None:
            return 60.0  # nothing pending: a new send wakes the loop
        return min(max(next_due - self.clock.now().timestamp(), 0.05), 60.0)

    async def _flush_marks(self, stop: asyncio.Event) -> None:
        """Persist publication marks soon after each settle: a crash then loses at most a
        moment's worth, which keeps re-issues after a restart exact."""
        wanted = self.service.flush_wanted

        async def wake_on_stop() -> None:
            # One waiter for the node's life, not two tasks for every settle.
            await stop.wait()
            wanted.set()

        waker = asyncio.create_task(wake_on_stop())
        try:
            while not stop.is_set():
                await wanted.wait()
                wanted.clear()
                try:
                    await self.store.flush_published()
                except TransientError as exc:
                    log.warning("flush_deferred", error=str(exc))
                except Exception:
                    log.exception("flush_failed")
        finally:
            waker.cancel()

    async def _relay_pass(self) -> float:
        remaining = await self.service.relay_outbox()
        return 0.2 if remaining else 1.0

    async def run(self, shutdown: asyncio.Event | None = None) -> None:
        """Run until ``shutdown`` is set (or SIGTERM/SIGINT when none is given)."""
        stop = shutdown or self._signal_event()
        structlog.contextvars.bind_contextvars(
            node=self.config.node.country, partner=self.config.node.partner
        )
        if not await self._open_store(stop):
            return
        refused = False  # a configuration error at start-up: its one line says it all
        try:
            if self.surface is not None:
                await self.surface.start()
            if not await self._lead(stop):
                return
            try:
                if not await self._start_consuming(stop):
                    return
            except ConfigError:
                refused = True
                raise
            try:
                await self.service.relay_outbox()
            except TransientError as exc:
                log.warning("relay_deferred", error=str(exc))
            log.info("node_started", own=self.config.node.country, partner=self.config.node.partner)
            self.ready.set()
            await self._serve(stop)
        finally:
            await self._shut_down(refused)
        if self.leadership_lost:
            raise LeadershipLost(
                "another instance of this link took over the store; exiting so the "
                "supervisor starts this one again as a standby"
            )

    async def _serve(self, stop: asyncio.Event) -> None:
        """The consumers and background loops, until stopped; then the drain."""
        async with asyncio.TaskGroup() as group:
            for consumer in self.consumers:
                group.create_task(consumer.run())
            group.create_task(every(stop, self._retry_pass, self.clock, self.service.resend_alarm))
            group.create_task(every(stop, self._relay_pass, self.clock))
            group.create_task(self._flush_marks(stop))
            if self.surface is not None:
                group.create_task(every(stop, self.surface.upkeep, self.clock))
            group.create_task(self._reload_when_asked(stop))
            group.create_task(every(stop, self._watch_keys, self.clock))
            if self.leadership is not None:
                group.create_task(self._keep_leading(stop, self.leadership))
            await stop.wait()
            await self._drain()

    async def _shut_down(self, refused: bool) -> None:
        self.ready.clear()
        if self.surface is not None:
            await self.surface.stop()
        await self.broker.close()
        with contextlib.suppress(TransientError):
            await self.store.flush_published()
        await self.store.close()
        if self.leadership is not None:
            self.active = False
            await self.leadership.resign()  # last: our lock goes to a standby
        if not refused:
            log.info("node_stopped")

    async def _drain(self) -> None:
        """Stop taking work, let in-flight batches finish within the bound; what does not
        finish stays unacked and the broker redelivers it."""
        log.info("draining", bound_s=self.config.limits.drain_timeout_s)
        self.ready.clear()  # readiness says 503 from now on
        await self.broker.stop_consuming()
        for consumer in self.consumers:
            consumer.stop()
        try:
            await asyncio.wait_for(
                asyncio.gather(*(c.wait_idle() for c in self.consumers)),
                self.config.limits.drain_timeout_s,
            )
        except TimeoutError:
            log.error(
                "drain_timeout", note="unfinished deliveries stay unacked and are redelivered"
            )
        await self.service.finish_background(self.config.limits.drain_timeout_s)

    def _signal_event(self) -> asyncio.Event:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload_wanted.set)
        return stop
