"""Secrets given as files reach the nodes and never their logs.

Two node processes on a RabbitMQ node of the test's own, each with a broker user of its
own whose password exists nowhere but in a secret file: KR is given its passwords apart
from the URLs, CN its whole URLs, both their HTTP tokens, all through EODES_..._FILE
variables. The run moves certificates both ways of the link, serves the HTTP API, and
has its connections closed and its broker stopped and started (the lines most likely to
carry a broker URL); then every log line of both nodes is searched for every secret.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

import eodes_node.testing.pair as pair_module
from eodes_node.core.jws import PrivateKey
from eodes_node.core.records import as_json_dict
from eodes_node.samples import SampleFactory
from eodes_node.testing import NodePair, NodeProcess, Side
from eodes_node.testing.rabbit import PrivateRabbit

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parents[2]
HEALTHCHECK = ROOT / "deploy" / "container" / "healthcheck.py"
VHOSTS = ("eodes-test-kr", "eodes-test-cn")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def private_d(key: PrivateKey) -> str:
    """The JWK "d" member of the key: what would give it away."""
    if isinstance(key.key, Ed25519PrivateKey):
        raw = key.key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return b64url(raw)
    assert isinstance(key.key, ec.EllipticCurvePrivateKey)
    return b64url(key.key.private_numbers().private_value.to_bytes(32, "big"))


def rabbit_hash(password: str) -> str:
    """RabbitMQ's rabbit_password_hashing_sha256: base64(salt + sha256(salt + password))."""
    salt = secrets.token_bytes(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


async def add_users(rabbit: PrivateRabbit, directory: Path, users: dict[str, str]) -> None:
    """The vhosts and, in one rabbitmqctl call, a user per node (and guest, for the local
    systems of the harness) with access to both."""
    definitions = {
        "vhosts": [{"name": v} for v in VHOSTS],
        "users": [
            {
                "name": name,
                "password_hash": rabbit_hash(password),
                "hashing_algorithm": "rabbit_password_hashing_sha256",
                "tags": [],
            }
            for name, password in users.items()
        ],
        "permissions": [
            {"user": user, "vhost": vhost, "configure": ".*", "write": ".*", "read": ".*"}
            for user in (*users, "guest")
            for vhost in VHOSTS
        ],
    }
    path = directory / "definitions.json"
    path.write_bytes(orjson.dumps(definitions))
    path.chmod(0o600)
    await rabbit.ctl("import_definitions", str(path))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def secret_file(path: Path, value: str) -> str:
    path.write_text(value + "\n")
    path.chmod(0o600)
    return str(path)


def node_toml(side: Side, broker: dict[str, str], port: int) -> Path:
    """The side's configuration with no secret in it: no password, no token."""
    values = side.config.model_dump(mode="json")
    values["broker"] = {
        k: v for k, v in values["broker"].items() if k not in ("local_url", "partner_url")
    }
    values["broker"].update(broker)
    values["http"] = {"enabled": True, "port": port}
    lines = []
    for section, settings in values.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {orjson.dumps(v).decode()}" for k, v in settings.items() if v is not None]
    path = side.dir / "node.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def log_lines(side: Side) -> list[str]:
    return [
        line
        for log in sorted(side.dir.glob("node.*.log"))
        for line in log.read_text(errors="replace").splitlines()
    ]


async def until(condition: Callable[[], bool], what: str, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(0.1)


def count(side: Side, needle: str) -> int:
    return sum(needle in line for line in log_lines(side))


def more_of(side: Side, needle: str, than: int) -> Callable[[], bool]:
    return lambda: count(side, needle) > than


def more_lines(side: Side, than: int) -> Callable[[], bool]:
    return lambda: len(log_lines(side)) > than


Passwords = dict[str, str]


@pytest.fixture
async def private_pair(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[NodePair, PrivateRabbit, Passwords]]:
    """Paired nodes on a RabbitMQ node of the test's own (closing connections or stopping
    the shared broker would reach other people's), with a user per node."""
    passwords = {"kr-node": secrets.token_hex(16), "cn-node": secrets.token_hex(16)}
    async with PrivateRabbit(tmp_path / "rabbit") as rabbit:
        await add_users(rabbit, tmp_path, passwords)
        monkeypatch.setattr(pair_module, "BROKER", rabbit.url(""))
        async with NodePair(tmp_path / "nodes", batch_max=16) as nodes:
            yield nodes, rabbit, passwords


async def get(url: str, token: str) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, headers={"Authorization": f"Bearer {token}"}) as answer,
    ):
        return answer.status


