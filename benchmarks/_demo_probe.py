"""Run `voronka <args>` in this process and record what a benchmark needs to see inside it.

Usage: python benchmarks/_demo_probe.py OUT.json demo --scale 1 --fresh

Run with the working directory (and PYTHONPATH) at the checkout to measure, so every import
resolves there: the module files are recorded, and the caller checks them. Recorded, without
changing what the run does:
- every step event of the Dagster run (start / success / failure, materializations with their
  numeric metadata) with its event-log timestamp, through the same listener hook the progress
  display uses (``voronka.runner.run_daily_refresh(on_event=...)``);
- each emulator's request log (arrival time and status only: paths may carry secrets, such as
  the Bitrix24 webhook code); the demo's emulators run in a forked child process, which
  writes its logs to a file beside OUT.json when it stops (``voronka.demo``'s child function
  is wrapped before the fork), and the logs join OUT.json;
- the rate limiters the clients created (``extractors.http._LIMITERS``): the configured rates,
  and each limiter's grants (``Limiter.acquire``: when a call was let through and how long it
  was held back first), so the rate at the limit is measured where the limit is applied;
- each dbt invocation's arguments, and its run_results.json and manifest.json, copied next to
  OUT.json before the step removes its target folder (the compiled SQL of what it built).
The demo prints as usual; this adds one JSON file (and the dbt artefacts).
"""

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

EMULATORS: list[Any] = []
EVENTS: list[dict[str, Any]] = []
ACQUIRES: dict[int, list[list[float]]] = {}  # id(limiter) -> [[time granted, seconds held]]
DBT_CALLS: list[dict[str, Any]] = []  # args, target path, where its artefacts were kept
KEEP_DIR: Path = Path(".")
DBT_ARTEFACTS = ("run_results.json", "manifest.json")
STEP_KINDS = {"STEP_START", "STEP_SUCCESS", "STEP_FAILURE", "STEP_SKIPPED",
              "ASSET_MATERIALIZATION"}


def _numbers(metadata: dict[str, Any]) -> dict[str, float]:
    """The numeric metadata entries (counts, pages), never text that might hold a value."""
    out = {}
    for name, entry in (metadata or {}).items():
        value = getattr(entry, "value", entry)
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = value
    return out


def record_event(entry: Any) -> None:
    """Keep a step event's kind, step, timestamp and (materializations) numeric metadata."""
    event = entry.get_dagster_event() if entry.is_dagster_event else None
    if event is None or event.event_type_value not in STEP_KINDS:
        return
    row: dict[str, Any] = {"kind": event.event_type_value, "step": event.step_key,
                           "t": entry.timestamp}
    if event.event_type_value == "ASSET_MATERIALIZATION":
        materialization = event.event_specific_data.materialization
        row["asset"] = event.asset_key.to_user_string()
        row["partition"] = materialization.partition
        row["metadata"] = _numbers(dict(materialization.metadata or {}))
    EVENTS.append(row)


def keep_dbt_artefacts(target: Path) -> None:
    """Copy a dbt target folder's results and manifest (once) before anything removes it."""
    for call in DBT_CALLS:
        if call["target"] == str(target) and call["kept"] is None and target.exists():
            kept = KEEP_DIR / f"dbt_{DBT_CALLS.index(call)}"
            kept.mkdir(parents=True, exist_ok=True)
            for name in DBT_ARTEFACTS:
                if (target / name).exists():
                    shutil.copy2(target / name, kept / name)
            call["kept"] = str(kept)


