"""An operator's re-send on the fakes: which certificates may go again, and how."""

from __future__ import annotations

from typing import Any

import pytest

from eodes_node.core.messages import ReceiptStatus
from eodes_node.core.records import as_json_dict
from eodes_node.samples import SampleFactory
from eodes_node.service.repairs import RepairRefused, Repairs
from eodes_node.testing.services import START, ServicePair
from tests.unit.test_service import _receipt, state


def record(seed: int) -> dict[str, Any]:
    return as_json_dict(SampleFactory("KCFTA", seed=seed, issue_date=START.date()).certificate())


def number(rec: dict[str, Any]) -> str:
    return str(rec["header"]["certificate_number"])


@pytest.fixture
def pair() -> ServicePair:
    return ServicePair()


async def test_a_rejected_certificate_goes_again_as_a_new_message(pair: ServicePair) -> None:
    rec = record(81)
    await pair.kr.submit([rec])
    (first,) = pair.kr.take_outgoing()
    await pair.kr.receive([_receipt(pair, first, ReceiptStatus.REJECTED, code="UNKNOWN_KEY")])
    assert state(pair.kr, "exporter", number(rec)) == "rejected"
    pair.clock.advance(30)

    outcome = await pair.kr.svc.resend(number(rec))

    (again,) = pair.kr.take_outgoing()
    assert outcome["same_message"] is False
    assert again.message_id == outcome["message_id"] != first.message_id
    assert again.token != first.token
    assert state(pair.kr, "exporter", number(rec)) == "pending"
    # The partner, which never accepted it, takes it like any new e-CO; feedback on it
    # correlates to the new message, which is now the certificate's message.
    await pair.cn.receive([again])
    assert len(pair.cn.local(pair.cn.topology.clearance)) == 1
    await pair.kr.receive(pair.cn.take_outgoing())
    assert state(pair.kr, "exporter", number(rec)) == "delivered"
    facts = pair.kr.store.certificate_facts("exporter", number(rec))
    assert facts is not None
    assert facts.coo_message_id == again.message_id
    items = [{"item_number": i["item_number"], "granted": True} for i in rec["items"]]
    await pair.cn.submit_feedback(
        [
            {
                "certificate_number": number(rec),
                "decision": "granted",
                "import_declaration": {"reference": "D-1", "date": START.date().isoformat()},
                "items": items,
            }
        ]
    )
    await pair.exchange()
    assert state(pair.kr, "exporter", number(rec)) == "granted"


async def test_a_failed_certificate_goes_again_as_the_same_message(pair: ServicePair) -> None:
    rec = record(82)
    await pair.kr.submit([rec])
    (lost,) = pair.kr.take_outgoing()
    for _ in range(pair.kr.retry.max_attempts):
        pair.clock.advance(10)
        await pair.kr.svc.resend_due()
    pair.kr.take_outgoing()
    assert state(pair.kr, "exporter", number(rec)) == "failed"

    outcome = await pair.kr.svc.resend(number(rec))

    (again,) = pair.kr.take_outgoing()
    assert outcome["same_message"] is True
    assert (again.message_id, again.token) == (lost.message_id, lost.token)
    row = pair.kr.store.outbound_row(lost.message_id)
    assert row is not None
    assert (row.status, row.attempts) == ("pending", 1)
    # A fresh budget: it is resent again until a receipt comes.
    pair.clock.advance(10)
    await pair.kr.svc.resend_due()
    assert [e.message_id for e in pair.kr.take_outgoing()] == [lost.message_id]
    await pair.cn.receive([again])
    await pair.kr.receive(pair.cn.take_outgoing())
    assert state(pair.kr, "exporter", number(rec)) == "delivered"


async def test_a_failed_message_too_old_for_the_partner_goes_as_a_new_one(
    pair: ServicePair,
) -> None:
    rec = record(83)
    await pair.kr.submit([rec])
    (lost,) = pair.kr.take_outgoing()
    for _ in range(pair.kr.retry.max_attempts):
        pair.clock.advance(10)
        await pair.kr.svc.resend_due()
    pair.kr.take_outgoing()
    pair.clock.advance(7 * 24 * 3600)
    outcome = await pair.kr.svc.resend(number(rec))
    assert outcome["same_message"] is False
    assert outcome["message_id"] != lost.message_id


async def test_only_failed_or_rejected_certificates_of_ours_go_again(pair: ServicePair) -> None:
    rec = record(84)
    await pair.kr.submit([rec])
    await pair.exchange()
    repairs_kr = Repairs(pair.kr.svc, pair.kr.store, None, pair.kr.svc.metrics)
    repairs_cn = Repairs(pair.cn.svc, pair.cn.store, None, pair.cn.svc.metrics)
    with pytest.raises(RepairRefused, match="is delivered; only a failed or rejected") as caught:
        await repairs_kr.resend(number(rec).lower())
    assert not caught.value.unknown
    with pytest.raises(RepairRefused, match="only its sender") as caught:
        await repairs_cn.resend(number(rec))
    assert not caught.value.unknown
    with pytest.raises(RepairRefused, match="no certificate") as caught:
        await repairs_kr.resend("KR1999UNKNOWN")
    assert caught.value.unknown
    with pytest.raises(RepairRefused, match="without access to its broker"):
        await repairs_kr.replay_dead("records", 10)
    with pytest.raises(RepairRefused, match="no door"):
        await repairs_kr.replay_dead("side-door", 10)
    assert pair.kr.take_outgoing() == []
