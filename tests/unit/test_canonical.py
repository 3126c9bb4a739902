"""Canonical JSON: our fast encoder is RFC 8785 for every payload shape we produce."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from eodes_node.core.canonical import canonical_json, canonical_problem
from eodes_node.core.records import as_json_dict
from eodes_node.samples import SampleFactory

# Our payloads: objects with ASCII member names; strings (any Unicode), integers within
# the exact range of doubles, booleans, null, arrays.
scalars = st.text() | st.integers(-(2**53) + 1, 2**53 - 1) | st.booleans() | st.none()
names = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(names, children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=500)
@given(json_values)
def test_encoder_matches_rfc8785_reference(value: Any) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)


@settings(max_examples=300)
@given(json_values)
def test_canonical_form_is_stable(value: Any) -> None:
    once = canonical_json(value)
    assert canonical_json(orjson.loads(once)) == once
    assert canonical_problem(once) is None


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 10**6))
def test_sample_certificates_encode_as_rfc8785(seed: int) -> None:
    cert = SampleFactory("RCEP", seed=seed).certificate()
    assert canonical_json(as_json_dict(cert)) == rfc8785.dumps(as_json_dict(cert))


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b'{"a":1,"b":2}', None),
        (b'{"b":2,"a":1}', "payload is not in RFC 8785 canonical form"),
        (b'{"a": 1}', "payload is not in RFC 8785 canonical form"),
        (b'{"a":1,"a":1}', "duplicate member name 'a'"),
        (b'{"a":1', "not valid JSON: "),
        (b"", "not valid JSON: "),
    ],
)
def test_canonical_problem_says_why(data: bytes, problem: str | None) -> None:
    found = canonical_problem(data)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert found.startswith(problem)
