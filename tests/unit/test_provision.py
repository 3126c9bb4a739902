"""What `eodes-node broker-setup` grants and prints, without a broker: the permission
regexes, the definitions document, where passwords come from, and every refusal that
needs no broker to be made. tests/e2e/test_broker_setup.py applies it to a real one."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from eodes_node.cli import main
from eodes_node.config import load_config
from eodes_node.provision import (
    PARTNER_PASSWORD_ENV,
    ProvisionError,
    definitions,
    link_access,
    node_password,
    partner_password,
    password_hash,
)
from eodes_node.rabbitmqctl import Rabbitmqctl

NODE_PASSWORD = "n0de:p@ss/word"  # reserved URL characters, percent-encoded in the URL
LOCAL_URL = "amqp://kr-node:n0de%3Ap%40ss%2Fword@broker.example:5672/eodes-kr"


def config_file(tmp_path: Path, local_url: str = LOCAL_URL, namespace: str = "eodes") -> Path:
    path = tmp_path / "kr-cn.toml"
    path.write_text(
        f"""
[node]
country = "KR"
partner = "CN"
namespace = "{namespace}"
[broker]
local_url = "{local_url}"
partner_url = "amqp://kr-link@cn.example:5672/eodes-cn"
[keys]
private_key = "keys/kr.key.pem"
partner_jwks = "keys/cn.jwks.json"
[store]
url = "sqlite:///node.db"
"""
    )
    return path


def full(pattern: str, name: str) -> bool:
    """Whether RabbitMQ would grant ``name``: it matches the regex against the whole name
    with ``^...$`` written in the pattern, which Python's ``re.search`` reproduces here."""
    return re.search(pattern, name) is not None


def test_the_partner_may_write_to_our_inbound_exchange_and_nothing_else(tmp_path: Path) -> None:
    access = link_access(load_config(config_file(tmp_path)))
    granted = access.partner_permissions
    assert (access.vhost, access.node_user, access.partner_user) == (
        "eodes-kr",
        "kr-node",
        "cn-node",
    )
    assert granted.configure == "^$"
    assert granted.read == "^$"
    assert full(granted.write, "eodes.inbound")
    others = ("amq.default", "amq.direct", "eodes.cn.clearance", "eodes.inbound2")
    for other in (*others, "eodesxinbound", "other.inbound", "eodes.inbound.x"):
        assert not full(granted.write, other), other


def test_our_node_may_touch_its_own_link_only(tmp_path: Path) -> None:
    access = link_access(load_config(config_file(tmp_path, namespace="t-1")))
    granted = access.node_permissions
    queues = access.queues
    assert len(queues) == 12
    assert {q for q in queues if q.endswith(".dead")} == {f"{q}.dead" for q in queues[:6]}
    for name in ("t-1.inbound", *queues):
        assert full(granted.configure, name), name
    for name in ("t-1.vn.inbound", "t-1.cn.inbound.wiretap", "eodes.cn.inbound", "t-1xcn.inbound"):
        assert not full(granted.configure, name), name
    # Hand-offs go through the default exchange; binding needs write on the inbound queue.
    assert full(granted.write, "amq.default")
    assert full(granted.write, "t-1.cn.inbound")
    assert not full(granted.write, "t-1.inbound")
    assert not full(granted.write, "t-1.cn.clearance")
    # It reads its three doors and their dead letters, and the local systems' queues not.
    readable = {name for name in ("t-1.inbound", *queues) if full(granted.read, name)}
    assert readable == {
        "t-1.inbound",
        "t-1.cn.inbound",
        "t-1.cn.outbound.records",
        "t-1.cn.outbound.feedback",
        "t-1.cn.inbound.dead",
        "t-1.cn.outbound.records.dead",
        "t-1.cn.outbound.feedback.dead",
    }


def test_the_definitions_declare_what_the_node_declares(tmp_path: Path) -> None:
    config = load_config(config_file(tmp_path))
    access = link_access(config)
    document = definitions(access, node_password(config), "partner secret")
    assert document["vhosts"] == [{"name": "eodes-kr"}]
    assert [e["name"] for e in document["exchanges"]] == ["eodes.inbound"]
    assert (
        document["exchanges"][0] | {"type": "direct", "durable": True} == document["exchanges"][0]
    )
    assert [q["name"] for q in document["queues"]] == list(access.queues)
    for queue in document["queues"]:
        assert (queue["durable"], queue["auto_delete"], queue["arguments"]) == (True, False, {})
    assert document["bindings"] == [
        {
            "source": "eodes.inbound",
            "vhost": "eodes-kr",
            "destination": "eodes.cn.inbound",
            "destination_type": "queue",
            "routing_key": "CN",
            "arguments": {},
        }
    ]
    assert document["topic_permissions"] == []


