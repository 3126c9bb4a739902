"""``eodes-node audit verify``: check a store's history hash chain beside a running node.

It only reads: no migration, no store lock (SQLite's one-node lock stays with the node; a
WAL database lets a reader in beside its writer), and the transaction is rolled back.
"""

from __future__ import annotations

from pathlib import Path

import click

from eodes_node.cli_options import CONFIG, node_config


@click.group()
def audit() -> None:
    """Check the evidence a store keeps."""


@audit.command()
@CONFIG
def verify(config_path: Path) -> None:
    """Recompute the certificate history's hash chain; exit 0 with the number of rows
    checked, or non-zero naming the first row that does not verify."""
    config = node_config(config_path)
    checked = _verify(config.store.url, config.store.statement_timeout_s)
    click.echo(f"audit chain verifies: {checked} history row(s) checked")


def _verify(url: str, statement_timeout_s: float) -> int:
    from eodes_node.adapters.sql import StoreSettings, make_engine
    from eodes_node.adapters.sql.audit import verify_chain
    from eodes_node.adapters.sql.files import sqlite_path
    from eodes_node.adapters.sql.statements import map_errors
    from eodes_node.errors import LocalError, TransientError

    db = sqlite_path(url)
    if db is not None and not db.is_file():
        raise click.ClickException(f"store {db} does not exist; nothing to verify")
    engine = make_engine(url, StoreSettings(statement_timeout_s=statement_timeout_s))
    try:
        with map_errors(), engine.connect() as conn:
            try:
                return verify_chain(conn)
            finally:
                conn.rollback()
    except (LocalError, TransientError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        engine.dispose()
