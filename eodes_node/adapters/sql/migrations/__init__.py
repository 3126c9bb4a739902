"""Alembic's script directory for the store's schema: ``env.py`` and one revision per step."""
