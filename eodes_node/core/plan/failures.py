"""Planning what happens to sent messages whose retry budget ran out without a receipt."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eodes_node.core.decide import retries_exhausted
from eodes_node.core.plan.common import Plan, item
from eodes_node.core.state import Role
from eodes_node.core.work import Due, Facts, FactsQuery, OutboundUpdate

_EXPORTER = Role.EXPORTER.value
CODE = "RETRIES_EXHAUSTED"


def query(exhausted: Sequence[Due]) -> FactsQuery:
    return FactsQuery(
        certificates=tuple(
            (_EXPORTER, d.certificate_number) for d in exhausted if d.certificate_number
        )
    )


def plan(exhausted: Sequence[Due], facts: Facts) -> Plan:
    result = Plan()
    failed: list[dict[str, Any]] = []
    for d in exhausted:
        text = f"no receipt after {d.attempts} attempts"
        result.note(
            "error",
            "delivery_failed",
            d.message_id,
            d.certificate_number,
            kind=d.kind.value,
            attempts=d.attempts,
        )
        result.outbound_updates.append(OutboundUpdate(d.message_id, "failed", CODE, text))
        cert = facts.certificates.get((_EXPORTER, d.certificate_number or ""))
        move = retries_exhausted(cert, d.message_id)
        if move is not None:
            result.transitions.append(move)
        failed.append(item(d.message_id, d.kind.value, d.certificate_number, CODE, text))
    result.notice("failed", failed)
    return result