def install_dbt_hooks() -> None:
    """Record each `DbtCliResource.cli` call, and keep its artefacts when its target folder is
    removed (the dbt step removes it in a ``finally``) or, failing that, at the end."""
    from dagster_dbt import DbtCliResource

    cli = DbtCliResource.cli

    def recorded_cli(self: Any, args: Any, *rest: Any, **kwargs: Any) -> Any:
        invocation = cli(self, args, *rest, **kwargs)
        DBT_CALLS.append({"args": list(args), "target": str(invocation.target_path),
                          "kept": None, "t": time.time()})
        return invocation

    DbtCliResource.cli = recorded_cli
    rmtree = shutil.rmtree

    def keeping_rmtree(path: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            keep_dbt_artefacts(Path(path))
        except Exception as exc:  # never fail the run over the benchmark's bookkeeping
            EVENTS.append({"kind": "PROBE_ERROR", "error": repr(exc), "t": time.time()})
        return rmtree(path, *args, **kwargs)

    shutil.rmtree = keeping_rmtree


def install_limiter_hook() -> None:
    """Record every grant of every client-side limiter (the time, the seconds it waited)."""
    import extractors.http as http

    limiter_class = getattr(http, "Limiter", None)
    # every grant goes through _acquire where it exists (acquire and slot); older checkouts
    # have acquire alone
    name = next((n for n in ("_acquire", "acquire") if hasattr(limiter_class, n)), None)
    if limiter_class is None or name is None:
        return
    acquire = getattr(limiter_class, name)

    def recorded_acquire(self: Any, *args: Any, **kwargs: Any) -> Any:
        granted = acquire(self, *args, **kwargs)
        waited = granted[0] if isinstance(granted, tuple) else granted
        held = waited if isinstance(waited, int | float) else -1.0
        ACQUIRES.setdefault(id(self), []).append([time.time(), held])
        return granted

    setattr(limiter_class, name, recorded_acquire)


def install_hooks(argv: list[str]) -> None:
    """Register every emulator started, tee the run's events to ``record_event``, record the
    limiters' grants and dbt's artefacts.

    The run's and dbt's hooks import Dagster and dagster-dbt (~1.5 s). Imported here, before
    the demo forks its emulators' child, they would delay the child's start and no longer
    overlap its generating the business (as they do in a demo): they go in where the demo
    imports them itself (``voronka.demo.import_the_pipeline``), when it has that step."""
    import emulators._base as base
    import voronka.demo as demo

    start = base.EmulatorServer.start

    def start_and_register(self: Any) -> Any:
        EMULATORS.append(self)
        return start(self)

    base.EmulatorServer.start = start_and_register
    install_child_emulator_report()
    install_limiter_hook()
    import_the_pipeline = getattr(demo, "import_the_pipeline", None)
    if import_the_pipeline is None or argv[:1] != ["demo"]:
        install_run_hooks()
        return

    def importing_and_hooking() -> None:
        import_the_pipeline()
        install_run_hooks()

    demo.import_the_pipeline = importing_and_hooking


def install_run_hooks() -> None:
    """Tee the run's events to ``record_event``; record dbt's calls and artefacts."""
    import voronka.runner as runner

    run_daily_refresh = runner.run_daily_refresh

    def probed(*args: Any, on_event: Any = None, **kwargs: Any) -> Any:
        def both(entry: Any) -> None:
            try:
                record_event(entry)
            except Exception as exc:  # never fail the run over the benchmark's bookkeeping
                EVENTS.append({"kind": "PROBE_ERROR", "error": repr(exc), "t": time.time()})
            if on_event is not None:
                on_event(entry)

        return run_daily_refresh(*args, on_event=both, **kwargs)

    runner.run_daily_refresh = probed
    install_dbt_hooks()


def child_report() -> Path:
    return KEEP_DIR.with_name(KEEP_DIR.name + ".child-emulators.json")


def install_child_emulator_report() -> None:
    """The demo's emulators run in a forked child: when it stops serving, it writes their
    request logs where ``main`` reads them (the start hook above is inherited by the fork)."""
    import voronka.demo as demo

    serve = getattr(demo, "_serve_until_the_pipe_closes", None)
    if serve is None:  # an earlier checkout: its emulators run in the demo's own process
        return

    def serve_and_report(*args: Any) -> None:
        try:
            serve(*args)
        finally:
            child_report().write_text(json.dumps(emulator_logs()))

    demo._serve_until_the_pipe_closes = serve_and_report


def limiters() -> dict[str, dict[str, Any]]:
    """The configured limiters by key: kind, rate per second, window or burst."""
    try:
        from extractors.http import _LIMITERS
    except ImportError:
        return {}
    out = {}
    for key, limiter in list(_LIMITERS.items()):
        out[key] = {"class": type(limiter).__name__, "grants": ACQUIRES.get(id(limiter), []),
                    **{name: getattr(limiter, name) for name in
                       ("rate_per_s", "per", "burst", "capacity", "window")
                       if isinstance(getattr(limiter, name, None), int | float)}}
    return out


def emulator_logs() -> list[dict[str, Any]]:
    return [{"name": type(e).__name__, "base_url": e.base_url,
             "log": [[r["t"], r["status"], r.get("fault")] for r in list(e.request_log)]}
            for e in EMULATORS]


def main() -> int:
    global KEEP_DIR
    out, argv = Path(sys.argv[1]), sys.argv[2:]
    KEEP_DIR = out.with_suffix("")
    install_hooks(argv)
    from voronka.cli import main as voronka_main

    started = time.time()
    code = voronka_main(argv)
    for call in DBT_CALLS:
        keep_dbt_artefacts(Path(call["target"]))
    report = child_report()
    served = json.loads(report.read_text()) if report.exists() else []
    report.unlink(missing_ok=True)
    modules = {name: getattr(sys.modules.get(name), "__file__", None)
               for name in ("voronka", "emulators", "extractors", "orchestration", "warehouse")}
    out.write_text(json.dumps({"argv": argv, "rc": code, "started": started, "ended": time.time(),
                               "modules": modules, "events": EVENTS,
                               "emulators": emulator_logs() + served, "limiters": limiters(),
                               "dbt_calls": DBT_CALLS}))
    return code


if __name__ == "__main__":
    # as the `voronka` command ends (voronka.cli.run): without the interpreter's teardown,
    # which would add ~2 s to the measured wall time that a user's demo does not pay
    exit_code = main()
    try:
        from voronka.cli import exit_without_teardown  # loaded by main() already
    except ImportError:  # a checkout from before it ("before" figures): what its run() did
        import atexit
        import os

        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(exit_code or 0)
    exit_without_teardown(exit_code)
