"""Ad spend by day: one daily partitioning (Moscow dates) shared by every ad platform.

Each ad platform's daily statistics asset is partitioned by day; a backfill over a date range
is a single run (``BackfillPolicy.single_run()``) in which the extractor pulls exactly that
range, in as few report requests as its chunking allows. Landing is idempotent by payload hash
and staging keeps the newest version of a (day, campaign) row, so re-pulling a day replaces its
numbers.

All ad platforms share ONE ``DailyPartitionsDefinition``: a Dagster asset job may hold
unpartitioned assets and assets of one partitions definition, not two, and ``daily_refresh``
holds them all. Its first day is the earliest ``*_START_DATE`` of the enabled platforms (a
platform that starts later clamps the range to its own start date and lands nothing for the
days before it). The last partition is yesterday in Moscow (a day is a partition once it is
over), stretched to the latest ``*_UNTIL_DATE`` when one is set in the future (a pinned demo
calendar).

Statistics keep changing after the day (Direct ~3 days, VK 7, Google 14, Meta 28: the
``settle_days`` defaults of the extractors), so the daily schedule re-pulls each platform's own
settling window ending yesterday (see ``orchestration.schedules``).

Gaps: every completed pull records its day range per platform and account
(``raw._ad_spend_pulls``). A day of ``*_START_DATE``..yesterday that no pull covered (a first
backfill that stopped part way, a start date moved earlier, a new account) is a gap: the run
range of that platform then starts at its earliest gap instead of its settling window, both in
``voronka run`` (``in_process_range``) and in the daily schedule (``platform_range``).
"""

import inspect
import os
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg

from extractors.google_ads import GoogleAdsSource
from extractors.meta_ads import MetaAdsSource
from extractors.vk_ads import VKAdsSource
from extractors.yandex_direct import YandexDirectSource
from warehouse.locking import writer_lock

Span = tuple[date, date]
MOSCOW_TZ = "Europe/Moscow"
MOSCOW = ZoneInfo(MOSCOW_TZ)
# Used only when no enabled platform names its first day.
FALLBACK_START = date(2024, 1, 1)

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def _settle_days(extractor: type) -> int:
    """The extractor's own default settling window (its constructor's ``settle_days``)."""
    return int(inspect.signature(extractor).parameters["settle_days"].default)


@dataclass(frozen=True)
class AdSpendPlatform:
    source: str
    entity: str  # the daily statistics entity (partitioned)
    settle_days: int
    start_env: str
    until_env: str


AD_SPEND_PLATFORMS: dict[str, AdSpendPlatform] = {
    p.source: p for p in (
        AdSpendPlatform("yandex_direct", "campaign_stats", _settle_days(YandexDirectSource),
                        "YANDEX_DIRECT_START_DATE", "YANDEX_DIRECT_UNTIL_DATE"),
        AdSpendPlatform("vk_ads", "ad_plan_stats", _settle_days(VKAdsSource),
                        "VK_ADS_START_DATE", "VK_ADS_UNTIL_DATE"),
        AdSpendPlatform("google_ads", "campaign_stats", _settle_days(GoogleAdsSource),
                        "GOOGLE_ADS_START_DATE", "GOOGLE_ADS_UNTIL_DATE"),
        AdSpendPlatform("meta_ads", "campaign_insights", _settle_days(MetaAdsSource),
                        "META_ADS_START_DATE", "META_ADS_UNTIL_DATE"),
    )
}


def is_ad_spend(source: str, entity: str) -> bool:
    platform = AD_SPEND_PLATFORMS.get(source)
    return platform is not None and platform.entity == entity


def moscow_today(now: datetime | None = None) -> date:
    return (now or datetime.now(MOSCOW)).astimezone(MOSCOW).date()


def _env_date(name: str) -> date | None:
    value = (os.environ.get(name) or "").strip()
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name} must be an ISO date (YYYY-MM-DD), got {value!r}") from None


def platform_start(source: str) -> date | None:
    return _env_date(AD_SPEND_PLATFORMS[source].start_env)


def platform_until(source: str) -> date | None:
    return _env_date(AD_SPEND_PLATFORMS[source].until_env)


def ad_spend_start(sources: list[str]) -> date:
    """First partition: the earliest configured start date of the given platforms."""
    starts = [d for d in (platform_start(s) for s in sources) if d is not None]
    return min(starts, default=FALLBACK_START)


def ad_spend_until(sources: list[str], today: date | None = None) -> date:
    """Last day to pull: the latest pinned ``*_UNTIL_DATE``, else yesterday in Moscow."""
    yesterday = (today or moscow_today()) - timedelta(days=1)
    untils = [platform_until(s) or yesterday for s in sources]
    return max(untils, default=yesterday)


