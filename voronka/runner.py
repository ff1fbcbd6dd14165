"""Run the daily job in-process (the CLI path; `dagster dev` runs the same job).

One run of ``daily_refresh`` does everything: ad spend is pulled over one partition range
(``orchestration.partitions.in_process_range``: the whole ``*_START_DATE``..``*_UNTIL_DATE``
history on a fresh warehouse, the settling windows after that, widened back to the earliest
day no run has pulled yet), the unpartitioned rest as usual. The 06:00 schedule splits the
same work into per-platform runs (see
``orchestration.schedules``).
"""

from __future__ import annotations

import gc
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

import dagster as dg


def _pulled_spans(platforms: list[str]) -> dict[str, list[tuple[date, date]]]:
    from orchestration.partitions import read_pulled_spans

    try:
        return read_pulled_spans(platforms)
    except Exception:  # no readable warehouse yet: a fresh one, pull the whole history
        return {}


def _clean_stale_temporaries() -> None:
    """A run killed during publication left its half-written copy: remove it on start."""
    from voronka import settings

    clean = getattr(settings.WarehouseSettings.from_env().open(), "clean_stale_temporaries",
                    None)
    if clean is not None:
        clean()


# Dagster's switch for one ASSET_MATERIALIZATION_PLANNED event per asset (with the partition
# range) instead of one per partition
PLANNED_SUBSET_ENV = "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"


@contextmanager
def one_planned_event_per_asset(instance: dg.DagsterInstance) -> Iterator[None]:
    """A cold run's two-year ad-spend backfill plans 2,920 partitions: Dagster logs a planned
    event for each before the first step starts (~3 s). An in-memory instance (the demo, a
    run without history) keeps no partition health for a UI to show, so there one event per
    asset carries the range. A persistent instance keeps Dagster's per-partition events, which
    mark the partitions failed when the run fails."""
    if not instance.is_ephemeral or PLANNED_SUBSET_ENV in os.environ:
        yield
        return
    os.environ[PLANNED_SUBSET_ENV] = "1"
    try:
        yield
    finally:
        os.environ.pop(PLANNED_SUBSET_ENV, None)


@contextmanager
def loaded_objects_frozen() -> Iterator[None]:
    """Keep what is loaded before the run (Dagster, dbt, Great Expectations, pandas, the
    definitions: millions of objects) out of the garbage collector's full passes during the
    run. Each pass walked all of them: ~5 s of a cold demo's interpreter time, with every
    thread of the run waiting. They are handed back to the collector after the run."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def run_daily_refresh(
    instance: dg.DagsterInstance | None = None,
    ad_spend_range: tuple[date, date] | None = None,
    on_event: Callable[[Any], None] | None = None,
) -> dg.ExecuteInProcessResult:
    """Build the Definitions now (they read the environment) and execute `daily_refresh`
    in-process, ad spend over ``ad_spend_range`` (default: see the module docstring).
    ``on_event`` sees every event of the run as it happens (the progress display)."""
    from orchestration.definitions import ad_spend_platforms_enabled, build_defs
    from orchestration.executor import execute_in_process_threaded
    from orchestration.partitions import in_process_range, range_tags

    _clean_stale_temporaries()
    defs = build_defs()
    job = defs.resolve_job_def("daily_refresh")
    platforms = ad_spend_platforms_enabled()
    span = ad_spend_range or in_process_range(platforms, _pulled_spans(platforms))
    if job.partitions_def is None:  # no ad platform configured: nothing is partitioned
        span = None
    kwargs: dict = {}
    if span is not None:
        kwargs["tags"] = range_tags(*span)
    elif job.partitions_def is not None:  # nothing to pull: the unpartitioned assets only
        graph = defs.resolve_asset_graph()
        kwargs["asset_selection"] = [k for k in graph.materializable_asset_keys
                                     if graph.get(k).partitions_def is None]
    instance = instance or dg.DagsterInstance.get()
    run_id = str(uuid.uuid4())
    if on_event is not None:
        instance.add_event_listener(run_id, on_event)
    with one_planned_event_per_asset(instance), loaded_objects_frozen():
        return execute_in_process_threaded(job, instance=instance, run_id=run_id, **kwargs)
