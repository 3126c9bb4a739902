"""Commands about a partner link: sample records, submit them, set up a new link, and test
a partner's node with the conformance kit. Registered on ``eodes_node.cli.main``.

The shared helpers of ``cli`` are imported inside each command, since ``cli`` imports
this module at its end.
"""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import click

from eodes_node.core.agreements import AGREEMENTS
from eodes_node.core.canonical import canonical_json
from eodes_node.core.jws import ALGORITHMS
from eodes_node.errors import ConfigError, InvalidRecord

CONFIG_PATH = click.Path(dir_okay=False, path_type=Path)


@click.command()
@click.option("--count", type=click.IntRange(1, 1_000_000), default=1, show_default=True)
@click.option(
    "--type",
    "kind",
    type=click.Choice(["coo", "cancellation", "feedback"]),
    default="coo",
    show_default=True,
    help="e-CO records, their cancellations, or the importing customs' feedback on them.",
)
@click.option(
    "--agreement",
    type=click.Choice(sorted(AGREEMENTS)),
    default=None,
    help="Default: the link's agreement with --config, else KCFTA.",
)
@click.option("--config", "config_path", type=CONFIG_PATH, default=None,
              help="A node's configuration: samples for its link.")  # fmt: skip
@click.option("--exporter", default=None, help="Exporting country (default: KR when a party).")
@click.option("--importer", default=None, help="Importing country.")
@click.option("--for", "for_file", default=None,
              help="e-CO records (JSON Lines) the cancellations or feedback refer to.")  # fmt: skip
