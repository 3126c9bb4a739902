"""The key lifecycle on the command line: keygen with a validity window, rotate, revoke,
list; and the node refusing, at start-up, a signing key outside its window."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from eodes_node.cli import main
from eodes_node.config import BrokerSection, KeysSection, NodeConfig, NodeSection, StoreSection
from eodes_node.core.jws import KeySet, PrivateKey
from eodes_node.errors import ConfigError
from eodes_node.keyfiles import load_key_material, write_jwks, write_private_key

DAY = 86400


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def jwks(path: Path) -> dict[str, dict[str, Any]]:
    return {jwk["kid"]: jwk for jwk in json.loads(path.read_text())["keys"]}


@pytest.fixture
def node_files(tmp_path: Path) -> Path:
    """A KR node's configuration, its key pair from keygen and CN's pinned JWK Set."""
    keys = tmp_path / "keys"
    assert run("keygen", "--out", str(keys), "--name", "kr").exit_code == 0
    assert run("keygen", "--out", str(tmp_path / "cn"), "--name", "cn").exit_code == 0
    (tmp_path / "cn" / "cn.jwks.json").rename(keys / "cn.jwks.json")
    config = tmp_path / "kr-cn.toml"
    config.write_text(
        '[node]\ncountry = "KR"\npartner = "CN"\n'
        '[broker]\nlocal_url = "amqp://x/"\npartner_url = "amqp://x/"\n'
        '[keys]\nprivate_key = "keys/kr.key.pem"\npartner_jwks = "keys/cn.jwks.json"\n'
        '[store]\nurl = "sqlite:///node.db"\n'
    )
    return config


def test_keygen_writes_nbf_and_exp_on_the_public_key_and_the_private_key_0600(
    tmp_path: Path,
) -> None:
    result = run(
        "keygen", "--out", str(tmp_path), "--name", "kr",
        "--not-before", "2025-01-01", "--expires", "2099-06-30T12:00:00+09:00",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (jwk,) = jwks(tmp_path / "kr.jwks.json").values()
    assert jwk["nbf"] == int(datetime(2025, 1, 1, tzinfo=UTC).timestamp())
    assert jwk["exp"] == int(datetime(2099, 6, 30, 3, tzinfo=UTC).timestamp())
    assert mode(tmp_path / "kr.key.pem") == 0o600


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--expires", "2020-01-01"], "must come after --not-before and now"),
        (["--not-before", "2099-01-02", "--expires", "2099-01-01"], "must come after"),
        (["--expires", "next week"], "is not a date"),
        (["--expires", "2099-01-01T00:00:00"], "has no UTC offset"),
    ],
)
def test_keygen_refuses_a_window_that_cannot_be_right(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = CliRunner().invoke(main, ["keygen", "--out", str(tmp_path), "--name", "k", *args])
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "k.key.pem").exists()


def test_rotate_archives_the_old_key_publishes_both_and_switches_the_signing_key(
    node_files: Path,
) -> None:
    keys = node_files.parent / "keys"
    old = PrivateKey.from_pem((keys / "kr.key.pem").read_bytes())
    before = int(time.time())
    result = run("keys", "rotate", "--config", str(node_files), "--overlap", "3")
    assert result.exit_code == 0, result.output
    new = PrivateKey.from_pem((keys / "kr.key.pem").read_bytes())
    assert new.kid != old.kid
    assert mode(keys / "kr.key.pem") == 0o600
    archived = keys / f"kr.{old.kid}.key.pem"
    assert PrivateKey.from_pem(archived.read_bytes()).kid == old.kid
    assert mode(archived) == 0o600
    published = jwks(keys / "kr.jwks.json")
    assert set(published) == {old.kid, new.kid}
    assert before + 3 * DAY <= published[old.kid]["exp"] <= int(time.time()) + 3 * DAY
    assert "exp" not in published[new.kid]
    assert f"send {keys / 'kr.jwks.json'} to CN's operators" in result.output
    assert "SIGHUP" in result.output
    assert not list(keys.glob(".*"))  # no scratch files left behind


def test_a_second_rotation_keeps_the_first_old_keys_expiry(node_files: Path) -> None:
    keys = node_files.parent / "keys"
    run("keys", "rotate", "--config", str(node_files), "--overlap", "1")
    first = jwks(keys / "kr.jwks.json")
    run("keys", "rotate", "--config", str(node_files), "--overlap", "10")
    second = jwks(keys / "kr.jwks.json")
    assert len(second) == 3
    (oldest,) = (kid for kid, jwk in first.items() if "exp" in jwk)
    assert second[oldest]["exp"] == first[oldest]["exp"]


def test_revoke_sets_exp_to_now_and_refuses_our_signing_key_unless_forced(
    node_files: Path,
) -> None:
    keys = node_files.parent / "keys"
    old = PrivateKey.from_pem((keys / "kr.key.pem").read_bytes())
    run("keys", "rotate", "--config", str(node_files))
    new = PrivateKey.from_pem((keys / "kr.key.pem").read_bytes())

    refused = CliRunner().invoke(
        main, ["keys", "revoke", "--config", str(node_files), "--", new.kid]
    )
    assert refused.exit_code == 1
    assert "our signing key" in refused.output
    assert "--force" in refused.output
    assert "exp" not in jwks(keys / "kr.jwks.json")[new.kid]

    unknown = CliRunner().invoke(
        main, ["keys", "revoke", "--config", str(node_files), "--", "nope"]
    )
    assert unknown.exit_code == 1
    assert "no key nope in" in unknown.output

    before = int(time.time())
    result = run("keys", "revoke", "--config", str(node_files), "--", old.kid)
    assert result.exit_code == 0, result.output
    assert before <= jwks(keys / "kr.jwks.json")[old.kid]["exp"] <= int(time.time())
    assert "KEY_NOT_VALID" in result.output

    forced = run("keys", "revoke", "--config", str(node_files), "--force", "--", new.kid)
    assert forced.exit_code == 0
    assert "exp" in jwks(keys / "kr.jwks.json")[new.kid]


def test_list_shows_our_keys_and_the_partners_with_their_validity(node_files: Path) -> None:
    keys = node_files.parent / "keys"
    old = PrivateKey.from_pem((keys / "kr.key.pem").read_bytes())
    run("keys", "rotate", "--config", str(node_files), "--overlap", "2")
    new = PrivateKey.from_pem((keys / "kr.key.pem").read_bytes())
    (cn_kid,) = jwks(keys / "cn.jwks.json")
    result = run("keys", "list", "--config", str(node_files))
    assert result.exit_code == 0, result.output
    lines = {line.split()[1]: line for line in result.output.splitlines()[1:]}
    assert lines[old.kid].startswith("KR ")
    assert "valid, expires in 2.0 days" in lines[old.kid]
    assert lines[new.kid].endswith("valid (signing)")
    assert lines[cn_kid].startswith("CN ")
    revoked = run("keys", "revoke", "--config", str(node_files), "--", old.kid)
    assert revoked.exit_code == 0, revoked.output
    again = run("keys", "list", "--config", str(node_files)).output
    shown = [line for line in again.splitlines() if old.kid in line]
    assert shown, again
    assert "expired or revoked" in shown[0], (shown[0], jwks(keys / "kr.jwks.json")[old.kid])


def _material(tmp_path: Path, **window: int) -> Path:
    key = PrivateKey.generate()
    write_private_key(tmp_path / "kr.key.pem", key.to_pem())
    public = key.public.jwk() | window
    (tmp_path / "kr.jwks.json").write_text(json.dumps({"keys": [public]}))
    write_jwks(tmp_path / "cn.jwks.json", KeySet({(p := PrivateKey.generate()).kid: p.public}))
    return tmp_path / "kr.key.pem"


@pytest.mark.parametrize(
    ("window", "reason"),
    [
        ({"exp": int(time.time()) - 1}, "has expired or was revoked"),
        ({"nbf": int(time.time()) + DAY}, "is not valid yet"),
    ],
)
def test_the_node_never_signs_with_a_key_outside_its_window(
    tmp_path: Path, window: dict[str, int], reason: str
) -> None:
    private = _material(tmp_path, **window)
    with pytest.raises(ConfigError, match=f"our signing key may not sign now: key .* {reason}"):
        load_key_material(private, tmp_path / "cn.jwks.json", "CN", now=int(time.time()))


def test_our_jwk_set_must_hold_our_signing_key(tmp_path: Path) -> None:
    private = _material(tmp_path)
    write_jwks(tmp_path / "kr.jwks.json", KeySet({(o := PrivateKey.generate()).kid: o.public}))
    with pytest.raises(ConfigError, match="does not hold our signing key"):
        load_key_material(private, tmp_path / "cn.jwks.json", "CN", now=int(time.time()))


def test_the_start_up_refusal_is_one_line(tmp_path: Path) -> None:
    private = _material(tmp_path, exp=int(time.time()) - 60)
    config = NodeConfig(
        node=NodeSection(country="KR", partner="CN"),
        broker=BrokerSection(local_url="amqp://x/", partner_url="amqp://x/"),
        keys=KeysSection(private_key=private, partner_jwks=tmp_path / "cn.jwks.json"),
        store=StoreSection(url=f"sqlite:///{tmp_path / 'node.db'}"),
    )
    path = tmp_path / "node.toml"
    lines = []
    for section, values in config.model_dump(mode="json").items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in values.items() if v is not None]
    path.write_text("\n".join(lines) + "\n")
    # Its own process: `run` tunes the interpreter (gc, switch interval) for the node.
    exe = str(Path(sys.executable).with_name("eodes-node"))
    done = subprocess.run(
        [exe, "run", "--config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1, done.stderr
    assert "our signing key may not sign now" in done.stderr
