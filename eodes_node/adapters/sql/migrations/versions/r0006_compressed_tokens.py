"""Signed tokens stored Zstandard-compressed (``adapters/sql/tokens``).

Revision ID: 0006
Revises: 0005

No table changes: tokens written before stay raw and are read as they are. The revision
marks the format, so a release from before it, which would read a compressed token as
the signed bytes (and resend it so to the partner), refuses the store at start-up
instead: "Can't locate revision identified by '0006'". There is no way back past it;
upgrade every instance of a link together.
"""

from __future__ import annotations

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Nothing to change in the tables; the revision number is the point."""