@click.option("--seed", type=int, default=None, help="Repeatable output for a given seed.")
@click.option(
    "--date",
    "issue_date",
    type=click.DateTime(["%Y-%m-%d"]),
    default=None,
    help="Issue date (default: today).",
)
def sample(**options: Any) -> None:
    """Print COUNT realistic, valid records, one JSON object per line.

    A cancellation or feedback refers to the certificates in --for, else to the e-COs the
    same options print (same --seed, same certificates).
    """
    from eodes_node.cli_options import node_config as _config
    from eodes_node.samples.choose import factory_for, sample_records

    config = _config(options["config_path"]) if options["config_path"] else None
    day: date | None = options["issue_date"].date() if options["issue_date"] else None
    try:
        factory = factory_for(
            options["kind"],
            agreement=options["agreement"],
            exporter=options["exporter"],
            importer=options["importer"],
            link=(config.node.country, config.node.partner) if config else None,
            seed=options["seed"],
            issue_date=day,
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    refer_to = _certificates(options["for_file"]) if options["for_file"] else None
    out = sys.stdout.buffer
    for record in sample_records(options["kind"], factory, options["count"], refer_to):
        out.write(canonical_json(record) + b"\n")
    out.flush()


def _certificates(source: str) -> list[Any]:
    """The e-CO records in ``source``; every problem of an unusable one, then exit 1."""
    from eodes_node.cli import _fail, _read, _records
    from eodes_node.core.models import Certificate
    from eodes_node.core.records import parse_model

    certificates, records = [], _records(_read(source))
    for index, raw in enumerate(records, start=1):
        try:
            certificates.append(parse_model(Certificate, raw))
        except InvalidRecord as exc:
            where = source if len(records) == 1 else f"{source}:{index}"
            _fail("\n".join(f"{where}: {problem}" for problem in exc.problems))
    return certificates


@click.command()
@click.option("--config", "config_path", required=True, type=CONFIG_PATH,
              help="Node configuration (TOML).")  # fmt: skip
@click.option(
    "--type",
    "kind_name",
    type=click.Choice(
        [
            "coo",
            "coo-replacement",
            "coo-cancellation",
            "cancellation",
            "feedback",
            "verification-request",
            "verification-response",
        ]
    ),
    default="coo",
    show_default=True,
    help="What the records are; cancellation is short for coo-cancellation.",
)
@click.option("--no-validate", is_flag=True, help="Publish as is; the node refuses bad ones.")
@click.argument("files", nargs=-1, required=True)
def submit(config_path: Path, kind_name: str, no_validate: bool, files: tuple[str, ...]) -> None:
    """Publish records into the node's local queue, as the issuing system would.

    Each FILE holds one JSON record or JSON Lines; '-' reads standard input. Each record
    is first checked as the node would check it; what would be refused is not sent, and
    is listed with every problem by field path (exit 1). Feedback records and
    verification requests go to the feedback queue, the rest to the records queue.
    """
    import asyncio

    from eodes_node.cli import _fail, _read, _records
    from eodes_node.cli_options import node_config as _config
    from eodes_node.errors import TransientError
    from eodes_node.submitting import CLEARANCE_KINDS, SUBMIT_KINDS, publish_records, refusals
    from eodes_node.topology import Topology

    config = _config(config_path)
    kind = SUBMIT_KINDS[kind_name]
    topology = Topology(config.node.country, config.node.partner, config.node.namespace)
    queue = topology.outbound_feedback if kind in CLEARANCE_KINDS else topology.outbound_records
    accepted, refused = [], 0
    for source in files:
        records = _records(_read(source))
        for index, record in enumerate(records, start=1):
            where = source if len(records) == 1 else f"{source}:{index}"
            problems = [] if no_validate else refusals(
                kind,
                record,
                own=config.node.country,
                partner=config.node.partner,
                max_bytes=config.limits.max_record_bytes,
                now=datetime.now(UTC),
            )  # fmt: skip
            for problem in problems:
                click.echo(f"{where}: refused: {problem}", err=True)
            refused += bool(problems)
            if not problems:
                accepted.append(record)
    try:
        if accepted:
            asyncio.run(
                publish_records(
                    config.broker.link_urls("local"),
                    queue,
                    accepted,
                    kind=kind.value,
                    timeout_s=config.broker.io_timeout_s,
                    tls=config.broker.link_tls("local"),
                    queues=config.broker.queue_kind,
                )
            )
    except TransientError as exc:
        _fail(f"submit failed: {exc}")
    click.echo(
        f"submitted {len(accepted)} record(s) to {queue}"
        + (f"; refused {refused} (see above)" if refused else "")
    )
    if refused:
        sys.exit(1)


@click.command()
@click.option("--own", required=True, help="Our country code, e.g. KR.")
@click.option("--partner", required=True, help="The partner's country code, e.g. VN.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--broker", default="amqp://guest:guest@127.0.0.1:5672", show_default=True,
              help="Our broker's URL, without the vhost.")  # fmt: skip
@click.option("--partner-broker", default=None,
              help="The partner's broker URL, without the vhost (default: --broker).")  # fmt: skip
@click.option("--vhost-prefix", default="eodes-", show_default=True,
              help="Vhosts are PREFIX + country code in lower case.")  # fmt: skip
@click.option("--namespace", default="eodes", show_default=True)
@click.option("--alg", type=click.Choice(ALGORITHMS), default="Ed25519", show_default=True)
@click.option("--trial", is_flag=True,
              help="Make the partner's key pair too, to run both nodes here.")  # fmt: skip
@click.option("--force", is_flag=True, help="Replace existing files.")
def init(**options: Any) -> None:
    """Set up a new partner link in one directory: our keys, a commented configuration for
    each end, and the broker set-up commands (broker-setup.sh)."""
    from eodes_node.link_init import LinkPlan, create_link, next_steps

    force = options.pop("force")
    plan = LinkPlan(
        own=options.pop("own").upper(),
        partner=options.pop("partner").upper(),
        out=options.pop("out_dir"),
        **options,
    )
    try:
        written = create_link(plan, force=force)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    for path in written:
        click.echo(f"wrote {path}")
    click.echo("next:\n" + next_steps(plan))


@click.command()
@click.option("--config", "config_path", required=True, type=CONFIG_PATH,
              help="The kit's side of the link: a node configuration whose partner is the "
              "tested node.")  # fmt: skip
@click.option("--node-local-url", default=None,
              help="The tested node's own broker (AMQP URL with vhost): the kit then has it "
              "send an e-CO and feedback by itself.")  # fmt: skip
@click.option("--node-namespace", default=None, help="The tested node's namespace, if other.")
@click.option("--expired-key", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A private key the node pins with an exp in the past.")  # fmt: skip
@click.option("--agreement", type=click.Choice(sorted(AGREEMENTS)), default=None)
@click.option("--junit", "junit_path", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("conformance-report.xml"), show_default=True)  # fmt: skip
@click.option("--answer-within", type=float, default=30.0, show_default=True,
              help="Seconds to wait for the receipts of one round.")  # fmt: skip
@click.option("--resend-within", type=float, default=120.0, show_default=True,
              help="Seconds to wait for a resend while the receipt is withheld.")  # fmt: skip
@click.option("--node-within", type=float, default=120.0, show_default=True,
              help="Seconds to wait for the node's own e-CO and feedback.")  # fmt: skip
def conformance(**options: Any) -> None:
    """Play our side of the link against a partner's node and check every answer.

    Prints a table of cases and one summary line, writes a JUnit XML report, and exits 0
    only when no case failed.
    """
    import asyncio
    import time

    from eodes_node.cli_options import node_config as _config
    from eodes_node.conformance import KitError, KitOptions, junit, run_kit, summary, table

    config = _config(options["config_path"])
    kit_options = KitOptions(
        node_local_url=options["node_local_url"],
        node_namespace=options["node_namespace"],
        expired_key=_key(options["expired_key"]) if options["expired_key"] else None,
        agreement=options["agreement"],
        answer_within_s=options["answer_within"],
        resend_within_s=options["resend_within"],
        node_within_s=options["node_within"],
    )
    began = time.monotonic()
    try:
        outcomes = asyncio.run(
            run_kit(config, kit_options, lambda line: click.echo(line, err=True))
        )
    except KitError as exc:
        raise click.ClickException(str(exc)) from None
    node = f"{config.node.partner}'s node"
    options["junit_path"].write_bytes(junit(outcomes, node, time.monotonic() - began))
    click.echo(table(outcomes))
    click.echo(f"{summary(outcomes, node)}; report: {options['junit_path']}")
    if any(o.status == "fail" for o in outcomes):
        sys.exit(1)


def _key(path: Path) -> Any:
    from eodes_node.core.jws import PrivateKey

    try:
        return PrivateKey.from_pem(path.read_bytes())
    except (OSError, ConfigError) as exc:
        raise click.ClickException(f"cannot use key {path}: {exc}") from None


LINK_COMMANDS = (sample, submit, init, conformance)
