"""The report index: per certificate, what listings filter on, read from its payload.

Migration 2 adds the ``certificate_index`` table and the indexes the read side needs on
the core tables (listing by state and recency, a certificate's messages by number, the
partner's latest receipt). ``catch_up`` fills the index from history rows newer than its
mark, reading each new certificate's signed payload, so the per-batch commit does not
change at all: the index is derived data, rebuilt from the store whenever it lags.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, Index, Integer, MetaData, String, Table, text
from sqlalchemy.engine import Connection

from eodes_node.adapters.sql.statements import Sql
from eodes_node.adapters.sql.tokens import unpacked
from eodes_node.reporting import folded, index_facts, payload_of

metadata = MetaData()

certificate_index = Table(
    "certificate_index",
    metadata,
    Column("role", String(16), primary_key=True),
    Column("number", String(40), primary_key=True),
    Column("number_ci", String(40), nullable=False),
    Column("history_id", Integer, nullable=False),  # the history row that created it
    Column("agreement", String(40)),
    Column("agreement_ci", String(40)),
    Column("issue_date", String(10)),
    Column("valid_until", String(10)),
    Column("exporter_country", String(2)),
    Column("importer_country", String(2)),
    Column("reference_number", String(200)),
    Column("reference_ci", String(200)),
    Column("reference_code", String(32)),
    Column("replaces", String(40)),
    Index("ix_certificate_index_number", "number_ci"),
    Index("ix_certificate_index_reference", "reference_ci"),
    Index("ix_certificate_index_agreement", "agreement_ci", "issue_date"),
    Index("ix_certificate_index_issued", "issue_date"),
    Index("ix_certificate_index_history", "history_id"),
    Index("ix_certificate_index_replaces", "replaces"),
)

_CORE_INDEXES = (
    "CREATE INDEX IF NOT EXISTS ix_certificates_updated ON certificates (updated_at)",
    "CREATE INDEX IF NOT EXISTS ix_certificates_state ON certificates (state, updated_at)",
    "CREATE INDEX IF NOT EXISTS ix_certificates_counts ON certificates (role, state)",
    "CREATE INDEX IF NOT EXISTS ix_outbound_pending_age ON outbound_messages (status, created_at)",
    "CREATE INDEX IF NOT EXISTS ix_outbound_certificate ON outbound_messages (certificate_number)",
    "CREATE INDEX IF NOT EXISTS ix_inbound_certificate ON inbound_messages (certificate_number)",
    "CREATE INDEX IF NOT EXISTS ix_inbound_kind_received ON inbound_messages (kind, received_at)",
)


def migrate(conn: Connection) -> None:
    """Migration 2: the report index and the read side's indexes."""
    metadata.create_all(conn)
    for statement in _CORE_INDEXES:
        conn.execute(text(statement))


_NEW = (
    "SELECT h.id, h.role, h.number, h.message_id FROM certificate_history h WHERE h.id > :mark "
    'AND h."before" IS NULL ORDER BY h.id LIMIT :limit'
)
_TOKENS_OUT = "SELECT message_id, token FROM outbound_messages WHERE"
# By primary key (sender, message id): without the sender the whole table is read.
_TOKENS_IN = "SELECT message_id, token FROM inbound_messages WHERE sender = :sender AND"
_INSERT = (
    "INSERT INTO certificate_index (role, number, number_ci, history_id, agreement, "
    "agreement_ci, issue_date, valid_until, exporter_country, importer_country, "
    "reference_number, reference_ci, reference_code, replaces) VALUES (:role, :number, "
    ":number_ci, :history_id, :agreement, :agreement_ci, :issue_date, :valid_until, "
    ":exporter_country, :importer_country, :reference_number, :reference_ci, "
    ":reference_code, :replaces)"
)


def catch_up(sql: Sql, limit: int, partner: str) -> int:
    """Index up to ``limit`` certificates created since the last run; returns how many.
    Every statement is an index probe or range, so a catch-up costs what it indexes,
    whatever the store's age."""
    mark = sql.rows("SELECT max(history_id) FROM certificate_index")[0][0] or 0
    created = sql.rows(_NEW, {"mark": mark, "limit": limit})
    if not created:
        return 0
    ours = {m for _, role, _, m in created if role == "exporter"}
    theirs = {m for _, role, _, m in created if role != "exporter"}
    tokens = dict(sql.rows_in(_TOKENS_OUT, "message_id", ours)) if ours else {}
    if theirs:
        tokens.update(sql.rows_in(_TOKENS_IN, "message_id", theirs, {"sender": partner}))
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for history_id, role, number, message_id in created:
        if (role, number) in rows:
            continue  # one row per certificate and role
        token = tokens.get(message_id)
        facts = index_facts(payload_of(unpacked(token)) if token is not None else None)
        rows[(role, number)] = {
            "role": role,
            "number": number,
            "number_ci": folded(number),
            "history_id": history_id,
            "agreement": facts.agreement,
            "agreement_ci": folded(facts.agreement) if facts.agreement else None,
            "issue_date": facts.issue_date,
            "valid_until": facts.valid_until,
            "exporter_country": facts.exporter_country,
            "importer_country": facts.importer_country,
            "reference_number": facts.reference_number,
            "reference_ci": folded(facts.reference_number) if facts.reference_number else None,
            "reference_code": facts.reference_code,
            "replaces": facts.replaces,
        }
    known = [
        key
        for role in {role for role, _ in rows}
        for key in sql.rows_in(
            "SELECT role, number FROM certificate_index WHERE role = :role AND",
            "number",
            sorted({number for r, number in rows if r == role}),
            {"role": role},
        )
    ]
    for key in known:
        rows.pop((key[0], key[1]), None)
    sql.run_many(_INSERT, list(rows.values()))
    # Rows already indexed still advance the mark.
    if known and not rows:
        sql.run(
            "UPDATE certificate_index SET history_id = :id WHERE role = :role AND number = :n",
            {"id": created[-1][0], "role": known[0][0], "n": known[0][1]},
        )
    return len(created)
