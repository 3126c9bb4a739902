"""Packaging: the wheel carries what a node reads at run time, and the systemd unit is valid
and hands the node the secret files it reads."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from eodes_node.config import LimitsSection, load_config

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "systemd" / "eodes-node@.service"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from this tree (the build backend from the dev extras, no download)."""
    out = tmp_path_factory.mktemp("dist")
    built = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    (found,) = out.glob("eodes_node-*-py3-none-any.whl")
    return found


def run_time_data() -> set[str]:
    """The package's files that are not Python: templates, the stylesheet, the config
    template `init` writes from."""
    package = ROOT / "eodes_node"
    return {
        path.relative_to(ROOT).as_posix()
        for path in package.rglob("*")
        if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts
    }


@pytest.mark.timeout(180)
def test_the_wheel_carries_the_run_time_data_and_the_command(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(
            archive.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt")
        )
    data = run_time_data()
    assert "eodes_node/templates/node.toml" in data
    assert "eodes_node/adapters/http/static/eodes.css" in data
    assert any(n.startswith("eodes_node/adapters/http/templates/") for n in data)
    assert data <= names, f"missing from the wheel: {sorted(data - names)}"
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "eodes_node").rglob("*.py")}
    assert modules <= names, f"missing from the wheel: {sorted(modules - names)}"
    tops = {n.split("/", 1)[0] for n in names}
    assert all(top == "eodes_node" or top.endswith(".dist-info") for top in tops), tops
    assert not [n for n in names if n.endswith((".key.pem", ".db"))], "key or store in the wheel"
    assert re.search(r"^eodes-node = eodes_node\.cli:main$", entry_points, re.MULTILINE)


@pytest.mark.timeout(180)
def test_the_unpacked_wheel_finds_its_data_at_run_time(wheel: Path, tmp_path: Path) -> None:
    """Imported from the unpacked wheel, not this tree: the console's templates load and
    `init` writes a link from the packaged config template."""
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    probe = (
        "import sys, pathlib, eodes_node\n"
        "from eodes_node.adapters.http import pages\n"
        "where = eodes_node.__file__\n"
        "assert pathlib.Path(where).is_relative_to(sys.argv[1]), where\n"
        "for name in pages.ENV.list_templates():\n"
        "    pages.ENV.get_template(name)\n"
        "print(len(pages.ENV.list_templates()))\n"
    )
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    shown = subprocess.run(
        [sys.executable, "-c", probe, str(site)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert int(shown.stdout) == len(list((ROOT / "eodes_node/adapters/http/templates").glob("*")))
    link = tmp_path / "link"
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "eodes_node",
            "init",
            "--own",
            "KR",
            "--partner",
            "VN",
            "--out",
            link,
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert made.returncode == 0, made.stderr[-2000:]
    assert load_config(link / "kr-vn.toml", {}).node.partner == "VN"


def unit_settings() -> list[tuple[str, str]]:
    return [
        (key, value)
        for line in UNIT.read_text().splitlines()
        if line and not line.startswith(("#", "["))
        for key, _, value in [line.partition("=")]
    ]


def test_the_systemd_unit_is_valid(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    # verify wants the command to exist: the node's command from this venv stands in for
    # /opt/eodes-node/bin/eodes-node, the only line that depends on the machine.
    command = Path(sys.executable).parent / "eodes-node"
    text = UNIT.read_text()
    assert "ExecStart=/opt/eodes-node/bin/eodes-node run " in text
    instance = tmp_path / "eodes-node@kr-cn.service"
    instance.write_text(text.replace("/opt/eodes-node/bin/eodes-node", str(command)))
    verified = subprocess.run(
        [analyze, "verify", str(instance)], capture_output=True, text=True, timeout=60, check=False
    )
    # verify exits 0 on a setting it ignores; any line it prints is a finding.
    assert (verified.returncode, verified.stdout + verified.stderr) == (0, "")


def test_the_unit_confines_the_node_and_outlasts_its_drain() -> None:
    settings = unit_settings()
    single = dict(settings)
    assert single["User"] == "eodes-node"
    assert single["ProtectSystem"] == "strict"
    assert single["ProtectHome"] == single["PrivateTmp"] == single["NoNewPrivileges"] == "true"
    assert [v for k, v in settings if k == "ReadWritePaths"] == ["/var/lib/eodes-node/%i"]
    assert single["Restart"] == "on-failure"
    assert single["KillSignal"] == "SIGTERM"
    # The node may take the drain bound twice (batches, then background work) and closes
    # its links and store after.
    assert int(single["TimeoutStopSec"]) > 2 * LimitsSection().drain_timeout_s + 15
    assert "--config /etc/eodes-node/%i.toml" in single["ExecStart"]


def test_the_unit_credentials_are_the_secret_files_the_node_reads(tmp_path: Path) -> None:
    """Every credential the unit loads reaches the node through an EODES_..._FILE variable
    the configuration reads; %d is played by a directory of files mode 0400, as systemd
    makes it."""
    settings = unit_settings()
    credentials = {
        v.partition(":")[0]: v.partition(":")[2] for k, v in settings if k == "LoadCredential"
    }
    assert all(p.startswith("/etc/eodes-node/credentials/%i/") for p in credentials.values())
    variables = dict(v.split("=", 1) for k, v in settings if k == "Environment")
    assert set(variables) == {
        "EODES_BROKER_LOCAL_PASSWORD_FILE",
        "EODES_BROKER_PARTNER_PASSWORD_FILE",
        "EODES_HTTP_TOKENS_FILE",
    }
    assert {v.removeprefix("%d/") for v in variables.values()} == set(credentials)
    directory = tmp_path / "credentials"
    directory.mkdir()
    values = {
        "broker-local-password": "local-s3cret",
        "broker-partner-password": "partner-s3cret",
        "http-tokens": "operator:" + "o" * 20 + ":ops\n",
    }
    for name, value in values.items():
        (directory / name).write_text(value + "\n")
        (directory / name).chmod(0o400)
    environ = {k: v.replace("%d", str(directory)) for k, v in variables.items()}
    config = tmp_path / "kr-cn.toml"
    config.write_text(
        (ROOT / "config" / "kr-cn.toml")
        .read_text()
        .replace("amqp://guest:guest@", "amqp://kr-node@")
    )
    loaded = load_config(config, environ)
    assert loaded.broker.local_url == "amqp://kr-node:local-s3cret@127.0.0.1:5672/eodes-kr"
    assert loaded.broker.partner_url == "amqp://kr-node:partner-s3cret@127.0.0.1:5672/eodes-cn"
    assert loaded.http.tokens_file == directory / "http-tokens"
