"""The look-up limiter on its own (no browser): buckets refill with time, per client."""

from __future__ import annotations

from eodes_node.adapters.http.throttle import TokenBuckets, client_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_client_gets_its_tokens_back_with_time_and_others_are_not_affected() -> None:
    clock = Clock()
    buckets = TokenBuckets(3, 60.0, clock)
    assert [buckets.take("a") for _ in range(4)] == [0, 0, 0, 20]
    assert buckets.take("b") == 0  # another client has a bucket of its own
    clock.now += 20
    assert buckets.take("a") == 0
    assert buckets.take("a") == 20


def test_memory_stays_bounded_by_forgetting_the_least_recent_clients() -> None:
    buckets = TokenBuckets(1, 60.0, Clock(), max_clients=2)
    for client in ("a", "b", "c"):
        buckets.take(client)
    assert buckets.take("a") == 0  # forgotten, so full again: the bound costs precision
    assert buckets.take("c") == 60


def test_clients_are_keyed_by_address_and_ipv6_by_its_64() -> None:
    assert client_key("192.0.2.7") == "192.0.2.7"
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::9")
    assert client_key("2001:db8:1:2::1") != client_key("2001:db8:1:3::1")
    assert client_key(None) == "unknown"
