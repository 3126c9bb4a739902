"""Batch planners: ``query`` names the facts a batch needs, ``plan`` decides on them.

Nothing here awaits or touches I/O: the service reads the facts, calls ``plan``, and
commits and publishes what it returns.
"""

from eodes_node.core.plan import failures, feedback, inbound, records
from eodes_node.core.plan.common import (
    DeadLetter,
    Door,
    Effect,
    EnvelopeLimits,
    Handoff,
    Identity,
    Note,
    Notice,
    Plan,
    RetryPolicy,
    ToPartner,
)

__all__ = [
    "DeadLetter",
    "Door",
    "Effect",
    "EnvelopeLimits",
    "Handoff",
    "Identity",
    "Note",
    "Notice",
    "Plan",
    "RetryPolicy",
    "ToPartner",
    "failures",
    "feedback",
    "inbound",
    "records",
]
