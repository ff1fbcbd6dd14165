"""The customer-predictions step in Dagster (issue 16): the real multi-asset and its check, run
in-process with the real `published/marts` asset on a scratch warehouse whose fct_orders holds
simulated order histories. A usable fit writes and publishes both tables; a non-converging one
fails its WARN check, and the previous predictions stay; a business with too few repeat buyers
gets an empty predictions table and a clear message; bad settings fail naming the variable."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest
from _support import pg_admin, scratch_warehouse
from test_customer_predictions import AS_OF, simulate

from expectations import validate_mart
from orchestration.assets import predictions as predictions_asset_module
from orchestration.assets.predictions import (
    FIT_CHECK,
    FIT_KEY,
    PREDICTION_MODELS,
    PREDICTIONS_KEY,
    customer_predictions_asset,
)
from orchestration.assets.publish import PUBLISHED_KEY, build_published_marts
from orchestration.resources import WarehouseResource
from predictions.customers import MAX_ERROR_VAR, Settings, customer_predictions, fit_models
from predictions.tables import PREDICTIONS_DDL, PREDICTIONS_MODEL, ddl_columns
from voronka import settings
from voronka.summary import prediction_lines

ORDERS_KEY = dg.AssetKey(["marts", "fct_orders"])
CLV_VARS = ("VORONKA_CLV_HOLDOUT_WEEKS", MAX_ERROR_VAR, "VORONKA_CLV_ANNUAL_DISCOUNT_RATE")
PREDICTION_COLUMNS = list(ddl_columns(PREDICTIONS_DDL))


def _orders_asset(orders: pd.DataFrame, as_of_table: str,
                  schema: str = "marts") -> dg.AssetsDefinition:
    """marts/fct_orders as dbt would leave it, with the as-of date in `as_of_table`
    (marts.dim_report_dates, or intermediate.int_as_of_date alone)."""

    @dg.asset(key=ORDERS_KEY)
    def fct_orders(warehouse: WarehouseResource) -> None:
        wh = warehouse.open()
        wh.replace_table(schema, "fct_orders", orders[["customer_id", "order_date", "amount"]],
                         "customer_id varchar, order_date date, amount double precision")
        as_of_schema, table = as_of_table.split(".")
        if table == "dim_report_dates":
            wh.replace_table(as_of_schema, table, pd.DataFrame([{
                "source": "files_orders", "source_kind": "dataset", "as_of_date": AS_OF,
                "as_of_basis": "configured", "first_data_date": orders["order_date"].min(),
                "last_data_date": orders["order_date"].max(), "records_after_as_of": 0}]),
                "source varchar, source_kind varchar, as_of_date date, as_of_basis varchar, "
                "first_data_date date, last_data_date date, records_after_as_of bigint")
        else:
            wh.replace_table(as_of_schema, table, pd.DataFrame({"as_of_date": [AS_OF]}),
                             "as_of_date date")

    return fct_orders


def _run(orders: pd.DataFrame, as_of_table: str = "marts.dim_report_dates",
         schema: str = "marts") -> dg.ExecuteInProcessResult:
    """fct_orders, the predictions step and publication, as the daily job orders them."""
    published = build_published_marts(["fct_orders"], check_keys=[],
                                      ungated_models=PREDICTION_MODELS, after=[FIT_KEY])
    return dg.materialize([_orders_asset(orders, as_of_table, schema), customer_predictions_asset,
                           published],
                          resources={"warehouse": WarehouseResource()}, raise_on_error=False)


def _env(mp: pytest.MonkeyPatch, workdir: Path) -> None:
    mp.setenv("VORONKA_WAREHOUSE", "duckdb")
    mp.setenv("VORONKA_DUCKDB_PATH", str(workdir / "warehouse.duckdb"))
    mp.setenv("VORONKA_PUBLISHED_PATH", str(workdir / "voronka.duckdb"))
    for name in CLV_VARS:
        mp.delenv(name, raising=False)


def _materialized(result: dg.ExecuteInProcessResult) -> set[dg.AssetKey]:
    return {e.asset_key for e in result.get_asset_materialization_events()}


def _check(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == FIT_CHECK]
    return evaluation


def _published(workdir: Path, sql: str) -> pd.DataFrame:
    with duckdb.connect(str(workdir / "voronka.duckdb"), read_only=True) as bi:
        return bi.sql(sql).df()


@dataclass
class GoodRun:
    workdir: Path
    orders: pd.DataFrame
    result: dg.ExecuteInProcessResult


@pytest.fixture(scope="module")
def good_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GoodRun]:
    """One usable fit on 1,000 simulated heterogeneous customers (the slow part, done once)."""
    workdir = tmp_path_factory.mktemp("predictions_good")
    orders = simulate(1000, seed=1)
    with pytest.MonkeyPatch.context() as mp:
        _env(mp, workdir)
        yield GoodRun(workdir, orders, _run(orders))


def test_a_usable_fit_writes_checks_and_publishes_both_tables(good_run: GoodRun) -> None:
    result = good_run.result
    assert result.success
    assert {FIT_KEY, PREDICTIONS_KEY, PUBLISHED_KEY} <= _materialized(result)
    check = _check(result)
    assert check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["status"].value == "ok"
    assert set(check.metadata["params"].value) == {"r", "alpha", "a", "b", "p", "q", "v"}
    assert check.metadata["holdout_error"].value <= check.metadata["max_holdout_error"].value

    wh = settings.WarehouseSettings.from_env().open()
    predictions = wh.query_df("select * from marts.fct_customer_predictions")
    assert list(predictions.columns) == PREDICTION_COLUMNS
    assert len(predictions) == predictions["customer_id"].nunique() \
        == good_run.orders["customer_id"].nunique()
    # the as-of date of the marts, never the wall clock
    assert {str(d)[:10] for d in predictions["fit_date"]} == {AS_OF.isoformat()}
    assert predictions["p_alive"].between(0, 1).all()

    fit = wh.query_df("select * from marts.fct_clv_model_fit")
    assert set(fit["status"]) == {"ok"} and "total" in set(fit["group_name"])
    published = _published(good_run.workdir, "select count(*) as n from "
                                             "marts.fct_customer_predictions")
    assert published["n"].iloc[0] == len(predictions)
    assert _published(good_run.workdir, "select distinct status from marts.fct_clv_model_fit"
                      )["status"].tolist() == ["ok"]


def test_the_summary_prints_parameters_holdout_error_and_customers(good_run: GoodRun,
                                                                   monkeypatch) -> None:
    _env(monkeypatch, good_run.workdir)
    lines = prediction_lines(settings.WarehouseSettings.from_env().open())
    text = "\n".join(lines)
    assert lines[0].startswith("Customer predictions (BG/NBD + Gamma-Gamma), orders up to "
                               f"{AS_OF.isoformat()}: ok")
    for parameter in ("r=", "alpha=", "a=", "b=", "p=", "q=", "v=", "log-likelihood"):
        assert parameter in text
    holdout = next(line for line in lines if "holdout" in line)
    assert "last 26 weeks: error" in holdout and "(bound 25%)" in holdout
    assert "predicted" in holdout and "actual" in holdout
    customers = good_run.orders["customer_id"].nunique()
    assert f"predictions for {customers:,} customers" in text


def test_the_check_blocks_a_non_converging_fit_and_the_previous_predictions_stay(
    good_run: GoodRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("warehouse.duckdb", "voronka.duckdb"):
        shutil.copy(good_run.workdir / name, tmp_path / name)
    _env(monkeypatch, tmp_path)
    wh = settings.WarehouseSettings.from_env().open()
    before = wh.query_df("select * from marts.fct_customer_predictions order by customer_id")

    # one price for every purchase: Gamma-Gamma has no spend heterogeneity to learn
    result = _run(simulate(1500, seed=8).assign(amount=990.0))
    assert result.success  # a WARN: the other marts still publish
    check = _check(result)
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["status"].value == "not_converged"
    assert "did not converge" in check.metadata["message"].value
    assert "the previous ones stay" in check.metadata["reasons"].value[0]
    assert PREDICTIONS_KEY not in _materialized(result)
    assert {FIT_KEY, PUBLISHED_KEY} <= _materialized(result)

    assert set(wh.query_df("select status from marts.fct_clv_model_fit")["status"]) \
        == {"not_converged"}
    after = wh.query_df("select * from marts.fct_customer_predictions order by customer_id")
    pd.testing.assert_frame_equal(after, before)
    published = _published(tmp_path, "select * from marts.fct_customer_predictions "
                                     "order by customer_id")
    assert len(published) == len(before)
    assert list(published["customer_id"]) == list(before["customer_id"])

    text = "\n".join(prediction_lines(wh))
    assert "NOT PUBLISHED (not_converged)" in text and "did not converge" in text
    assert f"the previous predictions stay: {len(before):,} customers, fitted up to " \
           f"{AS_OF.isoformat()}" in text


def test_too_few_repeat_buyers_give_an_empty_table_and_a_clear_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    _env(monkeypatch, tmp_path)
    # 300 one-off customers and 10 who came back once: a B2B shop with long cycles
    orders = pd.DataFrame([(f"c{i:03d}", AS_OF - timedelta(days=3 * i), 5000.0)
                           for i in range(300)] +
                          [(f"c{i:03d}", AS_OF - timedelta(days=i), 7000.0) for i in range(10)],
                          columns=["customer_id", "order_date", "amount"])
    # a build without dim_report_dates: the as-of comes from intermediate.int_as_of_date
    result = _run(orders, as_of_table="intermediate.int_as_of_date")
    assert result.success
    check = _check(result)
    assert not check.passed and check.metadata["status"].value == "does_not_fit"
    message = check.metadata["message"].value
    assert "too few data to fit the CLV models" in message and "repeat buyers" in message
    assert "predictions not published, there are none yet" in check.metadata["reasons"].value[0]
    assert PREDICTIONS_KEY not in _materialized(result)
    assert PUBLISHED_KEY in _materialized(result)  # an unfit business still gets its marts

    wh = settings.WarehouseSettings.from_env().open()
    empty = wh.query_df("select * from marts.fct_customer_predictions")
    assert empty.empty and list(empty.columns) == PREDICTION_COLUMNS
    fit = wh.query_df("select * from marts.fct_clv_model_fit")
    assert fit["group_name"].tolist() == ["total"] and fit["message"].iloc[0] == message
    assert _published(tmp_path, "select count(*) as n from marts.fct_customer_predictions"
                      )["n"].iloc[0] == 0
    text = "\n".join(prediction_lines(wh))
    assert "NOT PUBLISHED (does_not_fit)" in text and message in text
    assert "no predictions (marts.fct_customer_predictions is empty)" in text
    assert "alpha=" not in text and "log-likelihood" not in text  # no parameters to show


def test_the_predictions_suite_passes_real_predictions_and_names_what_bad_ones_break() -> None:
    orders = simulate(600, seed=4)
    fit = fit_models(orders, AS_OF, Settings())
    good = customer_predictions(orders, fit, Settings())
    assert validate_mart(PREDICTIONS_MODEL, good).passed
    bad = good.copy()
    bad.loc[0, "p_alive"] = 1.2
    bad.loc[1, "expected_purchases_90d"] = bad.loc[1, "expected_purchases_30d"] - 0.5
    bad.loc[2, "customer_id"] = bad.loc[3, "customer_id"]
    validation = validate_mart(PREDICTIONS_MODEL, bad)
    assert not validation.passed
    broken = {f["column"] for f in validation.failures}
    assert {"p_alive", "customer_id", "expected_purchases_90d,expected_purchases_30d"} <= broken


def test_predictions_that_break_their_suite_are_not_published(
    good_run: GoodRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bug that made p_alive exceed 1: the check fails naming the column, the previous
    predictions stay."""
    workdir = tmp_path / "bad"
    shutil.copytree(good_run.workdir, workdir)
    _env(monkeypatch, workdir)
    before = settings.WarehouseSettings.from_env().open().query_df(
        "select * from marts.fct_customer_predictions order by customer_id")

    def broken(orders: pd.DataFrame, fit, settings_):
        return customer_predictions(orders, fit, settings_).assign(p_alive=1.5)

    monkeypatch.setattr(predictions_asset_module, "customer_predictions", broken)
    result = _run(good_run.orders)
    assert result.success
    check = _check(result)
    assert not check.passed and check.metadata["status"].value == "invalid_predictions"
    assert "Great Expectations" in check.metadata["message"].value
    assert "fct_customer_predictions.p_alive" in check.metadata["message"].value
    after = settings.WarehouseSettings.from_env().open().query_df(
        "select * from marts.fct_customer_predictions order by customer_id")
    pd.testing.assert_frame_equal(before, after)