def test_passwords_are_stored_as_rabbitmq_salted_sha256(tmp_path: Path) -> None:
    config = load_config(config_file(tmp_path))
    assert node_password(config) == NODE_PASSWORD
    document = definitions(link_access(config), NODE_PASSWORD, "partner secret")
    for user, secret in zip(document["users"], (NODE_PASSWORD, "partner secret"), strict=True):
        raw = base64.b64decode(user["password_hash"])
        salt, digest = raw[:4], raw[4:]
        assert digest == hashlib.sha256(salt + secret.encode()).digest()
        assert user["hashing_algorithm"] == "rabbit_password_hashing_sha256"
        assert user["tags"] == []
    assert password_hash("x", b"salt") == password_hash("x", b"salt")
    assert password_hash("x") != password_hash("x"), "a fresh salt each time"


@pytest.mark.parametrize(
    ("local_url", "partner_user", "problem"),
    [
        ("amqp://guest:guest@h/eodes-kr", None, "'guest', RabbitMQ's default administrator"),
        (LOCAL_URL, "guest", "'guest', RabbitMQ's default administrator"),
        ("amqp://h/eodes-kr", None, "broker.local_url names no user"),
        (LOCAL_URL, "kr-node", "both 'kr-node': they must differ"),
        ("http://kr-node:x@h/eodes-kr", None, "expected an amqp:// or amqps:// URL"),
    ],
)
def test_a_link_without_users_of_its_own_is_refused(
    tmp_path: Path, local_url: str, partner_user: str | None, problem: str
) -> None:
    with pytest.raises(ProvisionError, match=re.escape(problem)):
        link_access(load_config(config_file(tmp_path, local_url)), partner_user)


def test_the_vhost_is_the_urls_path_and_the_default_one_without(tmp_path: Path) -> None:
    encoded = link_access(load_config(config_file(tmp_path, "amqp://kr-node:x@h/eodes%2Fkr")))
    assert encoded.vhost == "eodes/kr"
    bare = link_access(load_config(config_file(tmp_path, "amqp://kr-node:x@h")))
    assert bare.vhost == "/"


def test_our_nodes_password_must_be_in_its_url(tmp_path: Path) -> None:
    config = load_config(config_file(tmp_path, "amqp://kr-node@h/eodes-kr"))
    with pytest.raises(ProvisionError, match="carries no password for 'kr-node'"):
        node_password(config)


def test_the_partners_password_comes_from_a_private_file_or_the_environment(
    tmp_path: Path,
) -> None:
    secret = tmp_path / "cn.password"
    secret.write_text("from the file\n")
    secret.chmod(0o600)
    assert partner_password(secret, {PARTNER_PASSWORD_ENV: "env"}) == "from the file"
    assert partner_password(None, {PARTNER_PASSWORD_ENV: "from the env"}) == "from the env"
    with pytest.raises(ProvisionError, match=PARTNER_PASSWORD_ENV):
        partner_password(None, {})
    secret.chmod(0o644)
    with pytest.raises(ProvisionError, match="open to group or others"):
        partner_password(secret, {})
    with pytest.raises(ProvisionError, match="does not exist"):
        partner_password(tmp_path / "missing", {})


def run_cli(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(main, ["broker-setup", *args], env=env or {})


def test_print_emits_an_importable_document_naming_users_vhost_and_rights(
    tmp_path: Path,
) -> None:
    config = config_file(tmp_path)
    result = run_cli(
        "--config",
        str(config),
        "--print",
        "--rabbitmqctl",
        str(tmp_path / "never-run"),
        env={PARTNER_PASSWORD_ENV: "partner secret"},
    )
    assert result.exit_code == 0, result.output
    document = orjson.loads(result.stdout)
    assert {u["name"] for u in document["users"]} == {"kr-node", "cn-node"}
    assert {v["name"] for v in document["vhosts"]} == {"eodes-kr"}
    rights = {
        p["user"]: (p["vhost"], p["configure"], p["write"], p["read"])
        for p in document["permissions"]
    }
    assert rights["cn-node"] == ("eodes-kr", "^$", r"^(eodes\.inbound)$", "^$")
    assert rights["kr-node"][0] == "eodes-kr"
    assert NODE_PASSWORD not in result.stdout
    assert "partner secret" not in result.stdout


def test_broker_setup_names_what_is_missing(tmp_path: Path) -> None:
    config = config_file(tmp_path)
    no_password = run_cli("--config", str(config), "--print")
    assert no_password.exit_code == 1
    assert f"--partner-password-file or set {PARTNER_PASSWORD_ENV}" in no_password.output
    no_tool = run_cli(
        "--config",
        str(config),
        "--rabbitmqctl",
        str(tmp_path / "no-rabbitmqctl"),
        env={PARTNER_PASSWORD_ENV: "partner secret"},
    )
    assert no_tool.exit_code == 1
    assert "no-rabbitmqctl: not found" in no_tool.output


def test_a_failing_rabbitmqctl_is_named_with_its_output(tmp_path: Path) -> None:
    fake = tmp_path / "rabbitmqctl"
    fake.write_text(
        "#!/bin/sh\necho 'Error: unable to perform an operation on node' >&2\nexit 69\n"
    )
    fake.chmod(0o700)
    with pytest.raises(ProvisionError, match="exited 69: Error: unable to perform an operation"):
        Rabbitmqctl(str(fake), "rabbit@nowhere").listing("list_users")
