"""Adapters: the broker (aio-pika) and the store (SQLite, PostgreSQL) behind the ports."""
