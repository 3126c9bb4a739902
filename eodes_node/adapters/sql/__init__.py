"""The store on SQL: SQLite by default, PostgreSQL with the same schema."""

from eodes_node.adapters.sql.schema import make_engine
from eodes_node.adapters.sql.store import SqlStore

__all__ = ["SqlStore", "make_engine"]
