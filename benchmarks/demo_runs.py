"""Shared machinery of the demo benchmarks: isolated paths, a probed demo process, and the
peak memory of its whole process tree.

A demo is one fresh `voronka demo` process (through ``_demo_probe.py``, which records the
run's step events, the emulators' request logs and the limiters from inside it), on temporary
warehouse, state, log and Dagster paths, so the figures include interpreter, Dagster and dbt
start-up: what a user waits for. Memory is sampled from /proc (psutil is not in the venv):
the resident set of the demo process plus all its descendants (dbt, its watchdog, the
manifest parse) summed at each sample; the peak of that sum is the figure.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
PROBE = BENCH_DIR / "_demo_probe.py"
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
MEMORY_SOURCE = "/proc (statm resident pages of the demo process and every descendant)"


def isolated_env(tmp: Path, project_dir: Path) -> dict[str, str]:
    """Environment of a demo on its own temporary paths, importing from ``project_dir``."""
    env = {**os.environ, "VORONKA_DUCKDB_PATH": f"{tmp}/warehouse.duckdb",
           "VORONKA_PUBLISHED_PATH": f"{tmp}/voronka.duckdb",
           "VORONKA_STATE_DIR": f"{tmp}/state", "DAGSTER_HOME": f"{tmp}/dagster",
           "VORONKA_LOG_DIR": f"{tmp}/logs", "PYTHONPATH": str(project_dir)}
    os.makedirs(env["DAGSTER_HOME"], exist_ok=True)
    return env


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process visible in /proc."""
    out = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        # the command name may hold spaces and parentheses: fields follow the last ')'
        out[int(entry.name)] = int(stat[stat.rindex(")") + 2:].split()[1])
    return out


def tree_pids(root: int) -> list[int]:
    """``root`` and all its descendants."""
    children: dict[int, list[int]] = {}
    for pid, parent in _parents().items():
        children.setdefault(parent, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def rss_bytes(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_BYTES
    except (OSError, IndexError, ValueError):
        return 0


@dataclass
class TreeMemory:
    """Samples a process tree's summed resident memory until stopped (a daemon thread)."""

    root: int
    interval_s: float = 0.2
    peak_tree: int = 0
    peak_single: int = 0
    most_processes: int = 0
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> TreeMemory:
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            sizes = [rss_bytes(pid) for pid in tree_pids(self.root)]
            self.peak_tree = max(self.peak_tree, sum(sizes))
            self.peak_single = max(self.peak_single, max(sizes, default=0))
            self.most_processes = max(self.most_processes, sum(1 for s in sizes if s))
            self.samples += 1
            self._stop.wait(self.interval_s)


@dataclass
class DemoRun:
    """One demo process: wall time, memory, and what the probe recorded inside it."""

    wall_s: float
    peak_tree_mib: float
    peak_single_mib: float
    most_processes: int
    probe: dict[str, Any]
    output: str


def run_probed_demo(project_dir: Path, env: dict[str, str], scale: float, fresh: bool,
                    python: str, probe_out: Path) -> DemoRun:
    """Run `voronka demo --scale S [--fresh]` through the probe in ``project_dir``."""
    args = [python, str(PROBE), str(probe_out), "demo", "--scale", str(scale)]
    args += ["--fresh"] if fresh else []
    started = time.monotonic()
    proc = subprocess.Popen(args, env=env, cwd=project_dir, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    memory = TreeMemory(proc.pid).start()
    output, _ = proc.communicate()
    wall = time.monotonic() - started
    memory.stop()
    if proc.returncode != 0 or not probe_out.exists():
        raise RuntimeError(f"demo (scale {scale}, fresh={fresh}) failed with exit code "
                           f"{proc.returncode}:\n{output[-4000:]}")
    probe = json.loads(probe_out.read_text())
    check_imports(probe, project_dir)
    return DemoRun(wall, memory.peak_tree / 2**20, memory.peak_single / 2**20,
                   memory.most_processes, probe, output)


def check_imports(probe: dict[str, Any], project_dir: Path) -> None:
    """Refuse figures of the wrong checkout (an editable install points elsewhere)."""
    root = project_dir.resolve()
    for name, path in probe["modules"].items():
        if path and root not in Path(path).resolve().parents:
            raise RuntimeError(f"{name} was imported from {path}, not from {root}")


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])
