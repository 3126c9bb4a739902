"""The core tables: messages both ways, certificates, their history, the outbox.

Revision ID: 0001
Revises:

The tables as this revision made them, written out: a later change to ``schema`` is a
revision of its own, and must not change what this one creates.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "inbound_messages" not in existing:
        op.create_table(
            "inbound_messages",
            sa.Column("sender", sa.String(2), primary_key=True),
            sa.Column("message_id", sa.String(36), primary_key=True),
            sa.Column("kind", sa.String(32), nullable=False),
            sa.Column("digest", sa.String(43), nullable=False),
            sa.Column("token", sa.LargeBinary, nullable=False),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("code", sa.String(32)),
            sa.Column("text", sa.Text, nullable=False),
            sa.Column("certificate_number", sa.String(40)),
            sa.Column("receipt_entry", sa.Text),
            sa.Column("receipt_id", sa.String(36)),
            sa.Column("received_at", sa.Float, nullable=False),
        )
    if "outbound_messages" not in existing:
        op.create_table(
            "outbound_messages",
            sa.Column("message_id", sa.String(36), primary_key=True),
            sa.Column("kind", sa.String(32), nullable=False),
            sa.Column("certificate_number", sa.String(40)),
            sa.Column("correlation_id", sa.String(36)),
            sa.Column("token", sa.LargeBinary, nullable=False),
            sa.Column("local_key", sa.String(200), unique=True),
            sa.Column("record_digest", sa.String(64)),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("attempts", sa.Integer, nullable=False),
            sa.Column("next_attempt_at", sa.Float),
            sa.Column("receipt_code", sa.String(32)),
            sa.Column("receipt_text", sa.Text),
            sa.Column("created_at", sa.Float, nullable=False),
            sa.Column("updated_at", sa.Float, nullable=False),
        )
        op.create_index("ix_outbound_due", "outbound_messages", ["status", "next_attempt_at"])
    if "certificates" not in existing:
        op.create_table(
            "certificates",
            sa.Column("role", sa.String(16), primary_key=True),
            sa.Column("number", sa.String(40), primary_key=True),
            sa.Column("state", sa.String(16), nullable=False),
            sa.Column("coo_message_id", sa.String(36), nullable=False),
            sa.Column("updated_at", sa.Float, nullable=False),
        )
    if "certificate_history" not in existing:
        op.create_table(
            "certificate_history",
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("role", sa.String(16), nullable=False),
            sa.Column("number", sa.String(40), nullable=False),
            sa.Column("at", sa.Float, nullable=False),
            sa.Column("event", sa.String(32), nullable=False),
            sa.Column("before", sa.String(16)),
            sa.Column("after", sa.String(16), nullable=False),
            sa.Column("message_id", sa.String(36), nullable=False),
            sa.Column("chain", sa.String(64), nullable=False),
        )
        op.create_index("ix_certificate_history_number", "certificate_history", ["number"])
    if "outbox" not in existing:
        op.create_table(
            "outbox",
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("destination", sa.String(200), nullable=False),
            sa.Column("body", sa.LargeBinary, nullable=False),
            sa.Column("message_id", sa.String(36), nullable=False),
            sa.Column("kind", sa.String(40), nullable=False),
            sa.Column("headers", sa.Text, nullable=False),
            sa.Column("content_type", sa.String(64), nullable=False),
            sa.Column("published", sa.Boolean, nullable=False),
            sa.Column("bound_to", sa.String(120)),
        )
        op.create_index("ix_outbox_pending", "outbox", ["published", "id"])
        op.create_index("ix_outbox_bound", "outbox", ["bound_to"])
