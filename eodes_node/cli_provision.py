"""`eodes-node broker-setup`: provision our broker for a partner link, or print what that
takes. Registered on ``eodes_node.cli.main``; what is granted is decided in
``eodes_node.provision`` and applied by ``eodes_node.rabbitmqctl``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
import orjson

from eodes_node.provision import PARTNER_PASSWORD_ENV

SECRET_PATH = click.Path(dir_okay=False, path_type=Path)


@click.command("broker-setup")
@click.option(
    "--config",
    "config_path",
    required=True,
    type=SECRET_PATH,
    help="Our node's configuration (TOML): vhost, user and password from broker.local_url.",
)
@click.option(
    "--partner-user",
    default=None,
    help="The user the partner's node publishes with (default: <partner>-node).",
)
@click.option(
    "--partner-password-file",
    type=SECRET_PATH,
    default=None,
    help=f"File (mode 0600) holding its password; else ${PARTNER_PASSWORD_ENV}.",
)
@click.option(
    "--rabbitmqctl",
    "executable",
    default="rabbitmqctl",
    show_default=True,
    help="The rabbitmqctl to run.",
)
@click.option(
    "--node",
    "rabbit_node",
    default=None,
    help="The RabbitMQ node (rabbitmqctl -n); default: rabbitmqctl's own.",
)
@click.option(
    "--print",
    "print_only",
    is_flag=True,
    help="Print the definitions document (JSON) instead of applying it.",
)
def broker_setup(
    config_path: Path,
    partner_user: str | None,
    partner_password_file: Path | None,
    executable: str,
    rabbit_node: str | None,
    print_only: bool,
) -> None:
    """Create on our broker what the link needs, with least privilege: the vhost, the
    inbound exchange, the queues (dead-letter queues included) and binding as the node
    declares them, our node's user, and the partner's user, which may publish into our
    inbound exchange as its own country and do nothing else. Idempotent.

    Applied with rabbitmqctl, where it reaches the broker (as root or rabbitmq). With
    --print, the definitions are printed for `rabbitmqctl import_definitions` or the
    management UI's import; nothing is changed.
    """
    from eodes_node.cli_options import node_config as _config
    from eodes_node.provision import (
        ProvisionError,
        definitions,
        link_access,
        node_password,
        partner_password,
    )
    from eodes_node.rabbitmqctl import Rabbitmqctl, provision

    config = _config(config_path)
    try:
        access = link_access(config, partner_user)
        document = definitions(
            access, node_password(config), partner_password(partner_password_file, os.environ)
        )
        if print_only:
            sys.stdout.buffer.write(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
            return
        others = provision(access, document, Rabbitmqctl(executable, rabbit_node))
    except ProvisionError as exc:
        raise click.ClickException(str(exc)) from None
    t, node, partner = access.topology, access.node_permissions, access.partner_permissions
    click.echo(
        f"vhost {access.vhost}: exchange {t.inbound_exchange} (direct), "
        f"{len(access.queues)} queues, binding {t.partner} -> {t.inbound_queue}"
    )
    users = (
        ("our node", access.node_user, node),
        (f"{t.partner}'s node", access.partner_user, partner),
    )
    for role, user, granted in users:
        click.echo(
            f"user {user} ({role}): configure {granted.configure!r}, write {granted.write!r}, "
            f"read {granted.read!r}"
        )
    for other in others:
        click.echo(f"also on vhost {access.vhost}: {other}")
    click.echo("broker-setup: done")
