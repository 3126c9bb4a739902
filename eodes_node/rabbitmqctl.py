"""Applying a link's definitions to our broker with ``rabbitmqctl``.

``rabbitmqctl`` ships with every RabbitMQ server and needs no plugin; the management
plugin, and its HTTP API, may not be enabled (Debian's package leaves it off). The
document goes in on standard input (``rabbitmqctl import_definitions``), so no password
or hash is ever on a command line. The import is asynchronous, so the result is read back
and compared until it matches, within a deadline. Each rabbitmqctl call boots an Erlang
VM (seconds), so independent listings run side by side.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import orjson

from eodes_node.provision import LinkAccess, Permissions, ProvisionError

__all__ = ["Rabbitmqctl", "differences", "provision"]


class Rabbitmqctl:
    """``rabbitmqctl [-n NODE] ...``: run where it reaches the broker (root or rabbitmq)."""

    def __init__(
        self, executable: str = "rabbitmqctl", node: str | None = None, timeout_s: float = 60.0
    ) -> None:
        self.executable = executable
        self.node = node
        self.timeout_s = timeout_s

    def run(self, *args: str, stdin: bytes | None = None) -> str:
        """Its standard output; a ProvisionError naming the command when it fails."""
        command = [self.executable, *(["-n", self.node] if self.node else []), *args]
        shown = " ".join(command)
        try:
            done = subprocess.run(  # noqa: S603 - a list of arguments, no shell
                command,
                input=stdin if stdin is not None else b"",
                capture_output=True,
                timeout=self.timeout_s,
                check=False,
            )
        except FileNotFoundError:
            raise ProvisionError(
                f"cannot run {self.executable}: not found; run broker-setup where RabbitMQ's "
                "rabbitmqctl is installed, or pass --rabbitmqctl PATH"
            ) from None
        except subprocess.TimeoutExpired:
            raise ProvisionError(f"`{shown}` did not finish within {self.timeout_s} s") from None
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).decode(errors="replace").strip()[-1000:]
            raise ProvisionError(f"`{shown}` exited {done.returncode}: {tail}")
        return done.stdout.decode(errors="replace")

    def listings(self, *commands: Sequence[str]) -> list[list[dict[str, Any]]]:
        """Several ``list_*`` commands at once: each rabbitmqctl boots a VM (seconds)."""
        if not commands:
            return []
        with ThreadPoolExecutor(max_workers=len(commands)) as pool:
            return list(pool.map(lambda command: self.listing(*command), commands))

    def listing(self, *args: str) -> list[dict[str, Any]]:
        """A ``list_*`` command's rows, as its JSON formatter prints them."""
        out = self.run(*args, "--quiet", "--formatter", "json")
        start = out.find("[")
        try:
            rows = orjson.loads(out[start:]) if start >= 0 else []
        except orjson.JSONDecodeError:
            raise ProvisionError(
                f"rabbitmqctl {args[0]}: unreadable output {out[:200]!r}"
            ) from None
        if not isinstance(rows, list):
            raise ProvisionError(f"rabbitmqctl {args[0]}: expected a list, got {out[:200]!r}")
        return [row for row in rows if isinstance(row, dict)]


def _refusals(access: LinkAccess, ctl: Rabbitmqctl) -> list[str]:
    """What on the broker makes least privilege impossible as things stand."""
    problems = []
    user_rows, vhost_rows = ctl.listings(("list_users",), ("list_vhosts", "name"))
    users = {row.get("user"): row.get("tags") for row in user_rows}
    for name in (access.node_user, access.partner_user):
        if users.get(name):
            problems.append(
                f"user {name!r} exists with tags {users[name]}: a link's users carry none; "
                "choose another user"
            )
    known_user = access.partner_user in users
    known_vhost = access.vhost in {row.get("name") for row in vhost_rows}
    wanted = [
        *([("list_user_permissions", access.partner_user)] if known_user else []),
        *([("list_bindings", "-p", access.vhost, *BINDING_COLUMNS)] if known_vhost else []),
    ]
    found = dict(zip((command[0] for command in wanted), ctl.listings(*wanted), strict=True))
    elsewhere = sorted(
        str(row.get("vhost"))
        for row in found.get("list_user_permissions", [])
        if row.get("vhost") != access.vhost
    )
    if elsewhere:
        problems.append(
            f"the partner's user {access.partner_user!r} also has permissions on vhost(s) "
            f"{', '.join(elsewhere)}: clear them (rabbitmqctl clear_permissions -p VHOST "
            f"{access.partner_user}) or choose another --partner-user"
        )
    t = access.topology
    others = sorted(
        {
            f"{row.get('routing_key')} (to {row.get('destination_name')})"
            for row in found.get("list_bindings", [])
            if row.get("source_name") == t.inbound_exchange
            and (row.get("routing_key"), row.get("destination_name"))
            != (t.partner, t.inbound_queue)
        }
    )
    if others:
        # Another key lets the partner publish as another country; its own key bound to
        # another queue lets it publish past verification, straight into a local door.
        problems.append(
            f"{t.inbound_exchange} on vhost {access.vhost} also routes {', '.join(others)}: "
            f"{t.partner}'s user could publish there as another country or past the "
            f"node's checks; only {t.partner} (to {t.inbound_queue}) may be bound: give "
            "this link a vhost or a namespace of its own, or remove the binding"
        )
    return problems


