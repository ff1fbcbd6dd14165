"""Ad spend partitioned by day: definitions, single-run backfills, the daily schedule's ranges,
and the optional sources' wiring (Bitrix24, the new amoCRM entities)."""

import json
import os
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from _support import daily_campaign_rows

from emulators import YandexDirectEmulator
from orchestration.partitions import (
    AD_SPEND_PLATFORMS,
    MOSCOW,
    RANGE_END_TAG,
    RANGE_START_TAG,
    in_process_range,
    range_tags,
)
from orchestration.schedules import (
    AD_SPEND_STAGE,
    DAY_TAG,
    PLATFORM_TAG,
    PLATFORMS_TAG,
    REST_SENSOR_NAME,
    SCHEDULE_NAME,
    STAGE_TAG,
    days_ready_for_rest,
)
from warehouse.duckdb_backend import DuckDBWarehouse

TOKEN = "y0_partitions-test-token-secret-42"
LOGIN = "voronka-partitions"
START = date(2026, 1, 1)
CAMPAIGNS = {70012345: "Brand_Search", 70012346: "Generic", 70012347: "Retargeting"}
DIRECT = dg.AssetKey(["raw", "yandex_direct__campaign_stats"])
AD_KEYS = {
    "yandex_direct": "raw/yandex_direct__campaign_stats",
    "vk_ads": "raw/vk_ads__ad_plan_stats",
    "google_ads": "raw/google_ads__campaign_stats",
    "meta_ads": "raw/meta_ads__campaign_insights",
}
OPTIONAL_VARS = (
    "VK_ADS_CLIENT_ID", "GOOGLE_ADS_CUSTOMER_ID", "META_ADS_ACCOUNT_ID", "VORONKA_FILES_DIR",
    "BITRIX24_WEBHOOK_URL", "BITRIX24_CLIENT_ID", "BITRIX24_PORTAL_URL",
    "BITRIX24_CLIENT_SECRET", "BITRIX24_REFRESH_TOKEN", "BITRIX24_ACCOUNT",
)
DATE_VARS = tuple(f"{p}_{kind}_DATE" for p in ("YANDEX_DIRECT", "VK_ADS", "GOOGLE_ADS",
                                                "META_ADS") for kind in ("START", "UNTIL"))


# amoCRM and Direct join the graph by their settings too (tests/test_sources_by_config.py)
AMOCRM_AND_DIRECT = {"AMOCRM_SUBDOMAIN": "acme", "YANDEX_DIRECT_CLIENT_LOGIN": "acme"}


def build(monkeypatch: pytest.MonkeyPatch, **env: str) -> dg.Definitions:
    from orchestration.definitions import build_defs

    for var in (*OPTIONAL_VARS, *DATE_VARS):
        monkeypatch.delenv(var, raising=False)
    for var, value in AMOCRM_AND_DIRECT.items():
        if not os.environ.get(var):
            monkeypatch.setenv(var, value)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    return build_defs()


ALL_ADS = {"VK_ADS_CLIENT_ID": "vk", "GOOGLE_ADS_CUSTOMER_ID": "1234567890",
           "META_ADS_ACCOUNT_ID": "act_1", "VORONKA_FILES_DIR": "/tmp/voronka-files",
           "YANDEX_DIRECT_START_DATE": "2025-03-01", "VK_ADS_START_DATE": "2025-06-01",
           "GOOGLE_ADS_START_DATE": "2025-02-01", "META_ADS_START_DATE": "2025-03-01"}


