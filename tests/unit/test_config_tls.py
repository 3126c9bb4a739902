"""TLS settings of the broker links: what turns TLS on, what the client context checks,
and every unusable combination or file refused at load with one line naming it."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from eodes_node.broker_tls import tls_url
from eodes_node.config import load_config
from eodes_node.errors import ConfigError
from eodes_node.testing.tls import CertFiles, TestAuthority

LOCAL = "amqps://kr-node@broker.kr.example:5671/eodes-kr"
PARTNER = "amqp://cn-peer@broker.cn.example:5672/eodes-cn"


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> TestAuthority:
    return TestAuthority(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def client(authority: TestAuthority) -> CertFiles:
    return authority.client("kr-node")


def node_toml(tmp_path: Path, broker: str, local: str = LOCAL, partner: str = PARTNER) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(
        f"""
[node]
country = "KR"
partner = "CN"

[broker]
local_url = "{local}"
partner_url = "{partner}"
{broker}

[keys]
private_key = "kr.key.pem"
partner_jwks = "cn.jwks.json"

[store]
url = "sqlite:///node.db"
"""
    )
    return path


def tls_lines(authority: TestAuthority, client: CertFiles, link: str = "local") -> str:
    return (
        f'{link}_tls_ca = "{authority.ca_file}"\n'
        f'{link}_tls_cert = "{client.cert}"\n'
        f'{link}_tls_key = "{client.key}"\n'
    )


def refused(tmp_path: Path, broker: str, **urls: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(node_toml(tmp_path, broker, **urls), {})
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_an_amqps_url_turns_tls_on_with_the_host_checked_and_tls_1_2_at_least(
    tmp_path: Path, authority: TestAuthority, client: CertFiles
) -> None:
    config = load_config(node_toml(tmp_path, tls_lines(authority, client)), {})
    tls = config.broker.link_tls("local")
    assert tls is not None
    assert (tls.server_name, tls.min_version, tls.cert_file) == (
        "broker.kr.example",
        "1.2",
        client.cert,
    )
    context = tls.context()
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert config.broker.link_tls("partner") is None  # amqp:// and nothing set: plain
    assert config.broker.link_target("partner") == (PARTNER, None)


def test_an_explicit_switch_turns_tls_on_for_an_amqp_url_with_its_settings(
    tmp_path: Path, authority: TestAuthority, client: CertFiles
) -> None:
    broker = (
        tls_lines(authority, client, "partner")
        + 'partner_tls = true\npartner_tls_server_name = "mq.cn.example"\n'
        + "partner_tls_min_version = 1.3\n"  # unquoted, as TOML reads a number
    )
    config = load_config(node_toml(tmp_path, broker), {})
    tls = config.broker.link_tls("partner")
    assert tls is not None
    assert (tls.server_name, tls.min_version) == ("mq.cn.example", "1.3")
    url, context = config.broker.link_target("partner")
    assert url == "amqps://cn-peer@broker.cn.example:5672/eodes-cn"
    assert context is not None
    assert context.minimum_version == ssl.TLSVersion.TLSv1_3
    assert tls_url("amqp://host/vhost") == "amqps://host/vhost"


def test_the_environment_gives_the_tls_settings_too(
    tmp_path: Path, authority: TestAuthority, client: CertFiles
) -> None:
    env = {
        "EODES_BROKER_PARTNER_TLS": "true",
        "EODES_BROKER_PARTNER_TLS_CA": str(authority.ca_file),
        "EODES_BROKER_PARTNER_TLS_CERT": str(client.cert),
        "EODES_BROKER_PARTNER_TLS_KEY": str(client.key),
    }
    tls = load_config(node_toml(tmp_path, ""), env).broker.link_tls("partner")
    assert tls is not None
    assert tls.ca_file == authority.ca_file


def test_relative_tls_paths_resolve_against_the_config_file(
    tmp_path: Path, authority: TestAuthority
) -> None:
    (tmp_path / "ca.pem").write_bytes(authority.ca_file.read_bytes())
    tls = load_config(node_toml(tmp_path, 'local_tls_ca = "ca.pem"'), {}).broker.link_tls("local")
    assert tls is not None
    assert tls.ca_file == tmp_path / "ca.pem"


@pytest.mark.parametrize(
    ("broker", "message"),
    [
        ('local_tls_cert = "{cert}"', "broker.local_tls_cert and broker.local_tls_key go together"),
        ('local_tls_key = "{key}"', "broker.local_tls_cert and broker.local_tls_key go together"),
        ('local_tls_min_version = "1.1"', "TLS 1.1 is refused: give 1.2 or 1.3"),
        ('local_tls_min_version = "1.0"', "TLS 1.0 is refused: give 1.2 or 1.3"),
        ('local_tls_min_version = "1.4"', "local_tls_min_version: Input should be '1.2' or '1.3'"),
        ("local_tls = false", "broker.local_tls = false contradicts its amqps:// URL"),
        (
            'partner_tls_ca = "{ca}"',
            "broker.partner_tls_ca is set but the partner link is plain AMQP: use an amqps:// "
            "URL or set broker.partner_tls = true",
        ),
    ],
)
def test_a_contradiction_is_one_line_naming_the_settings(
    tmp_path: Path, authority: TestAuthority, client: CertFiles, broker: str, message: str
) -> None:
    line = refused(tmp_path, broker.format(ca=authority.ca_file, cert=client.cert, key=client.key))
    assert message in line


def test_a_missing_ca_file_is_named(tmp_path: Path) -> None:
    line = refused(tmp_path, 'local_tls_ca = "nowhere/ca.pem"')
    assert line == f"broker.local_tls_ca: {tmp_path / 'nowhere/ca.pem'} does not exist"


def test_a_ca_file_that_is_not_pem_is_named(tmp_path: Path, client: CertFiles) -> None:
    (tmp_path / "ca.der").write_bytes(b"\x30\x82\x01\x0a not a PEM bundle")
    line = refused(tmp_path, 'local_tls_ca = "ca.der"')
    assert line == (
        f"broker.local_tls_ca: {tmp_path / 'ca.der'} is not a PEM CA bundle "
        "(no BEGIN CERTIFICATE block)"
    )


def test_a_key_file_open_to_others_is_refused(
    tmp_path: Path, authority: TestAuthority, client: CertFiles
) -> None:
    key = tmp_path / "open.key.pem"
    key.write_bytes(client.key.read_bytes())
    key.chmod(0o644)
    broker = f'local_tls_cert = "{client.cert}"\nlocal_tls_key = "{key}"'
    line = refused(tmp_path, broker)
    assert line == (
        f"broker.local_tls_key: file {key} is open to group or others (mode 644); chmod 600 it"
    )


def test_a_key_that_is_not_the_certificates_is_refused(
    tmp_path: Path, authority: TestAuthority, client: CertFiles
) -> None:
    other = authority.client("someone-else")
    broker = f'local_tls_cert = "{client.cert}"\nlocal_tls_key = "{other.key}"'
    line = refused(tmp_path, broker)
    assert line.startswith(
        f"broker.local_tls_cert: {client.cert} and {other.key} do not make a certificate "
        "and its key"
    )


def test_a_missing_client_certificate_is_named(tmp_path: Path, client: CertFiles) -> None:
    broker = f'local_tls_cert = "gone.pem"\nlocal_tls_key = "{client.key}"'
    line = refused(tmp_path, broker)
    assert line == f"broker.local_tls_cert: {tmp_path / 'gone.pem'} does not exist"
