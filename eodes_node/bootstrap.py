"""The composition root: the one place that picks adapters and wires them together."""

from __future__ import annotations

import functools

from eodes_node.adapters.amqp import AmqpBroker
from eodes_node.adapters.clock import SystemClock
from eodes_node.adapters.sql import SqlStore, StoreSettings
from eodes_node.adapters.sql.leadership import PgLeadership, fenced_settings
from eodes_node.config import NodeConfig
from eodes_node.keyfiles import KeyMaterial, load_key_material
from eodes_node.ports import Broker, Clock, NodeStore
from eodes_node.runtime import Node
from eodes_node.service import NodeIdentity, NodeService
from eodes_node.surface import attach_surface
from eodes_node.topology import Topology


def load_keys(config: NodeConfig, clock: Clock) -> KeyMaterial:
    """Our key, our published JWK Set and the partner's, as the files say now."""
    return load_key_material(
        config.keys.private_key,
        config.keys.partner_jwks,
        config.node.partner,
        now=int(clock.now().timestamp()),
    )


def load_identity(config: NodeConfig, keys: KeyMaterial) -> NodeIdentity:
    return NodeIdentity(
        own=config.node.country,
        partner=config.node.partner,
        key=keys.key,
        partner_keys=keys.partner,
        topology=Topology(config.node.country, config.node.partner, config.node.namespace),
    )


def build_node(
    config: NodeConfig,
    *,
    store: NodeStore | None = None,
    broker: Broker | None = None,
    clock: Clock | None = None,
) -> Node:
    """Wire a node; each adapter left out is the real one, so tests can hand in fakes."""
    if clock is None:
        clock = SystemClock()
    keys = load_keys(config, clock)
    identity = load_identity(config, keys)
    leadership = None
    if store is None:
        settings = StoreSettings(**config.store.model_dump(exclude={"url"}))
        if config.store.url.startswith("postgresql"):
            # Several instances of the link may share the database: one is active.
            link = f"{config.node.country}:{config.node.partner}:{config.node.namespace}"
            settings = fenced_settings(settings)
            leadership = PgLeadership(config.store.url, link, clock=clock, settings=settings)
        store = SqlStore(config.store.url, clock=clock, settings=settings, leadership=leadership)
    if broker is None:
        broker = _amqp_broker(config, identity)
    service = NodeService(identity, store, broker, clock, retry=config.retry, limits=config.limits)
    node = Node(config, service, store=store, broker=broker, clock=clock)
    node.leadership = leadership
    # The operator surface: reports, repairs, metrics, and the HTTP side when enabled.
    attach_surface(node, keys.published, keys.partner)
    # SIGHUP reads the key files again (rotation, revocation, a partner's new JWK Set).
    node.keys = keys
    node.key_loader = functools.partial(load_keys, config, clock)
    service.metrics.watch_keys("own", [keys.own])  # the signing key, not the whole set
    return node


def _amqp_broker(config: NodeConfig, identity: NodeIdentity) -> AmqpBroker:
    settings = config.broker
    return AmqpBroker(
        identity.topology,
        local_url=settings.link_urls("local"),
        partner_url=settings.link_urls("partner"),
        prefetch=settings.prefetch,
        batch_max=settings.batch_max,
        batch_wait_s=settings.batch_wait_ms / 1000,
        timeout_s=settings.io_timeout_s,
        reconnect_s=settings.reconnect_interval_s,
        node_name=f"eodes-node {identity.own}->{identity.partner}",
        local_tls=settings.link_tls("local"),
        partner_tls=settings.link_tls("partner"),
        queues=settings.queue_kind,
    )
