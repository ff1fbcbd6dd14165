"""The daily refresh at 06:00 Moscow time: ad spend settling windows first, then the rest.

One partition range per run is all Dagster allows, and each ad platform settles over a
different number of days (Direct 3, VK 7, Google 14, Meta 28). So a tick of
``daily_refresh_0600_msk`` (job ``daily_refresh``) does not launch one run but:

1. one run per enabled ad platform, selecting only that platform's daily statistics asset,
   over its own settling window ending yesterday (``dagster/asset_partition_range_start`` /
   ``_end`` tags): one run, one report request per chunk, and the re-pulled days replace
   their numbers. A platform with days its account never pulled (``raw._ad_spend_pulls``:
   a stopped first backfill, a ``*_START_DATE`` moved earlier) runs from its earliest gap
   instead, so history fills itself; when the warehouse cannot be read within
   ``PULLS_READ_TIMEOUT_S`` the tick falls back to the settling windows;
2. the sensor ``daily_refresh_after_ad_spend`` sees when every ad-spend run of that day has
   succeeded and launches the unpartitioned rest of ``daily_refresh``: CRM and other raw
   entities → raw.contact_points → dbt build (tests as checks) → mart checks → publication.
   A failed ad-spend run holds the rest back (as a failed raw step skipped dbt before);
   re-executing it from the UI lets the rest go.

Runs carry ``voronka/daily_refresh_date`` (the tick's Moscow date) and ``voronka/stage``
(``ad_spend`` | ``rest``); ad-spend runs also ``voronka/ad_platform`` and
``voronka/ad_platforms`` (every platform the tick launched), which is how the sensor knows
when a day is complete. Concurrent runs queue on the warehouse writer lock.
"""

import os
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any

import dagster as dg

from orchestration.partitions import (
    MOSCOW,
    MOSCOW_TZ,
    Span,
    moscow_today,
    platform_range,
    range_tags,
    read_pulled_spans,
    settling_window,
)

SCHEDULE_NAME = "daily_refresh_0600_msk"
REST_SENSOR_NAME = "daily_refresh_after_ad_spend"
DAY_TAG = "voronka/daily_refresh_date"
STAGE_TAG = "voronka/stage"
PLATFORM_TAG = "voronka/ad_platform"
PLATFORMS_TAG = "voronka/ad_platforms"
AD_SPEND_STAGE = "ad_spend"
REST_STAGE = "rest"
# How far back the sensor looks for a day whose ad-spend runs finished (a run re-executed
# the next morning still releases its day).
SENSOR_LOOKBACK = timedelta(days=3)
# A tick must not hang on a run holding the DuckDB writer lock (ticks time out at 60 s).
PULLS_READ_TIMEOUT_S = 20.0


def ad_spend_run_requests(
    day: date,
    ad_spend_keys: Mapping[str, Sequence[dg.AssetKey]],
    first_partition: date,
    pulled: Mapping[str, Sequence[Span]] | None = None,
) -> list[dg.RunRequest]:
    """One run per platform over its settling window ending the day before ``day``, widened
    back to its earliest gap when ``pulled`` (the spans pulled so far) is known."""
    windows = {}
    for platform in ad_spend_keys:
        first, last = settling_window(platform, day)
        if pulled is not None:
            first, last = platform_range(platform, pulled.get(platform, ()), last,
                                         first_partition)
        if last >= first_partition:
            windows[platform] = (max(first, first_partition), last)
    platforms = ",".join(windows)
    return [
        dg.RunRequest(
            run_key=f"{day.isoformat()}:{AD_SPEND_STAGE}:{platform}",
            asset_selection=list(ad_spend_keys[platform]),
            tags={**range_tags(first, last), DAY_TAG: day.isoformat(),
                  STAGE_TAG: AD_SPEND_STAGE, PLATFORM_TAG: platform, PLATFORMS_TAG: platforms},
        )
        for platform, (first, last) in windows.items()
    ]


def rest_run_request(day: str, rest_keys: Sequence[dg.AssetKey]) -> dg.RunRequest:
    return dg.RunRequest(run_key=f"{day}:{REST_STAGE}", asset_selection=list(rest_keys),
                         tags={DAY_TAG: day, STAGE_TAG: REST_STAGE})


