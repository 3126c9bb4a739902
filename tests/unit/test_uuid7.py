"""UUIDv7 ids (RFC 9562 §5.7): the layout, the order, and that partners accept them."""

from __future__ import annotations

import uuid

import pytest
from pydantic import TypeAdapter, ValidationError

from eodes_node.core.messages import MessageId, new_message_id
from eodes_node.core.uuid7 import new_uuid7, uuid7_at, uuid7_unix_ms

MESSAGE_ID: TypeAdapter[str] = TypeAdapter(MessageId)
ZERO = bytes(8)


def test_the_rfc_9562_example_is_reproduced() -> None:
    # RFC 9562 Appendix A.6: unix_ts_ms 0x017F22E279B0, rand_a 0xCC3, rand_b 0x18C4DC0C0C07398F;
    # rand_a here is the sub-millisecond fraction, so the time carries it.
    at_ns = 0x017F22E279B0 * 1_000_000 + 797_608
    value = uuid7_at(at_ns, bytes.fromhex("98C4DC0C0C07398F"))
    assert value == "017f22e2-79b0-7cc3-98c4-dc0c0c07398f"


def test_version_variant_and_timestamp_are_where_the_rfc_puts_them() -> None:
    at_ns = 1_764_000_000_123_456_789
    parsed = uuid.UUID(uuid7_at(at_ns, b"\xff" * 8))
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    assert uuid7_unix_ms(str(parsed)) == at_ns // 1_000_000


def test_ids_sort_by_time_below_the_millisecond() -> None:
    base = 1_764_000_000_000_000_000
    times = [base, base + 300, base + 999_999, base + 1_000_000, base + 86_400 * 10**9]
    ids = [uuid7_at(t, b"\xff" * 8 if i % 2 else ZERO) for i, t in enumerate(times)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_times_outside_48_bits_of_milliseconds_are_refused() -> None:
    with pytest.raises(ValueError, match="48-bit"):
        uuid7_at(-1, ZERO)
    with pytest.raises(ValueError, match="48-bit"):
        uuid7_at((1 << 48) * 1_000_000, ZERO)
    with pytest.raises(ValueError, match="8 random bytes"):
        uuid7_at(0, b"\x00")


def test_new_ids_are_v7_lower_case_and_distinct() -> None:
    ids = [new_uuid7() for _ in range(1000)]
    assert len(set(ids)) == len(ids)
    assert all(uuid.UUID(i).version == 7 and i == i.lower() for i in ids)


def test_message_ids_are_v7_and_accepted_by_the_protocol_check() -> None:
    made = new_message_id()
    assert uuid.UUID(made).version == 7
    assert MESSAGE_ID.validate_python(made) == made


def test_a_partners_uuid4_is_still_a_message_id() -> None:
    theirs = str(uuid.uuid4())
    assert MESSAGE_ID.validate_python(theirs) == theirs
    with pytest.raises(ValidationError):
        MESSAGE_ID.validate_python(theirs.upper())
