"""Command line: key generation, record validation, signing, verification, samples."""

from __future__ import annotations

import dataclasses
import gc
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import orjson

from eodes_node.cli_keys import DATE
from eodes_node.cli_options import CONFIG, node_config
from eodes_node.config import LimitsSection
from eodes_node.core.envelope import open_envelope, seal
from eodes_node.core.jws import ALGORITHMS, Algorithm, KeySet, PrivateKey
from eodes_node.core.messages import Kind, issued_now
from eodes_node.core.records import as_json_dict, compose
from eodes_node.errors import ConfigError, InvalidRecord, PeerError, Problem
from eodes_node.keyfiles import write_jwks, write_private_key
from eodes_node.submitting import (
    SUBMIT_KINDS,
    check,
    checked_as_eco,
    detect_kind,
    kind_words,
    type_name,
)

KIND_NAMES = [kind.value for kind in Kind]


def _read(source: str) -> bytes:
    if source == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(source).read_bytes()
    except OSError as exc:
        raise click.ClickException(f"cannot read {source}: {exc.strerror}") from None


def _fail(message: str) -> None:
    click.echo(message, err=True)
    sys.exit(1)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="eodes-node")
def main() -> None:
    """eodes-node: exchange signed electronic certificates of origin with a partner country."""


@main.command()
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", required=True, help="File name stem, e.g. kr-node.")
@click.option("--alg", type=click.Choice(ALGORITHMS), default="Ed25519", show_default=True)
@click.option("--force", is_flag=True, help="Replace existing files of that name.")
@click.option("--not-before", type=DATE, default=None, help="Valid from (nbf): a date or time.")
@click.option("--expires", type=DATE, default=None, help="Valid until (exp): a date or time.")
def keygen(
    out_dir: Path,
    name: str,
    alg: Algorithm,
    force: bool,
    not_before: int | None,
    expires: int | None,
) -> None:
    """Write NAME.key.pem (private, mode 0600) and NAME.jwks.json (public JWK Set)."""
    if "/" in name or name.startswith("."):
        raise click.BadParameter("must be a plain file name stem", param_hint="--name")
    if expires is not None and expires <= (not_before or int(datetime.now(UTC).timestamp())):
        raise click.BadParameter("must come after --not-before and now", param_hint="--expires")
    out_dir.mkdir(parents=True, exist_ok=True)
    key_path = out_dir / f"{name}.key.pem"
    jwks_path = out_dir / f"{name}.jwks.json"
    if force:
        key_path.unlink(missing_ok=True)
    elif key_path.exists():
        raise click.ClickException(f"{key_path} exists; pass --force to replace it")
    key = PrivateKey.generate(alg)
    write_private_key(key_path, key.to_pem())
    public = dataclasses.replace(key.public, not_before=not_before, expires=expires)
    write_jwks(jwks_path, KeySet({key.kid: public}))
    click.echo(f"private key: {key_path} (0600)\npublic JWK Set: {jwks_path}\nkid: {key.kid}")


def _records(data: bytes) -> list[bytes]:
    """One JSON record, or JSON Lines (one record per line) as `sample` prints them."""
    stripped = data.strip()
    lines = [line for line in stripped.splitlines() if line.strip()]
    if len(lines) > 1 and all(line.lstrip().startswith(b"{") for line in lines):
        try:
            for line in lines:
                orjson.loads(line)
        except orjson.JSONDecodeError:
            return [stripped]
        return lines
    return [stripped]


@main.command()
@click.option(
    "--type",
    "kind_name",
    type=click.Choice(list(SUBMIT_KINDS)),
    default=None,
    help="What the records are; default: told from each record's fields.",
)
@click.argument("file")
def validate(kind_name: str | None, file: str) -> None:
    """Check the record(s) in FILE ('-' for stdin) as the node would: e-COs, replacements,
    cancellations or feedback. Print every problem, exit 1 if any."""
    records = _records(_read(file))
    failed = 0
    for index, raw in enumerate(records, start=1):
        where = file if len(records) == 1 else f"{file}:{index}"
        lines, valid = _validated(raw, SUBMIT_KINDS[kind_name] if kind_name else None)
        failed += not valid
        for line in lines:
            click.echo(f"{where}: {line}")
    if failed:
        _fail(f"{failed} of {len(records)} record(s) invalid")


def _validated(raw: bytes, kind: Kind | None) -> tuple[list[str], bool]:
    """The lines `validate` prints about one record, and whether it is valid."""
    note = ""
    if kind is None:
        try:
            kind, note = _told_kind(orjson.loads(raw))
        except orjson.JSONDecodeError:
            kind = Kind.COO  # not JSON: that is its one problem, whatever its kind
        if kind is None:
            return [str(_type_unknown())], False
    checked = check(kind, raw, max_bytes=LimitsSection().max_record_bytes, now=datetime.now(UTC))
    assumed = bool(note)
    if not checked.problems:
        return [checked.summary() + note], True
    head = [f"checked as {kind_words(kind)}{note} (--type to choose another)"] if assumed else []
    return head + [str(problem) for problem in checked.problems], False


def _told_kind(record: Any) -> tuple[Kind | None, str]:
    """The kind a record is checked as without --type, and the note that says so; None
    when its fields point only to kinds other than an e-CO, and not to one of them."""
    kind = detect_kind(record)
    if kind is not None:
        return kind, f"; type assumed from its fields: {type_name(kind)}"
    if checked_as_eco(record):
        return Kind.COO, "; its fields do not tell its type"
    return None, ""