BINDING_COLUMNS = ("source_name", "destination_name", "routing_key")


@dataclass(frozen=True, slots=True)
class _VhostView:
    """One reading of the link's vhost: permissions, exchanges, queues, bindings."""

    permissions: list[dict[str, Any]]
    exchanges: list[dict[str, Any]]
    queues: list[dict[str, Any]]
    bindings: list[dict[str, Any]]


def _read_vhost(access: LinkAccess, ctl: Rabbitmqctl) -> _VhostView | None:
    """The vhost as the broker lists it; None while it does not exist."""
    vhost = access.vhost
    try:
        return _VhostView(
            *ctl.listings(
                ("list_permissions", "-p", vhost),
                ("list_exchanges", "-p", vhost, "name", "type", "durable", "auto_delete"),
                ("list_queues", "-p", vhost, "name", "durable", "auto_delete", "arguments"),
                ("list_bindings", "-p", vhost, *BINDING_COLUMNS),
            )
        )
    except ProvisionError:
        if vhost in {row.get("name") for row in ctl.listing("list_vhosts", "name")}:
            raise
        return None


def _missing(access: LinkAccess, view: _VhostView | None) -> list[str]:
    if view is None:
        return [f"vhost {access.vhost} missing"]
    t, missing = access.topology, []
    granted = {
        row.get("user"): Permissions(
            str(row.get("configure")), str(row.get("write")), str(row.get("read"))
        )
        for row in view.permissions
    }
    for name, wanted in (
        (access.node_user, access.node_permissions),
        (access.partner_user, access.partner_permissions),
    ):
        if granted.get(name) != wanted:
            missing.append(f"user {name}: permissions {granted.get(name)}, want {wanted}")
    exchange = next((row for row in view.exchanges if row.get("name") == t.inbound_exchange), None)
    if exchange is None or (
        exchange.get("type"),
        exchange.get("durable"),
        exchange.get("auto_delete"),
    ) != ("direct", True, False):
        missing.append(f"exchange {t.inbound_exchange}: {exchange}, want a durable direct one")
    queues = {row.get("name"): row for row in view.queues}
    for name in access.queues:
        row = queues.get(name)
        if row is None:
            missing.append(f"queue {name} missing")
        elif (row.get("durable"), row.get("auto_delete"), listed_arguments(row)) != (
            True,
            False,
            declared := access.queue_kind.arguments(name),
        ):
            missing.append(
                f"queue {name}: {row}, want durable, not auto-delete, arguments {declared}"
            )
    bound = {tuple(row.get(column) for column in BINDING_COLUMNS) for row in view.bindings}
    if (t.inbound_exchange, t.inbound_queue, t.partner) not in bound:
        missing.append(f"binding {t.inbound_exchange} -[{t.partner}]-> {t.inbound_queue} missing")
    return missing


def listed_arguments(row: Mapping[str, Any]) -> dict[str, Any]:
    """A queue's arguments as ``rabbitmqctl list_queues --formatter json`` gives them
    (``[[name, type, value], ...]``), by name."""
    listed = row.get("arguments") or []
    if isinstance(listed, dict):
        return dict(listed)
    return {str(entry[0]): entry[-1] for entry in listed}


def differences(access: LinkAccess, ctl: Rabbitmqctl) -> list[str]:
    """What the broker lacks of the link's definitions; empty once provisioned."""
    return _missing(access, _read_vhost(access, ctl))


def provision(
    access: LinkAccess, document: Mapping[str, Any], ctl: Rabbitmqctl, *, within_s: float = 30.0
) -> list[str]:
    """Refuse what least privilege forbids, import ``document``, and wait until the broker
    holds all of it. Idempotent: a second run finds everything in place and sets the
    passwords again to what their files say.

    Returns the other users with permissions on the vhost, which the import leaves alone
    and a reviewer wants to know of."""
    problems = _refusals(access, ctl)
    if problems:
        raise ProvisionError("; ".join(problems))
    ctl.run("import_definitions", stdin=orjson.dumps(document))
    deadline = time.monotonic() + within_s
    while True:
        view = _read_vhost(access, ctl)
        missing = _missing(access, view)
        if view is not None and not missing:
            break
        if time.monotonic() > deadline:
            raise ProvisionError(
                f"the broker does not hold the link's definitions {within_s} s after the "
                f"import: {'; '.join(missing)} (see the broker's log)"
            )
        time.sleep(0.2)
    ours = {access.node_user, access.partner_user}
    return sorted(
        f"{row.get('user')} (configure {row.get('configure')!r}, write {row.get('write')!r}, "
        f"read {row.get('read')!r})"
        for row in view.permissions
        if row.get("user") not in ours
    )
