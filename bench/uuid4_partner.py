"""A node whose new message ids are random UUIDv4, as a partner's node from before UUIDv7.

``python -m uuid4_partner run --config CFG`` (with ``bench/`` on ``PYTHONPATH``): the
aged-store bench runs KR this way, so CN's store takes inbound keys that scatter, as an
older partner's would; everything else is the real node.
"""

from __future__ import annotations

import uuid

import eodes_node.core.messages as messages


def _uuid4() -> str:
    return str(uuid.uuid4())


messages.new_uuid7 = _uuid4  # new_message_id looks it up at each call

from eodes_node.cli import main  # noqa: E402 - after the ids are swapped

main()
