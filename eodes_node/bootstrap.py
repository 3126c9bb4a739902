"""The composition root: the one place that picks adapters and wires them together."""

from __future__ import annotations

import stat
from datetime import UTC, datetime

from eodes_node.adapters.amqp import AmqpTransport
from eodes_node.adapters.store_sql import SqlStore
from eodes_node.config import NodeConfig
from eodes_node.core.jws import KeySet, PrivateKey
from eodes_node.errors import ConfigError
from eodes_node.runtime import Node
from eodes_node.service import NodeIdentity, NodeService
from eodes_node.topology import Topology


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


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
    return NodeIdentity(
        own=config.node.country,
        partner=config.node.partner,
        key=key,
        partner_keys=partner_keys,
        topology=Topology(config.node.country, config.node.partner, config.node.namespace),
    )


def build_node(config: NodeConfig) -> Node:
    identity = load_identity(config)
    store = SqlStore(config.store.url)
    broker = config.broker
    transport = AmqpTransport(
        identity.topology,
        local_url=broker.local_url,
        partner_url=broker.partner_url,
        prefetch=broker.prefetch,
        timeout_s=broker.io_timeout_s,
        reconnect_s=broker.reconnect_interval_s,
        node_name=f"eodes-node {identity.own}->{identity.partner}",
    )
    service = NodeService(
        identity, store, transport, SystemClock(), retry=config.retry, limits=config.limits
    )
    return Node(config, service, store, transport)
