"""Command line: key generation, record validation, signing, verification, samples."""

from __future__ import annotations

import gc
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import click
import orjson

from eodes_node.core.agreements import AGREEMENTS
from eodes_node.core.canonical import canonical_json
from eodes_node.core.envelope import open_envelope, seal
from eodes_node.core.jws import ALGORITHMS, Algorithm, KeySet, PrivateKey
from eodes_node.core.messages import Kind, issued_now
from eodes_node.core.records import as_json_dict, compose, parse_certificate
from eodes_node.errors import ConfigError, InvalidRecord, PeerError
from eodes_node.keyfiles import write_private_key

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
def keygen(out_dir: Path, name: str, alg: Algorithm, force: bool) -> None:
    """Write NAME.key.pem (private, mode 0600) and NAME.jwks.json (public JWK Set)."""
    if "/" in name or name.startswith("."):
        raise click.BadParameter("must be a plain file name stem", param_hint="--name")
    out_dir.mkdir(parents=True, exist_ok=True)
    key_path = out_dir / f"{name}.key.pem"
    jwks_path = out_dir / f"{name}.jwks.json"
    if force:
        key_path.unlink(missing_ok=True)
    elif key_path.exists():
        raise click.ClickException(f"{key_path} exists; pass --force to replace it")
    key = PrivateKey.generate(alg)
    write_private_key(key_path, key.to_pem())
    jwks = KeySet({key.kid: key.public}).to_jwks()
    jwks_path.write_text(orjson.dumps(jwks, option=orjson.OPT_INDENT_2).decode() + "\n")
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
@click.argument("file")
def validate(file: str) -> None:
    """Check e-CO record(s) in FILE ('-' for stdin); print every problem, exit 1 if any."""
    records = _records(_read(file))
    failed = 0
    for index, raw in enumerate(records, start=1):
        where = file if len(records) == 1 else f"{file}:{index}"
        try:
            cert = parse_certificate(raw)
        except InvalidRecord as exc:
            failed += 1
            for problem in exc.problems:
                click.echo(f"{where}: {problem}")
            continue
        click.echo(
            f"{where}: valid e-CO {cert.number} ({cert.header.agreement}, "
            f"{len(cert.items)} item{'s' if len(cert.items) != 1 else ''})"
        )
    if failed:
        _fail(f"{failed} of {len(records)} record(s) invalid")


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
@click.option("--count", type=click.IntRange(1, 1_000_000), default=1, show_default=True)
@click.option(
    "--agreement", type=click.Choice(sorted(AGREEMENTS)), default="KCFTA", show_default=True
)
@click.option("--exporter", default=None, help="Exporting country (default: KR when a party).")
@click.option("--importer", default=None, help="Importing country.")
@click.option("--seed", type=int, default=None, help="Repeatable output for a given seed.")
@click.option(
    "--date",
    "issue_date",
    type=click.DateTime(["%Y-%m-%d"]),
    default=None,
    help="Issue date (default: today).",
)
def sample(
    count: int,
    agreement: str,
    exporter: str | None,
    importer: str | None,
    seed: int | None,
    issue_date: datetime | None,
) -> None:
    """Print COUNT realistic, valid e-CO records, one JSON object per line."""
    from eodes_node.samples import SampleFactory

    day: date | None = issue_date.date() if issue_date else None
    try:
        factory = SampleFactory(
            agreement, exporter=exporter, importer=importer, seed=seed, issue_date=day
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    out = sys.stdout.buffer
    for _ in range(count):
        out.write(canonical_json(as_json_dict(factory.certificate())) + b"\n")
    out.flush()


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


def _config(path: Path) -> Any:
    from eodes_node.config import load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


CONFIG_OPTION = click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Node configuration (TOML).",
)


@main.command()
@CONFIG_OPTION
def run(config_path: Path) -> None:
    """Run the node until SIGTERM or SIGINT; in-flight work is drained first."""
    import asyncio

    from eodes_node.bootstrap import build_node
    from eodes_node.logs import configure

    config = _config(config_path)
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
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    asyncio.run(node.run())


@main.command()
@CONFIG_OPTION
@click.argument("certificate_number")
def status(config_path: Path, certificate_number: str) -> None:
    """Print a certificate's state, its history and the messages about it."""
    import asyncio

    from eodes_node.adapters.clock import SystemClock
    from eodes_node.adapters.sql import SqlStore

    config = _config(config_path)

    async def fetch() -> Any:
        store = SqlStore(config.store.url, clock=SystemClock())
        await store.open()
        try:
            return await store.report(certificate_number)
        finally:
            await store.close()

    reports = asyncio.run(fetch())
    if not reports:
        _fail(f"no certificate {certificate_number} at this node")
    for report in reports:
        click.echo(f"certificate {report.number} ({report.role} side): {report.state}")
        verb = "sent in" if report.role == "exporter" else "arrived in"
        click.echo(f"  {verb} message {report.coo_message_id}")
        click.echo("  history:")
        for line in report.history:
            before = line.before or "-"
            click.echo(
                f"    {line.at:%Y-%m-%d %H:%M:%S}Z  {line.event:<18} {before} -> "
                f"{line.after}  ({line.message_id})"
            )
        click.echo("  messages:")
        for direction, kind, message_id, state, attempts in report.messages:
            click.echo(
                f"    {direction:<3} {kind:<22} {message_id}  {state}"
                + (f" after {attempts} attempt(s)" if direction == "out" else "")
            )


@main.command()
@CONFIG_OPTION
@click.option(
    "--type",
    "kind_name",
    type=click.Choice(["coo", "coo-replacement", "coo-cancellation", "feedback"]),
    default="coo",
    show_default=True,
)
@click.argument("files", nargs=-1, required=True)
def submit(config_path: Path, kind_name: str, files: tuple[str, ...]) -> None:
    """Publish records into the node's local queue, as the issuing system would.

    Each FILE holds one JSON record or JSON Lines; '-' reads standard input. Feedback
    records go to the feedback queue, the rest to the records queue.
    """
    import asyncio

    from eodes_node.adapters.amqp import BrokerLink
    from eodes_node.core.messages import new_message_id
    from eodes_node.errors import TransientError
    from eodes_node.topology import Topology

    config = _config(config_path)
    topology = Topology(config.node.country, config.node.partner, config.node.namespace)
    queue = topology.outbound_feedback if kind_name == "feedback" else topology.outbound_records
    records = [record for source in files for record in _records(_read(source))]

    async def publish() -> None:
        link = BrokerLink(
            config.broker.local_url,
            name="eodes-node submit",
            timeout_s=config.broker.io_timeout_s,
            reconnect_s=1.0,
        )
        try:
            await link.connect()
            channel = await link.publish_channel()
            await channel.declare_queue(queue, durable=True)
            await asyncio.gather(
                *(
                    link.publish("", queue, record, message_id=new_message_id(), kind=kind_name)
                    for record in records
                )
            )
        finally:
            await link.close()

    try:
        asyncio.run(publish())
    except TransientError as exc:
        _fail(f"submit failed: {exc}")
    click.echo(f"submitted {len(records)} record(s) to {queue}")
