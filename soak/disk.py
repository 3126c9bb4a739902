"""A node's store directory on a small tmpfs, so the soak can fill its disk for real.

Filling is a ballast file that takes every free block (``fallocate`` for the bulk, then
writes until ENOSPC); freeing is deleting it. The proof that the disk was full is the
free space measured right after, which must be (nearly) zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
from pathlib import Path

FULL_BELOW = 64 * 1024  # bytes left that still count as a full disk
BULK = 16 * 1024 * 1024
PAGE = 4096


async def _run(*command: str, within: float = 30.0) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), within)
    except TimeoutError:
        process.kill()
        await process.wait()
        return -1, f"{' '.join(command)} did not finish within {within} s"
    return process.returncode or 0, out.decode(errors="replace").strip()


def _write_until_full(fd: int) -> None:
    """The last partial pages, in ever smaller writes."""
    block = b"\0" * PAGE
    while len(block) >= 64:
        try:
            os.write(fd, block)
        except OSError as error:
            if error.errno != errno.ENOSPC:
                raise
            block = block[: len(block) // 2]


class SmallDisk:
    """A tmpfs of ``size_mb`` mounted on ``path`` (which must exist and be empty)."""

    def __init__(self, path: Path, size_mb: int) -> None:
        self.path = path
        self.size_mb = size_mb
        self.ballast = path / "ballast"
        self.mounted = False

    async def mount(self) -> None:
        code, out = await _run(
            "mount", "-t", "tmpfs", "-o", f"size={self.size_mb}m,mode=0700", "tmpfs", str(self.path)
        )
        if code != 0:
            raise RuntimeError(f"could not mount a tmpfs on {self.path}: {out}")
        self.mounted = True

    def free_bytes(self) -> int:
        stat = os.statvfs(self.path)
        return stat.f_bavail * stat.f_frsize

    def fill(self) -> int:
        """Take every free block; returns the bytes left (the proof). The node writes
        meanwhile, so nothing is sized in advance: allocate, halving on ENOSPC."""
        with self.ballast.open("wb", buffering=0) as handle:
            offset, size = 0, BULK
            while size >= PAGE:
                try:
                    os.posix_fallocate(handle.fileno(), offset, size)
                    offset += size
                except OSError as error:
                    if error.errno != errno.ENOSPC:
                        raise
                    size //= 2
            handle.seek(offset)
            _write_until_full(handle.fileno())
        return self.free_bytes()

    def release(self) -> None:
        self.ballast.unlink(missing_ok=True)

    async def unmount(self) -> None:
        """Unmount (lazily if something still holds it open); safe to call twice."""
        if not self.mounted:
            return
        self.release()
        code, out = await _run("umount", str(self.path))
        if code != 0:
            code, out = await _run("umount", "-l", str(self.path))
        if code != 0:
            raise RuntimeError(f"could not unmount the tmpfs on {self.path}: {out}")
        self.mounted = False


async def copy_out(disk: SmallDisk, to: Path) -> None:
    """Keep the store files for a post-mortem before the tmpfs goes away."""
    await asyncio.to_thread(_copy_all, disk.path, to)


def _copy_all(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for file in source.glob("node.db*"):
        with contextlib.suppress(OSError):
            (target / file.name).write_bytes(file.read_bytes())
