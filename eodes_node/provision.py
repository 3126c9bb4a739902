"""`eodes-node broker-setup`: what one partner link needs on our broker, with least privilege.

A partner's node publishes into our broker; a security review wants it to do that and
nothing else. This module derives from a node's configuration the vhost, the inbound
exchange, the queues and binding exactly as ``AmqpBroker.declare`` makes them, our node's
user, and the partner's user, as one RabbitMQ definitions document;
``eodes_node.rabbitmqctl`` applies it.

The partner's user may publish into our inbound exchange only (write ``^<ns>\\.inbound$``),
and may configure nothing and read nothing (``^$``). "Only as its own country" comes from
the exchange's bindings, not from a permission RabbitMQ could check:

- the node declares the inbound exchange as a *direct* exchange, and RabbitMQ checks
  topic permissions (routing keys) only on publishes to *topic* exchanges, so
  ``set_topic_permissions`` would be set and never enforced;
- RabbitMQ validates the ``user_id`` property only when a publisher sets it, and may
  leave it out, so it cannot force a partner to say who it is;
- so the inbound exchange of a link (its vhost and namespace) must route one routing
  key, the partner's code, to this link's inbound queue and nothing else. A publish with
  another key routes nowhere (the broker returns it to a ``mandatory`` publisher), and
  the partner's user cannot add a binding (no configure, no read). ``broker-setup``
  refuses a vhost whose inbound exchange already routes another key: there the partner
  could publish as the other country into the other link's queue.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from eodes_node.config import NodeConfig, read_secret_file
from eodes_node.core.plan import Door
from eodes_node.errors import ConfigError, LocalError
from eodes_node.service.effects import door_queue
from eodes_node.topology import CLASSIC, QueueKind, Topology

__all__ = [
    "PARTNER_PASSWORD_ENV",
    "LinkAccess",
    "Permissions",
    "ProvisionError",
    "definitions",
    "link_access",
    "node_password",
    "partner_password",
    "password_hash",
]

PARTNER_PASSWORD_ENV = "EODES_PARTNER_BROKER_PASSWORD"  # noqa: S105 - a variable's name
HASHING_ALGORITHM = "rabbit_password_hashing_sha256"
# RabbitMQ's own administrator: narrowing its permissions would lock out whoever uses it,
# and leaving them would leave the link's vhost open to everything.
RESERVED_USERS = frozenset({"guest"})
_REGEX_SPECIAL = re.compile(r"([.^$*+?()\[\]{}|\\])")


class ProvisionError(LocalError):
    """The link cannot be provisioned as asked; the message names what to change."""


@dataclass(frozen=True, slots=True)
class Permissions:
    """A user's configure/write/read regexes on one vhost (``rabbitmqctl set_permissions``)."""

    configure: str
    write: str
    read: str


def _exactly(names: Sequence[str]) -> str:
    """A regex matching these resource names and no other."""
    return "^(" + "|".join(_REGEX_SPECIAL.sub(r"\\\1", name) for name in names) + ")$"


@dataclass(frozen=True, slots=True)
class LinkAccess:
    """Who may do what on our broker for one link; ``vhost`` is our node's own vhost."""

    vhost: str
    topology: Topology
    node_user: str
    partner_user: str
    # How the node declares its queues (broker.queue_type): the definitions match it.
    queue_kind: QueueKind = CLASSIC

    @property
    def queues(self) -> tuple[str, ...]:
        """Every queue the node declares: the local queues and a ``.dead`` beside each."""
        t = self.topology
        return (*t.local_queues(), *(t.dead_letter(q) for q in t.local_queues()))

    @property
    def node_permissions(self) -> Permissions:
        """Declare its exchange and queues; bind the inbound queue (write on the queue,
        read on the exchange); hand off through the default exchange; consume its doors
        and read their dead letters (replay). Quorum queues dead-letter through the default
        exchange, and RabbitMQ lets only a user that may read a queue declare it so: then
        the node reads every local queue."""
        t = self.topology
        doors = [door_queue(t, door) for door in Door]
        read = [t.inbound_exchange, *doors, *(t.dead_letter(q) for q in doors)]
        dead_lettered = [
            q for q in t.local_queues() if "x-dead-letter-exchange" in self.queue_kind.arguments(q)
        ]
        return Permissions(
            configure=_exactly([t.inbound_exchange, *self.queues]),
            write=_exactly(["amq.default", t.inbound_queue]),
            read=_exactly([*read, *(q for q in dead_lettered if q not in read)]),
        )

    @property
    def partner_permissions(self) -> Permissions:
        """Publish into our inbound exchange; nothing else."""
        return Permissions(
            configure="^$", write=_exactly([self.topology.inbound_exchange]), read="^$"
        )


