"""What a prune leaves behind: the chain links of kept history rows, and its log.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

from eodes_node.adapters.sql.schema import audit_links, prune_log

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in (audit_links, prune_log):
        table.create(op.get_bind(), checkfirst=True)
