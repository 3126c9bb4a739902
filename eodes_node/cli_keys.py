"""The key lifecycle commands: ``keys rotate``, ``keys revoke``, ``keys list``.

They change files only (our private key, our JWK Set beside it); a running node picks the
change up on SIGHUP, so the partner can pin a new key before we start signing with it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import click

from eodes_node.cli_options import CONFIG, node_config
from eodes_node.core.jws import ALGORITHMS, Algorithm, KeySet, PublicKey
from eodes_node.core.validity import window_problem
from eodes_node.errors import ConfigError
from eodes_node.keyfiles import (
    own_jwks_path,
    read_jwks,
    read_own_jwks,
    read_private_key,
    revoke_key,
    rotate_keys,
)

__all__ = ["DATE", "keys"]

DAY_S = 86400


class _Date(click.ParamType[int]):
    """A date (midnight UTC) or an RFC 3339 date-time with an offset, as epoch seconds."""

    name = "date"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip()
        try:
            if len(text) == 10:
                return int(
                    datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC).timestamp()
                )
            moment = datetime.fromisoformat(text)
        except ValueError:
            self.fail(f"{text!r} is not a date (2026-03-01) or date-time with offset", param, ctx)
        if moment.tzinfo is None:
            self.fail(f"{text!r} has no UTC offset; add Z or +09:00", param, ctx)
        return int(moment.timestamp())


DATE = _Date()


def when(seconds: int | None) -> str:
    return (
        "-"
        if seconds is None
        else datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    )


def _now() -> int:
    return int(datetime.now(UTC).timestamp())


@click.group()
def keys() -> None:
    """Rotate, revoke and list keys; a running node reloads them on SIGHUP."""


@keys.command()
@CONFIG
@click.option(
    "--overlap",
    "overlap_days",
    type=click.FloatRange(min=0, min_open=True),
    default=14.0,
    show_default=True,
    help="Days the old key stays valid: until the partner pins the new one and every "
    "message signed with the old one is settled.",
)
@click.option("--expires", type=DATE, default=None, help="Expiry of the new key (exp).")
@click.option("--alg", type=click.Choice(ALGORITHMS), default=None, help="Default: as the old.")
def rotate(
    config_path: Path, overlap_days: float, expires: int | None, alg: Algorithm | None
) -> None:
    """Make a new key pair; publish old and new; the new one signs after SIGHUP."""
    config = node_config(config_path)
    try:
        done = rotate_keys(
            config.keys.private_key,
            now=_now(),
            overlap_s=int(overlap_days * DAY_S),
            alg=alg,
            expires=expires,
        )
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    partner = config.node.partner
    click.echo(
        f"new signing key: {done.new_kid} ({config.keys.private_key}, 0600)\n"
        f"old key {done.old_kid}: archived as {done.archived} (0600), valid until "
        f"{when(done.old_expires)}\n"
        f"our JWK Set (old and new keys): {done.jwks}\n"
        "next:\n"
        f"  1. send {done.jwks} to {partner}'s operators: they pin it as their "
        "[keys] partner_jwks and send SIGHUP to their node\n"
        f"  2. once they have, send SIGHUP to this node: it signs with {done.new_kid} from then on"
    )


@keys.command()
@CONFIG
@click.argument("kid")
@click.option("--force", is_flag=True, help="Revoke even our signing key.")
def revoke(config_path: Path, kid: str, force: bool) -> None:
    """Set our key KID's exp to now in our JWK Set; send it to the partner. A KID may
    start with '-': give it after '--' (keys revoke --config CFG -- KID)."""
    config = node_config(config_path)
    try:
        revoked = revoke_key(config.keys.private_key, kid, now=_now(), force=force)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    jwks = own_jwks_path(config.keys.private_key)
    click.echo(
        f"revoked {revoked.kid}: exp {when(revoked.expires)} in {jwks}\n"
        f"send {jwks} to {config.node.partner}'s operators: they pin it and send SIGHUP to "
        "their node, which then refuses messages signed with it (KEY_NOT_VALID)"
    )


def _status(key: PublicKey, now: int) -> str:
    if window_problem(key, now) is not None:
        started = key.not_before is None or key.not_before <= now
        return "expired or revoked" if started else "not valid yet"
    if key.expires is None:
        return "valid"
    return f"valid, expires in {(key.expires - now) / DAY_S:.1f} days"


@keys.command(name="list")
@CONFIG
def list_keys(config_path: Path) -> None:
    """Show our keys and the partner's pinned ones, with their validity."""
    config = node_config(config_path)
    try:
        signing = read_private_key(config.keys.private_key)
        ours = read_own_jwks(config.keys.private_key, signing)
        theirs = read_jwks(config.keys.partner_jwks, owner=config.node.partner)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    now = _now()
    sets: tuple[tuple[str, KeySet], ...] = (
        (config.node.country, ours),
        (config.node.partner, theirs),
    )
    header = ("owner", "kid", "alg", "nbf", "exp", "status")
    click.echo(
        f"{header[0]:<6} {header[1]:<44} {header[2]:<8} {header[3]:<21} {header[4]:<21} {header[5]}"
    )
    for owner, keyset in sets:
        for key in keyset.keys.values():
            mark = " (signing)" if key.kid == signing.kid else ""
            click.echo(
                f"{owner:<6} {key.kid:<44} {key.alg:<8} {when(key.not_before):<21} "
                f"{when(key.expires):<21} {_status(key, now)}{mark}"
            )
