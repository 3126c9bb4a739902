"""The read side's report index and the indexes it needs on the core tables.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

from eodes_node.adapters.sql import report_index

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    report_index.migrate(op.get_bind())
