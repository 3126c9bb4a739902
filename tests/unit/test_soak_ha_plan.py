"""The soak's HA plan: the faults the brief of each mode asks for, replayable by seed,
and the existing modes untouched by SOAK_HA."""

from __future__ import annotations

from soak.plan import ACTIVE_KILL, ACTIVE_STOP, LEASE_S, NODE_KILL, from_env, ha_from_env


def kinds(env: dict[str, str]) -> dict[str, int]:
    counted: dict[str, int] = {}
    for fault in ha_from_env(env).faults:
        counted[fault.kind] = counted.get(fault.kind, 0) + 1
    return counted


def test_quick_has_a_few_kills_and_full_ten_each_with_one_stop() -> None:
    assert kinds({"SOAK_SEED": "7"}) == {ACTIVE_KILL: 3, ACTIVE_STOP: 1}
    assert kinds({"SOAK_SEED": "7", "SOAK_FULL": "1"}) == {ACTIVE_KILL: 10, ACTIVE_STOP: 1}


def test_the_stop_outlasts_the_lease_and_targets_are_sides() -> None:
    plan = ha_from_env({"SOAK_SEED": "11", "SOAK_FULL": "1"})
    assert plan.ha
    assert all(f.target in ("KR", "CN") for f in plan.faults)
    assert all(f.hold_s > LEASE_S for f in plan.faults if f.kind == ACTIVE_STOP)


def test_a_seed_replays_the_same_plan() -> None:
    assert ha_from_env({"SOAK_SEED": "5"}) == ha_from_env({"SOAK_SEED": "5"})


def test_the_default_soak_plan_is_not_ha() -> None:
    plan = from_env({"SOAK_SEED": "5"})
    assert not plan.ha
    assert {f.kind for f in plan.faults} >= {NODE_KILL}
    assert not {f.kind for f in plan.faults} & {ACTIVE_KILL, ACTIVE_STOP}
