"""Errors an integration tester can act on: `validate` checks each kind of record as that
kind, every problem is worded for the record's author (field path, refused value, what
the field takes), and the agreement's rules are reported in the same pass as schema
errors wherever the fields they read parsed."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import orjson
import pytest
from click.testing import CliRunner
from pydantic_core.core_schema import ErrorType

from eodes_node.cli import main
from eodes_node.core.models import shown
from eodes_node.core.records import as_json_dict, parse_certificate
from eodes_node.errors import InvalidRecord, Problem
from eodes_node.samples import SampleFactory
from tests.conftest import ISSUE_DAY


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def _sample(runner: CliRunner, kind: str) -> dict[str, Any]:
    printed = runner.invoke(main, ["sample", "--type", kind, "--seed", "3"])
    assert printed.exit_code == 0, printed.output
    return dict(json.loads(printed.output))


def _file(tmp_path: Path, name: str, record: Any) -> Path:
    path = tmp_path / name
    path.write_bytes(orjson.dumps(record))
    return path


@pytest.mark.parametrize(
    ("kind", "said"),
    [
        ("coo", "valid e-CO KR"),
        ("cancellation", "valid cancellation of KR"),
        ("feedback", "valid feedback on KR"),
    ],
)
def test_validate_tells_the_kind_from_the_record_and_says_so(
    runner: CliRunner, tmp_path: Path, kind: str, said: str
) -> None:
    path = _file(tmp_path, f"{kind}.json", _sample(runner, kind))
    result = runner.invoke(main, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"{path}: {said}")
    assert result.output.rstrip().endswith(f"type assumed from its fields: {kind}")
    forced = runner.invoke(main, ["validate", "--type", kind, str(path)])
    assert forced.exit_code == 0, forced.output
    assert "assumed" not in forced.output


def test_a_feedback_file_validated_as_an_eco_is_told_what_it_is(
    runner: CliRunner, tmp_path: Path
) -> None:
    path = _file(tmp_path, "decision.json", _sample(runner, "feedback"))
    result = runner.invoke(main, ["validate", "--type", "coo", str(path)])
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"{path}: (record): this is a feedback record (it has decision, import_declaration), "
        "not an e-CO record: pass --type feedback [wrong_type]"
    ]


def test_validate_checks_a_detected_feedback_as_feedback(runner: CliRunner, tmp_path: Path) -> None:
    decision = _sample(runner, "feedback")
    decision["decision"] = "denied"
    count = len(decision["items"])
    path = _file(tmp_path, "decision.json", decision)
    result = runner.invoke(main, ["validate", str(path)])
    assert result.exit_code == 1
    first, *problems = result.stdout.splitlines()
    assert first == (
        f"{path}: checked as feedback; type assumed from its fields: feedback "
        "(--type to choose another)"
    )
    assert problems == [
        f"{path}: (record): decision 'denied' contradicts the items: {count} of {count} "
        "granted means 'granted' [inconsistent]"
    ]


def test_a_record_whose_kind_cannot_be_told_asks_for_type(
    runner: CliRunner, tmp_path: Path
) -> None:
    path = _file(tmp_path, "what.json", {"certificate_number": "KR2026KCFTA0000001"})
    result = runner.invoke(main, ["validate", str(path)])
    assert result.exit_code == 1
    assert "cannot tell which kind of record this is" in result.stdout
    assert (
        "pass --type (one of cancellation, coo, coo-replacement, feedback, "
        "verification-request, verification-response)"
    ) in result.stdout


def test_validate_reads_json_lines_of_mixed_kinds(runner: CliRunner, tmp_path: Path) -> None:
    lines = [_sample(runner, kind) for kind in ("coo", "cancellation", "feedback")]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(line) for line in lines))
    result = runner.invoke(main, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert [line.split(": ")[1].split(" ")[1] for line in result.output.splitlines()] == [
        "e-CO",
        "cancellation",
        "feedback",
    ]


def test_a_replacement_is_told_from_its_back_reference(runner: CliRunner, tmp_path: Path) -> None:
    record = _sample(runner, "coo")
    record["back_reference"] = {
        "kind": "replaces",
        "certificate_number": "KR2026KCFTA0000001",
        "issue_date": record["header"]["issue_date"],
        "reason": "typing error in the consignee's address",
    }
    path = _file(tmp_path, "replacement.json", record)
    result = runner.invoke(main, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert "valid replacement e-CO" in result.output
    assert result.output.rstrip().endswith("type assumed from its fields: coo-replacement")


def test_submit_says_which_type_a_record_of_another_kind_is(
    runner: CliRunner, tmp_path: Path
) -> None:
    """No broker is contacted: nothing valid is left to send."""
    link = tmp_path / "link"
    made = runner.invoke(main, ["init", "--own", "KR", "--partner", "VN", "--out", str(link)])
    assert made.exit_code == 0, made.output
    path = _file(tmp_path, "cancel.json", _sample(runner, "cancellation"))
    result = runner.invoke(main, ["submit", "--config", str(link / "kr-vn.toml"), str(path)])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{path}: refused: (record): this is a cancellation record (it has cancelled_on, "
        "issuing_authority, reason), not an e-CO record: pass --type cancellation [wrong_type]"
    ]


# Wording of the validation library that must never reach the record's author.
LIBRARY_WORDING = (
    "Input should",
    "String should",
    "Value error",
    "should have",
    "Field required",
    "Extra inputs",
    "after validation",
    "[too_short]",
)
# The library's error types that are also plain words, kept as rules.
PLAIN_TYPES = {"missing", "json_invalid"}
# Problems about a value that cannot be shown better than the rule says it.
NO_VALUE_RULES = {"missing", "unknown_field", "empty", "too_few", "inconsistent"}
BAD_VALUES: list[Any] = [
    None,
    7,
    -1,
    2.5,
    "",
    " ",
    "x" * 600,
    "XXX",
    "2026-13-40",
    [],
    [1],
    {},
    {"a": 1},
    True,
]


def _leaves(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if path:
        yield path
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node[:2]):
            yield from _leaves(value, (*path, index))


def _path_text(path: tuple[Any, ...]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _set(record: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(record)
    node: Any = changed
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return changed


@pytest.mark.parametrize("kind", ["coo", "cancellation", "feedback"])
def test_every_problem_speaks_of_the_record_never_of_the_library(
    runner: CliRunner, tmp_path: Path, kind: str
) -> None:
    """Every field of a sample, broken every way: each problem names its field path with
    a rule of the record's own, says no library wording, and shows the refused value."""
    from datetime import UTC, datetime

    from eodes_node.submitting import SUBMIT_KINDS, refusals

    record = _sample(runner, kind)
    library_types = set(get_args(ErrorType)) - PLAIN_TYPES
    checked = 0
    for path in _leaves(record):
        for bad in BAD_VALUES:
            problems = refusals(
                SUBMIT_KINDS[kind],
                orjson.dumps(_set(record, path, bad)),
                max_bytes=1 << 20,
                now=datetime.now(UTC),
            )
            for problem in problems:
                text = str(problem)
                assert not any(words in text for words in LIBRARY_WORDING), text
                assert problem.rule not in library_types, text
                # true is a boolean field's value too: what refuses it there is a rule
                shows_value = bad is not True and problem.rule not in NO_VALUE_RULES
                if problem.path == _path_text(path) and shows_value:
                    assert shown(bad) in problem.message, text
                    checked += 1
    assert checked > 50


