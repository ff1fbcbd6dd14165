"""The whole path as a user runs it: emulators → extractors → landing → dbt → checks → publish.

Known answers: the marts equal the synthetic business's own ground truth, over every source
(amoCRM, Bitrix24, Yandex Direct, VK Ads, Google Ads, Meta and the shop's order files).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest
from _support import assert_marts_match_truth_but_spend, pg_test_database

from orchestration.assets.predictions import FIT_CHECK
from orchestration.partitions import RANGE_END_TAG, RANGE_START_TAG
from voronka import settings
from voronka.demo import running_emulators
from voronka.runner import run_daily_refresh

SEED, SCALE = 11, 0.25
# PostgreSQL's run checks the same figures on a smaller business (segments big enough for the
# ad platforms' minimum audience are the DuckDB run's concern)
POSTGRES_SCALE = 0.1
SECRETS = ("demo-secret", "demo-refresh-0", "demo-direct-token", "demo-webhook-code",
           "demo-vk-secret", "demo-google-secret", "demo-google-refresh", "demo-meta-token",
           "demo-google-token", "demo-yandex-token", "demo-unisender-key-6h3d",
           "demo-b24-webhook-7kq2")
DEMO_AUDIENCE_PLATFORMS = ("meta", "google", "yandex")  # the ad platforms (hashed audiences)
ACTIVATION_PLATFORMS = ("amocrm", "bitrix24", "unisender")


def _platform_hashes(servers, platform: str, audience_id: str) -> tuple[int, set[str]]:
    """(rows in the emulator's audience, every hash they hold)."""
    if platform == "meta":
        rows = servers.audiences.meta.members(audience_id)
        return len(rows), {h for row in rows for _, h in row}
    if platform == "google":
        rows = servers.audiences.google.members(audience_id)
        return len(rows), {h for row in rows for _, h in row}
    rows = servers.audiences.yandex.members(audience_id)
    return len(rows), {h for row in rows for h in row if h}


def assert_audiences_mirror_segments(wh, servers) -> int:
    """After a run, every dynamic segment big enough for the platforms is there exactly: one
    row per member with a phone or e-mail, each found by one of its own hashes, the
    consent-excluded customers' hashes absent; smaller ones were skipped. Returns the
    audiences checked."""
    from audiences import state
    from audiences.identifiers import customer_identifiers
    from audiences.platforms import PLATFORMS
    from audiences.segments import PredictionsUnavailable, load_segments, segment_frame

    def hashed(platform: str, rows) -> set[str]:
        """The platform's hashes of identifier rows (its transforms are unit-tested on
        tricky inputs in test_audience_platforms; here only the sync path is under test)."""
        return {PLATFORMS[platform].hashed(k, v) for k, v in zip(rows.kind, rows.value,
                                                                 strict=True)} - {""}

    checked = 0
    for seg in (s for s in load_segments() if s.kind == "dynamic"):
        try:
            frame = segment_frame(wh, seg)
        except PredictionsUnavailable:
            # no customer predictions published: the segment was not synced anywhere
            assert not state.sync_runs(wh, seg.name), seg.name
            continue
        members = customer_identifiers(wh, frame.customer_id[frame.is_contactable])
        excluded = customer_identifiers(wh, frame.customer_id[~frame.is_contactable])
        runs = {r["platform"]: r for r in state.sync_runs(wh, seg.name)
                if r["platform"] in DEMO_AUDIENCE_PLATFORMS}
        assert set(runs) == set(DEMO_AUDIENCE_PLATFORMS), seg.name
        if members.customer_id.nunique() < 100:
            assert {r["status"] for r in runs.values()} == {"skipped"}, seg.name
            continue
        for platform in DEMO_AUDIENCE_PLATFORMS:
            assert runs[platform]["status"] == "success", runs[platform]
            with wh.connect() as conn:
                [dest] = state.destinations(wh, conn, seg.name, platform).values()
            rows, hashes = _platform_hashes(servers, platform, dest.audience_id)
            assert rows == members.customer_id.nunique(), (seg.name, platform)
            # every member is there by one of its hashes (Meta and Yandex take a customer's
            # first phone and e-mail), and no excluded customer's hash is
            missing = [c for c, rows in members.groupby("customer_id")
                       if not hashed(platform, rows) & hashes]
            assert not missing, (seg.name, platform, missing[:3])
            assert not hashed(platform, excluded) & hashes, (seg.name, platform)
            checked += 1
    return checked


def _markers(texts) -> list[str]:
    return [m.group(1) for t in texts if (m := re.search(r"\[(vrn-[0-9a-f]+)\]", str(t)))]


def assert_crm_mirrors_actions(wh, servers) -> dict[str, int]:
    """The CRM emulators hold exactly the tasks and deals the warehouse recorded as created,
    each once (one marker, one record), and every member of the shipped reminder segments
    carries the segment's amoCRM tag; returns what was created, by CRM and kind."""
    from audiences import state

    created: dict[str, int] = {}
    for a in state.actions(wh):
        if a["status"] == "created":
            key = f"{a['platform']}_{a['action_kind']}"
            created[key] = created.get(key, 0) + 1
    in_crm = {
        "amocrm_task": _markers(t["text"] for t in servers.amocrm.tasks()),
        "amocrm_deal": _markers(lead["name"] for lead in servers.amocrm.created_leads()),
        "bitrix24_task": _markers(t.get("DESCRIPTION") for t in servers.bitrix24.todos()),
        "bitrix24_deal": [d["ORIGIN_ID"] for d in servers.bitrix24.created_deals()],
    }
    for key, markers in in_crm.items():
        assert len(markers) == len(set(markers)), key  # never twice
        assert len(markers) == created.get(key, 0), (key, len(markers), created)
    assert created.get("amocrm_task", 0) > 0 and created.get("bitrix24_task", 0) > 0
    for seg in ("reminder_30_days_before", "reminder_7_days_before", "reminder_1_day_before"):
        tag = f"voronka_{seg}"
        with wh.connect() as conn:
            synced = state.synced_members(wh, conn, seg, "amocrm", tag)
        for contact in (c for rows in synced.values() for c in rows):
            assert tag in servers.amocrm.contact_tags(contact), (seg, contact)
        runs = {r["platform"]: r["status"] for r in state.sync_runs(wh, seg)}
        assert all(runs[p] == "success" for p in ACTIVATION_PLATFORMS), (seg, runs)
    return created


def write_back_growth(servers) -> dict[str, int]:
    """Raw rows the next extraction lands because of voronka's own write-back: a new version
    of each contact it tagged or flagged, each lead or deal it created (and a Bitrix24 deal's
    first stage-history row)."""
    def changed(served: list[dict], original: list[dict], key: str) -> int:
        before = {x[key]: x for x in original}
        return sum(1 for x in served if before.get(x[key]) != x)

    b24_deals = len(servers.bitrix24.created_deals())
    return {"amocrm__contacts": changed(servers.amocrm.data["contacts"],
                                        servers.business.amocrm["contacts"], "id"),
            "amocrm__leads": len(servers.amocrm.created_leads()),
            "bitrix24__contacts": changed(servers.bitrix24.data["contacts"],
                                          servers.business.bitrix24["contacts"], "ID"),
            "bitrix24__deals": b24_deals, "bitrix24__stagehistory": b24_deals}


def vk_horizon(business) -> date:
    """The demo's calendar stands at the day after the business ends (VK_ADS_TODAY)."""
    return business.end + timedelta(days=1) - timedelta(days=365)


@pytest.fixture
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VORONKA_WAREHOUSE", "duckdb")
    monkeypatch.setenv("VORONKA_DUCKDB_PATH", str(tmp_path / "warehouse.duckdb"))
    monkeypatch.setenv("VORONKA_PUBLISHED_PATH", str(tmp_path / "voronka.duckdb"))
    monkeypatch.setenv("VORONKA_STATE_DIR", str(tmp_path / "state"))
    return tmp_path


def _run(servers, instance: dg.DagsterInstance,
         monkeypatch: pytest.MonkeyPatch) -> dg.ExecuteInProcessResult:
    """The daily job with the emulators' settings (undone after the test: nothing leaks)."""
    for name, value in servers.environment().items():
        monkeypatch.setenv(name, value)
    return run_daily_refresh(instance=instance)


def _month(series: pd.Series) -> pd.Series:
    return pd.to_datetime(series).dt.strftime("%Y-%m")


def vk_within_horizon(spend: pd.DataFrame, horizon: date) -> pd.DataFrame:
    """VK Ads serves statistics for the last 366 days only, so older VK spend never lands."""
    months = pd.to_datetime(spend.month).dt.date
    return spend[(spend.channel != "vk_ads") | (months >= horizon)]


def assert_marts_match_ground_truth(query, truth, vk_horizon: date) -> None:
    """Every figure of assert_marts_match_truth_but_spend, and spend per channel-month."""
    assert_marts_match_truth_but_spend(query, truth)
    got = query("select date_trunc('month', spend_date) as m, channel, sum(spend) as spend "
                "from marts.fct_ad_spend_daily group by 1, 2")
    expected = vk_within_horizon(truth.spend_by_channel_month, vk_horizon)
    assert set(expected.channel) == {"yandex_direct", "vk_ads", "google_ads", "meta_ads"}
    assert sorted(zip(_month(got.m), got.channel, got.spend.astype(float).round(2), strict=True)) \
        == sorted(zip(_month(expected.month), expected.channel,
                      expected.spend.astype(float).round(2), strict=True))


def test_demo_pipeline_on_duckdb_matches_ground_truth_and_reruns_idempotently(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    with running_emulators(seed=SEED, scale=SCALE) as servers:
        first = _run(servers, instance, monkeypatch)
        assert first.success
        evaluations = first.get_asset_check_evaluations()
        failed = [e for e in evaluations if not e.passed]
        # This business is too small for the customer-value models (tests/
        # test_customer_predictions.py fits the demo's): the fit check says so as a warning,
        # no prediction is made, and everything else is published.
        assert [(e.check_name, e.severity) for e in failed] == [
            (FIT_CHECK, dg.AssetCheckSeverity.WARN)], [(e.asset_key, e.check_name)
                                                       for e in failed]
        assert "too few data" in failed[0].metadata["message"].value
        # The two-year ad-spend backfill: one planned event per asset carries the range (an
        # in-memory instance keeps no partition health), one materialization per day
        direct = dg.AssetKey(["raw", "yandex_direct__campaign_stats"])
        planned = [e for e in instance.all_logs(
            first.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED)
            if e.dagster_event.asset_key == direct]
        tags = first.dagster_run.tags
        days = (date.fromisoformat(tags[RANGE_END_TAG])
                - date.fromisoformat(tags[RANGE_START_TAG])).days + 1
        assert len(planned) == 1
        assert len(planned[0].dagster_event.event_specific_data.partitions_subset) == days
        assert len(first.asset_materializations_for_node(
            "raw__yandex_direct__campaign_stats")) == days
        # The extractor's limiter keeps amoCRM under 7 req/s: not one 429 in a normal run.
        assert not [r for r in servers.amocrm.request_log if r["status"] == 429]

        wh = settings.WarehouseSettings.from_env().open()
        raw_counts = wh.table_counts("raw")
        business = servers.business
        live_leads = [x for x in business.amocrm["leads"] if not x.get("is_deleted")]
        assert raw_counts["amocrm__leads"] == len(live_leads)
        assert raw_counts["amocrm__deleted_leads"] == len(business.amocrm["leads"]) - len(
            live_leads)
        for entity in ("contacts", "companies", "customers", "transactions"):
            assert raw_counts[f"amocrm__{entity}"] == len(business.amocrm[entity]), entity
        for entity in ("leads", "deals", "contacts", "stagehistory", "users"):
            assert raw_counts[f"bitrix24__{entity}"] == len(business.bitrix24[entity]), entity
        assert raw_counts["files__orders"] == len(business.file_orders)
        assert raw_counts["yandex_direct__campaign_stats"] == len(business.yandex_direct)
        # Bitrix24's leaky bucket is mirrored client-side: not one 503 in a normal run.
        assert not [r for r in servers.bitrix24.request_log if r["status"] == 503]
        # The dynamic segments were synced to the audience emulators after publication.
        assert assert_audiences_mirror_segments(wh, servers) >= 3
        meta_calls = len(servers.audiences.meta.batches)
        # ... and acted on in the CRMs: tags, and the shipped segments' tasks and deals
        assert_crm_mirrors_actions(wh, servers)
        growth = write_back_growth(servers)
        assert wh.query_df("select status from marts.fct_clv_model_fit").status.tolist() == [
            "does_not_fit"]
        assert wh.count_rows("marts.fct_customer_predictions") == 0

        # BI users read the published copy, even while a writer holds the working file.
        published = settings.WarehouseSettings.from_env().published_path
        with wh.writer(), duckdb.connect(str(published), read_only=True) as con:
            assert_marts_match_ground_truth(lambda sql: con.sql(sql).df(),
                                            servers.business.ground_truth,
                                            vk_horizon(servers.business))

        # Same data again, except one lead deleted in amoCRM after it was extracted: nothing
        # lands twice (a re-run adds no duplicates), only the deletion record and what
        # voronka's own write-back changed in the CRMs are new, and the deleted lead leaves
        # the marts.
        gone = live_leads[0]["id"]
        servers.amocrm.delete_lead(gone)
        second = _run(servers, instance, monkeypatch)
        assert second.success
        expected_counts = {**raw_counts,
                           "amocrm__deleted_leads": raw_counts["amocrm__deleted_leads"] + 1}
        for table, extra in growth.items():
            expected_counts[table] += extra
        assert wh.table_counts("raw") == expected_counts
        assert wh.query_df(f"select count(*) as n from marts.fct_leads "
                           f"where lead_id = 'amocrm_{gone}'").n[0] == 0
        # The re-run synced only what changed: the platforms still mirror the segments.
        assert assert_audiences_mirror_segments(wh, servers) >= 3
        assert len(servers.audiences.meta.batches) - meta_calls <= 2  # the one lead's change
        assert_crm_mirrors_actions(wh, servers)  # no task or deal created twice
        # the e-mails and phones UniSender received (members of its lists) are nowhere else
        sent = wh.query_df("select value_normalized from intermediate.int_customer_identifiers "
                           "order by customer_id, value_normalized limit 400").value_normalized

    logged = " ".join(
        str(e.dagster_event) + str(e.user_message) for e in instance.all_logs(first.run_id)
    )
    for secret in SECRETS:
        assert secret not in logged
    leaked = [v for v in sent if v in logged or v.lstrip("+") in logged]
    assert not leaked, leaked[:3]  # no raw identifier in a log line or Dagster metadata


@pytest.fixture
def postgres_database(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    with pg_test_database() as name:
        monkeypatch.setenv("VORONKA_WAREHOUSE", "postgres")
        monkeypatch.setenv("VORONKA_POSTGRES_DB", name)
        monkeypatch.setenv("VORONKA_STATE_DIR", str(tmp_path / "state"))
        yield name


@pytest.mark.postgres
def test_demo_pipeline_on_postgres_matches_ground_truth(
    postgres_database: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    with running_emulators(seed=SEED, scale=POSTGRES_SCALE) as servers:
        result = _run(servers, dg.DagsterInstance.ephemeral(), monkeypatch)
        assert result.success
        # only the customer-value fit's warning: this business is too small for the models
        assert [e.check_name for e in result.get_asset_check_evaluations()
                if not e.passed] == [FIT_CHECK]
        wh = settings.WarehouseSettings.from_env().open()
        assert_marts_match_ground_truth(wh.query_df, servers.business.ground_truth,
                                        vk_horizon(servers.business))
