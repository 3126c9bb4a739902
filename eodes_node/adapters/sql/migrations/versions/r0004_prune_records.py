"""What a prune leaves behind: the chain links of kept history rows, and its log.

Revision ID: 0004
Revises: 0003

The tables as this revision made them, written out: a later change to ``schema`` is a
revision of its own, and must not change what this one creates.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "audit_links" not in existing:
        op.create_table(
            "audit_links",
            sa.Column("history_id", sa.Integer, primary_key=True, autoincrement=False),
            sa.Column("previous_chain", sa.String(64), nullable=False),
        )
    if "prune_log" not in existing:
        op.create_table(
            "prune_log",
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("pruned_at", sa.Float, nullable=False),
            sa.Column("before", sa.Float, nullable=False),
            sa.Column("certificates", sa.Integer, nullable=False),
            sa.Column("messages", sa.Integer, nullable=False),
            sa.Column("history_rows", sa.Integer, nullable=False),
            sa.Column("archive", sa.Text),
        )
