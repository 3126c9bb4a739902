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


# --- A new partner link: init, samples for it, submission checks (no broker needed) ---


@pytest.fixture
def link(tmp_path: Path, runner: CliRunner) -> Path:
    result = runner.invoke(
        main, ["init", "--own", "KR", "--partner", "VN", "--out", str(tmp_path / "link")]
    )
    assert result.exit_code == 0, result.output
    return tmp_path / "link"


def test_init_writes_keys_a_config_pair_and_the_broker_commands(link: Path) -> None:
    from eodes_node.config import load_config

    assert stat.S_IMODE((link / "keys" / "kr.key.pem").stat().st_mode) == 0o600
    assert not (link / "keys" / "vn.key.pem").exists(), "the partner makes its own key"
    ours, theirs = load_config(link / "kr-vn.toml", {}), load_config(link / "vn-kr.toml", {})
    assert (ours.node.country, ours.node.partner) == ("KR", "VN")
    assert ours.broker.local_url.endswith("/eodes-kr")
    assert ours.broker.partner_url.endswith("/eodes-vn")
    assert (theirs.node.country, theirs.broker.local_url) == ("VN", ours.broker.partner_url)
    assert ours.keys.partner_jwks == theirs.keys.private_key.with_name("vn.jwks.json")
    assert ours.store.url != theirs.store.url
    text = (link / "kr-vn.toml").read_text()
    assert "Used by" not in text
    assert "KR-VN-FTA" in text
    script = (link / "broker-setup.sh").read_text()
    for vhost in ("eodes-kr", "eodes-vn"):
        assert f"rabbitmqctl add_vhost {vhost}" in script
        assert f"rabbitmqctl set_permissions -p {vhost} guest" in script


def test_init_trial_makes_both_key_pairs(tmp_path: Path, runner: CliRunner) -> None:
    args = ["init", "--own", "cn", "--partner", "kr", "--out", str(tmp_path), "--trial"]
    result = runner.invoke(main, [*args, "--vhost-prefix", "x-", "--namespace", "n1"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "keys" / "kr.key.pem").exists()
    assert "rabbitmqctl add_vhost x-kr" in (tmp_path / "broker-setup.sh").read_text()
    assert 'namespace = "n1"' in (tmp_path / "cn-kr.toml").read_text()


@pytest.mark.parametrize(
    ("own", "partner", "says"),
    [
        ("KR", "KR", "--own and --partner must be different countries"),
        ("KR", "QQ", "--partner 'QQ' is not an ISO 3166-1 alpha-2 country code"),
        ("KR", "US", "no agreement in the table binds both KR and US"),
    ],
)
def test_init_names_what_is_wrong(
    tmp_path: Path, runner: CliRunner, own: str, partner: str, says: str
) -> None:
    result = runner.invoke(
        main, ["init", "--own", own, "--partner", partner, "--out", str(tmp_path)]
    )
    assert result.exit_code == 1
    assert says in result.output


def test_init_refuses_to_overwrite_a_link(link: Path, runner: CliRunner) -> None:
    again = ["init", "--own", "KR", "--partner", "VN", "--out", str(link)]
    result = runner.invoke(main, again)
    assert result.exit_code == 1
    assert "exists; pass --force to replace it" in result.output
    assert runner.invoke(main, [*again, "--force"]).exit_code == 0


def test_sample_for_a_link_uses_its_countries_and_agreement(link: Path, runner: CliRunner) -> None:
    config = str(link / "kr-vn.toml")
    result = runner.invoke(main, ["sample", "--config", config, "--count", "3", "--seed", "1"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.output.splitlines()]
    assert {r["header"]["agreement"] for r in records} == {"KR-VN-FTA"}
    assert {(r["exporter"]["country"], r["consignee"]["country"]) for r in records} == {
        ("KR", "VN")
    }
    akfta = runner.invoke(main, ["sample", "--config", config, "--agreement", "AKFTA"])
    assert json.loads(akfta.output)["consignee"]["country"] == "VN"
    kcfta = runner.invoke(main, ["sample", "--config", config, "--agreement", "KCFTA"])
    assert kcfta.exit_code == 1
    assert "importer VN is not a party to KCFTA" in kcfta.output


def test_sample_cancellations_and_feedback_for_given_certificates(
    runner: CliRunner, tmp_path: Path
) -> None:
    coos = runner.invoke(main, ["sample", "--count", "3", "--seed", "4"]).output
    path = tmp_path / "coos.jsonl"
    path.write_text(coos)
    numbers = [json.loads(line)["header"]["certificate_number"] for line in coos.splitlines()]
    for kind in ("cancellation", "feedback"):
        given = runner.invoke(main, ["sample", "--type", kind, "--for", str(path)])
        assert given.exit_code == 0, given.output
        assert [json.loads(x)["certificate_number"] for x in given.output.splitlines()] == numbers
        same_seed = runner.invoke(main, ["sample", "--type", kind, "--count", "3", "--seed", "4"])
        assert [
            json.loads(x)["certificate_number"] for x in same_seed.output.splitlines()
        ] == numbers
    path.write_text('{"header": {}}')
    bad = runner.invoke(main, ["sample", "--type", "feedback", "--for", str(path)])
    assert bad.exit_code == 1
    assert "header.certificate_number: this field is required" in bad.output


def test_submit_refuses_what_the_node_would_and_says_why(
    link: Path, runner: CliRunner, tmp_path: Path
) -> None:
    """Nothing valid to send: no broker is contacted (the config's broker is unreachable)."""
    config = str(link / "kr-vn.toml")
    path = tmp_path / "a.json"
    path.write_text('{"a": 1}')
    result = runner.invoke(main, ["submit", "--config", config, str(path)])
    assert result.exit_code == 1
    assert f"{path}: refused: a: unknown field" in result.stderr
    assert f"{path}: refused: header: this field is required [missing]" in result.stderr
    assert result.stdout.startswith("submitted 0 record(s) to eodes.vn.outbound.records; refused 1")


def test_submit_refuses_a_certificate_of_another_link(
    link: Path, runner: CliRunner, tmp_path: Path
) -> None:
    kr_cn = runner.invoke(main, ["sample", "--seed", "2"]).output
    path = tmp_path / "cn.jsonl"
    path.write_text(kr_cn)
    result = runner.invoke(main, ["submit", "--config", str(link / "kr-vn.toml"), str(path)])
    assert result.exit_code == 1
    assert "consignee.country: the consignee is in CN" in result.stderr


def test_submit_refuses_inconsistent_feedback(
    link: Path, runner: CliRunner, tmp_path: Path
) -> None:
    decision = {
        "certificate_number": "VN2026KRVNF0000001",
        "decision": "granted",
        "import_declaration": {"reference": "IMP-1", "date": "2026-03-02"},
        "items": [{"item_number": 1, "granted": False, "reason": "HS_MISMATCH"}],
    }
    path = tmp_path / "decision.json"
    path.write_text(json.dumps(decision))
    config = str(link / "kr-vn.toml")
    result = runner.invoke(main, ["submit", "--config", config, "--type", "feedback", str(path)])
    assert result.exit_code == 1
    assert "decision 'granted' contradicts the items" in result.stderr
