"""A batch's facts, read with hand-written statements in one transaction.

Every lookup is by primary or unique key over the batch's ids, so a batch costs a few
index probes whatever the tables' size.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any

from eodes_node.adapters.sql.statements import Sql
from eodes_node.adapters.sql.tokens import unpacked
from eodes_node.core.decide import CertFacts, OutboundFacts, PriorInbound
from eodes_node.core.messages import Kind, ReceiptEntry
from eodes_node.core.state import Role, State, VerificationState
from eodes_node.core.verification import VerificationFacts
from eodes_node.ports import Facts, FactsQuery


def read_facts(sql: Sql, query: FactsQuery) -> Facts:
    facts = Facts()
    if query.message_ids:
        facts.priors = _priors(sql, query.sender, query.message_ids)
    wanted = set(query.certificates)
    if query.outbound_ids:
        facts.outbound = _outbound(sql, query.outbound_ids)
        # The certificate of a message we sent comes along with it.
        wanted |= {
            (Role.EXPORTER.value, o.certificate_number)
            for o in facts.outbound.values()
            if o.certificate_number
        }
    if wanted:
        facts.certificates = {
            (role, number): CertFacts(number, Role(role), State(state), coo_message_id)
            for role, number, state, coo_message_id in certificate_states(sql, wanted)
        }
    if query.local_keys:
        facts.local_keys = _local_keys(sql, query.local_keys)
    if query.verification_ids:
        facts.verifications = {
            v.request_id: v for v in verification_requests(sql, query.verification_ids)
        }
    return facts


def verification_fact(row: Sequence[Any]) -> VerificationFacts:
    """(request_id, role, certificate_number, request_reference, reply_due, state)"""
    request_id, role, number, reference, reply_due, state = row
    return VerificationFacts(
        request_id,
        Role(role),
        number,
        reference,
        date.fromisoformat(reply_due),
        VerificationState(state),
    )


def verification_requests(sql: Sql, request_ids: Iterable[str]) -> list[VerificationFacts]:
    """Verification requests by the message id that carried them."""
    rows = sql.rows_in(
        "SELECT request_id, role, certificate_number, request_reference, reply_due, state "
        "FROM verification_requests WHERE",
        "request_id",
        sorted(set(request_ids)),
    )
    return [verification_fact(r) for r in rows]


def _priors(sql: Sql, sender: str, message_ids: Iterable[str]) -> dict[str, PriorInbound]:
    """Copies already received, with the signed receipt that answered each: a duplicate
    is answered with the same bytes."""
    return {
        message_id: PriorInbound(
            digest,
            ReceiptEntry.model_validate_json(entry) if entry else None,
            receipt_id,
            None if receipt_token is None else unpacked(receipt_token),
        )
        for message_id, digest, entry, receipt_id, receipt_token in sql.rows_in(
            "SELECT i.message_id, i.digest, i.receipt_entry, i.receipt_id, o.token "
            "FROM inbound_messages i "
            "LEFT JOIN outbound_messages o ON o.message_id = i.receipt_id "
            "WHERE i.sender = :sender AND",
            "i.message_id",
            set(message_ids),
            {"sender": sender},
        )
    }


def _outbound(sql: Sql, message_ids: Iterable[str]) -> dict[str, OutboundFacts]:
    return {
        message_id: OutboundFacts(message_id, Kind(kind), number, status)
        for message_id, kind, number, status in sql.rows_in(
            "SELECT message_id, kind, certificate_number, status FROM outbound_messages WHERE",
            "message_id",
            set(message_ids),
        )
    }


def _local_keys(sql: Sql, local_keys: Iterable[str]) -> dict[str, tuple[str, str]]:
    """The message each local record already became, and the digest of that record."""
    return {
        local_key: (message_id, record_digest or "")
        for local_key, message_id, record_digest in sql.rows_in(
            "SELECT local_key, message_id, record_digest FROM outbound_messages WHERE",
            "local_key",
            set(local_keys),
        )
    }


def certificate_states(
    sql: Sql, keys: Iterable[tuple[str, str]]
) -> list[tuple[str, str, str, str]]:
    """(role, number, state, coo_message_id) of these certificates, by primary key.

    One query per role: SQLite scans the whole table for a row-value IN list.
    """
    by_role: dict[str, set[str]] = {}
    for role, number in keys:
        by_role.setdefault(role, set()).add(number)
    found: list[tuple[str, str, str, str]] = []
    for role, numbers in by_role.items():
        found += sql.rows_in(
            "SELECT role, number, state, coo_message_id FROM certificates WHERE role = :role AND",
            "number",
            sorted(numbers),
            {"role": role},
        )
    return found
