"""Message models: each cross-field rule of the protocol refuses with a plain reason."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from eodes_node.core.messages import (
    CooIssued,
    CooReplacement,
    Decision,
    DenialReason,
    FeedbackBody,
    ImportDeclaration,
    ItemDecision,
    Kind,
    ReceiptEntry,
    ReceiptStatus,
    new_message_id,
)
from eodes_node.core.models import BackReference
from eodes_node.errors import RejectionCode
from eodes_node.samples import SampleFactory

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
DIGEST = "A" * 43


def _only_error(caught: pytest.ExceptionInfo[ValidationError]) -> str:
    (error,) = caught.value.errors()
    return str(error["msg"])


def _coo_fields(factory: SampleFactory, back_reference: BackReference | None) -> dict[str, Any]:
    cert = factory.certificate()
    return {
        "message_id": new_message_id(),
        "sender": "KR",
        "receiver": "CN",
        "issued_at": NOW,
        "certificate": cert.model_copy(update={"back_reference": back_reference}),
    }


def _reference(kind: str) -> BackReference:
    return BackReference(
        kind=kind,  # type: ignore[arg-type]
        certificate_number="KR2026KCFTA0000001",
        issue_date=date(2026, 2, 1),
        reason="quantity corrected",
    )


def test_sender_and_receiver_must_differ(factory: SampleFactory) -> None:
    fields = _coo_fields(factory, None) | {"receiver": "KR"}
    with pytest.raises(ValidationError) as caught:
        CooIssued(**fields)
    assert "sender and receiver must be different countries" in _only_error(caught)


def test_a_replacing_certificate_travels_only_as_coo_replacement(
    factory: SampleFactory,
) -> None:
    fields = _coo_fields(factory, _reference("replaces"))
    with pytest.raises(ValidationError) as caught:
        CooIssued(**fields)
    assert "travels as coo-replacement" in _only_error(caught)
    assert CooReplacement(**fields).certificate.back_reference == _reference("replaces")


@pytest.mark.parametrize("reference", [None, _reference("certified_true_copy")])
def test_a_replacement_names_what_it_replaces(
    factory: SampleFactory, reference: BackReference | None
) -> None:
    fields = _coo_fields(factory, reference)
    with pytest.raises(ValidationError) as caught:
        CooReplacement(**fields)
    assert "must carry back_reference with kind 'replaces'" in _only_error(caught)
    assert CooIssued(**fields).certificate.back_reference == reference


@pytest.mark.parametrize(
    ("status", "code"),
    [(ReceiptStatus.REJECTED, None), (ReceiptStatus.ACCEPTED, RejectionCode.BAD_SIGNATURE)],
)
def test_receipt_entry_has_a_code_exactly_when_rejected(
    status: ReceiptStatus, code: RejectionCode | None
) -> None:
    with pytest.raises(ValidationError) as caught:
        ReceiptEntry(
            message_id=new_message_id(), kind=Kind.COO, digest=DIGEST, status=status, code=code
        )
    assert "a rejected entry needs a code; an accepted one has none" in _only_error(caught)


def test_item_decision_reason_goes_with_denial() -> None:
    with pytest.raises(ValidationError) as caught:
        ItemDecision(item_number=1, granted=True, reason=DenialReason.HS_MISMATCH)
    assert "a granted item has no denial reason" in _only_error(caught)
    with pytest.raises(ValidationError) as caught:
        ItemDecision(item_number=1, granted=False)
    assert "a denied item needs a reason code" in _only_error(caught)


def _items(*granted: bool) -> tuple[ItemDecision, ...]:
    return tuple(
        ItemDecision(
            item_number=n, granted=ok, reason=None if ok else DenialReason.QUANTITY_EXCEEDED
        )
        for n, ok in enumerate(granted, start=1)
    )


def _body(decision: Decision, items: tuple[ItemDecision, ...]) -> FeedbackBody:
    return FeedbackBody(
        certificate_number="KR2026KCFTA0000001",
        decision=decision,
        import_declaration=ImportDeclaration(reference="CN-IMP-1", date=date(2026, 3, 3)),
        items=items,
    )


@pytest.mark.parametrize(
    ("granted", "expected"),
    [((True, True), "granted"), ((False, False), "denied"), ((True, False), "partial")],
)
def test_feedback_decision_follows_from_its_items(granted: tuple[bool, ...], expected: str) -> None:
    assert _body(Decision(expected), _items(*granted)).decision is Decision(expected)
    for wrong in set(Decision) - {Decision(expected)}:
        with pytest.raises(ValidationError) as caught:
            _body(wrong, _items(*granted))
        assert _only_error(caught).endswith(
            f"decision {wrong.value!r} contradicts the items: "
            f"{sum(granted)} of {len(granted)} granted means {expected!r}"
        )


def test_feedback_decides_each_item_once() -> None:
    twice = (*_items(True), *_items(True))
    with pytest.raises(ValidationError) as caught:
        _body(Decision.GRANTED, twice)
    assert "each item_number may be decided once" in _only_error(caught)
