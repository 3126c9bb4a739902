"""Several instances of one link on one database: the lease of the active one (its
epoch, which every commit checks) and who holds each outbox row.

Revision ID: 0005
Revises: 0004

The table and columns as this revision made them, written out: a later change to
``schema`` is a revision of its own, and must not change what this one creates.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    if "link_lease" not in set(inspector.get_table_names()):
        op.create_table(
            "link_lease",
            sa.Column("link", sa.String(200), primary_key=True),
            sa.Column("epoch", sa.BigInteger, nullable=False),
            sa.Column("holder", sa.String(200), nullable=False),
            sa.Column("taken_at", sa.Float, nullable=False),
        )
    present = {column["name"] for column in inspector.get_columns("outbox")}
    if "claimed_by" not in present:
        op.add_column("outbox", sa.Column("claimed_by", sa.String(32)))
    if "claimed_until" not in present:
        op.add_column("outbox", sa.Column("claimed_until", sa.Float))
