"""The read side's SQL: listing filters, a listing row, and one certificate's detail.

Every query is by an indexed column (migration 2 in ``report_index``): a look-up by
number and a listing page stay a few index probes with 100,000 certificates.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from eodes_node.adapters.sql.statements import Sql
from eodes_node.adapters.sql.tokens import unpacked
from eodes_node.ports import (
    CertificateDetail,
    CertificateFilter,
    CertificateSummary,
    FeedbackLine,
    HistoryLine,
    MessageLine,
)
from eodes_node.reporting import cancellation_reason, feedback_line, folded, payload_of


def _at(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def _day(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


def filter_sql(where: CertificateFilter) -> tuple[str, dict[str, Any]]:
    """The WHERE tail (after ``WHERE 1 = 1``) and its parameters; every value is bound."""
    parts: list[str] = []
    params: dict[str, Any] = {}
    wanted = (
        ("c.state = :state", "state", where.state),
        ("c.role = :role", "role", where.role),
        ("i.agreement_ci = :agreement", "agreement", where.agreement and folded(where.agreement)),
        ("i.issue_date >= :issued_from", "issued_from", where.issued_from),
        ("i.issue_date <= :issued_to", "issued_to", where.issued_to),
    )
    for clause, name, value in wanted:
        if value:
            parts.append(clause)
            params[name] = value.isoformat() if isinstance(value, date) else value
    if where.number:
        parts.append("(i.number_ci = :number OR i.reference_ci = :number)")
        params["number"] = folded(where.number)
    return "".join(f" AND {p}" for p in parts), params


def summary_of(row: tuple[Any, ...]) -> CertificateSummary:
    role, number, state, coo, updated, agreement, issued, exporter, importer, ref = row
    return CertificateSummary(
        number=number,
        role=role,
        state=state,
        coo_message_id=coo,
        updated_at=_at(updated),
        agreement=agreement,
        issue_date=_day(issued),
        exporter_country=exporter,
        importer_country=importer,
        reference_number=ref,
    )


_SUMMARY = (
    "SELECT c.role, c.number, c.state, c.coo_message_id, c.updated_at, i.agreement, "
    "i.issue_date, i.exporter_country, i.importer_country, i.reference_number "
    "FROM certificates c LEFT JOIN certificate_index i ON i.role = c.role "
    "AND i.number = c.number WHERE c.role = :role AND c.number = :number"
)
_HISTORY = (
    'SELECT at, event, "before", "after", message_id FROM certificate_history '
    "WHERE number = :number AND role = :role ORDER BY id"
)
_SENT = (
    "SELECT kind, message_id, status, attempts, receipt_code, receipt_text, created_at, "
    "updated_at, correlation_id, token FROM outbound_messages "
    "WHERE certificate_number = :number ORDER BY created_at"
)
_INDEXED = (
    "SELECT replaces, valid_until FROM certificate_index WHERE role = :role AND number = :number"
)
_RECEIVED = (
    "SELECT kind, message_id, status, code, text, received_at, token FROM inbound_messages "
    "WHERE certificate_number = :number AND kind <> 'receipt' ORDER BY received_at"
)


def detail_of(sql: Sql, role: str, number: str) -> CertificateDetail:
    """A certificate's state, history, messages and their meaning, in one role."""
    key = {"role": role, "number": number}
    summary = summary_of(sql.rows(_SUMMARY, key)[0])
    history = [
        HistoryLine(_at(at), event, before, after, mid)
        for at, event, before, after, mid in sql.rows(_HISTORY, key)
    ]
    messages: list[MessageLine] = []
    feedback: list[FeedbackLine] = []
    cancelled: str | None = None
    for kind, mid, status, attempts, code, text, created, updated, corr, token in sql.rows(
        _SENT, {"number": number}
    ):
        messages.append(
            MessageLine(
                "out",
                kind,
                mid,
                status,
                attempts,
                code,
                text or "",
                _at(created),
                _at(updated),
                corr,
            )
        )
        cancelled, fb = _meaning(kind, token, mid, "out", _at(created), cancelled)
        feedback += fb
    for kind, mid, status, code, text, received, token in sql.rows(_RECEIVED, {"number": number}):
        at = _at(received)
        messages.append(MessageLine("in", kind, mid, status, 1, code, text or "", at, at))
        if status == "accepted":
            cancelled, fb = _meaning(kind, token, mid, "in", at, cancelled)
            feedback += fb
    index = sql.rows(_INDEXED, key)
    replaced_by = sql.rows(
        "SELECT number FROM certificate_index WHERE role = :role AND replaces = :number LIMIT 1",
        key,
    )
    return CertificateDetail(
        summary=summary,
        history=history,
        messages=messages,
        feedback=feedback,
        cancellation_reason=cancelled,
        replaces=index[0][0] if index else None,
        replaced_by=replaced_by[0][0] if replaced_by else None,
        valid_until=_day(index[0][1]) if index else None,
    )


def _meaning(
    kind: str, token: Any, mid: str, direction: str, at: datetime, cancelled: str | None
) -> tuple[str | None, list[FeedbackLine]]:
    """What a feedback or cancellation message says; other kinds say nothing more."""
    if kind not in ("feedback", "coo-cancellation"):
        return cancelled, []
    payload = payload_of(unpacked(token))
    if kind == "coo-cancellation":
        return cancellation_reason(payload) or cancelled, []
    line = feedback_line(payload, mid, direction, at)
    return cancelled, [line] if line is not None else []
