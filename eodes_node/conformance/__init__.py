"""The conformance kit: plays our side of a link against a partner's node.

It signs as the node's partner with a key the node pins, publishes to the node's inbound
exchange, and takes the node's answers from an inbound queue of its own: valid messages
of every kind, every hostile case of docs/protocol.md §1 and §4, duplicates and withheld
receipts. It judges each answer (receipt codes, digests, identical receipts for
duplicates, resends, feedback) and reports a table, a summary line and JUnit XML.
"""

from __future__ import annotations

from eodes_node.conformance.report import junit, summary, table
from eodes_node.conformance.runner import KitOptions, run_kit
from eodes_node.conformance.verdict import Outcome
from eodes_node.conformance.wire import KitError

__all__ = ["KitError", "KitOptions", "Outcome", "junit", "run_kit", "summary", "table"]
