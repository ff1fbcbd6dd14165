"""Benchmark the demo: cold run, incremental re-run, and peak memory.

Usage: .venv/bin/python benchmarks/bench_demo.py [--scale 1.0] [--repeat 2] [--write BENCHMARKS.md]

Each run is a fresh `voronka demo` process against isolated temporary paths, so the numbers
include interpreter start-up, Dagster and dbt start-up, extraction at the APIs' rate limits,
validation, `dbt build`, checks and publication: what a user waits for.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo_runs import isolated_env

REPO = Path(__file__).resolve().parent.parent
VORONKA = Path(sys.executable).with_name("voronka")


def run_demo(env: dict[str, str], scale: float, fresh: bool) -> tuple[float, str]:
    """Wall time of one demo, and its output plus the Dagster/dbt log it wrote."""
    args = [str(VORONKA), "demo", "--scale", str(scale)] + (["--fresh"] if fresh else [])
    started = time.monotonic()
    proc = subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        sys.exit(f"demo failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    log = Path(env["VORONKA_LOG_DIR"]) / "demo.log"
    return elapsed, proc.stdout + (log.read_text() if log.exists() else "")


def step_seconds(output: str, step: str) -> float | None:
    match = re.search(rf'"{step}" in ([0-9.]+)(m?s)', output)
    if not match:
        return None
    value = float(match.group(1))
    return value / 1000 if match.group(2) == "ms" else value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--write", type=Path, help="write the results table to this file")
    args = parser.parse_args()

    cold, warm, extract, dbt = [], [], [], []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            env = isolated_env(Path(tmp), REPO)
            seconds, out = run_demo(env, args.scale, fresh=True)
            cold.append(seconds)
            extract.append(sum(step_seconds(out, s) or 0 for s in re.findall(
                r'"(raw__[a-z_]+)" in', out)))
            dbt.append(step_seconds(out, "voronka_dbt_models") or 0)
            warm.append(run_demo(env, args.scale, fresh=False)[0])
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    rows = [
        ("`make demo` equivalent, cold (fresh warehouse), wall", cold),
        ("re-run on the same data (incremental, nothing new lands), wall", warm),
        ("  cold run: extraction + validation + landing (sum of raw steps)", extract),
        ("  cold run: the `dbt build` step", dbt),
    ]
    lines = [
        f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"scale {args.scale}, {args.repeat} runs each (median, min–max).",
        "",
        "| measurement | median | min | max |",
        "|---|---|---|---|",
    ]
    for label, values in rows:
        lines.append(f"| {label} | {statistics.median(values):.1f} s | {min(values):.1f} s | "
                     f"{max(values):.1f} s |")
    lines.append(f"| peak resident memory of any process (demo or dbt) | {peak_mib:.0f} MiB | | |")
    table = "\n".join(lines)
    print(table)
    if args.write:
        args.write.write_text(table + "\n")


if __name__ == "__main__":
    main()
