"""A batch's unit of work, written with hand-written statements in one transaction.

Order matters only for the checks: certificates are created before any move is checked,
and a move is refused (``StoreConflict``, rolling the whole unit back) when it starts
from a state the database no longer holds.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import orjson

from eodes_node.adapters.sql.facts import certificate_states, verification_requests
from eodes_node.adapters.sql.statements import Sql
from eodes_node.adapters.sql.tokens import packed
from eodes_node.core.decide import Transition
from eodes_node.core.verification import VerificationMove
from eodes_node.errors import StoreConflict
from eodes_node.ports import InboundRow, OutboundRow, OutboundUpdate, Publication

Key = tuple[str, str]  # (role, number)


def write_inbound(sql: Sql, rows: Sequence[InboundRow], now: float) -> None:
    sql.run_many(
        "INSERT INTO inbound_messages (sender, message_id, kind, digest, token, status, "
        "code, text, certificate_number, receipt_entry, receipt_id, received_at) "
        "VALUES (:sender, :message_id, :kind, :digest, :token, :status, :code, :text, "
        ":certificate_number, :receipt_entry, :receipt_id, :received_at)",
        [
            {
                "sender": r.sender,
                "message_id": r.message_id,
                "kind": r.kind.value,
                "digest": r.digest,
                "token": packed(r.token),
                "status": r.status,
                "code": r.code,
                "text": r.text,
                "certificate_number": r.certificate_number,
                "receipt_entry": r.receipt_entry,
                "receipt_id": r.receipt_id,
                "received_at": now,
            }
            for r in rows
        ],
    )


def write_outbound(sql: Sql, rows: Sequence[OutboundRow], now: float) -> None:
    sql.run_many(
        "INSERT INTO outbound_messages (message_id, kind, certificate_number, "
        "correlation_id, token, local_key, record_digest, status, attempts, "
        "next_attempt_at, created_at, updated_at) VALUES (:message_id, :kind, "
        ":certificate_number, :correlation_id, :token, :local_key, :record_digest, "
        ":status, :attempts, :next_attempt_at, :now, :now)",
        [
            {
                "message_id": r.message_id,
                "kind": r.kind.value,
                "certificate_number": r.certificate_number,
                "correlation_id": r.correlation_id,
                "token": packed(r.token),
                "local_key": r.local_key,
                "record_digest": r.record_digest,
                "status": r.status,
                "attempts": r.attempts,
                "next_attempt_at": r.next_attempt_at,
                "now": now,
            }
            for r in rows
        ],
    )


def apply_updates(sql: Sql, updates: Sequence[OutboundUpdate], now: float) -> None:
    # A retry attempt never overrides a receipt that arrived meanwhile; on a failed
    # message it is an operator's re-send, which reopens it with a fresh budget.
    sql.run_many(
        "UPDATE outbound_messages SET status = 'pending', "
        "attempts = COALESCE(:attempts, attempts + 1), "
        "next_attempt_at = :next, updated_at = :now "
        "WHERE message_id = :id AND status IN ('pending', 'failed')",
        [
            {"id": u.message_id, "attempts": u.attempts, "next": u.next_attempt_at, "now": now}
            for u in updates
            if u.status == "pending"
        ],
    )
    sql.run_many(
        "UPDATE outbound_messages SET status = :status, receipt_code = :code, "
        "receipt_text = :text, next_attempt_at = NULL, updated_at = :now "
        "WHERE message_id = :id",
        [
            {"id": u.message_id, "status": u.status, "code": u.code, "text": u.text, "now": now}
            for u in updates
            if u.status != "pending"
        ],
    )


def apply_transitions(sql: Sql, transitions: Sequence[Transition], now: float) -> None:
    """Insert new certificates, move known ones; refuse moves from a stale state."""
    created = [t for t in transitions if t.before is None]
    sql.run_many(
        "INSERT INTO certificates (role, number, state, coo_message_id, updated_at) "
        "VALUES (:role, :number, :state, :coo_message_id, :now)",
        [
            {
                "role": t.role.value,
                "number": t.number,
                "state": t.after.value,
                "coo_message_id": t.coo_message_id or t.message_id,
                "now": now,
            }
            for t in created
        ],
    )
    expected, final = _moves(transitions)
    _check_current(sql, expected)
    inserted = {(t.role.value, t.number): t.after.value for t in created}
    sql.run_many(
        "UPDATE certificates SET state = :state, updated_at = :now "
        "WHERE role = :role AND number = :number",
        [
            {"role": role, "number": number, "state": state, "now": now}
            for (role, number), state in final.items()
            if inserted.get((role, number)) != state
        ],
    )
    # A re-send after a rejection carries the certificate in a new message: from now on
    # receipts, feedback and failures refer to that one.
    sql.run_many(
        "UPDATE certificates SET coo_message_id = :coo WHERE role = :role AND number = :number",
        [
            {"coo": t.coo_message_id, "role": t.role.value, "number": t.number}
            for t in transitions
            if t.before is not None and t.coo_message_id
        ],
    )


def _moves(transitions: Sequence[Transition]) -> tuple[dict[Key, str], dict[Key, str]]:
    """The state each known certificate must be in now, and each one's final state.

    Moves of one certificate within a batch must chain; only the first move of a
    certificate not created in this batch is checked against the database.
    """
    fresh = {(t.role.value, t.number) for t in transitions if t.before is None}
    expected: dict[Key, str] = {}
    final: dict[Key, str] = {}
    for t in transitions:
        key = (t.role.value, t.number)
        if t.before is None:
            final[key] = t.after.value
            continue
        if key in final:
            if final[key] != t.before.value:
                raise StoreConflict(f"certificate {t.number}: moves of one batch disagree")
        elif key not in fresh:
            expected[key] = t.before.value
        final[key] = t.after.value
    return expected, final


def _check_current(sql: Sql, expected: dict[Key, str]) -> None:
    if not expected:
        return
    current = {
        (role, number): state for role, number, state, _ in certificate_states(sql, expected)
    }
    for key, state in expected.items():
        if current.get(key) != state:
            # Decided on a state that changed meanwhile: retry with fresh facts.
            raise StoreConflict(f"certificate {key[1]} is no longer {state}")


def apply_verifications(sql: Sql, moves: Sequence[VerificationMove], now: float) -> None:
    """Insert new verification requests, move known ones; refuse a move from a state the
    database no longer holds (an answer and the overdue scan crossing)."""
    sql.run_many(
        "INSERT INTO verification_requests (request_id, role, certificate_number, "
        "request_reference, reply_due, due_at, state, updated_at) VALUES (:request_id, "
        ":role, :number, :reference, :reply_due, :due_at, :state, :now)",
        [
            {
                "request_id": m.request_id,
                "role": m.role.value,
                "number": m.number,
                "reference": m.reference,
                "reply_due": m.reply_due.isoformat(),
                "due_at": m.due_at,
                "state": m.after.value,
                "now": now,
            }
            for m in moves
            if m.before is None
        ],
    )
    created = {m.request_id for m in moves if m.before is None}
    expected: dict[str, str] = {}
    for m in moves:
        if m.before is not None and m.request_id not in created:
            expected.setdefault(m.request_id, m.before.value)
    if expected:
        current = {v.request_id: v.state.value for v in verification_requests(sql, expected)}
        for request_id, state in expected.items():
            if current.get(request_id) != state:
                raise StoreConflict(f"verification request {request_id} is no longer {state}")
    sql.run_many(
        "UPDATE verification_requests SET state = :state, "
        "response_id = COALESCE(:response_id, response_id), "
        "result = COALESCE(:result, result), updated_at = :now WHERE request_id = :request_id",
        [
            {
                "request_id": m.request_id,
                "state": m.after.value,
                "response_id": m.message_id if m.result is not None else None,
                "result": m.result,
                "now": now,
            }
            for m in moves
            if m.before is not None
        ],
    )


def write_marks(sql: Sql, ids: Collection[int]) -> None:
    """Confirmed publications leave the outbox: it held them only until the broker took
    them, and the signed envelope itself stays in outbound_messages for the audit."""
    if ids:
        sql.run_in("DELETE FROM outbox WHERE", "id", sorted(ids), {})


def write_publications(
    sql: Sql, publications: Sequence[Publication], owner: str, claimed_until: float
) -> list[int]:
    """The outbox rows of these publications; their ids, in order. The unbound ones go
    to ``owner``'s publisher: claimed for it, so no other instance's relay takes them."""
    return [
        sql.insert_returning_id(
            "INSERT INTO outbox (destination, body, message_id, kind, headers, "
            "content_type, published, bound_to, claimed_by, claimed_until) VALUES "
            "(:destination, :body, :message_id, :kind, :headers, :content_type, "
            ":published, :bound_to, :claimed_by, :claimed_until)",
            {
                "destination": p.destination,
                "body": p.body,
                "message_id": p.message_id,
                "kind": p.kind,
                "headers": orjson.dumps(dict(p.headers)).decode(),
                "content_type": p.content_type,
                "published": False,
                "bound_to": p.bound_to,
                "claimed_by": owner if p.bound_to is None else None,
                "claimed_until": claimed_until if p.bound_to is None else None,
            },
        )
        for p in publications
    ]
