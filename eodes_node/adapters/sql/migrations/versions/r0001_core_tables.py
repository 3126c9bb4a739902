"""The core tables: messages both ways, certificates, their history, the outbox.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from alembic import op

from eodes_node.adapters.sql.schema import certificates, history, inbound, outbound, outbox

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in (inbound, outbound, certificates, history, outbox):
        table.create(op.get_bind(), checkfirst=True)
