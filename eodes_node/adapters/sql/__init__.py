"""The store on SQL: SQLite by default, PostgreSQL with the same schema."""

from eodes_node.adapters.sql.files import StoreInUse
from eodes_node.adapters.sql.schema import StoreSettings, make_engine
from eodes_node.adapters.sql.store import SqlStore

__all__ = ["SqlStore", "StoreInUse", "StoreSettings", "make_engine"]
