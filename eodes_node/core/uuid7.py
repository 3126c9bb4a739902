"""UUIDv7 (RFC 9562 §5.7) for the ids this node creates.

Ids that sort by creation time keep a database index on them append-only and make a log
or a queue listing read in order. The layout: 48 bits of Unix milliseconds, version 7,
12 bits of sub-millisecond time (RFC 9562 §6.2, method 3), the variant, 62 random bits.
The result is an ordinary lower-case canonical UUID, so a partner that checks only the
UUID form (as ``MessageId`` does) accepts it as it accepts a v4.

The time is a parameter so the layout is testable; ``new_uuid7`` reads the clock and the
OS's randomness itself, as ``uuid.uuid4`` reads randomness: an id is not I/O the core
must leave to the adapters.
"""

from __future__ import annotations

import os
import time
import uuid

_NS_PER_MS = 1_000_000


def uuid7_at(unix_ns: int, random: bytes) -> str:
    """The UUIDv7 for a time in Unix nanoseconds and 8 random bytes (62 bits are used)."""
    if unix_ns < 0 or unix_ns >> 48 >= _NS_PER_MS:
        raise ValueError(f"{unix_ns} ns is outside UUIDv7's 48-bit millisecond range")
    if len(random) != 8:
        raise ValueError("UUIDv7 takes 8 random bytes")
    millis, within = divmod(unix_ns, _NS_PER_MS)
    sub_ms = within * 4096 // _NS_PER_MS  # 12 bits: steps of about 244 ns
    rand_b = int.from_bytes(random, "big") & ((1 << 62) - 1)
    value = (millis << 80) | (0x7 << 76) | (sub_ms << 64) | (0b10 << 62) | rand_b
    return str(uuid.UUID(int=value))


def new_uuid7() -> str:
    return uuid7_at(time.time_ns(), os.urandom(8))


def uuid7_unix_ms(value: str) -> int:
    """The millisecond timestamp a UUIDv7 carries."""
    return uuid.UUID(value).int >> 80
