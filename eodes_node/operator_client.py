"""How the command line reaches a running node's operator API.

The actions (re-send, replay) must run inside the node: it holds the batches' lock and
its broker links. The command line finds the node's HTTP address and a token of the
needed role in the same configuration file the node runs with.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from eodes_node.adapters.http.access import Access, Role
from eodes_node.config import NodeConfig
from eodes_node.errors import ConfigError

TOKEN_ENV = "EODES_TOKEN"  # noqa: S105 - the name of a variable, not a token


def base_url(config: NodeConfig) -> str:
    http = config.http
    if not http.enabled:
        raise ConfigError("this needs the node's HTTP API: set [http] enabled = true and restart")
    host = "127.0.0.1" if http.host in ("0.0.0.0", "::") else http.host  # noqa: S104 - mapped
    host = f"[{host}]" if ":" in host else host
    scheme = "https" if http.tls_cert else "http"
    return f"{scheme}://{host}:{http.port}"


def token_for(config: NodeConfig, role: Role) -> str:
    given = os.environ.get(TOKEN_ENV)
    if given:
        return given
    http = config.http
    access = Access.from_config(http.tokens.get_secret_value(), http.tokens_file)
    found = access.token_with(role)
    if found is None:
        raise ConfigError(
            f"no {role.name.lower()} token in [http] tokens or tokens_file; "
            f"or give one in {TOKEN_ENV}"
        )
    return found


def _ssl(config: NodeConfig) -> ssl.SSLContext | None:
    cert = config.http.tls_cert
    return ssl.create_default_context(cafile=str(cert)) if cert else None


class NodeApi:
    """A short-lived session with the node; ``OperatorError`` carries its problem text."""

    def __init__(self, config: NodeConfig, role: Role) -> None:
        self.base = base_url(config)
        self.headers = {"Authorization": f"Bearer {token_for(config, role)}"}
        self.ssl = _ssl(config)

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                method,
                self.base + path,
                headers=self.headers,
                json=body,
                ssl=self.ssl if self.ssl is not None else True,
                timeout=aiohttp.ClientTimeout(total=60),
            ) as response,
        ):
            data = await response.read()
            if response.status >= 400:
                raise OperatorError(_problem_text(response.status, data))
            return orjson.loads(data) if data else None

    async def lines(self, path: str) -> AsyncIterator[bytes]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                self.base + path,
                headers=self.headers,
                ssl=self.ssl if self.ssl is not None else True,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            ) as response,
        ):
            if response.status >= 400:
                raise OperatorError(_problem_text(response.status, await response.read()))
            async for line in response.content:
                if line.strip():
                    yield line


class OperatorError(Exception):
    pass


def _problem_text(status: int, data: bytes) -> str:
    try:
        problem = orjson.loads(data)
        return f"{status} {problem.get('title', '')}: {problem.get('detail', '')}"
    except orjson.JSONDecodeError:
        return f"{status}: {data[:200]!r}"
