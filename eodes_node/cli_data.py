"""The store's lifecycle on the command line: backup, restore, prune, and the offline
check of a prune's archive."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import orjson

from eodes_node.cli_options import CONFIG, node_config
from eodes_node.config import NodeConfig
from eodes_node.errors import ConfigError

if TYPE_CHECKING:
    from eodes_node.adapters.sql import StoreSettings


POSTGRES_BACKUP = (
    "store {url} is PostgreSQL: back it up with the database's own tools, e.g.\n"
    "  pg_dump --format=custom --file=eodes.dump DBNAME        (while the node runs)\n"
    "  pg_restore --clean --if-exists --dbname=DBNAME eodes.dump   (node stopped)\n"
    "and keep the dump readable by its owner only (it holds tax ids)."
)


def _sqlite_file(config: NodeConfig) -> Path:
    """The store's database file; PostgreSQL is refused with what to use instead."""
    from eodes_node.adapters.sql.files import sqlite_path
    from eodes_node.adapters.sql.urls import masked_url

    url = config.store.url
    db = sqlite_path(url)
    if db is not None:
        return db
    if url.startswith("postgresql"):
        raise click.ClickException(POSTGRES_BACKUP.format(url=masked_url(url)))
    raise click.ClickException(f"store url {masked_url(url)!r} is not a file that can be backed up")


def _failed(exc: Exception) -> click.ClickException:
    """An error for the operator, without any password a store url in it carries."""
    from eodes_node.adapters.sql.urls import scrub

    return click.ClickException(scrub(str(exc)))


@click.command()
@CONFIG
@click.option(
    "--to",
    "target",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The backup file to write (must not exist).",
)
def backup(config_path: Path, target: Path) -> None:
    """Copy the SQLite store to a new file (mode 0600), while the node runs or not."""
    from eodes_node.adapters.sql import backup as files

    db = _sqlite_file(node_config(config_path))
    try:
        copied = files.backup(db, target)
    except ConfigError as exc:
        raise _failed(exc) from None
    click.echo(
        f"backup: {copied.path} ({copied.size} bytes, {copied.certificates} certificate "
        f"row(s), mode 0600)"
    )


@click.command()
@CONFIG
@click.option(
    "--from",
    "source",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="A file written by `eodes-node backup`.",
)
def restore(config_path: Path, source: Path) -> None:
    """Replace the SQLite store with a backup; the node must be stopped. The replaced
    store is kept beside it, renamed."""
    from eodes_node.adapters.sql import backup as files
    from eodes_node.adapters.sql.files import StoreInUse

    config = node_config(config_path)
    db = _sqlite_file(config)
    try:
        copied, aside = files.restore(db, source)
    except StoreInUse as exc:
        raise click.ClickException(f"{exc}; stop the node before a restore") from None
    except ConfigError as exc:
        raise _failed(exc) from None
    click.echo(f"restored: {db} from {source} ({copied.certificates} certificate row(s))")
    if aside is not None:
        click.echo(f"the replaced store is kept as {aside}")
    max_age = config.limits.max_age_s
    stale = files.unsettled_before(db, datetime.now(UTC).timestamp() - max_age)
    if stale:
        click.echo(
            f"warning: {stale} unsent or unsettled message(s) in the backup are older than "
            f"limits.max_age_s = {max_age:.0f} s: the partner refuses them as too old "
            "(CLOCK_SKEW) instead of answering with its earlier receipt; settle them with "
            "the partner by hand (see README, Backup and retention)",
            err=True,
        )
    click.echo(
        "what the node took in after the backup was taken is not in it: messages it had "
        "sent but not settled go out again, but certificates submitted after the backup are "
        "unknown to it (see README, Backup and retention)"
    )


def _settings(config: NodeConfig) -> StoreSettings:
    from eodes_node.adapters.sql import StoreSettings

    return StoreSettings(**config.store.model_dump(exclude={"url"}))


def prune_limit(config: NodeConfig, now: datetime) -> tuple[datetime, str]:
    """The latest cut-off allowed, and the setting that decides it: the legal retention,
    or the replay window if that is longer. A message is accepted up to ``max_age_s``
    after its stated time, and that time may lie ``max_future_skew_s`` ahead of ours, so
    its duplicate must be recognised that long after we received it."""
    limits = config.limits
    retention = timedelta(days=config.store.retention_days)
    window = timedelta(seconds=limits.max_age_s + limits.max_future_skew_s)
    if window > retention:
        return now - window, (
            f"the replay window limits.max_age_s + limits.max_future_skew_s = "
            f"{limits.max_age_s:.0f} + {limits.max_future_skew_s:.0f} s"
        )
    return now - retention, f"the retention period store.retention_days = {retention.days}"


