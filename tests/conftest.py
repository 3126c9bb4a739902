from __future__ import annotations

from datetime import date

import pytest

from eodes_node.core.jws import KeySet, PrivateKey
from eodes_node.samples import SampleFactory

ISSUE_DAY = date(2026, 3, 2)


@pytest.fixture
def factory() -> SampleFactory:
    return SampleFactory("KCFTA", seed=7, issue_date=ISSUE_DAY)


@pytest.fixture(params=["Ed25519", "ES256"])
def kr_key(request: pytest.FixtureRequest) -> PrivateKey:
    return PrivateKey.generate(request.param)


@pytest.fixture
def kr_keys(kr_key: PrivateKey) -> KeySet:
    return KeySet({kr_key.kid: kr_key.public}, owner="KR")
