"""Outbox ids are never used twice, on SQLite too.

Revision ID: 0007
Revises: 0006

A confirmed row is deleted by its id, and a commit and a flush may both delete the same
one. SQLite gave a new row the id of the newest row deleted, so the second delete could
take a row written in between, unpublished. ``AUTOINCREMENT`` keeps the highest id ever
given (in ``sqlite_sequence``) and never gives it again. PostgreSQL's sequence never
did; the revision leaves it as it is.

The table is rebuilt with its rows, ids and indexes, as Alembic's batch mode rebuilds a
SQLite table. There is no way back past this revision; upgrade every instance of a link
together.
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table(
        "outbox", recreate="always", table_kwargs={"sqlite_autoincrement": True}
    ):
        pass
