"""Alembic's environment: always the connection the store hands over, in its transaction.

The store runs the upgrade itself at open (``schema.migrate``); there is no alembic.ini
and no offline mode.
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None)
with context.begin_transaction():
    context.run_migrations()
