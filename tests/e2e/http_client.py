"""An HTTP client for the operator API in tests: every response it sees is checked
against schemas/openapi.json, so each test also proves the document describes the server."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import orjson

OPENAPI = Path(__file__).resolve().parents[2] / "schemas" / "openapi.json"


def load_openapi() -> dict[str, Any]:
    document: dict[str, Any] = orjson.loads(OPENAPI.read_bytes())
    return document


def _template(path: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\{[^/]+\}", "[^/]+", path) + "$")


class Checked:
    """Finds the documented operation and response for each call and validates the body."""

    def __init__(self) -> None:
        self.doc = load_openapi()
        self.seen: set[tuple[str, str, str]] = set()  # (method, path template, status)

    def _operation(self, method: str, path: str) -> tuple[str, dict[str, Any]]:
        for template, item in self.doc["paths"].items():
            if _template(template).match(path) and method.lower() in item:
                return template, item[method.lower()]
        raise AssertionError(f"{method} {path} is not documented in {OPENAPI.name}")

    def check(self, method: str, path: str, status: int, ctype: str, body: bytes) -> None:
        template, operation = self._operation(method, path)
        responses = operation["responses"]
        response = responses.get(str(status)) or responses.get("default")
        assert response is not None, f"{method} {template}: status {status} is not documented"
        self.seen.add((method, template, str(status)))
        content = response.get("content", {})
        media = ctype.split(";")[0].strip()
        if not content:
            return
        assert media in content, f"{method} {template} {status}: {media} not documented"
        schema = content[media].get("schema")
        if schema is None or not media.endswith("json") or media.endswith("ndjson"):
            return
        resolver_doc = {**schema, "components": self.doc["components"]}
        jsonschema.validate(orjson.loads(body), resolver_doc)


class Api:
    def __init__(self, session: aiohttp.ClientSession, base: str, checked: Checked) -> None:
        self.session, self.base, self.checked = session, base, checked

    async def call(
        self, method: str, path: str, *, token: str | None = None, **kwargs: Any
    ) -> tuple[int, Any, aiohttp.ClientResponse]:
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        async with self.session.request(
            method, self.base + path, headers=headers, **kwargs
        ) as response:
            body = await response.read()
            ctype = response.headers.get("Content-Type", "")
            self.checked.check(method, path.split("?")[0], response.status, ctype, body)
            structured = "json" in ctype and "ndjson" not in ctype
            parsed = orjson.loads(body) if structured and body else body
            return response.status, parsed, response


@asynccontextmanager
async def api(base: str, checked: Checked) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, base, checked)
