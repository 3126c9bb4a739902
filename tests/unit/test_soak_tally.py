"""The soak's count at the local queues: what it calls a duplicate decides whether the
project's own proof can fail, so the rule is pinned here."""

from __future__ import annotations

from soak.tally import Arrivals, Tally


def test_a_second_copy_is_a_duplicate_unless_flagged_by_the_broker_or_the_node() -> None:
    arrivals = Arrivals("CN clearance")
    assert arrivals.first_time("m-1", False, "KR1")
    assert not arrivals.first_time("m-1", True, "KR1")  # the broker's redelivery
    assert not arrivals.first_time("m-1", False, "KR1", reissued=True)  # the node's flag
    assert (arrivals.redelivered, arrivals.reissued, arrivals.duplicates) == (1, 1, [])
    assert not arrivals.first_time("m-1", False, "KR1")
    assert arrivals.duplicates == ["CN clearance: message m-1 (KR1) arrived again"]


def test_a_certificate_under_two_message_ids_is_a_duplicate_whatever_the_flags() -> None:
    tally = Tally(count=1)
    arrivals = tally.arrivals("CN clearance")
    for message_id in ("m-1", "m-2"):
        if arrivals.first_time(message_id, False, "KR1", reissued=True):
            tally.clear("KR1")
    assert tally.duplicated() == ["CN clearance: KR1 arrived 2 times under different message ids"]
