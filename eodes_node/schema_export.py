"""Generate schemas/: a JSON Schema per message and local record, and the AsyncAPI document.

The checked-in files are what partners and issuing-system developers read; a test fails
when they drift from the models, and ``make schemas`` regenerates them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from eodes_node import __version__
from eodes_node.adapters.http.openapi import document as openapi_document
from eodes_node.core.messages import (
    MODEL_BY_KIND,
    FeedbackBody,
    Kind,
    VerificationRequestBody,
    VerificationResponseRecord,
)
from eodes_node.core.models import Cancellation, Certificate
from eodes_node.topology import ENVELOPE_KINDS, asyncapi_channels

LOCAL_RECORDS: dict[str, type[BaseModel]] = {
    "eco-record": Certificate,
    "cancellation-record": Cancellation,
    "feedback-record": FeedbackBody,
    "verification-request-record": VerificationRequestBody,
    "verification-response-record": VerificationResponseRecord,
}


def _schema(model: type[BaseModel], title: str, description: str) -> dict[str, Any]:
    schema = model.model_json_schema(mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"urn:eodes-node:schema:{title}",
        **schema,
        "title": title,
        "description": description,
    }


def generated() -> dict[str, dict[str, Any]]:
    """File name (relative to schemas/) -> document."""
    files: dict[str, dict[str, Any]] = {}
    for kind, model in MODEL_BY_KIND.items():
        files[f"messages/{kind.value}.schema.json"] = _schema(
            model,
            kind.value,
            f"Payload of a signed envelope with JWS typ {kind.typ!r}.",
        )
    for name, record in LOCAL_RECORDS.items():
        files[f"records/{name}.schema.json"] = _schema(
            record, name, f"A {name.replace('-', ' ')} as the local system submits it."
        )
    files["asyncapi.json"] = asyncapi()
    files["openapi.json"] = openapi_document()  # the operator HTTP API
    return files


_SERVER_VARIABLES = {
    "host": {"description": "host:port of the broker", "default": "127.0.0.1:5672"},
    "vhost": {"description": "the node's own vhost, e.g. eodes-kr (a named vhost, never /)"},
}


def _server(description: str) -> dict[str, Any]:
    return {
        "host": "{host}",
        "pathname": "/{vhost}",
        "protocol": "amqp",
        "protocolVersion": "0-9-1",
        "description": description,
        "variables": _SERVER_VARIABLES,
    }


SERVERS = {
    "local": _server("This node's own broker: it declares its topology and consumes only here."),
    "partner": _server("The partner node's broker: this node only publishes to its inbound."),
}

EVENT_PAYLOAD: dict[str, Any] = {
    "type": "object",
    "required": ["event", "partner", "at", "items"],
    "properties": {
        "event": {
            "enum": [
                "delivered",
                "rejected",
                "failed",
                "record_rejected",
                "overdue",
                "signing_stopped",
            ]
        },
        "partner": {"type": "string", "pattern": "^[A-Z]{2}$"},
        "at": {"type": "string", "format": "date-time"},
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["message_id", "kind", "certificate_number"],
                "properties": {
                    # null only in signing_stopped, which is about no message
                    "message_id": {"type": ["string", "null"]},
                    "kind": {"type": "string"},
                    "certificate_number": {"type": ["string", "null"]},
                    "code": {"type": "string"},
                    "text": {"type": "string"},
                    "problems": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "path": {"type": "string"},
                                "rule": {"type": "string"},
                                "message": {"type": "string"},
                            },
                        },
                    },
                },
            },
        },
    },
}


def _local_messages() -> dict[str, Any]:
    """Messages of the local queues that have no schema file of their own."""
    return {
        "event": {
            "name": "event",
            "contentType": "application/json",
            "summary": "A delivery event; AMQP type event.<event>.",
            "payload": EVENT_PAYLOAD,
        },
        "dead-letter": {
            "name": "dead-letter",
            "contentType": "application/octet-stream",
            "summary": "The refused delivery's body, byte for byte.",
            "headers": {
                "type": "object",
                "required": ["x-eodes-reason"],
                "properties": {"x-eodes-reason": {"type": "string"}},
            },
        },
    }


def asyncapi() -> dict[str, Any]:
    assert {kind.value for kind in Kind} == set(ENVELOPE_KINDS)
    messages = {
        kind.value: {
            "name": kind.value,
            "title": kind.value,
            "contentType": "application/jose",
            "summary": f"Compact JWS with typ {kind.typ}; payload is canonical JSON (RFC 8785).",
            "payload": {"$ref": f"messages/{kind.value}.schema.json"},
        }
        for kind in Kind
    }
    for name in LOCAL_RECORDS:
        messages[name] = {
            "name": name,
            "contentType": "application/json",
            "payload": {"$ref": f"records/{name}.schema.json"},
        }
    messages.update(_local_messages())
    channels, operations = asyncapi_channels()
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "eodes-node",
            "version": __version__,
            "description": (
                "Channels of one eodes-node: the partner link (signed envelopes between "
                "two countries' nodes) and the local queues shared with the issuing and "
                "clearance systems. See docs/protocol.md."
            ),
        },
        "defaultContentType": "application/json",
        "servers": SERVERS,
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write(directory: Path) -> list[Path]:
    written = []
    for name, document in generated().items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(document), encoding="utf-8")
        written.append(path)
    return written
