"""Verification requests, on the side that asked and the side asked.

Revision ID: 0003
Revises: 0002

The table as this revision made it, written out: a later change to ``schema`` is a
revision of its own, and must not change what this one creates.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("verification_requests"):
        return
    op.create_table(
        "verification_requests",
        sa.Column("request_id", sa.String(36), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("certificate_number", sa.String(40), nullable=False),
        sa.Column("request_reference", sa.String(128), nullable=False),
        sa.Column("reply_due", sa.String(10), nullable=False),
        sa.Column("due_at", sa.Float, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("response_id", sa.String(36)),
        sa.Column("result", sa.String(16)),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_verification_due", "verification_requests", ["role", "state", "due_at"])
