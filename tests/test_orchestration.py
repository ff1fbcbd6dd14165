"""The Dagster front door: the asset graph, the checks' wiring, and blocking on bad marts."""

from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from expectations import MART_SUITES, mart_columns
from orchestration.assets.publish import build_published_marts
from orchestration.checks import MART_CHECK, build_mart_check
from orchestration.definitions import defs
from orchestration.resources import WarehouseResource


def test_one_definitions_object_holds_the_whole_graph() -> None:
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    for expected in [
        "raw/amocrm__leads", "raw/amocrm__contacts", "raw/amocrm__events",
        "raw/amocrm__pipelines", "raw/amocrm__users", "raw/amocrm__loss_reasons",
        "raw/yandex_direct__campaign_stats", "raw/contact_points",
        "staging/stg_amocrm__leads", "intermediate/int_customers__resolved",
        "marts/dim_customers", "marts/fct_orders", "marts/fct_cohort_retention",
        "marts/fct_acquisition_monthly", "published/marts",
    ]:
        assert expected in keys
    # dbt sources resolve to the raw assets, so lineage runs from the API to the marts.
    upstream = graph.get(dg.AssetKey(["staging", "stg_amocrm__leads"])).parent_keys
    assert dg.AssetKey(["raw", "amocrm__leads"]) in upstream
    published = graph.get(dg.AssetKey(["published", "marts"])).parent_keys
    assert dg.AssetKey(["marts", "fct_orders"]) in published


def test_daily_schedule_runs_in_moscow_time() -> None:
    schedule = defs.resolve_schedule_def("daily_refresh_0600_msk")
    assert schedule.cron_schedule == "0 6 * * *"
    assert schedule.execution_timezone == "Europe/Moscow"
    assert schedule.job_name == "daily_refresh"


def test_mart_checks_are_blocking_and_secrets_are_not_config(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from orchestration.definitions import build_defs

    monkeypatch.setenv("AMOCRM_SUBDOMAIN", "acme")
    monkeypatch.setenv("YANDEX_DIRECT_CLIENT_LOGIN", "acme")
    defs = build_defs()
    checks = {
        (key.asset_key.to_user_string(), key.name)
        for key in defs.resolve_asset_graph().asset_check_keys
    }
    assert ("marts/fct_orders", "revenue_reconciles_with_won_deals") in checks
    # dbt's tests check the marts (dagster-dbt makes each an asset check): no second GX
    # suite, except for a mart with a rule dbt cannot express (expectations.MART_SUITES)
    assert ("marts/fct_orders", "unique_fct_orders_order_id") in checks
    assert ("marts/fct_cohort_retention", "column_values_fct_cohort_retention") in checks
    assert {key for key, name in checks if name == MART_CHECK} == {
        f"marts/{model}" for model in MART_SUITES}
    amocrm_fields = set(defs.resources["amocrm"].__class__.model_fields)
    assert not {"client_secret", "refresh_token", "long_lived_token"} & amocrm_fields
    assert "token" not in defs.resources["yandex_direct"].__class__.model_fields
    from orchestration.resources import OPTIONAL_SOURCES

    secretish = ("secret", "token", "webhook", "password")
    for _, resource_class in OPTIONAL_SOURCES.values():  # Bitrix24, VK, Google, Meta, files
        assert not [f for f in resource_class.model_fields if any(w in f for w in secretish)]


@pytest.fixture
def duckdb_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VORONKA_WAREHOUSE", "duckdb")
    monkeypatch.setenv("VORONKA_DUCKDB_PATH", str(tmp_path / "warehouse.duckdb"))
    monkeypatch.setenv("VORONKA_PUBLISHED_PATH", str(tmp_path / "voronka.duckdb"))
    return tmp_path


def _orders(amounts: list[float]) -> pd.DataFrame:
    n = len(amounts)
    frame = pd.DataFrame({column: [None] * n for column in mart_columns()["fct_orders"]})
    frame["order_id"] = [str(i) for i in range(n)]
    frame["lead_id"] = frame["order_id"]
    frame["customer_id"] = [f"c_{i}" for i in range(n)]
    frame["order_date"] = pd.Timestamp("2026-01-15")
    frame["order_month"] = pd.Timestamp("2026-01-01")
    frame["amount"] = amounts
    frame["order_number"] = 1
    frame["is_first_order"] = True
    frame["channel"] = "organic"
    return frame


@pytest.fixture
def orders_suite(monkeypatch: pytest.MonkeyPatch) -> None:
    """A GX suite on fct_orders (no dbt mart has one today), so its blocking check exists."""
    from expectations import marts

    suite = marts.MartSuite("fct_orders", lambda: [marts._at_least("amount", 0)])
    monkeypatch.setitem(marts.MART_SUITES, "fct_orders", suite)


def _materialize_orders(amounts: list[float]) -> dg.ExecuteInProcessResult:
    @dg.asset(key=dg.AssetKey(["marts", "fct_orders"]))
    def fct_orders(warehouse: WarehouseResource) -> None:
        wh = warehouse.open()
        with wh.connect() as conn:
            con = conn.cursor()
            con.execute("create schema if not exists marts")
            con.register("frame", _orders(amounts))
            con.execute("create or replace table marts.fct_orders as select * from frame")

    return dg.materialize(
        [fct_orders, build_mart_check("fct_orders"), build_published_marts(["fct_orders"])],
        resources={"warehouse": WarehouseResource()},
        raise_on_error=False,
    )


def test_failed_mart_check_blocks_publication_and_names_the_rows(
    duckdb_env: Path, orders_suite: None,
) -> None:
    result = _materialize_orders([1200.0, -50.0, 900.0])
    [evaluation] = result.get_asset_check_evaluations()
    assert not evaluation.passed
    failures = evaluation.metadata["failures"].value
    assert any(f["column"] == "amount" and f["unexpected_count"] == 1 for f in failures)
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert dg.AssetKey(["marts", "fct_orders"]) in materialized
    assert dg.AssetKey(["published", "marts"]) not in materialized
    assert not (duckdb_env / "voronka.duckdb").exists()


def test_passing_mart_check_publishes_a_readable_snapshot(
    duckdb_env: Path, orders_suite: None,
) -> None:
    result = _materialize_orders([1200.0, 50.0])
    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())
    with duckdb.connect(str(duckdb_env / "voronka.duckdb"), read_only=True) as con:
        assert con.sql("select sum(amount) from marts.fct_orders").fetchall()[0][0] == 1250.0


