"""Test helpers shipped with the package, for this project's tests and for integrators.

In-memory fakes of the ports (``InMemoryStore``, ``RecordingTransport``, ``ManualClock``)
and ``ServicePair``, two node services back to back on them, test a node's logic without
a broker or a database; a paired KR/CN harness over a real broker (``NodePair``,
``Side``, ``Seen``) and ``NodeProcess`` test the rest.
"""

from __future__ import annotations

from eodes_node.testing.fakes import InMemoryStore, ManualClock, RecordingTransport
from eodes_node.testing.pair import BROKER, NodePair, Seen, Side
from eodes_node.testing.process import NodeProcess
from eodes_node.testing.services import ServicePair, ServiceSide

__all__ = [
    "BROKER",
    "InMemoryStore",
    "ManualClock",
    "NodePair",
    "NodeProcess",
    "RecordingTransport",
    "Seen",
    "ServicePair",
    "ServiceSide",
    "Side",
]
