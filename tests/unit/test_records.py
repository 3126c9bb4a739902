"""e-CO records: valid samples pass; every rule rejects with a located, readable problem."""

from __future__ import annotations

from collections.abc import Callable
from copy import deepcopy
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from eodes_node.core.agreements import AGREEMENTS
from eodes_node.core.canonical import canonical_json
from eodes_node.core.messages import Feedback, Kind, new_message_id
from eodes_node.core.records import Composed, as_json_dict, compose, parse_certificate
from eodes_node.errors import InvalidRecord, Problem
from eodes_node.samples import SampleFactory
from tests.conftest import ISSUE_DAY

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize("agreement", sorted(AGREEMENTS))
def test_samples_for_every_agreement_are_valid(agreement: str) -> None:
    factory = SampleFactory(agreement, seed=11, issue_date=ISSUE_DAY)
    certs = factory.certificates(40)
    for cert in certs:
        assert parse_certificate(canonical_json(as_json_dict(cert))) == cert
    criteria = {item.origin_criterion.split(" ")[0] for c in certs for item in c.items}
    assert len(criteria) > 1, "samples should vary the origin criterion"
    assert len({c.number for c in certs}) == len(certs)


def _record(factory: SampleFactory) -> dict[str, Any]:
    return as_json_dict(factory.certificate())


