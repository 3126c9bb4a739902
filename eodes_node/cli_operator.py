"""The operator's commands: status, list (read the store), resend, replay-dead, events
(ask the running node through its HTTP API, since actions belong inside the node)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

import click
import orjson

from eodes_node.adapters.http import views
from eodes_node.adapters.http.access import Role
from eodes_node.cli_options import CONFIG, node_config
from eodes_node.config import NodeConfig
from eodes_node.errors import ConfigError, TransientError
from eodes_node.operator_client import NodeApi, OperatorError
from eodes_node.ports import CertificateDetail, CertificateFilter
from eodes_node.render import detail_lines, event_line, summary_line
from eodes_node.service.repairs import DOORS

T = TypeVar("T")

AS_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON, as the API does.")


def _run(work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    try:
        return asyncio.run(work())
    except (ConfigError, TransientError, OperatorError) as exc:
        raise click.ClickException(str(exc)) from None


async def _with_reports(config: NodeConfig, work: Callable[[Any], Awaitable[T]]) -> T:
    """Read the node's store directly, beside the running node (SQLite WAL and PostgreSQL
    both let a reader in); its schema brought up to date first."""
    from eodes_node.adapters.sql.reports import SqlReports

    reports = SqlReports(config.store.url, own=config.node.country, partner=config.node.partner)
    await reports.open(migrate=True)
    try:
        return await work(reports)
    finally:
        await reports.close()


def _dump(value: Any) -> None:
    click.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


@click.command()
@CONFIG
@AS_JSON
@click.argument("certificate_number")
def status(config_path: Path, as_json: bool, certificate_number: str) -> None:
    """A certificate's state and history, each message with its receipt code and text,
    the feedback per item with reasons, and the cancellation reason."""
    config = node_config(config_path)
    found: list[CertificateDetail] = _run(
        lambda: _with_reports(config, lambda r: r.certificate(certificate_number))
    )
    if not found:
        raise click.ClickException(f"no certificate {certificate_number} at this node")
    if as_json:
        _dump({"number": found[0].summary.number, "sides": [views.detail(d) for d in found]})
        return
    for detail in found:
        for line in detail_lines(detail):
            click.echo(line)


@click.command("list")
@CONFIG
@AS_JSON
@click.option("--state", default=None, help="e.g. failed, rejected, pending, delivered.")
@click.option("--side", type=click.Choice(["exporter", "importer"]), default=None)
@click.option("--agreement", default=None, help="e.g. KCFTA (any case).")
@click.option("--from", "issued_from", type=click.DateTime(["%Y-%m-%d"]), default=None)
@click.option("--to", "issued_to", type=click.DateTime(["%Y-%m-%d"]), default=None)
@click.option("--number", default=None, help="Certificate or reference number (any case).")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
def list_(
    config_path: Path,
    as_json: bool,
    state: str | None,
    side: str | None,
    agreement: str | None,
    issued_from: Any,
    issued_to: Any,
    number: str | None,
    limit: int,
) -> None:
    """Certificates at this node, most recently changed first."""
    from eodes_node.core.state import State

    if state is not None and state not in {s.value for s in State}:
        names = ", ".join(s.value for s in State)
        raise click.BadParameter(f"{state!r} is not a state; states: {names}", param_hint="--state")
    where = CertificateFilter(
        state=state,
        role=side,
        agreement=agreement,
        issued_from=_day(issued_from),
        issued_to=_day(issued_to),
        number=number,
        limit=limit,
    )
    config = node_config(config_path)
    page = _run(lambda: _with_reports(config, lambda r: r.certificates(where)))
    if as_json:
        _dump(views.page(page))
        return
    for item in page.items:
        click.echo(summary_line(item))
    shown = len(page.items)
    click.echo(
        f"{shown} of {page.total} certificate(s)" + (" (--limit)" if shown < page.total else "")
    )


def _day(value: Any) -> date | None:
    return None if value is None else value.date()


@click.command()
@CONFIG
@click.argument("certificate_number")
def resend(config_path: Path, certificate_number: str) -> None:
    """Send a failed or rejected certificate again (through the running node)."""
    config = node_config(config_path)

    async def work() -> Any:
        return await NodeApi(config, Role.OPERATOR).call(
            "POST", f"/api/v1/certificates/{certificate_number}/resend"
        )

    outcome = _run(work)
    how = "the same message again" if outcome["same_message"] else "as a new message"
    click.echo(
        f"certificate {outcome['certificate_number']} sent again, {how}: {outcome['message_id']}"
    )


@click.command("replay-dead")
@CONFIG
@click.option("--door", type=click.Choice(DOORS), default="records", show_default=True)
@click.option("--limit", type=click.IntRange(1, 10_000), default=1000, show_default=True)
def replay_dead(config_path: Path, door: str, limit: int) -> None:
    """Move a door's dead letters back into it, to be handled again (after a fix)."""
    config = node_config(config_path)

    async def work() -> Any:
        return await NodeApi(config, Role.OPERATOR).call(
            "POST", f"/api/v1/dead-letters/{door}/replay", {"limit": limit}
        )

    outcome = _run(work)
    click.echo(f"{outcome['moved']} dead letter(s) moved back to {outcome['queue']}")


@click.command()
@CONFIG
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events as they come.")
@AS_JSON
def events(config_path: Path, follow: bool, as_json: bool) -> None:
    """The node's recent events as readable lines; --follow keeps tailing them."""
    config = node_config(config_path)
    live = "true" if follow else "false"

    async def work() -> None:
        api = NodeApi(config, Role.VIEWER)
        async for line in api.lines(f"/api/v1/events?recent=true&follow={live}"):
            click.echo(line.decode().strip() if as_json else event_line(orjson.loads(line)))

    with contextlib.suppress(KeyboardInterrupt):
        _run(work)


OPERATOR_COMMANDS = (status, list_, resend, replay_dead, events)