def test_summary_names_the_root_cause_of_a_failed_step() -> None:
    from voronka.summary import step_failure_lines

    @dg.asset
    def raw_leads() -> None:
        raise ValueError("amocrm leads id=5: field 'price' expected a non-negative integer")

    result = dg.materialize([raw_leads], raise_on_error=False)
    assert step_failure_lines(result) == [
        "  FAILED step raw_leads: ValueError: amocrm leads id=5: field 'price' expected a "
        "non-negative integer"
    ]


def materializable_keys(definitions: dg.Definitions) -> set[str]:
    """Assets voronka computes (dbt sources on unconfigured raw tables are external)."""
    graph = definitions.resolve_asset_graph()
    return {k.to_user_string() for k in graph.get_all_asset_keys()
            if graph.get(k).is_materializable}


def test_optional_sources_join_the_graph_when_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestration.definitions import build_defs

    for var in ("VK_ADS_CLIENT_ID", "GOOGLE_ADS_CUSTOMER_ID", "META_ADS_ACCOUNT_ID",
                "VORONKA_FILES_DIR", "BITRIX24_WEBHOOK_URL", "BITRIX24_CLIENT_ID"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AMOCRM_SUBDOMAIN", "acme")
    keys = materializable_keys(build_defs())
    assert "raw/vk_ads__ad_plan_stats" not in keys and "raw/files__orders" not in keys
    assert "raw/amocrm__leads" in keys
    monkeypatch.setenv("VK_ADS_CLIENT_ID", "client")
    monkeypatch.setenv("VORONKA_FILES_DIR", "/tmp/voronka-files")
    keys = materializable_keys(build_defs())
    assert {"raw/vk_ads__ad_plans", "raw/vk_ads__ad_plan_stats", "raw/files__orders",
            "raw/files__ad_spend"} <= keys
    assert "raw/google_ads__campaign_stats" not in keys
    assert not any(k.startswith("raw/bitrix24__") for k in keys)


def test_a_changed_dbt_project_is_parsed_again(tmp_path: Path) -> None:
    """Dagster reads its dbt assets from the manifest: after a pull that adds a model, a
    manifest older than the project must be re-parsed, not reused."""
    import os
    from types import SimpleNamespace

    from orchestration.assets.dbt import manifest_is_stale

    (tmp_path / "models").mkdir()
    model = tmp_path / "models" / "fct_new.sql"
    model.write_text("select 1 as id")
    (tmp_path / "dbt_project.yml").write_text("name: x\n")
    manifest = tmp_path / "target" / "manifest.json"
    project = SimpleNamespace(project_dir=str(tmp_path), manifest_path=manifest)
    assert manifest_is_stale(project)  # a fresh clone has none
    manifest.parent.mkdir()
    manifest.write_text("{}")
    os.utime(model, (manifest.stat().st_mtime - 60,) * 2)
    os.utime(tmp_path / "dbt_project.yml", (manifest.stat().st_mtime - 60,) * 2)
    assert not manifest_is_stale(project)
    os.utime(model, (manifest.stat().st_mtime + 5,) * 2)  # the model changed after the parse
    assert manifest_is_stale(project)
