"""Verification requests, on the side that asked and the side asked.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

from eodes_node.adapters.sql.schema import verifications

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    verifications.create(op.get_bind(), checkfirst=True)
