"""Issue 12 item 3: ad-spend days that no run pulled (a first backfill that stopped part way, a
``*_START_DATE`` moved earlier) are found and backfilled by the next run and the next tick."""

import os
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from _support import daily_campaign_rows, scratch_warehouse
from conftest import BACKENDS

from emulators import YandexDirectEmulator
from orchestration.partitions import (
    MOSCOW,
    RANGE_END_TAG,
    RANGE_START_TAG,
    first_gap,
    in_process_range,
    range_tags,
)
from orchestration.schedules import PLATFORM_TAG, SCHEDULE_NAME
from voronka.runner import _pulled_spans
from warehouse.duckdb_backend import DuckDBWarehouse

TOKEN = "y0_gaps-test-token-secret-77"
LOGIN = "voronka-gaps"
START = date(2026, 1, 1)
DAYS = 60
LAST = START + timedelta(days=DAYS - 1)
CAMPAIGNS = {70012345: "Brand_Search", 70012346: "Generic"}
DIRECT = dg.AssetKey(["raw", "yandex_direct__campaign_stats"])
TABLE = "raw.yandex_direct__campaign_stats"
CLEARED = ("VK_ADS_CLIENT_ID", "GOOGLE_ADS_CUSTOMER_ID", "META_ADS_ACCOUNT_ID",
           "VORONKA_FILES_DIR", "BITRIX24_WEBHOOK_URL", "BITRIX24_CLIENT_ID",
           "BITRIX24_PORTAL_URL", "BITRIX24_CLIENT_SECRET", "BITRIX24_REFRESH_TOKEN",
           *(f"{p}_{k}_DATE" for p in ("YANDEX_DIRECT", "VK_ADS", "GOOGLE_ADS", "META_ADS")
             for k in ("START", "UNTIL")))


@pytest.fixture
def direct() -> Iterator[YandexDirectEmulator]:
    rows = daily_campaign_rows(START, DAYS, CAMPAIGNS)
    emulator = YandexDirectEmulator(rows, token=TOKEN, client_login=LOGIN, offline_polls=0,
                                    retry_in_s=0).start()
    yield emulator
    emulator.stop()


