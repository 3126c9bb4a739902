"""Configuration: the shipped pair loads, environment overrides win, mistakes are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from eodes_node.config import load_config
from eodes_node.errors import ConfigError

CONFIG = Path(__file__).resolve().parents[2] / "config"


def test_shipped_pair_is_mirrored() -> None:
    kr = load_config(CONFIG / "kr-cn.toml", {})
    cn = load_config(CONFIG / "cn-kr.toml", {})
    assert (kr.node.country, kr.node.partner) == ("KR", "CN")
    assert (cn.node.country, cn.node.partner) == ("CN", "KR")
    assert kr.broker.local_url == cn.broker.partner_url
    assert kr.broker.partner_url == cn.broker.local_url
    # Relative paths are resolved against the config file, not the working directory.
    assert kr.keys.private_key == (CONFIG.parent / "var" / "keys" / "kr.key.pem").resolve()
    assert kr.keys.partner_jwks.name == cn.keys.private_key.name.replace(".key.pem", ".jwks.json")


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    config = load_config(
        CONFIG / "kr-cn.toml",
        {
            "EODES_STORE_URL": f"sqlite:///{tmp_path}/x.db",
            "EODES_RETRY_MAX_ATTEMPTS": "3",
            "EODES_BROKER_PREFETCH": "10",
            "EODES_UNRELATED": "ignored",
        },
    )
    assert config.store.url == f"sqlite:///{tmp_path}/x.db"
    assert config.retry.max_attempts == 3
    assert config.broker.prefetch == 10


def test_mistakes_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text((CONFIG / "kr-cn.toml").read_text().replace('partner = "CN"', 'partner = "KR"'))
    with pytest.raises(ConfigError, match="must differ"):
        load_config(bad, {})
    with pytest.raises(ConfigError, match=r"retry\.max_attempts"):
        load_config(CONFIG / "kr-cn.toml", {"EODES_RETRY_MAX_ATTEMPTS": "zero"})
    bad.write_text("[node\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad, {})
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.toml", {})
