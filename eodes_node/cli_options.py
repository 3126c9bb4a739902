"""What every command that reads a node's configuration shares: the option and the load
that turns a configuration error into one line and exit 1."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from eodes_node.config import NodeConfig

CONFIG = click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Node configuration (TOML).",
)


def node_config(path: Path) -> NodeConfig:
    # Imported here: `eodes-node validate` and friends start without pydantic settings.
    from eodes_node.config import load_config
    from eodes_node.errors import ConfigError

    try:
        return load_config(path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
