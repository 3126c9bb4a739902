"""A node run as its own process, for tests that kill it and measurements of it."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

__all__ = ["NodeProcess"]


class NodeProcess:
    """A node run as `eodes-node run` in its own process: killable, measurable."""

    def __init__(
        self,
        config: Path,
        log: Path,
        env: dict[str, str] | None = None,
        module: str = "eodes_node",
    ) -> None:
        self.config = config
        self.module = module  # what `python -m` runs: a bench's imitation of an older node
        self.log = log
        self.env = env or {}
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0

    async def start(self, within: float = 60.0) -> float:
        """Start and wait until it consumes; returns the seconds that took."""
        self.starts += 1
        began = time.monotonic()
        log = self.log.with_suffix(f".{self.starts}.log")
        with log.open("wb") as handle:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                self.module,
                "run",
                "--config",
                str(self.config),
                stdout=handle,
                stderr=handle,
                start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
            )
        while b'"node_started"' not in log.read_bytes():
            if self.process.returncode is not None or time.monotonic() - began > within:
                tail = log.read_text(errors="replace")[-2000:]
                raise AssertionError(f"node did not start; its log ends:\n{tail}")
            await asyncio.sleep(0.02)
        return time.monotonic() - began

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def peak_rss_mb(self) -> float:
        """The kernel's high-water mark of resident memory for this process."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmHWM in /proc status")

    async def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def terminate(self, within: float = 30.0) -> int:
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.process.wait(), within)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
            raise
