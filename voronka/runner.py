"""Run the daily job in-process (the CLI path; `dagster dev` runs the same job)."""

from __future__ import annotations

import dagster as dg


def run_daily_refresh(instance: dg.DagsterInstance | None = None) -> dg.ExecuteInProcessResult:
    """Build the Definitions now (they read the environment) and execute `daily_refresh`."""
    from expectations import warm_up_in_background
    from orchestration.definitions import build_defs

    warm_up_in_background()
    job = build_defs().resolve_job_def("daily_refresh")
    return job.execute_in_process(
        instance=instance or dg.DagsterInstance.get(), raise_on_error=False
    )