def test_a_bad_setting_fails_naming_the_variable(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _env(monkeypatch, tmp_path)
    monkeypatch.setenv(MAX_ERROR_VAR, "a quarter")
    result = _run(simulate(300, seed=2))
    assert not result.success
    [failure] = result.get_step_failure_events()
    message = failure.step_failure_data.error.message
    assert f"{MAX_ERROR_VAR}='a quarter' is not a number" in message
    assert PUBLISHED_KEY not in _materialized(result)
    wh = settings.WarehouseSettings.from_env().open()
    assert not {"fct_clv_model_fit", "fct_customer_predictions"} & set(wh.list_tables("marts"))


@pytest.mark.postgres
def test_on_postgres_the_fit_is_built_in_marts_build_and_published_with_the_marts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    role = f"voronka_bi_{uuid.uuid4().hex[:8]}"
    try:
        with scratch_warehouse("postgres", tmp_path, "predictions") as (wh, env):
            for name, value in env.items():
                monkeypatch.setenv(name, value)
            for name in CLV_VARS:
                monkeypatch.delenv(name, raising=False)
            monkeypatch.setenv("VORONKA_BI_ROLE", role)
            # the pipeline builds into marts_build; publication copies the listed models
            result = _run(simulate(1000, seed=1), "marts_build.dim_report_dates",
                          schema="marts_build")
            assert result.success
            assert {FIT_KEY, PREDICTIONS_KEY, PUBLISHED_KEY} <= _materialized(result)
            for schema in ("marts_build", "marts"):
                assert wh.count_rows(f"{schema}.fct_customer_predictions") == 1000
                assert wh.scalar(f"select status from {schema}.fct_clv_model_fit "
                                 "where group_name = 'total'") == "ok"
            assert wh.scalar("select max(fit_date) from marts.fct_customer_predictions") \
                == AS_OF
    finally:  # after its database: the grants on it are gone with it
        pg_admin(f"drop role if exists {role}")


def test_the_daily_job_fits_after_the_marts_and_publishes_without_waiting_for_predictions(
) -> None:
    from orchestration.definitions import defs

    graph = defs.resolve_asset_graph()
    assert {ORDERS_KEY, dg.AssetKey(["marts", "dim_report_dates"])} <= graph.get(
        FIT_KEY).parent_keys
    published = graph.get(PUBLISHED_KEY).parent_keys
    # publication waits for the step (its always-materialized fit) but not for the optional
    # predictions: Dagster skips whatever depends on an output that was not produced
    assert FIT_KEY in published and PREDICTIONS_KEY not in published
    assert dg.AssetCheckKey(FIT_KEY, FIT_CHECK) in graph.asset_check_keys
