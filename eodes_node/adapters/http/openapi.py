"""The OpenAPI 3.1 document of the HTTP API (written to schemas/openapi.json).

Built here, beside the routes, as data: ``make schemas`` writes it, a unit test keeps the
file current, and the HTTP tests validate every response they get against it.
"""

from __future__ import annotations

from typing import Any

from eodes_node.adapters.http.openapi_schemas import SIDE, STATES, STR, ref, schemas
from eodes_node.service.repairs import DOORS


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": ref("Problem")}},
    }


def _ok(schema: str, description: str, media: str = "application/json") -> dict[str, Any]:
    return {"description": description, "content": {media: {"schema": ref(schema)}}}


_AUTH = {
    "401": _problem("no bearer token, or not a valid one"),
    "403": _problem("the token's role does not allow this"),
    "503": _problem("the store or the broker does not answer now"),
}
_NUMBER = {
    "name": "number",
    "in": "path",
    "required": True,
    "description": "certificate number, case-insensitive",
    "schema": {"type": "string", "minLength": 1, "maxLength": 64},
}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _list_parameters() -> list[dict[str, Any]]:
    return [
        _query("state", {"type": "string", "enum": STATES}, "certificate state"),
        _query("side", SIDE, "exporter: we sent it; importer: the partner sent it"),
        _query("agreement", {"type": "string", "maxLength": 40}, "e.g. KCFTA, case-insensitive"),
        _query("issued_from", {"type": "string", "format": "date"}, "issue date, inclusive"),
        _query("issued_to", {"type": "string", "format": "date"}, "issue date, inclusive"),
        _query(
            "number",
            {"type": "string", "maxLength": 64},
            "certificate or reference number, exact, case-insensitive",
        ),
        _query(
            "limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}, "page size"
        ),
        _query("cursor", {"type": "string"}, "next_cursor of the previous page"),
    ]


def _paths() -> dict[str, Any]:
    secured: list[dict[str, list[str]]] = [{"bearer": []}]
    return {
        "/healthz": {
            "get": {
                "summary": "Alive: the process answers",
                "security": [],
                "responses": {"200": _ok("Status", "alive")},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Ready: store answers, both broker links up, every consumer consuming",
                "security": [],
                "responses": {
                    "200": _ok("Status", "ready"),
                    "503": _problem("not ready; `down` names each thing that is down"),
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (text exposition format 0.0.4)",
                "security": [],
                "responses": {
                    "200": {"description": "metrics", "content": {"text/plain": {"schema": STR}}}
                },
            }
        },
        "/api/v1/certificates": {
            "get": {
                "summary": "List certificates, most recently changed first",
                "security": secured,
                "parameters": _list_parameters(),
                "responses": {
                    "200": _ok("CertificatePage", "one page"),
                    "400": _problem("a malformed or unknown query parameter"),
                    **_AUTH,
                },
            }
        },
        "/api/v1/certificates/{number}": {
            "get": {
                "summary": "A certificate: history, messages with receipt codes, feedback",
                "security": secured,
                "parameters": [_NUMBER],
                "responses": {
                    "200": _ok("Certificate", "one entry per side this node holds it in"),
                    "400": _problem("malformed number"),
                    "404": _problem("no such certificate at this node"),
                    **_AUTH,
                },
            }
        },
        "/api/v1/certificates/{number}/resend": {
            "post": {
                "summary": "Send a failed or rejected certificate again (operator)",
                "description": "failed: the same message again with a fresh retry budget; "
                "rejected: a new message (new id, same certificate). See docs/protocol.md §7.",
                "security": secured,
                "parameters": [_NUMBER],
                "responses": {
                    "202": _ok("ResendOutcome", "committed and handed to the broker"),
                    "400": _problem("a body was sent; this action takes none"),
                    "404": _problem("no such certificate at this node"),
                    "409": _problem("the certificate is not failed or rejected, or not ours"),
                    "415": _problem("a body that is not JSON"),
                    **_AUTH,
                },
            }
        },
        "/api/v1/dashboard": {
            "get": {
                "summary": "Counts by state and side, pending sends, the partner's last receipt",
                "security": secured,
                "responses": {"200": _ok("Dashboard", "summary"), **_AUTH},
            }
        },
        "/api/v1/dead-letters/{door}/replay": {
            "post": {
                "summary": "Move a door's dead letters back into it (operator)",
                "security": secured,
                "parameters": [
                    {
                        "name": "door",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "enum": list(DOORS)},
                    }
                ],
                "requestBody": {
                    "required": False,
                    "content": {"application/json": {"schema": ref("ReplayRequest")}},
                },
                "responses": {
                    "200": _ok("ReplayOutcome", "how many were moved"),
                    "400": _problem("a malformed body"),
                    "404": _problem("no such door"),
                    "415": _problem("a body that is not JSON"),
                    **_AUTH,
                },
            }
        },
        "/api/v1/events": {
            "get": {
                "summary": "The node's events as they are committed (NDJSON stream)",
                "security": secured,
                "parameters": [
                    _query(
                        "recent", {"type": "boolean", "default": True}, "start with recent ones"
                    ),
                    _query("follow", {"type": "boolean", "default": True}, "false: end after them"),
                ],
                "responses": {
                    "200": {
                        "description": "one event JSON per line, as on the events queue",
                        "content": {"application/x-ndjson": {"schema": STR}},
                    },
                    "400": _problem("a malformed query"),
                    **_AUTH,
                },
            }
        },
    }


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "eodes-node operator API",
            "version": "1",
            "description": "Health, metrics and the JSON API of one eodes-node. Errors are "
            "RFC 9457 problem documents. Reading needs a viewer token, actions an operator one.",
        },
        "servers": [{"url": "http://127.0.0.1:8480"}],
        "security": [{"bearer": []}],
        "paths": _paths(),
        "components": {
            "schemas": schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
