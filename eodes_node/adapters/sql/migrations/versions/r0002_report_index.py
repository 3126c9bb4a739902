"""The read side's report index and the indexes it needs on the core tables.

Revision ID: 0002
Revises: 0001

The table and indexes as this revision made them, written out: a later change to
``report_index`` is a revision of its own, and must not change what this one creates.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

CORE_INDEXES = (
    "CREATE INDEX IF NOT EXISTS ix_certificates_updated ON certificates (updated_at)",
    "CREATE INDEX IF NOT EXISTS ix_certificates_state ON certificates (state, updated_at)",
    "CREATE INDEX IF NOT EXISTS ix_certificates_counts ON certificates (role, state)",
    "CREATE INDEX IF NOT EXISTS ix_outbound_pending_age ON outbound_messages (status, created_at)",
    "CREATE INDEX IF NOT EXISTS ix_outbound_certificate ON outbound_messages (certificate_number)",
    "CREATE INDEX IF NOT EXISTS ix_inbound_certificate ON inbound_messages (certificate_number)",
    "CREATE INDEX IF NOT EXISTS ix_inbound_kind_received ON inbound_messages (kind, received_at)",
)


def upgrade() -> None:
    if not sa.inspect(op.get_bind()).has_table("certificate_index"):
        op.create_table(
            "certificate_index",
            sa.Column("role", sa.String(16), primary_key=True),
            sa.Column("number", sa.String(40), primary_key=True),
            sa.Column("number_ci", sa.String(40), nullable=False),
            sa.Column("history_id", sa.Integer, nullable=False),
            sa.Column("agreement", sa.String(40)),
            sa.Column("agreement_ci", sa.String(40)),
            sa.Column("issue_date", sa.String(10)),
            sa.Column("valid_until", sa.String(10)),
            sa.Column("exporter_country", sa.String(2)),
            sa.Column("importer_country", sa.String(2)),
            sa.Column("reference_number", sa.String(200)),
            sa.Column("reference_ci", sa.String(200)),
            sa.Column("reference_code", sa.String(32)),
            sa.Column("replaces", sa.String(40)),
        )
        for name, columns in (
            ("ix_certificate_index_number", ["number_ci"]),
            ("ix_certificate_index_reference", ["reference_ci"]),
            ("ix_certificate_index_agreement", ["agreement_ci", "issue_date"]),
            ("ix_certificate_index_issued", ["issue_date"]),
            ("ix_certificate_index_history", ["history_id"]),
            ("ix_certificate_index_replaces", ["replaces"]),
        ):
            op.create_index(name, "certificate_index", columns)
    for statement in CORE_INDEXES:
        op.execute(statement)
