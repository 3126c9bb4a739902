"""Per-client token buckets: how the public pages refuse guessing.

A bucket holds up to ``capacity`` tokens and regains ``capacity`` of them per ``period_s``;
a look-up takes one. Clients are keyed by address (an IPv6 client by its /64, which one
subscriber usually holds whole), and only the ``max_clients`` most recently seen are kept,
so a flood of addresses costs bounded memory.
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

Now = Callable[[], float]


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


def client_key(address: str | None) -> str:
    """The key a client is limited by: its IPv4 address or its IPv6 /64."""
    if not address:
        return "unknown"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class TokenBuckets:
    def __init__(
        self, capacity: int, period_s: float, now: Now, *, max_clients: int = 10_000
    ) -> None:
        if capacity < 1 or period_s <= 0:
            raise ValueError("a bucket needs a capacity of at least 1 and a positive period")
        self.capacity = capacity
        self.rate = capacity / period_s  # tokens regained per second
        self._now = now
        self._max = max_clients
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def _bucket(self, key: str) -> _Bucket:
        now = self._now()
        bucket = self._buckets.pop(key, None)
        if bucket is None:
            bucket = _Bucket(float(self.capacity), now)
        else:
            bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.at) * self.rate)
            bucket.at = now
        self._buckets[key] = bucket  # most recently seen last
        while len(self._buckets) > self._max:
            self._buckets.popitem(last=False)
        return bucket

    def retry_after(self, key: str) -> int:
        """Seconds until ``key`` may try again; 0 when it may now."""
        bucket = self._bucket(key)
        if bucket.tokens >= 1:
            return 0
        return max(1, math.ceil((1 - bucket.tokens) / self.rate))

    def take(self, key: str) -> int:
        """Takes a token; returns 0, or the seconds to wait when there was none."""
        wait = self.retry_after(key)
        if wait == 0:
            self._buckets[key].tokens -= 1
        return wait