def _eco() -> dict[str, Any]:
    return as_json_dict(SampleFactory("KCFTA", seed=7, issue_date=ISSUE_DAY).certificate())


def _problems(record: dict[str, Any]) -> list[Problem]:
    with pytest.raises(InvalidRecord) as caught:
        parse_certificate(orjson.dumps(record))
    return list(caught.value.problems)


def test_a_failed_item_is_not_followed_by_an_empty_list_problem() -> None:
    record = _eco()
    record["items"] = record["items"][:1]
    record["items"][0]["hs_code"] = "8542.32"
    assert [(p.path, p.rule) for p in _problems(record)] == [("items[0].hs_code", "hs_code")]


def test_a_refused_port_names_the_field_and_the_value() -> None:
    record = _eco()
    record["transport"]["port_of_loading"] = "XXX"
    assert [str(p) for p in _problems(record)] == [
        "transport.port_of_loading: 'XXX' is not a UN/LOCODE (two-letter country code and "
        "three letters or digits 2-9, e.g. KRPUS) [locode]"
    ]


def test_agreement_rules_apply_to_what_parsed_beside_schema_errors() -> None:
    record = _eco()
    record["transport"]["port_of_loading"] = "XXX"
    record["header"]["reference_code"] = "!"
    record["items"][0]["origin_criterion"] = "RVC"  # parses; KCFTA has no RVC
    found = {(p.path, p.rule) for p in _problems(record)}
    assert found == {
        ("transport.port_of_loading", "locode"),
        ("header.reference_code", "reference_code_format"),
        ("items[0].origin_criterion", "criterion_unknown"),
    }


