"""The message id: its wire form and how a node makes a new one.

Apart from ``messages`` so that both the message models and the local records they carry
(``bodies``) can name a message id without importing one another.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import StringConstraints

from eodes_node.core.uuid7 import new_uuid7

MessageId = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
]


def new_message_id() -> str:
    """A UUIDv7: time-ordered, and still the lower-case UUID form ``MessageId`` checks."""
    return new_uuid7()