def schedule_default_status() -> dg.DefaultScheduleStatus:
    """On unless VORONKA_SCHEDULE=off: a deployment exists to refresh every morning. It fires
    only while dagster-daemon runs (`dagster dev` starts one); the UI can still stop it."""
    off = os.environ.get("VORONKA_SCHEDULE", "on").strip().lower() in ("off", "0", "false")
    return dg.DefaultScheduleStatus.STOPPED if off else dg.DefaultScheduleStatus.RUNNING


def pulled_or_none(platforms: list[str], log: Any) -> dict[str, list[Span]] | None:
    """The spans each platform pulled so far; None (settling windows only, gaps wait for the
    next tick) when the warehouse cannot be read now."""
    if not platforms:
        return {}
    try:
        return read_pulled_spans(platforms, PULLS_READ_TIMEOUT_S)
    except Exception as exc:  # a busy or unreachable warehouse must not cost the day's tick
        log.warning(f"ad spend gaps not checked (warehouse unreadable: {type(exc).__name__});"
                    " pulling the settling windows only")
        return None


def build_daily_schedule(
    job: Any,  # the (unresolved) daily_refresh asset job
    ad_spend_keys: Mapping[str, Sequence[dg.AssetKey]],
    rest_keys: Sequence[dg.AssetKey],
    first_partition: date,
) -> dg.ScheduleDefinition:
    @dg.schedule(
        name=SCHEDULE_NAME,
        job=job,
        cron_schedule="0 6 * * *",
        execution_timezone=MOSCOW_TZ,
        default_status=schedule_default_status(),
        description="Every day at 06:00 Moscow time: each ad platform's settling window "
                    "ending yesterday (one run per platform), then the sensor "
                    f"{REST_SENSOR_NAME} runs the rest of daily_refresh.",
    )
    def daily_refresh_schedule(context: dg.ScheduleEvaluationContext) -> Iterator[dg.RunRequest]:
        day = moscow_today(context.scheduled_execution_time)
        pulled = pulled_or_none(list(ad_spend_keys), context.log)
        requests = ad_spend_run_requests(day, ad_spend_keys, first_partition, pulled)
        yield from requests
        if not requests:  # nothing to wait for
            yield rest_run_request(day.isoformat(), rest_keys)

    return daily_refresh_schedule


def days_ready_for_rest(runs: Sequence[dg.DagsterRun]) -> list[str]:
    """Days whose every ad-spend platform has a successful run (a re-execution counts)."""
    by_day: dict[str, list[dg.DagsterRun]] = defaultdict(list)
    for run in runs:
        if run.tags.get(STAGE_TAG) == AD_SPEND_STAGE and run.tags.get(DAY_TAG):
            by_day[run.tags[DAY_TAG]].append(run)
    ready = []
    for day, day_runs in sorted(by_day.items()):
        expected = {p for r in day_runs for p in r.tags.get(PLATFORMS_TAG, "").split(",") if p}
        succeeded = {r.tags.get(PLATFORM_TAG) for r in day_runs
                     if r.status == dg.DagsterRunStatus.SUCCESS}
        if expected and expected <= succeeded:
            ready.append(day)
    return ready


def build_rest_sensor(
    job: Any, rest_keys: Sequence[dg.AssetKey],
) -> dg.SensorDefinition:
    @dg.sensor(
        name=REST_SENSOR_NAME,
        job=job,
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Runs the unpartitioned rest of daily_refresh (CRM raw, contact points, "
                    "dbt, checks, publication) once every ad-spend run of a daily tick has "
                    "succeeded.",
    )
    def daily_refresh_after_ad_spend(
        context: dg.SensorEvaluationContext,
    ) -> Iterator[dg.RunRequest | dg.SkipReason]:
        since = datetime.now(MOSCOW) - SENSOR_LOOKBACK
        runs = context.instance.get_runs(filters=dg.RunsFilter(
            job_name=job.name, tags={STAGE_TAG: AD_SPEND_STAGE}, created_after=since))
        launched = context.cursor or ""
        ready = [d for d in days_ready_for_rest(runs) if d > launched]
        if not ready:
            yield dg.SkipReason("no day with all its ad-spend runs succeeded and the rest "
                                "not launched yet")
            return
        for day in ready:
            yield rest_run_request(day, rest_keys)
        context.update_cursor(ready[-1])

    return daily_refresh_after_ad_spend
