"""Issue 12 item 11: a killed run takes its `dbt build` child with it, and the half-written
publication copies a killed run leaves are removed when the next run starts."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from warehouse.duckdb_backend import DuckDBWarehouse

ROOT = Path(__file__).resolve().parents[1]

# The step's process: the real dbt asset of the pipeline, run by Dagster with a stand-in dbt
# executable that never finishes (a long `dbt build`).
RUN_DBT_ASSET = textwrap.dedent("""
    import sys
    import dagster as dg
    from orchestration.assets.dbt import DBT_PROJECT, VenvDbtCliResource, voronka_dbt_models
    from orchestration.resources import WarehouseResource

    dbt = VenvDbtCliResource(project_dir=DBT_PROJECT, profiles_dir=str(DBT_PROJECT.profiles_dir),
                             dbt_executable=sys.argv[1])
    dg.materialize([voronka_dbt_models], resources={"dbt": dbt, "warehouse": WarehouseResource()},
                   instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
""")


def _slow_dbt(folder: Path, ignore_sigint: bool) -> Path:
    """A `dbt` that writes its pid and then works for two minutes (optionally deaf to SIGINT,
    like a dbt stuck in a long query)."""
    script = folder / "dbt"
    script.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import os, signal, sys, time
        if {ignore_sigint!r}:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        open({str(folder / "dbt.pid")!r}, "w").write(str(os.getpid()))
        time.sleep(120)
    """))
    script.chmod(0o755)
    return script


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by init) counts as gone
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ")[-1].startswith("Z"))


def _wait_for(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


@pytest.fixture
def run_with_slow_dbt(tmp_path: Path) -> Iterator:
    """Start the dbt asset in its own process; yields (run process, dbt pid, ...) factory."""
    started: list[tuple[subprocess.Popen, int]] = []

    def start(ignore_sigint: bool) -> tuple[subprocess.Popen, int]:
        fake = _slow_dbt(tmp_path, ignore_sigint)
        env = {**os.environ, "VORONKA_WAREHOUSE": "duckdb",
               "VORONKA_DUCKDB_PATH": str(tmp_path / "warehouse.duckdb"),
               "VORONKA_STATE_DIR": str(tmp_path / "state")}
        run = subprocess.Popen([sys.executable, "-c", RUN_DBT_ASSET, str(fake)], cwd=ROOT,
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        pid_file = tmp_path / "dbt.pid"
        assert _wait_for(lambda: pid_file.exists() and pid_file.read_text(), 120), \
            "the dbt asset never started dbt"
        dbt_pid = int(pid_file.read_text())
        started.append((run, dbt_pid))
        return run, dbt_pid

    yield start
    for run, dbt_pid in started:
        run.kill()
        run.wait()
        if _alive(dbt_pid):
            os.kill(dbt_pid, signal.SIGKILL)


def test_a_run_killed_outright_ends_its_dbt_build(run_with_slow_dbt) -> None:
    run, dbt_pid = run_with_slow_dbt(ignore_sigint=False)
    run.kill()  # SIGKILL: no finally, no signal handler runs in the run's process
    run.wait()
    assert _wait_for(lambda: not _alive(dbt_pid), 10), "dbt build outlived its killed run"


def test_an_interrupted_run_does_not_wait_25_s_for_dbt(run_with_slow_dbt) -> None:
    run, dbt_pid = run_with_slow_dbt(ignore_sigint=True)  # dbt deaf to its SIGINT
    time.sleep(1)  # the step is streaming dbt's output
    interrupted = time.monotonic()
    run.send_signal(signal.SIGINT)  # what `dagster` sends a run it terminates, Ctrl-C too
    assert _wait_for(lambda: not _alive(dbt_pid), 15), "dbt build outlived its interrupted run"
    assert time.monotonic() - interrupted < 15
    run.wait(timeout=30)


def test_stale_publication_temporaries_are_removed_on_start(tmp_path: Path) -> None:
    wh = DuckDBWarehouse(tmp_path / "warehouse.duckdb", tmp_path / "voronka.duckdb")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer runs: a killed run's
    stale = [tmp_path / f".voronka.duckdb.{dead.pid}.tmp",
             tmp_path / f".voronka.duckdb.{dead.pid}.tmp.wal"]
    live = tmp_path / f".voronka.duckdb.{os.getppid()}.tmp"  # a publication in progress
    other = tmp_path / ".other.duckdb.1.tmp"
    for path in (*stale, live, other):
        path.write_bytes(b"half a database")

    from voronka.runner import _clean_stale_temporaries

    env = {"VORONKA_WAREHOUSE": "duckdb", "VORONKA_DUCKDB_PATH": str(wh.path),
           "VORONKA_PUBLISHED_PATH": str(wh.published_path)}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        _clean_stale_temporaries()
    assert not any(p.exists() for p in stale)
    assert live.exists() and other.exists()