def _problems(record: dict[str, Any]) -> list[Problem]:
    with pytest.raises(InvalidRecord) as caught:
        parse_certificate(orjson.dumps(record))
    return list(caught.value.problems)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(record: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = record
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        if value is _DELETE:
            del node[last]
        else:
            node[int(last) if last.isdigit() else last] = value

    return mutate


_DELETE = object()

# (mutation, expected problem path, expected rule, words the message must contain)
CASES = [
    (_set("items.0.hs_code", "8542.32"), "items[0].hs_code", "hs_code", "6 to 10 digits"),
    (_set("items.0.hs_code", "85423"), "items[0].hs_code", "hs_code", "6 to 10 digits"),
    (_set("items.0.hs_code", "85423A"), "items[0].hs_code", "hs_code", "6 to 10 digits"),
    (_set("exporter.country", "ZZ"), "exporter.country", "country_code", "ISO 3166"),
    (
        _set("items.0.quantity.value", 12.5),
        "items[0].quantity.value",
        "decimal_string",
        "JSON string",
    ),
    (
        _set("items.0.quantity.unit", "BOX"),
        "items[0].quantity.unit",
        "unit_code",
        "Recommendation 20",
    ),
    (
        _set("header.certificate_number", _DELETE),
        "header.certificate_number",
        "missing",
        "required",
    ),
    (_set("header.colour", "blue"), "header.colour", "unknown_field", "unknown field"),
    (_set("header.agreement", "NAFTA"), "header.agreement", "agreement_unknown", "KCFTA"),
    (_set("consignee.country", "JP"), "consignee.country", "not_a_party", "not a party"),
    (_set("consignee.country", "KR"), "consignee.country", "same_country", "another country"),
    (
        _set("exporter.country", "CN"),
        "exporter.country",
        "exporter_outside_issuing_country",
        "issued by an authority of KR",
    ),
    (_set("header.valid_until", "2026-03-01"), "header.valid_until", "validity_order", "after"),
    (
        _set("header.valid_until", "2027-06-01"),
        "header.valid_until",
        "validity_too_long",
        "365 days",
    ),
    (
        _set("transport.departure_date", "2026-02-01"),
        "header.issued_retroactively",
        "retroactive_flag_missing",
        "must be true",
    ),
    (
        _set("header.issued_retroactively", True),
        "header.issued_retroactively",
        "retroactive_flag_unexpected",
        "not retroactive",
    ),
    (
        _set("transport.departure_date", "2024-12-01"),
        "header.issue_date",
        "retroactive_limit",
        "up to 365 days",
    ),
    (
        _set("items.0.origin_criterion", "RVC"),
        "items[0].origin_criterion",
        "criterion_unknown",
        "not an origin criterion of KCFTA",
    ),
    (
        _set("items.0.origin_criterion", "WO ACU"),
        "items[0].origin_criterion",
        "criterion_qualifier",
        "not allowed under KCFTA",
    ),
    (_set("items.0.rvc_percent", 45), "items[0].rvc_percent", "rvc_unexpected", "omit"),
    (_set("items.0.item_number", 3), "items[0].item_number", "item_numbering", "expected 1"),
    (
        _set("items.0.gross_weight", {"value": "10", "unit": "LTR"}),
        "items[0].gross_weight.unit",
        "weight_unit",
        "mass unit",
    ),
    (
        _set("items.0.fob_value", {"amount": "10.00", "currency": "XXY"}),
        "items[0].fob_value.currency",
        "currency_code",
        "ISO 4217",
    ),
    (
        _set("items.0.invoice.date", "2026-03-05"),
        "items[0].invoice.date",
        "invoice_after_issue",
        "after the issue date",
    ),
    (
        _set("exporter_declaration.date", "2026-03-09"),
        "exporter_declaration.date",
        "declaration_after_issue",
        "cannot be dated",
    ),
    (
        _set("certification.date", "2026-03-01"),
        "certification.date",
        "certification_date",
        "issue date",
    ),
    (
        _set(
            "back_reference",
            {
                "kind": "replaces",
                "certificate_number": "SELF",
                "issue_date": "2026-04-01",
                "reason": "typo",
            },
        ),
        "back_reference.issue_date",
        "reference_in_future",
        "issued before",
    ),
    (_set("items", []), "items", "too_few", "at least 1 entry"),
]


@pytest.mark.parametrize(
    ("mutate", "path", "rule", "words"), CASES, ids=[c[2] + ":" + c[1] for c in CASES]
)
def test_each_rule_rejects_with_a_clear_message(
    factory: SampleFactory,
    mutate: Callable[[dict[str, Any]], None],
    path: str,
    rule: str,
    words: str,
) -> None:
    record = _record(factory)
    record["header"]["issued_retroactively"] = False
    record["transport"]["departure_date"] = "2026-03-01"
    mutate(record)
    problems = _problems(record)
    match = [p for p in problems if p.path == path and p.rule == rule]
    assert match, f"expected {rule} at {path}, got {[str(p) for p in problems]}"
    assert words in match[0].message


def test_value_content_criterion_needs_fob_and_percentage() -> None:
    record = as_json_dict(SampleFactory("RCEP", seed=3, issue_date=ISSUE_DAY).certificate())
    item = record["items"][0]
    item["origin_criterion"] = "RVC"
    item.pop("fob_value", None)
    item.pop("rvc_percent", None)
    rules = {(p.path, p.rule) for p in _problems(record)}
    assert ("items[0].fob_value", "fob_required") in rules
    assert ("items[0].rvc_percent", "rvc_required") in rules


def test_too_many_items_for_the_agreement(factory: SampleFactory) -> None:
    record = _record(factory)
    first = record["items"][0]
    record["items"] = [dict(deepcopy(first), item_number=n) for n in range(1, 52)]
    assert any(p.rule == "too_many_items" and "at most 50" in p.message for p in _problems(record))


def test_all_problems_are_reported_at_once(factory: SampleFactory) -> None:
    record = _record(factory)
    record["items"][0]["hs_code"] = "12"
    record["exporter"]["country"] = "QQ"
    record["consignee"]["name"] = ""
    paths = {p.path for p in _problems(record)}
    assert {"items[0].hs_code", "exporter.country", "consignee.name"} <= paths


def test_not_json_is_reported_plainly() -> None:
    with pytest.raises(InvalidRecord) as caught:
        parse_certificate(b"{not json")
    assert "not valid JSON" in str(caught.value)


def test_union_member_names_stay_out_of_problem_paths(factory: SampleFactory) -> None:
    """The producer is a party or a notice; problems name ``producer.name``, not the
    model behind it, and a party is not also told it is no notice."""
    record = _record(factory)
    record["producer"] = {"name": "", "address": "Seoul", "country": "KR"}
    found = {(p.path, p.rule) for p in _problems(record)}
    assert found == {("producer.name", "empty")}
    record["producer"] = 5
    assert [str(p) for p in _problems(record)] == [
        "producer: 5 is neither a JSON object nor one of 'SAME' or 'AVAILABLE UPON REQUEST' "
        "[not_allowed]"
    ]


def test_too_many_qualifiers_for_the_agreement() -> None:
    record = as_json_dict(SampleFactory("RCEP", seed=3, issue_date=ISSUE_DAY).certificate())
    record["items"][0]["origin_criterion"] = "CTC ACU DMI ACU"
    found = [p for p in _problems(record) if p.path == "items[0].origin_criterion"]
    assert [(p.rule, p.message) for p in found] == [
        ("criterion_qualifier", "at most 2 qualifiers under RCEP")
    ]


def test_certificate_cannot_refer_back_to_itself(factory: SampleFactory) -> None:
    record = _record(factory)
    record["back_reference"] = {
        "kind": "certified_true_copy",
        "certificate_number": record["header"]["certificate_number"],
        "issue_date": record["header"]["issue_date"],
        "reason": "copy for the importer",
    }
    assert [str(p) for p in _problems(record)] == [
        "back_reference.certificate_number: a certificate cannot refer back to itself "
        "[self_reference]"
    ]


def _compose(kind: Kind, body: Any, **kw: Any) -> Composed:
    return compose(kind, body, sender="KR", receiver="CN", issued_at=NOW, **kw)


def test_compose_reports_problems_where_the_record_has_them(factory: SampleFactory) -> None:
    record = _record(factory)
    del record["header"]["certificate_number"]
    record["items"][0]["hs_code"] = "12"
    with pytest.raises(InvalidRecord) as caught:
        _compose(Kind.COO, record)
    found = {(p.path, p.rule) for p in caught.value.problems}
    assert {("header.certificate_number", "missing"), ("items[0].hs_code", "hs_code")} <= found
    assert not any(path.startswith("certificate") for path, _ in found)
    with pytest.raises(InvalidRecord) as caught:
        _compose(Kind.COO, ["not", "an", "object"])
    assert [str(p) for p in caught.value.problems] == [
        "(record): expected a JSON object, got a JSON array [not_an_object]"
    ]


def test_compose_keeps_envelope_problems_on_the_envelope(factory: SampleFactory) -> None:
    with pytest.raises(InvalidRecord) as caught:
        compose(Kind.COO, _record(factory), sender="KR", receiver="KR", issued_at=NOW)
    assert [(p.path, p.rule) for p in caught.value.problems] == [("", "inconsistent")]
    assert "sender and receiver must be different countries" in str(caught.value)


def test_compose_refuses_values_json_cannot_carry() -> None:
    with pytest.raises(InvalidRecord) as caught:
        _compose(Kind.FEEDBACK, {"certificate_number": {"a", "set"}})
    (problem,) = caught.value.problems
    assert (problem.path, problem.rule) == ("", "json_invalid")
    assert problem.message.startswith("not representable")


def test_compose_signs_the_bytes_it_validated() -> None:
    body = {
        "certificate_number": "KR2026KCFTA0000001",
        "decision": "granted",
        "import_declaration": {"reference": "CN-IMP-1", "date": "2026-03-03"},
        "items": [{"item_number": 1, "granted": True}],
    }
    coo_id = new_message_id()
    message_id = new_message_id()
    composed = _compose(Kind.FEEDBACK, body, message_id=message_id, correlation_id=coo_id)
    assert isinstance(composed.message, Feedback)
    assert (composed.message.message_id, composed.message.correlation_id) == (message_id, coo_id)
    assert composed.payload == canonical_json(orjson.loads(composed.payload))
    assert orjson.loads(composed.payload)["feedback"] == body
    assert Feedback.model_validate_json(composed.payload) == composed.message


def test_a_problem_names_the_value_it_refused() -> None:
    """The messages of the custom rules show the refused value, not a raw template."""
    record = as_json_dict(SampleFactory("KCFTA", seed=5).certificate())
    record["items"][0]["hs_code"] = "8542.32"
    record["consignee"]["country"] = "XX"
    with pytest.raises(InvalidRecord) as caught:
        parse_certificate(orjson.dumps(record))
    text = str(caught.value)
    assert "{value" not in text
    assert "got '8542.32'" in text
    assert "'XX' is not an ISO 3166-1 alpha-2 country code" in text


@pytest.mark.parametrize("character", ["\x00", "\x07", "\x1b"])
def test_text_with_a_control_character_is_refused_with_its_place(character: str) -> None:
    record = as_json_dict(SampleFactory("KCFTA", seed=5, issue_date=ISSUE_DAY).certificate())
    record["exporter"]["name"] = f"ACME{character}Ltd"
    record["items"][0]["description"] = "Memory chips,\tpacked\r\nin trays"  # text, not control
    with pytest.raises(InvalidRecord) as caught:
        parse_certificate(orjson.dumps(record))
    (problem,) = caught.value.problems
    assert (problem.path, problem.rule) == ("exporter.name", "control_character")
    assert f"U+{ord(character):04X} at position 5" in problem.message
