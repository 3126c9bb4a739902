"""schemas/ is what partners read: it must match the models, and samples must satisfy it."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from eodes_node.core.records import as_json_dict
from eodes_node.samples import SampleFactory
from eodes_node.schema_export import generated, render

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


@pytest.mark.parametrize("name", sorted(generated()))
def test_checked_in_schema_matches_the_models(name: str) -> None:
    path = SCHEMAS / name
    assert path.exists(), f"{path} is missing: run `make schemas`"
    assert path.read_text(encoding="utf-8") == render(generated()[name]), (
        f"{path} is out of date: run `make schemas`"
    )


def test_no_stale_schema_files() -> None:
    on_disk = {str(p.relative_to(SCHEMAS)) for p in SCHEMAS.rglob("*.json")}
    assert on_disk == set(generated())


def test_sample_records_satisfy_the_published_schema() -> None:
    schema = json.loads((SCHEMAS / "records" / "eco-record.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    for cert in SampleFactory("AKFTA", seed=2).certificates(20):
        validator.validate(as_json_dict(cert))


def test_asyncapi_document_is_version_3() -> None:
    doc = json.loads((SCHEMAS / "asyncapi.json").read_text())
    assert doc["asyncapi"] == "3.0.0"
    assert {"partnerInbound", "outboundRecords", "clearance"} <= set(doc["channels"])
