"""The composition root: the one place that picks adapters and wires them together."""

from __future__ import annotations

import stat

from eodes_node.adapters.amqp import AmqpBroker
from eodes_node.adapters.clock import SystemClock
from eodes_node.adapters.sql import SqlStore, StoreSettings
from eodes_node.config import NodeConfig
from eodes_node.core.jws import KeySet, PrivateKey
from eodes_node.errors import ConfigError
from eodes_node.ports import Broker, Clock, NodeStore
from eodes_node.runtime import Node
from eodes_node.service import NodeIdentity, NodeService
from eodes_node.surface import attach_surface
from eodes_node.topology import Topology


def load_identity(config: NodeConfig) -> NodeIdentity:
    key_path = config.keys.private_key
    try:
        mode = stat.S_IMODE(key_path.stat().st_mode)
        if mode & 0o077:
            raise ConfigError(
                f"private key {key_path} is readable by others (mode {mode:o}); chmod 600 it"
            )
        key = PrivateKey.from_pem(key_path.read_bytes())
        partner_keys = KeySet.from_jwks(
            config.keys.partner_jwks.read_bytes(), owner=config.node.partner
        )
    except OSError as exc:
        raise ConfigError(f"cannot read key material: {exc}") from None
    if key.kid in partner_keys.keys:
        # Both nodes would then take a message signed with our key as the partner's:
        # each side accepts its own forgeries.
        raise ConfigError(
            f"the partner's JWK Set {config.keys.partner_jwks} holds our own public key "
            f"{key.kid} ([keys] private_key): pin the keys {config.node.partner}'s operators "
            "sent, never ours"
        )
    return NodeIdentity(
        own=config.node.country,
        partner=config.node.partner,
        key=key,
        partner_keys=partner_keys,
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
    identity = load_identity(config)
    if clock is None:
        clock = SystemClock()
    if store is None:
        store = SqlStore(
            config.store.url,
            clock=clock,
            settings=StoreSettings(**config.store.model_dump(exclude={"url"})),
        )
    if broker is None:
        broker = _amqp_broker(config, identity)
    service = NodeService(identity, store, broker, clock, retry=config.retry, limits=config.limits)
    node = Node(config, service, store=store, broker=broker, clock=clock)
    # The operator surface: reports, repairs, metrics, and the HTTP side when enabled.
    attach_surface(node, KeySet({identity.key.kid: identity.key.public}), identity.partner_keys)
    return node


def _amqp_broker(config: NodeConfig, identity: NodeIdentity) -> AmqpBroker:
    settings = config.broker
    return AmqpBroker(
        identity.topology,
        local_url=settings.local_url,
        partner_url=settings.partner_url,
        prefetch=settings.prefetch,
        batch_max=settings.batch_max,
        batch_wait_s=settings.batch_wait_ms / 1000,
        timeout_s=settings.io_timeout_s,
        reconnect_s=settings.reconnect_interval_s,
        node_name=f"eodes-node {identity.own}->{identity.partner}",
    )
