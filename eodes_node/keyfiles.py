"""Private key files: written so that no other user can ever read them.

Kept apart from the CLI so that the test harness, the demo and the benchmark can write
keys the same way without importing the command line.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["write_private_key"]


def write_private_key(path: Path, pem: bytes) -> None:
    """Create the key file 0600 from the start: never a moment where others could read it.

    ``O_EXCL`` refuses an existing file or symlink, so a key never lands in a file someone
    else prepared with wider permissions.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