@pytest.fixture
def env(direct: YandexDirectEmulator, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> DuckDBWarehouse:
    for var in CLEARED:
        monkeypatch.delenv(var, raising=False)
    if not os.environ.get("AMOCRM_SUBDOMAIN"):
        monkeypatch.setenv("AMOCRM_SUBDOMAIN", "acme")
    monkeypatch.setenv("VORONKA_WAREHOUSE", "duckdb")
    monkeypatch.setenv("VORONKA_DUCKDB_PATH", str(tmp_path / "warehouse.duckdb"))
    monkeypatch.setenv("VORONKA_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("YANDEX_DIRECT_BASE_URL", direct.base_url)
    monkeypatch.setenv("YANDEX_DIRECT_TOKEN", TOKEN)
    monkeypatch.setenv("YANDEX_DIRECT_CLIENT_LOGIN", LOGIN)
    monkeypatch.setenv("YANDEX_DIRECT_UNTIL_DATE", LAST.isoformat())
    return DuckDBWarehouse(tmp_path / "warehouse.duckdb")


def _landed_days(wh: DuckDBWarehouse) -> list[str]:
    if "yandex_direct__campaign_stats" not in wh.list_tables("raw"):
        return []
    return wh.query_df(f"select distinct payload->>'Date' as d from {TABLE} order by 1").d.tolist()


def _days(first: date, last: date) -> list[str]:
    return [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


def _run_like_voronka_run(instance: dg.DagsterInstance) -> tuple[date, date]:
    """The ad-spend part of `voronka run`: the range the runner computes, pulled in one run."""
    from orchestration.definitions import build_defs

    span = in_process_range(["yandex_direct"], _pulled_spans(["yandex_direct"]))
    assert span is not None
    job = build_defs().resolve_job_def("daily_refresh")
    result = job.execute_in_process(instance=instance, asset_selection=[DIRECT],
                                    tags=range_tags(*span), raise_on_error=False)
    assert result.success
    return span


def test_first_gap_is_the_earliest_day_no_pull_covered() -> None:
    d = date(2026, 1, 1)
    assert first_gap(d, d + timedelta(days=9), []) == d
    assert first_gap(d, d + timedelta(days=9), [(d, d + timedelta(days=9))]) is None
    pulled = [(d + timedelta(days=5), d + timedelta(days=9)), (d, d + timedelta(days=2))]
    assert first_gap(d, d + timedelta(days=9), pulled) == d + timedelta(days=3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_pulled_spans_are_kept_per_platform_and_account(backend: str, tmp_path: Path) -> None:
    with scratch_warehouse(backend, tmp_path, "pulls") as (wh, _env):
        assert wh.pulled_spans("yandex_direct", "campaign_stats") == []  # read creates nothing
        wh.mark_pulled("yandex_direct", LOGIN, "campaign_stats", date(2026, 1, 5),
                       date(2026, 1, 9), "r1")
        wh.mark_pulled("yandex_direct", LOGIN, "campaign_stats", date(2026, 1, 1),
                       date(2026, 1, 2), "r2")
        wh.mark_pulled("yandex_direct", "other", "campaign_stats", date(2026, 1, 3),
                       date(2026, 1, 4), "r3")
        mine = wh.pulled_spans("yandex_direct", "campaign_stats", LOGIN)
        assert mine == [(date(2026, 1, 1), date(2026, 1, 2)), (date(2026, 1, 5), date(2026, 1, 9))]
        assert first_gap(date(2026, 1, 1), date(2026, 1, 9), mine) == date(2026, 1, 3)
        assert len(wh.pulled_spans("yandex_direct", "campaign_stats")) == 3
        assert wh.pulled_spans("vk_ads", "ad_plan_stats") == []
        assert "_ad_spend_pulls" not in wh.list_tables("raw")  # bookkeeping, not a source


def test_start_date_moved_earlier_and_stopped_backfill_are_filled(
    env: DuckDBWarehouse, monkeypatch: pytest.MonkeyPatch,
) -> None:
    later = START + timedelta(days=20)
    monkeypatch.setenv("YANDEX_DIRECT_START_DATE", later.isoformat())
    with dg.DagsterInstance.ephemeral() as instance:
        # a first backfill that fails records no pulled days
        from orchestration.definitions import build_defs
        monkeypatch.setenv("YANDEX_DIRECT_TOKEN", "y0_revoked")
        job = build_defs().resolve_job_def("daily_refresh")
        failed = job.execute_in_process(instance=instance, asset_selection=[DIRECT],
                                        tags=range_tags(later, LAST), raise_on_error=False)
        assert not failed.success
        assert env.pulled_spans("yandex_direct", "campaign_stats") == []
        monkeypatch.setenv("YANDEX_DIRECT_TOKEN", TOKEN)

        assert _run_like_voronka_run(instance) == (later, LAST)  # the whole history
        assert _landed_days(env) == _days(later, LAST)
        assert env.pulled_spans("yandex_direct", "campaign_stats", LOGIN) == [(later, LAST)]

        # the start date moves 20 days earlier: the next run reaches back to it
        monkeypatch.setenv("YANDEX_DIRECT_START_DATE", START.isoformat())
        assert _run_like_voronka_run(instance) == (START, LAST)
        assert _landed_days(env) == _days(START, LAST)
        # ... and the one after that is back to the settling window
        assert _run_like_voronka_run(instance)[0] == LAST - timedelta(days=2)
    assert env.count_rows(TABLE) == DAYS * len(CAMPAIGNS)  # every day once per campaign


def test_schedule_tick_backfills_from_the_earliest_gap(
    env: DuckDBWarehouse, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from orchestration.definitions import build_defs

    monkeypatch.setenv("YANDEX_DIRECT_START_DATE", START.isoformat())
    tick = datetime(2026, 3, 2, 6, 0, tzinfo=MOSCOW)  # yesterday = 2026-03-01

    def yandex_range() -> tuple[str, str]:
        schedule = build_defs().resolve_schedule_def(SCHEDULE_NAME)
        with dg.DagsterInstance.ephemeral() as instance:
            context = dg.build_schedule_context(instance=instance, scheduled_execution_time=tick)
            requests = schedule.evaluate_tick(context).run_requests or []
        [request] = [r for r in requests if r.tags[PLATFORM_TAG] == "yandex_direct"]
        return request.tags[RANGE_START_TAG], request.tags[RANGE_END_TAG]

    # days 1..9 and 20.. were pulled (a stopped backfill, then daily ticks): 10..19 are missing
    env.mark_pulled("yandex_direct", LOGIN, "campaign_stats", START,
                    START + timedelta(days=8), "r1")
    env.mark_pulled("yandex_direct", LOGIN, "campaign_stats", START + timedelta(days=19),
                    date(2026, 2, 28), "r2")
    assert yandex_range() == ("2026-01-10", "2026-03-01")
    # another account's pulls do not count for this one
    env.mark_pulled("yandex_direct", "someone-else", "campaign_stats", START,
                    date(2026, 2, 28), "r3")
    assert yandex_range() == ("2026-01-10", "2026-03-01")
    env.mark_pulled("yandex_direct", LOGIN, "campaign_stats", START, date(2026, 3, 1), "r4")
    assert yandex_range() == ("2026-02-27", "2026-03-01")  # the settling window (3 days)
