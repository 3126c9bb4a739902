"""The soak's HA mode times each takeover from the other instance's JSON log."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from soak.takeover import event_times, summary, takeover_after

KILLED_AT = datetime(2031, 5, 17, 8, 0, 0, tzinfo=UTC).timestamp()


def line(event: str, at: str) -> bytes:
    return orjson.dumps({"event": event, "level": "info", "timestamp": at})


def test_the_first_became_active_after_the_fault_times_the_takeover() -> None:
    log = b"\n".join(
        [
            line("became_active", "2031-05-17T07:59:50.000000Z"),  # an earlier takeover
            line("standby", "2031-05-17T07:59:55.000000Z"),
            b"not json: a traceback line",
            line("became_active", "2031-05-17T08:00:00.750000Z"),
            line("became_active", "2031-05-17T08:00:09.000000Z"),
        ]
    )
    assert takeover_after(log, KILLED_AT) == 0.75


def test_no_became_active_after_the_fault_is_no_takeover() -> None:
    log = line("became_active", "2031-05-17T07:59:50+00:00") + b"\n" + line("standby", "x")
    assert takeover_after(log, KILLED_AT) is None
    assert event_times(log, "became_active") == [KILLED_AT - 10]


def test_summary_gives_median_and_max_against_the_target() -> None:
    assert summary([0.5, 2.0, 0.7], 5.0) == (
        "3 takeovers (0.50, 2.00, 0.70 s): median 0.70 s, max 2.00 s (under the 5 s target)"
    )
    assert "OVER" in summary([6.0], 5.0)
    assert summary([], 5.0) == "no takeover was timed"


def test_a_fault_without_a_takeover_is_named_and_fails_the_target() -> None:
    line = summary([0.4, None, 0.6], 5.0)
    assert line.endswith("(OVER the 5 s target); 1 faults with NO takeover")
    assert "median 0.50 s, max 0.60 s" in line
    assert summary([None], 5.0) == "no takeover was timed; 1 faults with NO takeover"
