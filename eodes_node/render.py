"""Readable lines for the command line: a certificate, a listing row, an event."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from eodes_node.ports import CertificateDetail, CertificateSummary, FeedbackLine, MessageLine


def _t(at: datetime) -> str:
    return f"{at:%Y-%m-%d %H:%M:%S}Z"


def summary_line(s: CertificateSummary) -> str:
    route = f"{s.exporter_country or '?'}->{s.importer_country or '?'}"
    issued = s.issue_date.isoformat() if s.issue_date else "?"
    return (
        f"{s.number:<24} {s.role:<8} {s.state:<10} {s.agreement or '?':<10} {issued}  "
        f"{route}  changed {_t(s.updated_at)}"
    )


def _message(m: MessageLine) -> str:
    line = f"    {m.direction:<3} {m.kind:<22} {m.message_id}  {m.status}"
    if m.direction == "out":
        line += f" after {m.attempts} attempt(s)"
    if m.code:
        line += f": {m.code}"
    if m.text:
        line += f" - {m.text}"
    return line


def _feedback(f: FeedbackLine) -> Iterator[str]:
    declared = f.declaration_reference or "?"
    on = f.declaration_date.isoformat() if f.declaration_date else "?"
    yield f"    {f.direction:<3} {f.decision} ({f.message_id}; declaration {declared} of {on})"
    for item in f.items:
        decided = "granted" if item.granted else f"denied: {item.reason}"
        remark = f" ({item.remark})" if item.remark else ""
        yield f"      item {item.item_number}: {decided}{remark}"


def detail_lines(d: CertificateDetail) -> Iterator[str]:
    s = d.summary
    yield f"certificate {s.number} ({s.role} side): {s.state}"
    if s.agreement:
        yield (
            f"  {s.agreement}, issued {s.issue_date}, {s.exporter_country} -> "
            f"{s.importer_country}, reference {s.reference_number}"
        )
    verb = "sent in" if s.role == "exporter" else "arrived in"
    yield f"  {verb} message {s.coo_message_id}"
    if d.replaces:
        yield f"  replaces {d.replaces}"
    if d.replaced_by:
        yield f"  replaced by {d.replaced_by}"
    if d.cancellation_reason:
        yield f"  cancelled: {d.cancellation_reason}"
    yield "  history:"
    for h in d.history:
        yield f"    {_t(h.at)}  {h.event:<18} {h.before or '-'} -> {h.after}  ({h.message_id})"
    yield "  messages:"
    for m in d.messages:
        yield _message(m)
    if d.feedback:
        yield "  feedback:"
        for f in d.feedback:
            yield from _feedback(f)


def event_line(event: Mapping[str, Any]) -> str:
    """One event (``delivered``, ``rejected``, ``failed``, ``record_rejected``) on one line."""
    items = event.get("items") or []
    parts = []
    for item in items:
        part = (
            f"{item.get('certificate_number') or '-'} {item.get('kind')} {item.get('message_id')}"
        )
        if item.get("code"):
            part += f" {item['code']}"
        if item.get("text"):
            part += f": {item['text']}"
        parts.append(part)
    return f"{event.get('at')} {event.get('event'):<15} " + "; ".join(parts)
