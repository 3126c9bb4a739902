"""The component schemas of the OpenAPI document: the API's JSON shapes (``views``)."""

from __future__ import annotations

from typing import Any

from eodes_node.core.state import State
from eodes_node.service.repairs import DOORS

STR = {"type": "string"}
OPT_STR = {"type": ["string", "null"]}
_TIME = {"type": "string", "format": "date-time"}
_OPT_TIME = {"type": ["string", "null"], "format": "date-time"}
_OPT_DATE = {"type": ["string", "null"], "format": "date"}
SIDE = {"type": "string", "enum": ["exporter", "importer"]}
STATES = [s.value for s in State]


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(properties: dict[str, Any], *, optional: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "required": [k for k in properties if k not in optional],
        "properties": properties,
    }


def schemas() -> dict[str, Any]:
    summary = {
        "number": STR,
        "side": SIDE,
        "state": {"type": "string", "enum": STATES},
        "coo_message_id": STR,
        "updated_at": _TIME,
        "agreement": OPT_STR,
        "issue_date": _OPT_DATE,
        "exporter_country": OPT_STR,
        "importer_country": OPT_STR,
        "reference_number": OPT_STR,
    }
    message = {
        "direction": {"type": "string", "enum": ["in", "out"]},
        "kind": STR,
        "message_id": STR,
        "status": STR,
        "attempts": {"type": "integer", "minimum": 1},
        "code": {**OPT_STR, "description": "receipt (rejection) code"},
        "text": {**STR, "description": "receipt text: why it was rejected"},
        "at": _TIME,
        "updated_at": _TIME,
        "correlation_id": OPT_STR,
    }
    item = {
        "item_number": {"type": "integer"},
        "granted": {"type": "boolean"},
        "reason": OPT_STR,
        "remark": STR,
    }
    feedback = {
        "message_id": STR,
        "direction": {"type": "string", "enum": ["in", "out"]},
        "decision": {"type": "string", "enum": ["granted", "denied", "partial"]},
        "at": _TIME,
        "declaration_reference": OPT_STR,
        "declaration_date": _OPT_DATE,
        "items": {"type": "array", "items": _object(item)},
    }
    history = {
        "at": _TIME,
        "event": STR,
        "before": OPT_STR,
        "after": STR,
        "message_id": STR,
    }
    detail = {
        **summary,
        "valid_until": _OPT_DATE,
        "history": {"type": "array", "items": _object(history)},
        "messages": {"type": "array", "items": _object(message)},
        "feedback": {"type": "array", "items": _object(feedback)},
        "cancellation_reason": OPT_STR,
        "replaces": OPT_STR,
        "replaced_by": OPT_STR,
    }
    counts = {"type": "object", "additionalProperties": {"type": "integer"}}
    return {
        "Problem": {
            **_object(
                {
                    "type": STR,
                    "title": STR,
                    "status": {"type": "integer"},
                    "detail": STR,
                    "instance": STR,
                    "errors": {
                        "type": "array",
                        "items": _object({"name": STR, "reason": STR}),
                    },
                    "down": {"type": "array", "items": STR},
                },
                optional=("instance", "errors", "down"),
            ),
            "description": "RFC 9457 problem details",
        },
        "Status": _object({"status": STR}),
        "CertificateSummary": _object(summary),
        "CertificatePage": _object(
            {
                "items": {"type": "array", "items": ref("CertificateSummary")},
                "total": {"type": "integer", "minimum": 0},
                "next_cursor": OPT_STR,
            }
        ),
        "CertificateDetail": _object(detail),
        "Certificate": _object(
            {
                "number": STR,
                "sides": {"type": "array", "minItems": 1, "items": ref("CertificateDetail")},
            }
        ),
        "Dashboard": _object(
            {
                "node": STR,
                "partner": STR,
                "by_state": {"type": "object", "additionalProperties": counts},
                "pending": {"type": "integer", "minimum": 0},
                "oldest_pending_at": _OPT_TIME,
                "oldest_pending_age_s": {"type": ["number", "null"]},
                "last_receipt_at": _OPT_TIME,
            }
        ),
        "ResendOutcome": _object(
            {
                "certificate_number": STR,
                "message_id": {**STR, "description": "the message now carrying it"},
                "same_message": {
                    "type": "boolean",
                    "description": "true: the failed message again, byte for byte",
                },
                "published": {"type": "boolean"},
            }
        ),
        "ReplayRequest": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"limit": {"type": "integer", "minimum": 1, "maximum": 10000}},
        },
        "ReplayOutcome": _object(
            {
                "door": {"type": "string", "enum": list(DOORS)},
                "queue": STR,
                "moved": {"type": "integer"},
            }
        ),
    }