def _type_unknown() -> Problem:
    names = ", ".join(sorted({type_name(kind) for kind in SUBMIT_KINDS.values()}))
    return Problem(
        "",
        "type_unknown",
        f"cannot tell which kind of record this is from its fields; pass --type (one of {names})",
    )


@main.command()
@click.option("--key", "key_file", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--type", "kind_name", type=click.Choice(KIND_NAMES), default="coo", show_default=True
)
@click.option("--sender", required=True, help="Our country code, e.g. KR.")
@click.option("--receiver", required=True, help="The partner's country code, e.g. CN.")
@click.option("--message-id", default=None, help="Reuse an id (a resend); default: a new UUID.")
@click.option("--correlation-id", default=None, help="Id of the message this one answers.")
@click.argument("file")
def sign(
    key_file: Path,
    kind_name: str,
    sender: str,
    receiver: str,
    message_id: str | None,
    correlation_id: str | None,
    file: str,
) -> None:
    """Wrap the record in FILE into a message and print its compact JWS."""
    try:
        key = PrivateKey.from_pem(key_file.read_bytes())
    except (OSError, ConfigError) as exc:
        raise click.ClickException(f"cannot use key {key_file}: {exc}") from None
    try:
        body: Any = orjson.loads(_read(file))
    except orjson.JSONDecodeError as exc:
        _fail(f"{file}: not valid JSON: {exc}")
    try:
        message = compose(
            Kind(kind_name),
            body,
            sender=sender,
            receiver=receiver,
            issued_at=issued_now(datetime.now(UTC)),
            message_id=message_id,
            correlation_id=correlation_id,
        ).message
    except InvalidRecord as exc:
        for problem in exc.problems:
            click.echo(f"{file}: {problem}", err=True)
        sys.exit(1)
    click.echo(seal(message, key).decode())


@main.command()
@click.option(
    "--jwks",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The sender's public JWK Set (pinned keys).",
)
@click.option(
    "--type",
    "kind_name",
    type=click.Choice(KIND_NAMES),
    default=None,
    help="Accept only this message type.",
)
@click.option("--sender", default=None, help="Require this sender country (the keys' owner).")
@click.option("--receiver", default=None, help="Require this receiver country.")
@click.argument("file")
def verify(
    jwks: Path, kind_name: str | None, sender: str | None, receiver: str | None, file: str
) -> None:
    """Verify the JWS in FILE ('-' for stdin); print the message JSON or the reason."""
    try:
        keys = KeySet.from_jwks(jwks.read_bytes(), owner=sender)
    except (OSError, ConfigError) as exc:
        _fail(f"cannot use JWK Set {jwks}: {exc}")
    kinds = None if kind_name is None else [Kind(kind_name)]
    try:
        opened = open_envelope(
            _read(file), keys, receiver=receiver, now=datetime.now(UTC), kinds=kinds
        )
    except PeerError as exc:
        _fail(f"rejected: {exc.code}: {exc.reason}")
    click.echo(orjson.dumps(as_json_dict(opened.message), option=orjson.OPT_INDENT_2).decode())


@main.command()
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("schemas"),
    show_default=True,
)
def schemas(out_dir: Path) -> None:
    """Regenerate the JSON Schemas and the AsyncAPI document from the models."""
    from eodes_node.schema_export import write

    for path in write(out_dir):
        click.echo(str(path))


@main.command()
@CONFIG
def run(config_path: Path) -> None:
    """Run the node until SIGTERM or SIGINT; in-flight work is drained first."""
    import asyncio

    from eodes_node.bootstrap import build_node
    from eodes_node.errors import StoreUnavailable
    from eodes_node.logs import configure

    config = node_config(config_path)
    configure(config.logging.level, config.logging.format)
    # The store runs on its own thread; hand the GIL over sooner than the default 5 ms so
    # a store call does not wait behind the event loop for its turn.
    sys.setswitchinterval(0.0005)
    # Messages make short-lived, acyclic objects that reference counting frees; full
    # collections over a growing heap showed up as latency spikes. Freeze what start-up
    # built and collect less often.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    try:
        node = build_node(config)
        # Refusals at start-up (a store another node holds, a store that cannot be
        # opened) are one line for the operator, not a traceback.
        asyncio.run(node.run())
    except (ConfigError, StoreUnavailable) as exc:
        raise click.ClickException(str(exc)) from None


# The link's commands (sample, submit, init, conformance) live in cli_link.
from eodes_node.cli_link import LINK_COMMANDS  # noqa: E402

for _command in LINK_COMMANDS:
    main.add_command(_command)

# The operator's commands (status, list, resend, replay-dead, events) live in cli_operator.
from eodes_node.cli_operator import OPERATOR_COMMANDS  # noqa: E402

for _command in OPERATOR_COMMANDS:
    main.add_command(_command)

from eodes_node.cli_provision import broker_setup  # noqa: E402

main.add_command(broker_setup)

from eodes_node.cli_keys import keys  # noqa: E402

main.add_command(keys)

from eodes_node.cli_data import backup, prune, restore, verify_archive  # noqa: E402

main.add_command(backup)
main.add_command(restore)
main.add_command(prune)
main.add_command(verify_archive)
from eodes_node.cli_audit import audit  # noqa: E402

main.add_command(audit)