def test_no_rule_runs_on_what_did_not_parse() -> None:
    record = _eco()
    item = record["items"][0]
    item["quantity"]["unit"] = "BOX"  # the item does not parse...
    item["origin_criterion"] = "RVC"  # ...so its criterion is not checked
    record["certification"]["date"] = "2026-03-05"  # parses: a rule problem
    record["exporter_declaration"]["date"] = "yesterday"  # does not: no rule reads it
    found = {(p.path, p.rule) for p in _problems(record)}
    assert found == {
        ("items[0].quantity.unit", "unit_code"),
        ("exporter_declaration.date", "not_a_date"),
        ("certification.date", "certification_date"),
    }


def test_without_an_agreement_that_parsed_no_rule_applies() -> None:
    record = _eco()
    record["header"]["agreement"] = 5
    record["items"][0]["origin_criterion"] = "RVC"
    assert [(p.path, p.rule) for p in _problems(record)] == [("header.agreement", "not_text")]


def test_the_node_door_reports_rules_and_schema_in_one_pass() -> None:
    from datetime import UTC, datetime

    from eodes_node.core.messages import Kind
    from eodes_node.core.records import compose

    record = _eco()
    record["consignee"]["name"] = ""
    record["items"][0]["rvc_percent"] = 40  # WO/WP take none under KCFTA
    with pytest.raises(InvalidRecord) as caught:
        compose(Kind.COO, record, sender="KR", receiver="CN", issued_at=datetime.now(UTC))
    found = {(p.path, p.rule) for p in caught.value.problems}
    assert found == {("consignee.name", "empty"), ("items[0].rvc_percent", "rvc_unexpected")}


def test_a_whole_number_beyond_64_bits_is_refused_as_too_large() -> None:
    """The JSON parser reads such a number as a float: it is still no fraction."""
    from datetime import UTC, datetime

    from eodes_node.submitting import SUBMIT_KINDS, refusals

    record = _eco()
    record["items"][0]["item_number"] = 424242
    raw = orjson.dumps(record).replace(b"424242", b"1" + b"0" * 30)
    problems = refusals(SUBMIT_KINDS["coo"], raw, max_bytes=1 << 20, now=datetime.now(UTC))
    assert [str(p) for p in problems] == [
        "items[0].item_number: the number is too large (about 1e+30) [number_too_large]"
    ]
    raw = orjson.dumps(record).replace(b"424242", b"1.5")
    problems = refusals(SUBMIT_KINDS["coo"], raw, max_bytes=1 << 20, now=datetime.now(UTC))
    assert [p.rule for p in problems] == ["not_a_whole_number"]


@pytest.mark.parametrize(
    ("record", "first_problem"),
    [
        ({}, "header: this field is required [missing]"),
        ("stray-decision", "decision: unknown field; the record format does not have it"),
    ],
    ids=["empty", "eco-with-a-feedback-field"],
)
def test_a_record_whose_fields_tell_no_other_kind_is_checked_as_an_eco_and_says_so(
    runner: CliRunner, tmp_path: Path, record: Any, first_problem: str
) -> None:
    if record == "stray-decision":
        record = _sample(runner, "coo") | {"decision": "granted"}
    path = _file(tmp_path, "record.json", record)
    result = runner.invoke(main, ["validate", str(path)])
    assert result.exit_code == 1
    head, *problems = result.stdout.splitlines()
    assert head == (
        f"{path}: checked as e-CO; its fields do not tell its type (--type to choose another)"
    )
    assert problems[0].startswith(f"{path}: {first_problem}")
