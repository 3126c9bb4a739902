"""Secrets in the configuration: read from files or the environment, never required in the
TOML, and refused from a file that others may read."""

from __future__ import annotations

from pathlib import Path

import pytest

from eodes_node.config import load_config
from eodes_node.errors import ConfigError

CONFIG = Path(__file__).resolve().parents[2] / "config"
LOCAL = "amqp://kr-node@broker.kr.example:5671/eodes-kr"
PARTNER = "amqp://cn-peer@broker.cn.example:5671/eodes-cn"


def secret_file(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def node_toml(tmp_path: Path, broker: str, store: str = 'url = "sqlite:///node.db"') -> Path:
    """A config whose [broker] and [store] are given; the rest as in the shipped pair."""
    path = tmp_path / "node.toml"
    path.write_text(
        f"""
[node]
country = "KR"
partner = "CN"

[broker]
{broker}

[keys]
private_key = "kr.key.pem"
partner_jwks = "cn.jwks.json"

[store]
{store}
"""
    )
    return path


def test_the_broker_urls_come_from_files_named_in_the_toml(tmp_path: Path) -> None:
    secret_file(tmp_path / "local-url", "amqp://kr-node:s3cret@broker.kr.example/eodes-kr\n")
    secret_file(tmp_path / "partner-url", "amqp://cn-peer:0ther@broker.cn.example/eodes-cn")
    config = load_config(
        node_toml(tmp_path, 'local_url_file = "local-url"\npartner_url_file = "partner-url"'), {}
    )
    # One trailing newline is dropped; relative paths resolve against the config file.
    assert config.broker.local_url == "amqp://kr-node:s3cret@broker.kr.example/eodes-kr"
    assert config.broker.partner_url == "amqp://cn-peer:0ther@broker.cn.example/eodes-cn"


def test_the_broker_urls_come_from_files_named_in_the_environment(tmp_path: Path) -> None:
    local = secret_file(tmp_path / "l", "amqp://kr-node:s3cret@broker.kr.example/eodes-kr\r\n")
    partner = secret_file(tmp_path / "p", "amqp://cn-peer:0ther@broker.cn.example/eodes-cn")
    path = node_toml(tmp_path, "")
    config = load_config(
        path,
        {"EODES_BROKER_LOCAL_URL_FILE": str(local), "EODES_BROKER_PARTNER_URL_FILE": str(partner)},
    )
    assert config.broker.local_url == "amqp://kr-node:s3cret@broker.kr.example/eodes-kr"
    assert config.broker.partner_url == "amqp://cn-peer:0ther@broker.cn.example/eodes-cn"


def test_a_password_given_apart_goes_into_its_url_percent_encoded(tmp_path: Path) -> None:
    secret_file(tmp_path / "local-password", "p@ss:w/rd%\n")
    partner = secret_file(tmp_path / "partner-password", "other one")
    path = node_toml(
        tmp_path,
        f'local_url = "{LOCAL}"\npartner_url = "{PARTNER}"\nlocal_password_file = "local-password"',
    )
    config = load_config(path, {"EODES_BROKER_PARTNER_PASSWORD_FILE": str(partner)})
    assert config.broker.local_url == (
        "amqp://kr-node:p%40ss%3Aw%2Frd%25@broker.kr.example:5671/eodes-kr"
    )
    assert config.broker.partner_url == "amqp://cn-peer:other%20one@broker.cn.example:5671/eodes-cn"
    plain = load_config(path, {"EODES_BROKER_PARTNER_PASSWORD": "inline"})
    assert plain.broker.partner_url == "amqp://cn-peer:inline@broker.cn.example:5671/eodes-cn"


def test_the_store_url_and_password_come_from_files(tmp_path: Path) -> None:
    secret_file(tmp_path / "store-password", "db-secret\n")
    path = node_toml(
        tmp_path,
        f'local_url = "{LOCAL}"\npartner_url = "{PARTNER}"',
        'url = "postgresql+psycopg://eodes@db.example/eodes"\npassword_file = "store-password"',
    )
    config = load_config(path, {})
    assert config.store.url == "postgresql+psycopg://eodes:db-secret@db.example/eodes"
    # A SQLite URL read from a file is resolved like one written in the TOML.
    url_file = secret_file(tmp_path / "store-url", "sqlite:///var/node.db")
    sqlite = node_toml(tmp_path, f'local_url = "{LOCAL}"\npartner_url = "{PARTNER}"', "")
    from_file = load_config(sqlite, {"EODES_STORE_URL_FILE": str(url_file)})
    assert from_file.store.url == f"sqlite:///{tmp_path.resolve() / 'var' / 'node.db'}"


def test_the_environment_wins_over_the_toml_whichever_form_either_uses(tmp_path: Path) -> None:
    """Precedence, per secret: EODES_<SECTION>_<KEY>_FILE or EODES_<SECTION>_<KEY>, then
    the TOML's <key>_file or <key>. Within one layer only one of the two forms."""
    toml_file = secret_file(tmp_path / "toml-url", "amqp://from-toml-file@h/v")
    env_file = secret_file(tmp_path / "env-url", "amqp://from-env-file@h/v")
    in_toml_value = node_toml(tmp_path, 'local_url = "amqp://from-toml@h/v"\npartner_url = "x"')
    assert load_config(in_toml_value, {}).broker.local_url == "amqp://from-toml@h/v"
    env_file_wins = {"EODES_BROKER_LOCAL_URL_FILE": str(env_file)}
    assert load_config(in_toml_value, env_file_wins).broker.local_url == "amqp://from-env-file@h/v"
    in_toml_file = node_toml(tmp_path, f'local_url_file = "{toml_file}"\npartner_url = "x"')
    assert load_config(in_toml_file, {}).broker.local_url == "amqp://from-toml-file@h/v"
    env_value = {"EODES_BROKER_LOCAL_URL": "amqp://from-env@h/v"}
    assert load_config(in_toml_file, env_value).broker.local_url == "amqp://from-env@h/v"
    assert load_config(in_toml_file, env_file_wins).broker.local_url == "amqp://from-env-file@h/v"
    with pytest.raises(
        ConfigError, match="give EODES_BROKER_LOCAL_URL or EODES_BROKER_LOCAL_URL_FILE"
    ):
        load_config(in_toml_file, {**env_value, **env_file_wins})
    both_in_toml = node_toml(
        tmp_path, f'local_url = "amqp://a@h/v"\nlocal_url_file = "{toml_file}"\npartner_url = "x"'
    )
    with pytest.raises(ConfigError, match=r"give broker\.local_url or broker\.local_url_file"):
        load_config(both_in_toml, {})
    # The environment's value is used and the TOML's file is then never read.
    missing = node_toml(tmp_path, 'local_url_file = "absent"\npartner_url = "x"')
    assert load_config(missing, env_value).broker.local_url == "amqp://from-env@h/v"


def test_a_secret_file_others_may_read_is_refused_naming_it_and_its_mode(tmp_path: Path) -> None:
    path = node_toml(tmp_path, f'local_url = "{LOCAL}"\npartner_url = "{PARTNER}"')
    for mode in (0o644, 0o640, 0o604):
        exposed = secret_file(tmp_path / "password", "s3cret", mode)
        with pytest.raises(ConfigError) as refused:
            load_config(path, {"EODES_BROKER_LOCAL_PASSWORD_FILE": str(exposed)})
        assert str(exposed) in str(refused.value)
        assert f"mode {mode:03o}" in str(refused.value)
        assert "s3cret" not in str(refused.value)
    secret_file(tmp_path / "password", "s3cret", 0o400)
    ok = load_config(path, {"EODES_BROKER_LOCAL_PASSWORD_FILE": str(tmp_path / "password")})
    assert ok.broker.local_url == "amqp://kr-node:s3cret@broker.kr.example:5671/eodes-kr"


def test_a_missing_or_unusable_secret_file_is_a_clear_error(tmp_path: Path) -> None:
    path = node_toml(tmp_path, f'local_url = "{LOCAL}"\npartner_url = "{PARTNER}"')
    absent = tmp_path / "absent"
    with pytest.raises(
        ConfigError, match=f"EODES_STORE_PASSWORD_FILE: secret file {absent} does not exist"
    ):
        load_config(path, {"EODES_STORE_PASSWORD_FILE": str(absent)})
    with pytest.raises(ConfigError, match="is not a regular file"):
        load_config(path, {"EODES_BROKER_LOCAL_PASSWORD_FILE": str(tmp_path)})
    empty = secret_file(tmp_path / "empty", "\n")
    with pytest.raises(ConfigError, match=f"secret file {empty} is empty"):
        load_config(path, {"EODES_BROKER_LOCAL_PASSWORD_FILE": str(empty)})
    with pytest.raises(ConfigError, match="EODES_BROKER_LOCAL_PASSWORD_FILE is empty"):
        load_config(path, {"EODES_BROKER_LOCAL_PASSWORD_FILE": ""})
    numeric = node_toml(
        tmp_path, f'local_url = "{LOCAL}"\npartner_url = "{PARTNER}"\nlocal_password = 5'
    )
    with pytest.raises(ConfigError, match=r"broker\.local_password: expected a string, got int"):
        load_config(numeric, {})


def test_a_password_must_have_a_url_with_a_user_and_no_password(tmp_path: Path) -> None:
    password = secret_file(tmp_path / "password", "s3cret")
    env = {"EODES_BROKER_LOCAL_PASSWORD_FILE": str(password)}
    carries = node_toml(tmp_path, 'local_url = "amqp://u:inline@h/v"\npartner_url = "x"')
    with pytest.raises(ConfigError, match="already carries a password"):
        load_config(carries, env)
    with pytest.raises(ConfigError, match="the password is not valid text"):
        # Not UTF-8 in the environment (a surrogate escape): no URL can carry it.
        load_config(
            node_toml(tmp_path, f'local_url = "{LOCAL}"\npartner_url = "x"'),
            {"EODES_BROKER_LOCAL_PASSWORD": "bad\udcff"},
        )
    anonymous = node_toml(tmp_path, 'local_url = "amqp://h/v"\npartner_url = "x"')
    with pytest.raises(ConfigError, match="names no user"):
        load_config(anonymous, env)
    sqlite = node_toml(tmp_path, f'local_url = "{LOCAL}"\npartner_url = "{PARTNER}"')
    with pytest.raises(ConfigError, match=r"store\.password: the URL it goes into names no user"):
        load_config(sqlite, {"EODES_STORE_PASSWORD_FILE": str(password)})


def test_the_tokens_file_and_the_tls_key_must_be_private(tmp_path: Path) -> None:
    tokens = secret_file(tmp_path / "tokens", "operator:" + "t" * 24 + ":ops\n", 0o644)
    env = {"EODES_HTTP_TOKENS_FILE": str(tokens)}
    path = CONFIG / "kr-cn.toml"
    with pytest.raises(
        ConfigError, match=rf"http\.tokens_file: file {tokens} is open .* \(mode 644\)"
    ):
        load_config(path, env)
    tokens.chmod(0o600)
    assert load_config(path, env).http.tokens_file == tokens
    with pytest.raises(ConfigError, match=rf"http\.tokens_file: file {tmp_path / 'nope'} does not"):
        load_config(path, {"EODES_HTTP_TOKENS_FILE": str(tmp_path / "nope")})
    key = secret_file(tmp_path / "tls.key", "-----BEGIN PRIVATE KEY-----\n", 0o640)
    cert = secret_file(tmp_path / "tls.crt", "-----BEGIN CERTIFICATE-----\n", 0o644)
    tls = {"EODES_HTTP_TLS_KEY": str(key), "EODES_HTTP_TLS_CERT": str(cert)}
    with pytest.raises(ConfigError, match=r"http\.tls_key: .* \(mode 640\)"):
        load_config(path, tls)


def test_a_secret_never_shows_in_the_config_repr(tmp_path: Path) -> None:
    password = secret_file(tmp_path / "password", "s3cret-in-repr")
    path = node_toml(tmp_path, f'local_url = "{LOCAL}"\npartner_url = "{PARTNER}"')
    config = load_config(path, {"EODES_BROKER_LOCAL_PASSWORD_FILE": str(password)})
    assert "s3cret-in-repr" in config.broker.local_url
    assert "s3cret-in-repr" not in repr(config)
    assert "s3cret-in-repr" not in str(config)
