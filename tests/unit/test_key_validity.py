"""Key validity windows in the core: which keys may be used when, and which warn."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from eodes_node.core.jws import KeySet, PrivateKey
from eodes_node.core.validity import ExpiryWarnings, expiring_within, window_problem
from eodes_node.errors import ConfigError

NOW = 1_760_000_000
DAY = 86400


@dataclass(frozen=True)
class Key:
    kid: str
    not_before: int | None = None
    expires: int | None = None


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        (Key("k"), None),
        (Key("k", not_before=NOW), None),
        (Key("k", not_before=NOW + 1), "key k is not valid yet"),
        (Key("k", expires=NOW + 1), None),
        (Key("k", expires=NOW), "key k has expired or was revoked"),
        (Key("k", not_before=NOW - 10, expires=NOW - 1), "key k has expired or was revoked"),
    ],
)
def test_the_window_is_nbf_inclusive_and_exp_exclusive(key: Key, problem: str | None) -> None:
    assert window_problem(key, NOW) == problem


def test_expiring_keys_are_those_within_the_horizon_soonest_first() -> None:
    keys = [
        Key("never"),
        Key("late", expires=NOW + 40 * DAY),
        Key("soon", expires=NOW + 10 * DAY),
        Key("sooner", expires=NOW + DAY),
        Key("gone", expires=NOW),
    ]
    found = expiring_within(keys, NOW, 30 * DAY)
    assert [(e.key.kid, e.seconds_left) for e in found] == [("sooner", DAY), ("soon", 10 * DAY)]


def test_each_expiring_key_warns_once_a_day() -> None:
    warnings = ExpiryWarnings[Key](horizon_s=30 * DAY)
    ours, theirs = Key("ours", expires=NOW + 5 * DAY), Key("theirs", expires=NOW + 20 * DAY)
    tagged = [("own", ours), ("CN", theirs)]
    first = warnings.due(tagged, NOW)
    assert [(owner, e.key.kid) for owner, e in first] == [("own", "ours"), ("CN", "theirs")]
    assert warnings.due(tagged, NOW + DAY - 1) == []
    again = warnings.due(tagged, NOW + DAY)
    assert [e.key.kid for _, e in again] == ["ours", "theirs"]


def test_a_key_that_leaves_the_set_and_returns_is_not_warned_twice_a_day() -> None:
    warnings = ExpiryWarnings[Key](horizon_s=30 * DAY)
    key = Key("k", expires=NOW + DAY)
    assert len(warnings.due([("CN", key)], NOW)) == 1
    assert warnings.due([], NOW + 10) == []
    assert warnings.due([("CN", key)], NOW + 20) == []


def test_the_jwk_members_are_nbf_and_exp_in_seconds() -> None:
    key = PrivateKey.generate()
    jwk = key.public.jwk() | {"nbf": NOW, "exp": NOW + DAY}
    (pinned,) = KeySet.from_jwks(json.dumps({"keys": [jwk]}).encode()).keys.values()
    assert (pinned.not_before, pinned.expires) == (NOW, NOW + DAY)
    assert pinned.jwk()["nbf"] == NOW
    assert pinned.jwk()["exp"] == NOW + DAY


@pytest.mark.parametrize("window", [{"nbf": NOW, "exp": NOW}, {"nbf": NOW, "exp": NOW - 1}])
def test_a_window_that_ends_before_it_begins_is_refused(window: dict[str, int]) -> None:
    jwk = PrivateKey.generate().public.jwk() | window
    with pytest.raises(ConfigError, match=r"exp .* must come after nbf"):
        KeySet.from_jwks(json.dumps({"keys": [jwk]}).encode())


@pytest.mark.parametrize("value", ["1760000000", 1.5, True])
def test_a_window_member_must_be_an_integer(value: object) -> None:
    jwk = PrivateKey.generate().public.jwk() | {"exp": value}
    with pytest.raises(ConfigError, match="exp must be an integer NumericDate"):
        KeySet.from_jwks(json.dumps({"keys": [jwk]}).encode())
