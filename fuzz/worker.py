"""One fuzz target under atheris (libFuzzer, coverage-guided), for a bounded time.

``python -m fuzz.worker TARGET SECONDS STATS_FILE [libFuzzer flags]``. Every input that
raises is a finding: the first input per distinct failure (exception type and where it
was raised) is saved under ``fuzz/findings/`` with its traceback, and fuzzing goes on.
At the deadline the counts go to STATS_FILE as JSON and the process ends.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import mmap
import os
import pkgutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

import atheris  # type: ignore[import-untyped]

from fuzz.run import FINDINGS


class LastInput:
    """The input being run, in a memory-mapped file: when native code crashes or hangs
    the process, the runner still finds the input that did it."""

    def __init__(self, path: Path, size: int) -> None:
        path.write_bytes(bytes(size + 4))
        self.size = size
        self.file = path.open("r+b")
        self.map = mmap.mmap(self.file.fileno(), size + 4)

    def hold(self, data: bytes) -> None:
        data = data[: self.size]
        self.map[:4] = len(data).to_bytes(4, "little")
        self.map[4 : 4 + len(data)] = data


class Run:
    """Counts inputs and findings of one target until its deadline."""

    def __init__(self, name: str, seconds: float, stats: Path) -> None:
        self.name = name
        self.stats = stats
        self.started = time.monotonic()
        self.deadline = self.started + seconds
        self.inputs = 0
        self.failures: dict[str, int] = {}  # failure signature -> inputs that hit it
        self.saved: list[str] = []

    def finding(self, data: bytes, exc: BaseException) -> None:
        frames = traceback.extract_tb(exc.__traceback__)
        ours = [f for f in frames if "eodes_node" in f.filename] or frames
        where = [f"{Path(f.filename).name}:{f.lineno}" for f in (ours[-1:] + frames[-1:])]
        signature = f"{type(exc).__name__} at {' in '.join(dict.fromkeys(where)) or '?'}"
        self.failures[signature] = self.failures.get(signature, 0) + 1
        if self.failures[signature] > 1:
            return
        FINDINGS.mkdir(exist_ok=True)
        stem = f"{self.name}-{hashlib.sha1(data).hexdigest()[:12]}"  # noqa: S324 - a name
        (FINDINGS / f"{stem}.bin").write_bytes(data)
        text = "".join(traceback.format_exception(exc))
        (FINDINGS / f"{stem}.txt").write_text(f"target: {self.name}\n{signature}\n\n{text}")
        self.saved.append(f"{stem}.bin")

    def finish(self) -> None:
        report = {
            "target": self.name,
            "inputs": self.inputs,
            "seconds": round(time.monotonic() - self.started, 1),
            "failures": self.failures,
            "saved": self.saved,
        }
        self.stats.write_text(json.dumps(report))
        sys.stdout.flush()
        os._exit(0)  # libFuzzer has no clean way out of its loop


def _modules_of(package: str) -> list[str]:
    """A package and its modules by name, found without importing them."""
    spec = importlib.util.find_spec(package)
    paths = list(spec.submodule_search_locations or []) if spec else []
    return [package, *(f"{package}.{m.name}" for m in pkgutil.iter_modules(paths))]


def main() -> None:
    name, seconds, stats, *flags = sys.argv[1:]
    # Coverage for our code and the TOML parser; pydantic-core and orjson are native.
    # The sample factory only builds seeds, and atheris's rewrite of it miscomputes
    # (an int becomes a Decimal), so it stays as it is.
    with atheris.instrument_imports(
        include=["eodes_node", "tomllib", "fuzz"], exclude=_modules_of("eodes_node.samples")
    ):
        from fuzz.targets import TARGETS
    target = TARGETS[name]
    run = Run(name, float(seconds), Path(stats))

    last = LastInput(Path(stats).with_suffix(".last"), target.max_len)

    def one(data: bytes) -> None:
        if time.monotonic() >= run.deadline:
            run.finish()
        run.inputs += 1
        last.hold(data)
        try:
            target.run(data)
        except Exception as exc:  # noqa: BLE001 - every escape is a finding
            run.finding(data, exc)

    corpus = Path(tempfile.mkdtemp(prefix=f"eodes-fuzz-{name}-"))
    for index, seed in enumerate(target.seeds()):
        (corpus / f"seed-{index:03d}").write_bytes(seed)
    argv = [sys.argv[0], f"-max_len={target.max_len}", *flags, str(corpus)]
    if target.dictionary:
        argv.insert(1, f"-dict={Path(__file__).resolve().parent / target.dictionary}")
    atheris.Setup(argv, one)
    atheris.Fuzz()
    run.finish()  # reached only when libFuzzer stops by itself (e.g. -runs=N)


if __name__ == "__main__":
    main()
