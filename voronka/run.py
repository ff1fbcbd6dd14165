"""`voronka run`: the daily job against the configured accounts, headless.

The same job as the schedule and the demo (``daily_refresh``), run in-process against whatever
sources the environment (or a ``.env`` file) configures. The terminal shows each step as it
finishes; the full Dagster and dbt log goes to a file; the summary names failed steps and
checks, and the exit code is non-zero when anything failed.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from datetime import date
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from voronka import settings

if TYPE_CHECKING:
    import dagster as dg


class RunSetupError(ValueError):
    """A setting or option that makes the run impossible; the message says which and why."""


def load_env_file(path: Path | None = None) -> Path | None:
    """Read ``path`` (default: ``.env`` in the working directory, else in the repository) into
    the environment without overriding variables already set. Returns the file read."""
    from dotenv import load_dotenv

    if path is not None:
        if not path.is_file():
            raise RunSetupError(f"--env-file {path}: no such file")
        candidates = [path]
    else:
        candidates = [Path.cwd() / ".env", settings.REPO_ROOT / ".env"]
    for candidate in candidates:
        if candidate.is_file():
            load_dotenv(candidate, override=False)
            return candidate
    return None


def backfill_range(first: date | None, last: date | None,
                   platforms: list[str]) -> tuple[date, date] | None:
    """The ad-spend days ``--from/--until`` ask for, checked against the partitions (the
    earliest ``*_START_DATE`` .. yesterday in Moscow or the latest ``*_UNTIL_DATE``)."""
    from orchestration.partitions import ad_spend_start, ad_spend_until

    if first is None and last is None:
        return None
    if not platforms:
        raise RunSetupError("--from/--until choose ad-spend days, but no ad platform is "
                            "configured (set e.g. YANDEX_DIRECT_CLIENT_LOGIN)")
    earliest, latest = ad_spend_start(platforms), ad_spend_until(platforms)
    first, last = first or earliest, last or latest
    if first > last:
        raise RunSetupError(f"--from {first} is after --until {last}")
    if first < earliest:
        raise RunSetupError(f"--from {first} is before the earliest ad-platform start date "
                            f"({earliest}); set that platform's *_START_DATE earlier")
    if last > latest:
        raise RunSetupError(f"--until {last} is after the last complete day ({latest})")
    return first, last


def prepare_warehouse() -> None:
    """PostgreSQL: create the configured database if missing, or say why it cannot be reached
    (before Dagster and dbt bury the reason in a stack trace)."""
    conf = settings.WarehouseSettings.from_env()
    if conf.kind != "postgres":
        return
    import psycopg2

    try:
        conf.open().ensure_database()
    except psycopg2.Error as exc:
        reason = str(exc).strip().splitlines()[0]
        raise RunSetupError(f"PostgreSQL at {conf.pg_host}:{conf.pg_port} (user {conf.pg_user})"
                            f" cannot be used: {reason}") from None


def configured_sources() -> list[str]:
    from orchestration.assets.raw import enabled_raw_entities

    return sorted(enabled_raw_entities())


def run_instance(history: bool) -> dg.DagsterInstance:
    """The persistent instance in DAGSTER_HOME (the run shows in `dagster dev`), or an
    ephemeral one."""
    import dagster as dg

    from voronka.demo import ensure_dagster_home

    if not history:
        from voronka.instance import in_memory_instance

        return in_memory_instance()
    ensure_dagster_home()
    return dg.DagsterInstance.get()


def execute_with_progress(
    instance: dg.DagsterInstance, log_path: Path, terminal: IO[str],
    ad_spend_range: tuple[date, date] | None = None,
    also: Callable[[Any], None] | None = None,
) -> dg.ExecuteInProcessResult:
    """Run ``daily_refresh`` with the live step display on ``terminal`` and Dagster's and
    dbt's own output in ``log_path``; ``also`` sees every event after the display."""
    from voronka.progress import RunProgress
    from voronka.runner import run_daily_refresh

    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log, RunProgress.to_stream(terminal) as progress, \
            redirect_stdout(log), redirect_stderr(log):
        def on_event(entry: Any) -> None:
            progress.on_event(entry)
            if also is not None:
                also(entry)

        return run_daily_refresh(instance=instance, ad_spend_range=ad_spend_range,
                                 on_event=on_event)


def failed_blocking_checks(result: dg.ExecuteInProcessResult) -> int:
    import dagster as dg

    return sum(1 for e in result.get_asset_check_evaluations()
               if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR)


def alert_failure(instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult) -> None:
    """A headless run may have no daemon to run the alert sensor: post the failure here (the
    run is tagged once posted, so the sensor never posts it twice)."""
    from orchestration.alerts import AlertDeliveryError, destinations, send_failure_alert

    try:
        if destinations():
            reached = send_failure_alert(instance, result.dagster_run)
            if reached:
                print(f"Failure alert sent to {', '.join(reached)}.")
    except (AlertDeliveryError, ValueError) as exc:
        print(f"voronka run: the failure alert was not delivered: {exc}", file=sys.stderr)


def run_configured(
    first: date | None = None, last: date | None = None, as_of: date | None = None,
    env_file: Path | None = None, history: bool = True,
) -> int:
    """`voronka run`: returns the process exit code (0 all good, 1 a step or a blocking check
    failed, 2 the run could not start)."""
    from voronka.summary import RUN_UI_HINT, print_dashboard, print_summary, published_by

    started = time.monotonic()
    terminal = sys.stdout
    try:
        env_path = load_env_file(env_file)
        if as_of is not None:
            os.environ["VORONKA_AS_OF_DATE"] = as_of.isoformat()
        sources = configured_sources()
        if not sources:
            raise RunSetupError("no source is configured: set the variables of at least one "
                                "(see .env.example and the README's 'Run it for real')")
        prepare_warehouse()
        from orchestration.definitions import ad_spend_platforms_enabled

        span = backfill_range(first, last, ad_spend_platforms_enabled())
    except (RunSetupError, ValueError) as exc:
        print(f"voronka run: {exc}", file=sys.stderr)
        return 2
    log_path = settings.log_dir() / "run.log"
    print(f"voronka run: sources {', '.join(sources)}"
          + (f" (settings from {env_path})" if env_path else "")
          + (f"; ad spend {span[0]}..{span[1]}" if span else "")
          + f"\n  full Dagster and dbt log: {log_path}", flush=True)
    instance = run_instance(history)
    result = execute_with_progress(instance, log_path, terminal, span)
    print_summary(result, wall_time_s=time.monotonic() - started, log_path=log_path,
                  ui_hint=RUN_UI_HINT)
    print_dashboard(published=published_by(result))
    if not result.success:
        alert_failure(instance, result)
    return 0 if result.success and not failed_blocking_checks(result) else 1