def _vhost_of(url: str) -> str:
    path = urlsplit(url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def _user_of(url: str) -> tuple[str, str | None]:
    parts = urlsplit(url)
    user = unquote(parts.username) if parts.username else ""
    password = unquote(parts.password) if parts.password is not None else None
    return user, password


def link_access(config: NodeConfig, partner_user: str | None = None) -> LinkAccess:
    """The link's access from the node's configuration: our vhost and node user come from
    ``broker.local_url``; the partner's user defaults to ``<partner>-node``."""
    url = config.broker.local_url
    if urlsplit(url).scheme not in ("amqp", "amqps"):
        raise ProvisionError("broker.local_url: expected an amqp:// or amqps:// URL")
    node_user, _ = _user_of(url)
    if not node_user:
        raise ProvisionError(
            "broker.local_url names no user: give our node a user of its own "
            "(amqp://kr-node@host/vhost, the password in broker.local_password_file)"
        )
    partner_user = partner_user or f"{config.node.partner.lower()}-node"
    roles = (
        ("our node's user (broker.local_url)", node_user),
        ("the partner's user (--partner-user)", partner_user),
    )
    for role, name in roles:
        if name in RESERVED_USERS:
            raise ProvisionError(
                f"{role} is {name!r}, RabbitMQ's default administrator: give it a user of its own"
            )
    if node_user == partner_user:
        raise ProvisionError(
            f"our node's user and the partner's user are both {node_user!r}: they must differ"
        )
    topology = Topology(config.node.country, config.node.partner, config.node.namespace)
    return LinkAccess(_vhost_of(url), topology, node_user, partner_user, config.broker.queue_kind)


def node_password(config: NodeConfig) -> str:
    """Our node's password, as the node itself will log in: from ``broker.local_url``."""
    user, password = _user_of(config.broker.local_url)
    if not password:
        raise ProvisionError(
            f"broker.local_url carries no password for {user!r}: set broker.local_password_file "
            "or EODES_BROKER_LOCAL_PASSWORD_FILE"
        )
    return password


def partner_password(path: Path | None, environ: Mapping[str, str]) -> str:
    """The partner's password: from ``path`` (mode 0600), else the environment."""
    if path is not None:
        try:
            return read_secret_file(path, "--partner-password-file")
        except ConfigError as exc:
            raise ProvisionError(str(exc)) from None
    password = environ.get(PARTNER_PASSWORD_ENV, "")
    if not password:
        raise ProvisionError(
            f"no password for the partner's user: pass --partner-password-file or set "
            f"{PARTNER_PASSWORD_ENV}"
        )
    return password


def password_hash(password: str, salt: bytes | None = None) -> str:
    """RabbitMQ's salted SHA-256 form: base64(salt + sha256(salt + password))."""
    salt = os.urandom(4) if salt is None else salt
    digest = hashlib.sha256(salt + password.encode("utf-8")).digest()
    return base64.b64encode(salt + digest).decode("ascii")


def definitions(access: LinkAccess, node_secret: str, partner_secret: str) -> dict[str, Any]:
    """The RabbitMQ definitions document of the link, as ``rabbitmqctl import_definitions``
    and the management UI import it."""
    t, vhost = access.topology, access.vhost

    def user(name: str, secret: str) -> dict[str, Any]:
        return {
            "name": name,
            "password_hash": password_hash(secret),
            "hashing_algorithm": HASHING_ALGORITHM,
            "tags": [],
        }

    def permissions(name: str, granted: Permissions) -> dict[str, str]:
        return {
            "user": name,
            "vhost": vhost,
            "configure": granted.configure,
            "write": granted.write,
            "read": granted.read,
        }

    return {
        "vhosts": [{"name": vhost}],
        "users": [user(access.node_user, node_secret), user(access.partner_user, partner_secret)],
        "permissions": [
            permissions(access.node_user, access.node_permissions),
            permissions(access.partner_user, access.partner_permissions),
        ],
        "topic_permissions": [],
        "exchanges": [
            {
                "name": t.inbound_exchange,
                "vhost": vhost,
                "type": "direct",
                "durable": True,
                "auto_delete": False,
                "internal": False,
                "arguments": {},
            }
        ],
        "queues": [
            {
                "name": name,
                "vhost": vhost,
                "durable": True,
                "auto_delete": False,
                "arguments": access.queue_kind.arguments(name),
            }
            for name in access.queues
        ],
        "bindings": [
            {
                "source": t.inbound_exchange,
                "vhost": vhost,
                "destination": t.inbound_queue,
                "destination_type": "queue",
                "routing_key": t.partner,
                "arguments": {},
            }
        ],
    }