def ad_spend_partitions(sources: list[str]) -> dg.DailyPartitionsDefinition:
    """The daily partitions every ad-spend asset of these platforms shares."""
    start = ad_spend_start(sources)
    yesterday = moscow_today() - timedelta(days=1)
    end_offset = max(0, (ad_spend_until(sources) - yesterday).days)
    return dg.DailyPartitionsDefinition(
        start_date=start.isoformat(), timezone=MOSCOW_TZ, end_offset=end_offset,
    )


def settling_window(source: str, day: date) -> tuple[date, date]:
    """The days a run on ``day`` re-pulls for ``source``: its settling window ending
    the day before."""
    last = day - timedelta(days=1)
    return last - timedelta(days=AD_SPEND_PLATFORMS[source].settle_days - 1), last


def range_tags(first: date, last: date) -> dict[str, str]:
    return {RANGE_START_TAG: first.isoformat(), RANGE_END_TAG: last.isoformat()}


def clamp_to_source(source: str, first: date, last: date) -> tuple[date, date]:
    """A partition range cut to what the platform is configured for: not before its
    ``*_START_DATE``, not after its ``*_UNTIL_DATE`` (first > last: nothing to pull)."""
    start, until = platform_start(source), platform_until(source)
    if start is not None:
        first = max(first, start)
    if until is not None:
        last = min(last, until)
    return first, last


def first_gap(start: date, end: date, pulled: Sequence[Span]) -> date | None:
    """The earliest day of ``start..end`` that no pulled span covers (None: no gap)."""
    day = start
    for first, last in sorted(pulled):
        if first > day:
            break
        day = max(day, last + timedelta(days=1))
    return day if day <= end else None


def platform_range(source: str, pulled: Sequence[Span], last: date,
                   first_partition: date) -> Span:
    """What one platform's run pulls up to ``last``: its settling window, widened back to the
    earliest day of its history (``*_START_DATE``..) that no pull covered."""
    start = platform_start(source) or first_partition
    settle_first = last - timedelta(days=AD_SPEND_PLATFORMS[source].settle_days - 1)
    settle_first = max(start, settle_first)
    gap = first_gap(start, settle_first - timedelta(days=1), pulled)
    return (gap or settle_first), last


def in_process_range(
    sources: list[str], pulled: Mapping[str, Sequence[Span]], today: date | None = None,
) -> Span | None:
    """The one partition range a single in-process run (``voronka demo``) pulls.

    Per platform: ``platform_range`` (its whole history on a fresh warehouse, its settling
    window once every earlier day was pulled, from its earliest gap otherwise), ending at its
    ``*_UNTIL_DATE`` or yesterday. The run takes the hull of them (one range per run): a
    platform with a shorter window re-pulls a few settled days more, which lands nothing new.
    None when there is nothing to pull.
    """
    if not sources:
        return None
    first_partition = ad_spend_start(sources)
    yesterday = (today or moscow_today()) - timedelta(days=1)
    spans = [platform_range(s, pulled.get(s, ()), platform_until(s) or yesterday,
                            first_partition) for s in sources]
    first, last = min(f for f, _ in spans), max(u for _, u in spans)
    return (first, last) if first <= last else None


def configured_account(source: str) -> str | None:
    """The account the platform's resource would pull now (None when it cannot say)."""
    from orchestration.resources import source_resources

    try:
        return str(source_resources()[source].source().account)
    except Exception:  # settings incomplete: compare with what any account pulled
        return None


def read_pulled_spans(sources: Sequence[str],
                      lock_timeout_s: float | None = None) -> dict[str, list[Span]]:
    """What each platform's configured account has pulled, from the warehouse ({} when it
    does not exist yet). ``lock_timeout_s`` bounds the wait for DuckDB's writer lock."""
    from voronka import settings

    wh = settings.WarehouseSettings.from_env().open()
    path = getattr(wh, "path", None)
    if path is not None and not path.exists():
        return {}
    lock = (writer_lock(path, lock_timeout_s) if path is not None and lock_timeout_s
            else nullcontext())
    with lock:
        return {s: wh.pulled_spans(s, AD_SPEND_PLATFORMS[s].entity, configured_account(s))
                for s in sources}


def record_pulled(warehouse: Any, source: str, entity: str, extractor: Any, run_id: str) -> None:
    """After a completed partitioned pull: its days are no gap any more."""
    first, last = extractor.start_date, extractor.until_date
    if first is not None and last is not None and first <= last:
        warehouse.mark_pulled(source, str(extractor.account), entity, first, last, run_id)
