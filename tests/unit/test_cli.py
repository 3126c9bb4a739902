"""The CLI forms integration testers script against."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from eodes_node.cli import main


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def keys(tmp_path: Path, runner: CliRunner) -> Path:
    result = runner.invoke(main, ["keygen", "--out", str(tmp_path), "--name", "kr"])
    assert result.exit_code == 0, result.output
    return tmp_path


@pytest.fixture
def record(tmp_path: Path, runner: CliRunner) -> Path:
    result = runner.invoke(main, ["sample", "--count", "1", "--seed", "5"])
    assert result.exit_code == 0
    path = tmp_path / "record.json"
    path.write_text(result.output)
    return path


def test_keygen_writes_a_private_key_only_the_owner_can_read(keys: Path) -> None:
    mode = stat.S_IMODE((keys / "kr.key.pem").stat().st_mode)
    assert mode == 0o600
    jwks = json.loads((keys / "kr.jwks.json").read_text())
    assert [k["alg"] for k in jwks["keys"]] == ["Ed25519"]
    assert "d" not in jwks["keys"][0]


def test_keygen_refuses_to_overwrite_a_key(keys: Path, runner: CliRunner) -> None:
    result = runner.invoke(main, ["keygen", "--out", str(keys), "--name", "kr"])
    assert result.exit_code != 0
    assert "exists" in result.output


def test_keygen_es256(tmp_path: Path, runner: CliRunner) -> None:
    result = runner.invoke(
        main, ["keygen", "--out", str(tmp_path), "--name", "n", "--alg", "ES256"]
    )
    assert result.exit_code == 0
    assert json.loads((tmp_path / "n.jwks.json").read_text())["keys"][0]["crv"] == "P-256"


def test_sample_prints_count_valid_records(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["sample", "--count", "5", "--agreement", "RCEP", "--seed", "1"])
    lines = result.output.splitlines()
    assert len(lines) == 5
    assert all(json.loads(line)["header"]["agreement"] == "RCEP" for line in lines)
    path = tmp_path / "five.jsonl"
    path.write_text(result.output)
    checked = runner.invoke(main, ["validate", str(path)])
    assert checked.exit_code == 0
    assert checked.output.count("valid e-CO") == 5


def test_validate_prints_every_problem_and_exits_1(
    runner: CliRunner, record: Path, tmp_path: Path
) -> None:
    data = json.loads(record.read_text())
    data["items"][0]["hs_code"] = "12AB"
    data["consignee"]["country"] = "XX"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    result = runner.invoke(main, ["validate", str(bad)])
    assert result.exit_code == 1
    assert "items[0].hs_code: HS code must be 6 to 10 digits" in result.output
    assert "consignee.country:" in result.output


def test_sign_then_verify(runner: CliRunner, keys: Path, record: Path, tmp_path: Path) -> None:
    signed = runner.invoke(
        main,
        [
            "sign",
            "--key",
            str(keys / "kr.key.pem"),
            "--type",
            "coo",
            "--sender",
            "KR",
            "--receiver",
            "CN",
            str(record),
        ],
    )
    assert signed.exit_code == 0, signed.output
    token = signed.output.strip()
    assert token.count(".") == 2
    verified = runner.invoke(
        main, ["verify", "--jwks", str(keys / "kr.jwks.json"), "--type", "coo", "-"], input=token
    )
    assert verified.exit_code == 0, verified.output
    message = json.loads(verified.output)
    assert message["certificate"] == json.loads(record.read_text())
    assert message["sender"] == "KR"


def test_verify_failure_is_one_line_on_stderr(
    runner: CliRunner, keys: Path, record: Path, tmp_path: Path
) -> None:
    signed = runner.invoke(
        main,
        [
            "sign",
            "--key",
            str(keys / "kr.key.pem"),
            "--sender",
            "KR",
            "--receiver",
            "CN",
            str(record),
        ],
    )
    other = tmp_path / "other"
    runner.invoke(main, ["keygen", "--out", str(other), "--name", "cn"])
    result = runner.invoke(
        main, ["verify", "--jwks", str(other / "cn.jwks.json"), "-"], input=signed.output
    )
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert "UNKNOWN_KEY" in result.stderr


def test_sign_refuses_an_invalid_record(
    runner: CliRunner, keys: Path, record: Path, tmp_path: Path
) -> None:
    data = json.loads(record.read_text())
    data["header"]["agreement"] = "NOPE"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    result = runner.invoke(
        main,
        ["sign", "--key", str(keys / "kr.key.pem"), "--sender", "KR", "--receiver", "CN", str(bad)],
    )
    assert result.exit_code == 1
    assert "header.agreement: unknown agreement 'NOPE'" in result.stderr
