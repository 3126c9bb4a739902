"""The JSON shapes of the API, from the ``Reports`` port's values (schemas/openapi.json).

Plain functions from dataclasses to dicts: the API's field names are chosen here once,
so the OpenAPI document, the CLI's ``--json`` and the server all agree.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from eodes_node.ports import (
    CertificateDetail,
    CertificatePage,
    CertificateSummary,
    Dashboard,
    FeedbackLine,
    HistoryLine,
    MessageLine,
)


def when(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def day(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


def summary(s: CertificateSummary) -> dict[str, Any]:
    return {
        "number": s.number,
        "side": s.role,
        "state": s.state,
        "coo_message_id": s.coo_message_id,
        "updated_at": when(s.updated_at),
        "agreement": s.agreement,
        "issue_date": day(s.issue_date),
        "exporter_country": s.exporter_country,
        "importer_country": s.importer_country,
        "reference_number": s.reference_number,
    }


def page(p: CertificatePage) -> dict[str, Any]:
    return {
        "items": [summary(s) for s in p.items],
        "total": p.total,
        "next_cursor": p.next_cursor,
    }


def _history(h: HistoryLine) -> dict[str, Any]:
    return {
        "at": when(h.at),
        "event": h.event,
        "before": h.before,
        "after": h.after,
        "message_id": h.message_id,
    }


def _message(m: MessageLine) -> dict[str, Any]:
    return {
        "direction": m.direction,
        "kind": m.kind,
        "message_id": m.message_id,
        "status": m.status,
        "attempts": m.attempts,
        "code": m.code,
        "text": m.text,
        "at": when(m.at),
        "updated_at": when(m.updated_at),
        "correlation_id": m.correlation_id,
    }


def _feedback(f: FeedbackLine) -> dict[str, Any]:
    return {
        "message_id": f.message_id,
        "direction": f.direction,
        "decision": f.decision,
        "at": when(f.at),
        "declaration_reference": f.declaration_reference,
        "declaration_date": day(f.declaration_date),
        "items": [
            {
                "item_number": i.item_number,
                "granted": i.granted,
                "reason": i.reason,
                "remark": i.remark,
            }
            for i in f.items
        ],
    }


def detail(d: CertificateDetail) -> dict[str, Any]:
    return {
        **summary(d.summary),
        "valid_until": day(d.valid_until),
        "history": [_history(h) for h in d.history],
        "messages": [_message(m) for m in d.messages],
        "feedback": [_feedback(f) for f in d.feedback],
        "cancellation_reason": d.cancellation_reason,
        "replaces": d.replaces,
        "replaced_by": d.replaced_by,
    }


def dashboard(d: Dashboard, now: datetime) -> dict[str, Any]:
    age = None if d.oldest_pending_at is None else (now - d.oldest_pending_at).total_seconds()
    return {
        "by_state": {role: dict(states) for role, states in d.by_state.items()},
        "pending": d.pending,
        "oldest_pending_at": when(d.oldest_pending_at),
        "oldest_pending_age_s": None if age is None else round(max(age, 0.0), 3),
        "last_receipt_at": when(d.last_receipt_at),
    }