def test_ad_spend_assets_are_daily_partitioned_with_single_run_backfills(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    defs = build(monkeypatch, **ALL_ADS)
    graph = defs.resolve_asset_graph()
    partitions = {graph.get(dg.AssetKey.from_user_string(k)).partitions_def
                  for k in AD_KEYS.values()}
    [shared] = partitions  # one definition, so one job can hold them with everything else
    assert isinstance(shared, dg.DailyPartitionsDefinition)
    assert shared.timezone == "Europe/Moscow"
    assert shared.start.date() == date(2025, 2, 1)  # the earliest platform start
    for key in AD_KEYS.values():
        node = graph.get(dg.AssetKey.from_user_string(key))
        assert node.backfill_policy == dg.BackfillPolicy.single_run()
    for key in ("raw/vk_ads__ad_plans", "raw/files__ad_spend", "raw/amocrm__leads",
                "raw/contact_points", "marts/fct_orders", "published/marts"):
        assert graph.get(dg.AssetKey.from_user_string(key)).partitions_def is None
    job = defs.resolve_job_def("daily_refresh")
    assert job.partitions_def == shared
    # dbt sources still resolve to the (partitioned) raw assets
    staging = graph.get(dg.AssetKey(["staging", "stg_yandex_direct__campaign_stats"]))
    assert DIRECT in staging.parent_keys


def test_schedule_tick_requests_each_platforms_settling_window(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    defs = build(monkeypatch, **ALL_ADS)
    # every earlier day was pulled: no gap to backfill (tests/test_ad_spend_gaps.py)
    monkeypatch.setenv("VORONKA_DUCKDB_PATH", str(tmp_path / "warehouse.duckdb"))
    wh = DuckDBWarehouse(tmp_path / "warehouse.duckdb")
    for source, platform in AD_SPEND_PLATFORMS.items():
        wh.mark_pulled(source, "any", platform.entity, date(2025, 1, 1), date(2026, 3, 14), "r")
    schedule = defs.resolve_schedule_def(SCHEDULE_NAME)
    assert schedule.job_name == "daily_refresh"
    tick = datetime(2026, 3, 15, 6, 0, tzinfo=MOSCOW)
    with dg.DagsterInstance.ephemeral() as instance:
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=tick)
        requests = schedule.evaluate_tick(context).run_requests
    assert requests is not None
    got = {r.tags[PLATFORM_TAG]: (r.tags[RANGE_START_TAG], r.tags[RANGE_END_TAG],
                                  [k.to_user_string() for k in r.asset_selection or []])
           for r in requests}
    assert got == {
        "yandex_direct": ("2026-03-12", "2026-03-14", [AD_KEYS["yandex_direct"]]),
        "vk_ads": ("2026-03-08", "2026-03-14", [AD_KEYS["vk_ads"]]),
        "google_ads": ("2026-03-01", "2026-03-14", [AD_KEYS["google_ads"]]),
        "meta_ads": ("2026-02-15", "2026-03-14", [AD_KEYS["meta_ads"]]),
    }
    assert {p: AD_SPEND_PLATFORMS[p].settle_days for p in got} == {
        "yandex_direct": 3, "vk_ads": 7, "google_ads": 14, "meta_ads": 28}
    for r in requests:
        assert r.tags[DAY_TAG] == "2026-03-15" and r.tags[STAGE_TAG] == AD_SPEND_STAGE
        assert set(r.tags[PLATFORMS_TAG].split(",")) == set(AD_KEYS)
    assert len({r.run_key for r in requests}) == 4


def test_schedule_is_on_by_default_and_can_be_switched_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A deployment refreshes every morning without a click in the UI; VORONKA_SCHEDULE=off
    leaves it stopped (the demo's `voronka dev` or a staging copy)."""
    defs = build(monkeypatch, **ALL_ADS)
    schedule = defs.resolve_schedule_def(SCHEDULE_NAME)
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert defs.resolve_sensor_def(REST_SENSOR_NAME).default_status == \
        dg.DefaultSensorStatus.RUNNING
    monkeypatch.setenv("VORONKA_SCHEDULE", "off")
    defs = build(monkeypatch, **ALL_ADS)
    assert defs.resolve_schedule_def(SCHEDULE_NAME).default_status == \
        dg.DefaultScheduleStatus.STOPPED


def _run(day: str, platform: str, status: dg.DagsterRunStatus) -> dg.DagsterRun:
    return dg.DagsterRun(job_name="daily_refresh", status=status, tags={
        DAY_TAG: day, STAGE_TAG: AD_SPEND_STAGE, PLATFORM_TAG: platform,
        PLATFORMS_TAG: "yandex_direct,vk_ads"})


def test_rest_runs_once_every_ad_spend_run_of_the_day_succeeded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ok, failed = dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE
    assert days_ready_for_rest([_run("2026-03-15", "yandex_direct", ok),
                                _run("2026-03-15", "vk_ads", failed)]) == []
    assert days_ready_for_rest([_run("2026-03-15", "yandex_direct", ok),
                                _run("2026-03-15", "vk_ads", failed),
                                _run("2026-03-15", "vk_ads", ok)]) == ["2026-03-15"]

    defs = build(monkeypatch, VK_ADS_CLIENT_ID="vk")
    sensor = defs.resolve_sensor_def(REST_SENSOR_NAME)
    with dg.DagsterInstance.ephemeral() as instance:
        for run in (_run("2026-03-15", "yandex_direct", ok), _run("2026-03-15", "vk_ads", ok)):
            instance.add_run(run)
        result = sensor.evaluate_tick(dg.build_sensor_context(instance=instance))
    [request] = result.run_requests or []
    selected = {k.to_user_string() for k in request.asset_selection or []}
    assert {"raw/amocrm__leads", "raw/vk_ads__ad_plans", "raw/contact_points",
            "marts/fct_orders", "published/marts"} <= selected
    assert not selected & set(AD_KEYS.values())
    assert result.cursor == "2026-03-15"


def test_in_process_range_is_the_whole_history_then_the_settling_windows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for var in DATE_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("YANDEX_DIRECT_START_DATE", "2024-11-01")
    monkeypatch.setenv("YANDEX_DIRECT_UNTIL_DATE", "2026-10-31")
    monkeypatch.setenv("META_ADS_START_DATE", "2024-11-01")
    monkeypatch.setenv("META_ADS_UNTIL_DATE", "2026-10-31")
    platforms = ["yandex_direct", "meta_ads"]
    assert in_process_range(platforms, {}) == (date(2024, 11, 1), date(2026, 10, 31))
    pulled = [(date(2024, 11, 1), date(2026, 10, 31))]
    landed = {"yandex_direct": pulled, "meta_ads": pulled}
    assert in_process_range(platforms, landed) == (date(2026, 10, 4), date(2026, 10, 31))
    assert in_process_range(["yandex_direct"], landed) == (date(2026, 10, 29),
                                                           date(2026, 10, 31))


# --- a backfill against the Yandex Direct emulator ---------------------------------------------


@pytest.fixture
def direct() -> Iterator[YandexDirectEmulator]:
    emulator = YandexDirectEmulator(daily_campaign_rows(START, 20, CAMPAIGNS), token=TOKEN,
                                    client_login=LOGIN, offline_polls=0, retry_in_s=0).start()
    yield emulator
    emulator.stop()


@pytest.fixture
def direct_env(direct: YandexDirectEmulator, tmp_path: Path,
               monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VORONKA_WAREHOUSE", "duckdb")
    monkeypatch.setenv("VORONKA_DUCKDB_PATH", str(tmp_path / "warehouse.duckdb"))
    monkeypatch.setenv("VORONKA_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("YANDEX_DIRECT_BASE_URL", direct.base_url)
    monkeypatch.setenv("YANDEX_DIRECT_TOKEN", TOKEN)
    monkeypatch.setenv("YANDEX_DIRECT_CLIENT_LOGIN", LOGIN)
    return tmp_path / "warehouse.duckdb"


def _requested_ranges(direct: YandexDirectEmulator) -> list[tuple[str, str]]:
    specs = [json.loads(s["spec"]) for s in direct.reports.values()]
    return sorted((s["SelectionCriteria"]["DateFrom"], s["SelectionCriteria"]["DateTo"])
                  for s in specs)


def test_backfill_of_ten_days_is_one_run_and_rerunning_adds_nothing(
    direct: YandexDirectEmulator, direct_env: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    defs = build(monkeypatch, YANDEX_DIRECT_START_DATE=START.isoformat())
    job = defs.resolve_job_def("daily_refresh")
    wh = DuckDBWarehouse(direct_env)
    wh.set_cursor("yandex_direct", LOGIN, "campaign_stats", "2026-01-20")  # a later cursor
    first, last = date(2026, 1, 6), date(2026, 1, 15)

    with dg.DagsterInstance.ephemeral() as instance:
        result = job.execute_in_process(instance=instance, asset_selection=[DIRECT],
                                        tags=range_tags(first, last), raise_on_error=False)
        assert result.success
        partitions = sorted(e.partition for e in result.get_asset_materialization_events())
        assert partitions == [(first + timedelta(days=n)).isoformat() for n in range(10)]
        assert _requested_ranges(direct) == [("2026-01-06", "2026-01-15")]  # one report
        days = wh.query_df("select distinct payload->>'Date' as d from "
                           "raw.yandex_direct__campaign_stats order by 1").d.tolist()
        assert days == partitions
        rows = wh.count_rows("raw.yandex_direct__campaign_stats")
        assert rows == 10 * len(CAMPAIGNS)
        # the stored cursor never moves back
        assert wh.get_cursor("yandex_direct", LOGIN, "campaign_stats") == "2026-01-20"

        again = job.execute_in_process(instance=instance, asset_selection=[DIRECT],
                                       tags=range_tags(first, last), raise_on_error=False)
        assert again.success
        assert wh.count_rows("raw.yandex_direct__campaign_stats") == rows
        [mat] = [e for e in again.get_asset_materialization_events()
                 if e.partition == "2026-01-06"]
        metadata = mat.step_materialization_data.materialization.metadata
        assert metadata["inserted"].value == 0
        assert metadata["duplicates_skipped"].value == rows
        records = instance.get_run_records()
        assert len(records) == 2  # one run per backfill
    logged = json.dumps([str(e) for e in result.all_events])
    assert TOKEN not in logged


# --- optional sources ----------------------------------------------------------------------


def materializable(defs: dg.Definitions) -> set[str]:
    graph = defs.resolve_asset_graph()
    return {k.to_user_string() for k in graph.get_all_asset_keys()
            if graph.get(k).is_materializable}


def test_new_amocrm_entities_and_bitrix24_join_the_graph(monkeypatch: pytest.MonkeyPatch) -> None:
    from extractors.amocrm import AmoCRMSource

    keys = materializable(build(monkeypatch))
    for entity in AmoCRMSource.ENTITIES:
        assert f"raw/amocrm__{entity}" in keys
    assert not any(k.startswith("raw/bitrix24__") for k in keys)

    defs = build(monkeypatch, BITRIX24_WEBHOOK_URL="https://portal.example/rest/1/s3cr3tcode/",
                 VORONKA_FILES_DIR="/tmp/voronka-files")
    keys = materializable(defs)
    for entity in ("users", "statuses", "categories", "leads", "deals", "contacts",
                   "stagehistory"):
        assert f"raw/bitrix24__{entity}" in keys
    graph = defs.resolve_asset_graph()
    contact_deps = {k.to_user_string() for k in
                    graph.get(dg.AssetKey(["raw", "contact_points"])).parent_keys}
    assert contact_deps == {"raw/amocrm__contacts", "raw/bitrix24__contacts",
                            "raw/bitrix24__leads", "raw/files__orders"}
    describe = {k.to_user_string(): graph.get(k).description for k in graph.get_all_asset_keys()}
    assert describe["raw/bitrix24__leads"].startswith("Bitrix24")
    assert describe["raw/amocrm__leads"].startswith("amoCRM")

    # the OAuth application alone enables it too
    assert "raw/bitrix24__deals" in materializable(build(monkeypatch,
                                                         BITRIX24_CLIENT_ID="app.1"))


def test_bitrix24_secrets_are_not_config(monkeypatch: pytest.MonkeyPatch,
                                         tmp_path: Path) -> None:
    from orchestration.resources import Bitrix24Resource

    assert not Bitrix24Resource.model_fields  # everything comes from the environment
    monkeypatch.setenv("VORONKA_STATE_DIR", str(tmp_path))
    for var in OPTIONAL_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("BITRIX24_WEBHOOK_URL", "https://portal.example/rest/1/s3cr3tcode/")
    source = Bitrix24Resource().source()
    assert source.account == "portal.example" and source.webhook
    assert "s3cr3tcode" not in repr(source)

    monkeypatch.delenv("BITRIX24_WEBHOOK_URL")
    monkeypatch.setenv("BITRIX24_PORTAL_URL", "https://crm.example.org")
    monkeypatch.setenv("BITRIX24_CLIENT_ID", "local.app")
    monkeypatch.setenv("BITRIX24_CLIENT_SECRET", "client-secret-9")
    monkeypatch.setenv("BITRIX24_REFRESH_TOKEN", "refresh-9")
    monkeypatch.setenv("BITRIX24_ACCOUNT", "crm-account")
    source = Bitrix24Resource().source()
    assert source.account == "crm-account" and not source.webhook
    assert source.token_store is not None
    assert str(source.token_store.path).startswith(str(tmp_path))