@click.command()
@CONFIG
@click.option(
    "--before",
    required=True,
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Prune what was settled before this day (UTC), e.g. 2015-01-01.",
)
@click.option(
    "--archive",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="JSON-lines file the dropped signed messages are appended to (created 0600).",
)
@click.option("--discard", is_flag=True, help="Drop without keeping an archive.")
def prune(config_path: Path, before: datetime, archive: Path | None, discard: bool) -> None:
    """Drop settled certificates, their messages and history from before --before, once
    past the retention period; their signed messages go to --archive first."""
    if (archive is None) == (not discard):
        raise click.UsageError("give --archive FILE, or --discard to keep no archive")
    config = node_config(config_path)
    cutoff = before.replace(tzinfo=UTC)
    now = datetime.now(UTC)
    limit, reason = prune_limit(config, now)
    if cutoff > limit:
        raise click.ClickException(
            f"--before {cutoff.date()} is inside {reason}: the latest day allowed is "
            f"{limit.date()}; lower the setting to prune more recent records"
        )
    pruned, checked = _run_prune(config, cutoff.timestamp(), now.timestamp(), archive)
    where = f"archived in {archive}" if archive else "discarded, no archive"
    click.echo(
        f"pruned {pruned.certificates} certificate(s), {pruned.messages} signed message(s) "
        f"({where}) and {pruned.history_rows} history row(s) from before {cutoff.date()}"
    )
    click.echo(f"audit chain verifies: {checked} history row(s) kept")


def _run_prune(
    config: NodeConfig, before: float, now: float, archive_path: Path | None
) -> tuple[Any, int]:
    from eodes_node.adapters.sql import make_engine
    from eodes_node.adapters.sql.audit import verify_chain
    from eodes_node.adapters.sql.files import sqlite_path
    from eodes_node.adapters.sql.prune import open_archive, prune_store
    from eodes_node.adapters.sql.schema import migrate
    from eodes_node.adapters.sql.statements import map_errors
    from eodes_node.errors import LocalError, TransientError

    db = sqlite_path(config.store.url)
    if db is not None and not db.is_file():
        raise click.ClickException(f"store {db} does not exist; nothing to prune")
    engine = None
    try:
        engine = make_engine(config.store.url, _settings(config))
        with map_errors():
            with engine.begin() as conn:
                migrate(conn)
            archive = open_archive(archive_path) if archive_path is not None else None
            try:
                pruned = prune_store(engine, before, now, archive)
            finally:
                if archive is not None:
                    archive.close()
            with engine.connect() as conn:
                checked = verify_chain(conn)
    except (LocalError, TransientError, OSError) as exc:
        raise _failed(exc) from None
    finally:
        if engine is not None:
            engine.dispose()
    return pruned, checked


@click.command("verify-archive")
@click.option(
    "--archive",
    required=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="A file written by `eodes-node prune --archive`.",
)
@click.option(
    "--jwks",
    "jwks_files",
    required=True,
    multiple=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="A public JWK Set; give ours (what we sent) and the partner's (what we received).",
)
def verify_archive(archive: Path, jwks_files: tuple[Path, ...]) -> None:
    """Check every signed message in a prune archive against the given keys, offline:
    the signature and the message id, not the age (an archived message is old)."""
    from eodes_node.core.jws import KeySet

    try:
        key_sets = [KeySet.from_jwks(path.read_bytes()) for path in jwks_files]
    except (OSError, ConfigError) as exc:
        raise click.ClickException(f"cannot use JWK Set: {exc}") from None
    verified, history_rows, failures = 0, 0, []
    with archive.open("rb") as lines:
        for index, line in enumerate(lines, start=1):
            problem, kind = archived_line_problem(line, key_sets)
            if problem is not None:
                failures.append(f"{archive}:{index}: {problem}")
            elif kind == "history":
                history_rows += 1
            else:
                verified += 1
    for failure in failures:
        click.echo(failure, err=True)
    click.echo(
        f"{verified} signed message(s) verified, {history_rows} history row(s), "
        f"{len(failures)} failed"
    )
    if failures:
        sys.exit(1)


def archived_line_problem(line: bytes, key_sets: list[Any]) -> tuple[str | None, str]:
    """What is wrong with one archive line (None if nothing), and its record type."""
    from eodes_node.core.jws import verify_compact
    from eodes_node.core.validity import window_problem
    from eodes_node.errors import PeerError, RejectionCode

    try:
        entry = orjson.loads(line)
        record, message_id = entry["record"], entry.get("message_id")
    except (orjson.JSONDecodeError, TypeError, KeyError):
        return "not an archive line (JSON with a 'record' member)", ""
    if record == "history":
        return None, record
    if record != "message" or not isinstance(entry.get("token"), str):
        return f"record {record!r} is not a signed message", str(record)
    reason = "no JWK Set given"
    for keys in key_sets:
        try:
            verified = verify_compact(entry["token"].encode(), keys)
        except PeerError as exc:
            # The key set that holds the signing key has the reason that matters.
            if exc.code != RejectionCode.UNKNOWN_KEY or reason == "no JWK Set given":
                reason = f"message {message_id}: {exc.code}: {exc.reason}"
            continue
        payload = orjson.loads(verified.payload)
        if payload.get("message_id") != message_id:
            return f"message {message_id}: the signed payload carries another id", record
        # Judged when it was signed: a key revoked since signs nothing after its revocation.
        try:
            issued_at = int(datetime.fromisoformat(str(payload["issued_at"])).timestamp())
        except (KeyError, ValueError):
            return f"message {message_id}: the signed payload has no issued_at", record
        outside = window_problem(keys.keys[verified.kid], issued_at)
        if outside is not None:
            code = RejectionCode.KEY_NOT_VALID
            return f"message {message_id}: {code}: {outside} when it was issued", record
        return None, record
    return reason, record
