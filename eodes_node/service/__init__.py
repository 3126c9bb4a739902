"""The service layer: runs lock -> query -> plan -> commit -> publish for each batch.

The decisions themselves are the core's planners; this package reads the facts they ask
for, commits what they decide, renders their effects into publications, publishes them,
and keeps the resend schedule.
"""

from eodes_node.service.pipeline import NodeIdentity, NodeService

__all__ = ["NodeIdentity", "NodeService"]
