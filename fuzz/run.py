"""``make fuzz``: every target in turn, each for FUZZ_SECONDS, then one table.

Targets run one at a time, each in a process of its own (libFuzzer owns its process and
leaves it by exiting). The run fails when any input raised anything but the documented
refusal, or when a worker died (a hang past the per-input timeout, memory, a crash in
native code); libFuzzer then leaves its own artifact beside our findings.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FINDINGS = ROOT / "fuzz" / "findings"
# Kept in step with fuzz.targets.TARGETS (the runner itself does not import the core).
NAMES = (
    "envelope-bytes",
    "envelope-signed",
    "envelope-structured",
    "records-bytes",
    "records-structured",
    "feedback-bytes",
    "feedback-structured",
    "config",
)


def run_target(name: str, seconds: float, logs: Path) -> dict[str, object]:
    stats = logs / f"{name}.json"
    log = logs / f"{name}.log"
    command = [
        sys.executable,
        "-m",
        "fuzz.worker",
        name,
        str(seconds),
        str(stats),
        f"-max_total_time={int(seconds) + 60}",
        "-timeout=20",
        "-rss_limit_mb=2048",
        f"-artifact_prefix={FINDINGS}/{name}-",
        "-print_final_stats=0",
    ]
    FINDINGS.mkdir(exist_ok=True)
    started = time.monotonic()
    with log.open("wb") as out:
        try:
            code = subprocess.run(  # noqa: S603 - our own interpreter and module
                command, cwd=ROOT, stdout=out, stderr=out, check=False, timeout=seconds + 120
            ).returncode
            what = f"worker died (exit {code})"
        except subprocess.TimeoutExpired:
            what = "worker hung and was killed"
    if stats.exists():
        result: dict[str, object] = json.loads(stats.read_text())
        return result
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
    return {
        "target": name,
        "inputs": 0,
        "seconds": round(time.monotonic() - started, 1),
        "failures": {what: 1},
        "saved": [_save_last_input(name, stats.with_suffix(".last"), f"{what}\n\n{tail}")],
        "log": tail,
    }


def _save_last_input(name: str, last: Path, why: str) -> str:
    """The input a dead worker was running (see fuzz.worker.LastInput), as a finding."""
    if not last.exists():
        return ""
    held = last.read_bytes()
    data = held[4 : 4 + int.from_bytes(held[:4], "little")]
    stem = f"{name}-died-{hashlib.sha1(data).hexdigest()[:12]}"  # noqa: S324 - a name
    (FINDINGS / f"{stem}.bin").write_bytes(data)
    (FINDINGS / f"{stem}.txt").write_text(f"target: {name}\n{why}\n")
    return f"{stem}.bin"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("targets", nargs="*", help=f"default: all of {', '.join(NAMES)}")
    parser.add_argument(
        "--seconds", type=float, default=float(os.environ.get("FUZZ_SECONDS", "30"))
    )
    parser.add_argument("--json", type=Path, default=None, help="Write the results here too.")
    args = parser.parse_args(argv)
    unknown = set(args.targets) - set(NAMES)
    if unknown:
        parser.error(f"unknown target(s): {', '.join(sorted(unknown))}")
    args.targets = args.targets or list(NAMES)
    logs = Path(tempfile.mkdtemp(prefix="eodes-fuzz-"))
    results = []
    print(f"fuzz: {len(args.targets)} target(s), {args.seconds:g} s each; logs in {logs}")
    for name in args.targets:
        result = run_target(name, args.seconds, logs)
        results.append(result)
        failures = result["failures"]
        assert isinstance(failures, dict)
        print(
            f"  {name:<20} {result['inputs']:>10,} inputs {result['seconds']:>7} s  "
            f"{sum(failures.values())} failing input(s)"
        )
        for signature, count in failures.items():
            print(f"      {count:>8,} x {signature}")
        if "log" in result:
            print(result["log"])
    total = sum(int(str(r["inputs"])) for r in results)
    bad = sum(len(r["failures"]) for r in results if isinstance(r["failures"], dict))
    print(f"fuzz: {total:,} inputs in all, {bad} distinct finding(s); saved in {FINDINGS}")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