@pytest.mark.timeout(300)
async def test_secrets_given_as_files_never_reach_the_logs(
    private_pair: tuple[NodePair, PrivateRabbit, Passwords], tmp_path: Path
) -> None:
    pair, rabbit, passwords = private_pair
    secret_dir = tmp_path / "secrets"
    secret_dir.mkdir(mode=0o700)
    amqp = f"amqp://{{user}}@127.0.0.1:{rabbit.port}/{{vhost}}"
    kr_port, cn_port = free_port(), free_port()
    kr_config = node_toml(
        pair.kr,
        {
            "local_url": amqp.format(user="kr-node", vhost=VHOSTS[0]),
            "partner_url": amqp.format(user="kr-node", vhost=VHOSTS[1]),
        },
        kr_port,
    )
    kr_env = {
        "EODES_LOGGING_LEVEL": "debug",
        "EODES_BROKER_LOCAL_PASSWORD_FILE": secret_file(
            secret_dir / "kr-local-password", passwords["kr-node"]
        ),
        "EODES_BROKER_PARTNER_PASSWORD_FILE": secret_file(
            secret_dir / "kr-partner-password", passwords["kr-node"]
        ),
        "EODES_HTTP_TOKENS_FILE": secret_file(
            secret_dir / "kr-tokens",
            f"operator:{pair.kr.operator_token}:ops\nviewer:{pair.kr.viewer_token}:watch",
        ),
    }
    cn_url = f"amqp://cn-node:{passwords['cn-node']}@127.0.0.1:{rabbit.port}/{{vhost}}"
    cn_config = node_toml(pair.cn, {}, cn_port)
    cn_env = {
        "EODES_LOGGING_LEVEL": "debug",
        "EODES_BROKER_LOCAL_URL_FILE": secret_file(
            secret_dir / "cn-local-url", cn_url.format(vhost=VHOSTS[1])
        ),
        "EODES_BROKER_PARTNER_URL_FILE": secret_file(
            secret_dir / "cn-partner-url", cn_url.format(vhost=VHOSTS[0])
        ),
        "EODES_HTTP_TOKENS_FILE": secret_file(
            secret_dir / "cn-tokens",
            f"operator:{pair.cn.operator_token}:ops,viewer:{pair.cn.viewer_token}:watch",
        ),
    }
    kr = NodeProcess(kr_config, pair.kr.dir / "node.log", env=kr_env)
    cn = NodeProcess(cn_config, pair.cn.dir / "node.log", env=cn_env)
    records = [as_json_dict(c) for c in SampleFactory("KCFTA", seed=29).certificates(10)]
    try:
        await cn.start()
        await kr.start()
        await pair.kr.submit(records[:5])
        await pair.kr.events.wait_for(
            lambda _: len(pair.kr.events.certificates_with("delivered")) == 5, within=60
        )
        # The HTTP side with the tokens from the files, and a wrong one.
        kr_api = f"http://127.0.0.1:{kr_port}/api/v1/dashboard"
        assert await get(kr_api, pair.kr.operator_token) == 200
        assert (
            await get(f"http://127.0.0.1:{cn_port}/api/v1/dashboard", pair.cn.viewer_token) == 200
        )
        assert await get(kr_api, pair.cn.operator_token) == 401
        # The container's health check reads the same files and finds the node ready.
        health = await asyncio.create_subprocess_exec(
            sys.executable,
            str(HEALTHCHECK),
            str(kr_config),
            env={"PATH": "/usr/bin:/bin", **kr_env},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        health_out, health_err = await asyncio.wait_for(health.communicate(), 30)
        assert (health.returncode, health_err) == (0, b"")
        # Faults: every connection closed, then the broker down and up again.
        reconnects = {side.own: count(side, "broker_reconnected") for side in (pair.kr, pair.cn)}
        await rabbit.close_connections()
        for side in (pair.kr, pair.cn):
            await until(
                more_of(side, "broker_reconnected", than=reconnects[side.own] + 1),
                f"{side.own} reconnected both links after they were closed",
            )
        lines_before = {side.own: len(log_lines(side)) for side in (pair.kr, pair.cn)}
        await rabbit.stop_app()
        for side in (pair.kr, pair.cn):
            await until(
                more_lines(side, than=lines_before[side.own] + 5),
                f"{side.own} logged its failed attempts to reach the stopped broker",
            )
        reconnects = {side.own: count(side, "broker_reconnected") for side in (pair.kr, pair.cn)}
        await rabbit.start_app()
        for side in (pair.kr, pair.cn):
            await until(
                more_of(side, "broker_reconnected", than=reconnects[side.own] + 1),
                f"{side.own} reconnected both links after the broker came back",
            )
        # The harness's own connection, to submit the rest with.
        assert pair.kr.connection is not None
        await asyncio.wait_for(pair.kr.connection.ready(), 60)
        await pair.kr.submit(records[5:])
        await pair.kr.events.wait_for(
            lambda _: len(pair.kr.events.certificates_with("delivered")) == 10, within=90
        )
        await pair.cn.clearance.wait_count(10)
    finally:
        for process in (kr, cn):
            if process.process is not None and process.process.returncode is None:
                await process.terminate()
    handed_over = {
        orjson.loads(m.body)["certificate"]["header"]["certificate_number"]
        for m in pair.cn.clearance.messages
    }
    assert handed_over == {r["header"]["certificate_number"] for r in records}
    lines = {side.own: log_lines(side) for side in (pair.kr, pair.cn)}
    every_line = [*lines["KR"], *lines["CN"], health_out.decode(), health_err.decode()]
    # The search covered the lines that matter: links lost, and the AMQP client's lines
    # that name the broker's URL (with the user and the password hidden).
    for own, logged in lines.items():
        text = "\n".join(logged)
        assert "broker_connection_lost" in text, f"{own} logged no lost link"
        assert "node_stopped" in text, f"{own} did not stop cleanly"
        assert f"{own.lower()}-node:******@" in text, f"{own} logged no broker URL"
    secret_values = {
        "KR broker password": passwords["kr-node"],
        "CN broker password": passwords["cn-node"],
        "KR operator token": pair.kr.operator_token,
        "KR viewer token": pair.kr.viewer_token,
        "CN operator token": pair.cn.operator_token,
        "CN viewer token": pair.cn.viewer_token,
        "KR private key d": private_d(pair.kr.key),
        "CN private key d": private_d(pair.cn.key),
    }
    leaks = [
        f"{name} in: {line[:300]}"
        for name, value in secret_values.items()
        for line in every_line
        if value in line
    ]
    assert leaks == []
