"""Signed tokens at rest: Zstandard-compressed, read back byte for byte.

A signed envelope is most of what a node keeps per certificate (about 3.6 KB of base64url
in about 6 KB); compressed it takes half, and a SQLite page holds two instead of one.
Lossless: the bytes read back are the bytes that were signed, so a stored token stays
provable. A token stored raw (before, or one that compression would not shrink) is read
as it is: a Zstandard frame starts with 28 B5 2F FD, which no JWS compact token can
(base64url has no such bytes).
"""

from __future__ import annotations

import threading
from typing import Any

import zstandard

ZSTD_FRAME = b"\x28\xb5\x2f\xfd"
LEVEL = 1  # about 40 us for an envelope; higher levels gain 2% for 3 times the time

_local = threading.local()  # zstandard's (de)compressors are not shared across threads


def _codecs() -> tuple[zstandard.ZstdCompressor, zstandard.ZstdDecompressor]:
    codecs: tuple[zstandard.ZstdCompressor, zstandard.ZstdDecompressor] | None = getattr(
        _local, "codecs", None
    )
    if codecs is None:
        codecs = (zstandard.ZstdCompressor(level=LEVEL), zstandard.ZstdDecompressor())
        _local.codecs = codecs
    return codecs


def packed(token: bytes) -> bytes:
    """What the store writes for a token."""
    compressed = _codecs()[0].compress(token)
    return compressed if len(compressed) < len(token) else token


def unpacked(stored: Any) -> bytes:
    """The token from what the store holds (``bytes`` or the driver's ``memoryview``)."""
    raw = bytes(stored)
    if raw.startswith(ZSTD_FRAME):
        return _codecs()[1].decompress(raw)
    return raw
