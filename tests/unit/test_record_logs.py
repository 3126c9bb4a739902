"""Log lines an operator acts on: the partner's rejection is a warning with its code and
reason, and every line about a record names its certificate number."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import structlog
from structlog.testing import capture_logs

from eodes_node.core.envelope import seal
from eodes_node.core.messages import Kind, Receipt, ReceiptEntry, ReceiptStatus, new_message_id
from eodes_node.core.records import as_json_dict
from eodes_node.errors import RejectionCode
from eodes_node.samples import SampleFactory
from eodes_node.testing.fakes import PartnerPublish
from eodes_node.testing.services import START, ServicePair

# Lines are captured as the node writes them: with the fields bound around each note.
WITH_CONTEXT = [structlog.contextvars.merge_contextvars]


def _record(seed: int) -> dict[str, Any]:
    return as_json_dict(SampleFactory("KCFTA", seed=seed, issue_date=START.date()).certificate())


def _number(record: dict[str, Any]) -> str:
    return str(record["header"]["certificate_number"])


def _receipt(pair: ServicePair, sent: PartnerPublish, code: RejectionCode | None) -> PartnerPublish:
    entry = ReceiptEntry(
        message_id=sent.message_id,
        kind=Kind(sent.kind),
        digest="A" * 43,
        status=ReceiptStatus.REJECTED if code else ReceiptStatus.ACCEPTED,
        code=code,
        text="items[0].origin_criterion: 'RVC' is not an origin criterion of KCFTA" if code else "",
    )
    receipt = Receipt(
        message_id=new_message_id(),
        sender="CN",
        receiver="KR",
        issued_at=pair.clock.now(),
        entries=(entry,),
    )
    return PartnerPublish(seal(receipt, pair.cn.key), receipt.message_id, "receipt")


def _lines(logs: list[MutableMapping[str, Any]], event: str) -> list[MutableMapping[str, Any]]:
    return [line for line in logs if line["event"] == event]


async def test_a_rejection_from_the_partner_is_a_warning_with_code_and_reason() -> None:
    pair = ServicePair()
    record = _record(21)
    await pair.kr.submit([record])
    (sent,) = pair.kr.take_outgoing()
    with capture_logs(processors=WITH_CONTEXT) as logs:
        await pair.kr.receive([_receipt(pair, sent, RejectionCode.RULE_VIOLATION)])
    (line,) = _lines(logs, "receipt_received")
    assert line["log_level"] == "warning"
    assert line["code"] == "RULE_VIOLATION"
    assert line["reason"] == "items[0].origin_criterion: 'RVC' is not an origin criterion of KCFTA"
    assert line["certificate_number"] == _number(record)
    assert line["message_id"] == sent.message_id


async def test_an_accepted_receipt_stays_an_info_line() -> None:
    pair = ServicePair()
    record = _record(22)
    await pair.kr.submit([record])
    (sent,) = pair.kr.take_outgoing()
    with capture_logs(processors=WITH_CONTEXT) as logs:
        await pair.kr.receive([_receipt(pair, sent, None)])
    (line,) = _lines(logs, "receipt_received")
    assert line["log_level"] == "info"
    assert "reason" not in line
    assert line["certificate_number"] == _number(record)


async def test_a_record_refused_for_its_schema_is_logged_with_its_number() -> None:
    pair = ServicePair()
    record = _record(23)
    record["transport"]["port_of_loading"] = "XXX"
    with capture_logs(processors=WITH_CONTEXT) as logs:
        await pair.kr.submit([record])
    (line,) = _lines(logs, "local_record_rejected")
    assert line["certificate_number"] == _number(record)
    assert "transport.port_of_loading: 'XXX' is not a UN/LOCODE" in line["problems"]
    (event,) = pair.kr.events("record_rejected")
    assert event["certificate_number"] == _number(record)


async def test_a_refused_feedback_is_logged_with_the_number_it_names() -> None:
    pair = ServicePair()
    decision = {
        "certificate_number": "KR2026KCFTA0000042",
        "decision": "granted",
        "import_declaration": {"reference": "IMP-1", "date": "2026-13-01"},
        "items": [{"item_number": 1, "granted": True}],
    }
    with capture_logs(processors=WITH_CONTEXT) as logs:
        await pair.cn.submit_feedback([decision])
    (line,) = _lines(logs, "local_record_rejected")
    assert line["certificate_number"] == "KR2026KCFTA0000042"


async def test_a_record_naming_no_valid_number_is_logged_without_one() -> None:
    pair = ServicePair()
    record = _record(24)
    record["header"]["certificate_number"] = "not a number"
    with capture_logs(processors=WITH_CONTEXT) as logs:
        await pair.kr.submit([record])
    (line,) = _lines(logs, "local_record_rejected")
    assert line["certificate_number"] is None


async def test_a_resend_is_logged_with_its_certificate_number() -> None:
    pair = ServicePair()
    record = _record(25)
    await pair.kr.submit([record])
    pair.kr.take_outgoing()
    pair.clock.advance(5)
    with capture_logs(processors=WITH_CONTEXT) as logs:
        await pair.kr.svc.resend_due()
    (line,) = _lines(logs, "resent")
    assert line["certificate_number"] == _number(record)
