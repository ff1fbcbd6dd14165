"""Known-answer tests of the dbt project: synthetic business -> raw -> `dbt build` -> marts.

The seeded business landed straight into a fresh warehouse (synthetic.landing, no HTTP) and
the whole project built (models, data tests, unit tests): the shared `marts` fixture of
tests/conftest.py. The marts must equal
the generator's ground truth. A few metrics are recomputed in pandas from the raw tables.
The PostgreSQL variant runs only with VORONKA_TEST_POSTGRES=1.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from _support import DBT_PROJECT, MartsBuild, failed_nodes

import synthetic
from warehouse.base import Warehouse, json_loads

MSK = ZoneInfo("Europe/Moscow")
ACTIVITY_WINDOW_DAYS = 180


@dataclass
class Built:
    """A warehouse after `dbt build`, with what the build reported."""

    backend: str
    wh: Warehouse
    business: synthetic.SyntheticBusiness
    run_results: dict
    returncode: int
    output: str
    env: dict[str, str]  # what dbt needs to reach this warehouse

    def df(self, sql: str) -> pd.DataFrame:
        return self.wh.query_df(sql)


@pytest.fixture(scope="module")
def built(marts: MartsBuild) -> Built:
    """The shared full build of the seeded business (tests/conftest.py)."""
    return Built(marts.backend, marts.wh, marts.business, marts.run_results, marts.returncode,
                 marts.output, marts.env)


# -- helpers ----------------------------------------------------------------------------------
def _norm(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Keys as ISO strings, values as floats, sorted: comparable across backends."""
    out = frame.copy()
    for col in out.columns:
        if col in keys:
            out[col] = out[col].map(lambda v: v.isoformat() if hasattr(v, "isoformat") else str(v))
        else:
            out[col] = out[col].astype(float)
    return out.sort_values(keys).reset_index(drop=True)


def assert_frames_equal(got: pd.DataFrame, expected: pd.DataFrame, keys: list[str]) -> None:
    got, expected = _norm(got, keys), _norm(expected[list(got.columns)], keys)
    pd.testing.assert_frame_equal(got, expected, check_exact=False, atol=0.005, rtol=0)


def raw_payloads(built: Built, table: str) -> list[dict]:
    frame = built.df(f"select payload from raw.{table}")
    return [json_loads(p) for p in frame["payload"]]


def msk_date(ts: int) -> date:
    return datetime.fromtimestamp(ts, UTC).astimezone(MSK).date()


# -- the build --------------------------------------------------------------------------------
def test_build_succeeds_with_all_tests_passing(built: Built) -> None:
    assert built.returncode == 0, built.output[-4000:]
    statuses = {r["unique_id"]: r["status"] for r in built.run_results["results"]}
    failed = failed_nodes(built.run_results)
    assert not failed, failed
    kinds = {k.split(".")[0] for k in statuses}
    assert {"model", "test", "seed", "unit_test"} <= kinds


def test_marts_follow_the_contract(marts: MartsBuild, built: Built) -> None:
    """Every mart has exactly the columns of its dbt contract, in order, and the contract is
    enforced with a type on every column (dbt compared the types when it built them)."""
    from expectations.contract import read_mart_contract

    contract = read_mart_contract(marts.workdir / "dbt_target" / "manifest.json")
    tables = built.df("select table_name from information_schema.tables "
                      "where table_schema = 'marts'")["table_name"]
    assert set(tables) == set(contract)
    for table, columns in contract.items():
        got = list(built.df(f"select * from marts.{table} where 1 = 0").columns)
        assert got == [c.name for c in columns], table
        assert all(c.data_type for c in columns), table
    # what the dashboard and the tests read: the project's own manifest says the same
    from expectations import mart_columns

    assert mart_columns() == {t: tuple(c.name for c in cs) for t, cs in contract.items()}


def _break_mart(project: Path, model: str, select: str) -> None:
    """Wrap a mart's SQL in `select <select> from (<its SQL>)` in a copy of the project."""
    path = project / "models" / "marts" / f"{model}.sql"
    path.write_text(f"select {select} from (\n{path.read_text()}\n) as contracted\n")


@pytest.mark.parametrize("marts", ["duckdb"], indirect=True)
def test_a_mart_that_breaks_its_contract_fails_the_build_and_names_the_column(
        marts: MartsBuild, tmp_path: Path) -> None:
    """A mart whose SQL yields another type (fct_orders.order_number as text) or lacks a
    column (fct_lookalike_seed without seed_size) is not built: dbt names the column and the
    mismatch, and the tables of the last good build stay. DuckDB only: a copy of the built
    warehouse file and of the project (the same dbt contract check runs on PostgreSQL's build)."""
    project = tmp_path / "dbt_project"
    shutil.copytree(DBT_PROJECT, project,
                    ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))
    _break_mart(project, "fct_orders",
                "* replace (cast(order_number as varchar) as order_number)")
    _break_mart(project, "fct_lookalike_seed", "* exclude (seed_size)")
    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copy(marts.env["VORONKA_DUCKDB_PATH"], warehouse)
    env = {**os.environ, **marts.env, "VORONKA_DUCKDB_PATH": str(warehouse)}
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("dbt")), "run", "--select",
         "fct_orders", "fct_lookalike_seed", "--project-dir", str(project),
         "--profiles-dir", str(project), "--target-path", str(tmp_path / "target"),
         "--log-path", str(tmp_path / "logs")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-3000:]
    assert out.count("This model has an enforced contract that failed") == 2, out[-3000:]
    lines = [" ".join(line.split()) for line in out.splitlines()]
    assert any("| order_number | VARCHAR | BIGINT | data type mismatch |" in line
               for line in lines), out[-3000:]
    assert any("| seed_size |" in line and "missing in definition" in line
               for line in lines), out[-3000:]
    import duckdb

    with duckdb.connect(str(warehouse), read_only=True) as con:
        kept = con.execute("select data_type from information_schema.columns where "
                           "table_schema = 'marts' and table_name = 'fct_orders' "
                           "and column_name = 'order_number'").fetchall()
    assert kept == [("BIGINT",)]


def test_nothing_after_the_as_of_month(built: Built) -> None:
    end_month = built.business.end.replace(day=1)
    as_of = built.df("select as_of_date from intermediate.int_as_of_date")["as_of_date"][0]
    assert pd.Timestamp(as_of).date() == built.business.end
    for table, col in [("fct_acquisition_monthly", "month"), ("fct_crr_monthly", "month"),
                       ("fct_cohort_retention", "cohort_month"), ("fct_orders", "order_month")]:
        latest = built.df(f"select max({col}) as m from marts.{table}")["m"][0]
        assert pd.Timestamp(latest).date() == end_month, table


# -- known answers ----------------------------------------------------------------------------
def test_new_customers_by_channel_month(built: Built) -> None:
    got = built.df(
        "select cohort_month as month, channel, count(*) as new_customers "
        "from marts.dim_customers group by cohort_month, channel"
    )
    expected = built.business.ground_truth.new_customers_by_channel_month
    assert_frames_equal(got, expected, ["month", "channel"])


def test_revenue_by_month(built: Built) -> None:
    got = built.df(
        "select order_month as month, sum(amount) as revenue, count(*) as orders "
        "from marts.fct_orders group by order_month"
    )
    assert_frames_equal(got, built.business.ground_truth.revenue_by_month, ["month"])


def test_spend_by_channel_month(built: Built) -> None:
    got = built.df(
        "select cast(date_trunc('month', spend_date) as date) as month, channel, "
        "sum(spend) as spend from marts.fct_ad_spend_daily "
        "group by cast(date_trunc('month', spend_date) as date), channel"
    )
    expected = built.business.ground_truth.spend_by_channel_month
    assert_frames_equal(got, expected, ["month", "channel"])
    # the acquisition mart carries the same spend
    acq = built.df(
        "select month, channel, spend from marts.fct_acquisition_monthly "
        "where channel <> 'all' and spend > 0"
    )
    assert_frames_equal(acq, expected, ["month", "channel"])


def test_cohort_sizes(built: Built) -> None:
    got = built.df(
        "select cohort_month, cohort_size as customers "
        "from marts.fct_cohort_retention where month_offset = 0"
    )
    assert_frames_equal(got, built.business.ground_truth.cohort_sizes, ["cohort_month"])


def test_leads_by_channel_month(built: Built) -> None:
    got = built.df(
        "select created_month as month, channel, count(*) as leads "
        "from marts.fct_leads group by created_month, channel"
    )
    expected = built.business.ground_truth.leads_by_channel_month
    assert_frames_equal(got, expected, ["month", "channel"])
    acq = built.df(
        "select month, channel, all_leads as leads from marts.fct_acquisition_monthly "
        "where channel <> 'all' and all_leads > 0"
    )
    assert_frames_equal(acq, expected, ["month", "channel"])


def test_orders_by_source_month(built: Built) -> None:
    got = built.df(
        "select order_month as month, order_source, count(*) as orders, sum(amount) as revenue "
        "from marts.fct_orders group by order_month, order_source"
    )
    expected = built.business.ground_truth.orders_by_source_month
    assert set(expected.order_source) == {"amocrm_lead", "bitrix24_deal", "amocrm_transaction",
                                          "files"}
    assert_frames_equal(got, expected, ["month", "order_source"])


def test_leads_by_crm_month(built: Built) -> None:
    got = built.df(
        "select created_month as month, crm, count(*) as leads "
        "from marts.fct_leads group by created_month, crm"
    )
    expected = built.business.ground_truth.leads_by_crm_month
    assert set(expected.crm) == {"amocrm", "bitrix24"}
    assert_frames_equal(got, expected, ["month", "crm"])


def test_leads_are_matched_to_campaigns_through_utm_tags(built: Built) -> None:
    got = built.df(
        "select month, channel, campaign_id, all_leads as leads "
        "from marts.fct_campaign_performance_monthly "
        "where campaign_id is not null and all_leads > 0"
    )
    expected = built.business.ground_truth.leads_by_campaign_month
    assert_frames_equal(got, expected, ["month", "channel", "campaign_id"])
    unmatched = built.df("select coalesce(sum(all_leads), 0) as n "
                         "from marts.fct_campaign_performance_monthly where campaign_id is null")
    assert int(unmatched.n[0]) == 0  # every paid lead of the demo names a live campaign
    # campaign spend is the platform's own, row for row
    spend = built.df("select sum(spend) as s from marts.fct_campaign_performance_monthly")
    total = built.df("select sum(spend) as s from marts.fct_ad_spend_daily")
    assert float(spend.s[0]) == pytest.approx(float(total.s[0]), abs=0.01)


# -- metrics recomputed from raw --------------------------------------------------------------
def _raw_spend_by_channel_month(built: Built) -> dict[tuple[str, date], float]:
    """Spend recomputed from every platform's raw payloads, per (channel, month)."""
    extract = {
        "yandex_direct__campaign_stats": lambda p: (p["Date"], int(p["Cost"]) / 1_000_000),
        "vk_ads__ad_plan_stats": lambda p: (p["date"], float(p["base"]["spent"])),
        "google_ads__campaign_stats": lambda p: (
            p["segments"]["date"], int(p["metrics"]["costMicros"]) / 1_000_000),
        "meta_ads__campaign_insights": lambda p: (p["date_start"], float(p["spend"])),
    }
    spend: dict[tuple[str, date], float] = {}
    for table, day_and_cost in extract.items():
        channel = table.split("__")[0]
        for payload in raw_payloads(built, table):
            day, cost = day_and_cost(payload)
            key = (channel, date.fromisoformat(day).replace(day=1))
            spend[key] = spend.get(key, 0.0) + cost
    return spend


def test_cac_recomputed_from_raw(built: Built) -> None:
    spend = _raw_spend_by_channel_month(built)
    paid = {channel for channel, _ in spend}
    assert paid == {"yandex_direct", "vk_ads", "google_ads", "meta_ads"}
    truth = built.business.ground_truth.new_customers_by_channel_month
    acq = built.df("select month, channel, spend, new_customers, cac, cac_undefined "
                   "from marts.fct_acquisition_monthly")
    acq["month"] = acq["month"].map(lambda v: pd.Timestamp(v).date())
    checked = 0
    for row in acq.itertuples(index=False):
        if row.channel in paid:
            customers = int(truth[(truth.month == row.month)
                                  & (truth.channel == row.channel)].new_customers.sum())
            month_spend = spend.get((row.channel, row.month), 0.0)
        elif row.channel == "all":
            customers = int(truth[truth.month == row.month].new_customers.sum())
            month_spend = sum(v for (_, m), v in spend.items() if m == row.month)
        else:
            continue
        assert float(row.spend) == pytest.approx(month_spend, abs=0.005)
        if customers:
            assert float(row.cac) == pytest.approx(month_spend / customers, abs=0.0051)
            assert not row.cac_undefined
        else:
            assert pd.isna(row.cac)
            assert bool(row.cac_undefined) == (month_spend > 0)
        checked += 1
    assert checked >= 5 * 12


def test_crr_recomputed_from_orders(built: Built) -> None:
    """CRR and strict retention recomputed in pandas from the order facts (identity itself is
    checked against the generator's persons by the known-answer tests above)."""
    facts = built.df("select customer_id, order_date from marts.fct_orders")
    orders: dict[str, list[date]] = {}
    for customer, day in facts.itertuples(index=False):
        orders.setdefault(customer, []).append(pd.Timestamp(day).date())
    window = timedelta(days=ACTIVITY_WINDOW_DAYS)

    def active(on: date) -> set[str]:
        return {c for c, ds in orders.items() if any(on - window <= d < on for d in ds)}

    crr = built.df("select * from marts.fct_crr_monthly")
    crr["month"] = crr["month"].map(lambda v: pd.Timestamp(v).date())
    for month in (date(2025, 6, 1), date(2026, 3, 1)):
        start, stop = month, (month + timedelta(days=32)).replace(day=1)
        s_set, e_set = active(start), active(stop)
        new = {c for c, ds in orders.items() if start <= min(ds) < stop}
        retained = {c for c in s_set if any(start <= d < stop for d in orders[c])}
        row = crr[crr.month == month].iloc[0]
        assert row.customers_active_start == len(s_set)
        assert row.customers_active_end == len(e_set)
        assert row.new_customers == len(new)
        assert row.retained_customers == len(retained)
        expected = (len(e_set) - len(new)) / len(s_set) * 100
        assert float(row.crr) == pytest.approx(expected)
        assert float(row.strict_retention) == pytest.approx(len(retained) / len(s_set))


def test_cohort_retention_matrix_recomputed_from_orders(built: Built) -> None:
    """Every cell of the cohort matrix from the order facts: cohort = month of a customer's
    first order; retention at k = share of the cohort with an order in month cohort + k;
    LTV at k = the cohort's revenue through month cohort + k / cohort size."""
    orders = built.df("select customer_id, order_month, amount from marts.fct_orders")
    orders["month"] = orders.order_month.map(lambda v: pd.Period(pd.Timestamp(v), "M"))
    orders["amount"] = orders.amount.astype(float)
    cohort_of = orders.groupby("customer_id").month.min().rename("cohort")
    orders = orders.join(cohort_of, on="customer_id")
    orders["offset"] = [(m - c).n for m, c in zip(orders.month, orders.cohort, strict=True)]
    last_month = pd.Period(built.business.end, "M")

    mart = built.df("select * from marts.fct_cohort_retention")
    mart["cohort"] = mart.cohort_month.map(lambda v: pd.Period(pd.Timestamp(v), "M"))
    mart = mart.set_index(["cohort", "month_offset"]).sort_index()
    expected_cells = 0
    for cohort, members in orders.groupby("cohort"):
        size = members.customer_id.nunique()
        for k in range((last_month - cohort).n + 1):
            got = mart.loc[(cohort, k)]
            active = members[members.offset == k].customer_id.nunique()
            revenue = members[members.offset <= k].amount.sum()
            assert got.cohort_size == size, (cohort, k)
            assert got.active_customers == active, (cohort, k)
            assert float(got.retention_rate) == pytest.approx(active / size, abs=1e-9)
            assert float(got.cumulative_revenue) == pytest.approx(revenue, abs=0.005)
            ltv = (Decimal(str(round(revenue, 2))) / size).quantize(Decimal("0.01"), ROUND_HALF_UP)
            assert Decimal(str(got.ltv)).quantize(Decimal("0.01")) == ltv, (cohort, k)
            expected_cells += 1
    assert len(mart) == expected_cells
    assert (mart.xs(0, level="month_offset").retention_rate.astype(float) == 1.0).all()


# docs are backend-independent YAML; `dbt docs generate` costs a parse and a catalog query per
# run, so it runs on the DuckDB build only (the suite's time budget)
@pytest.mark.parametrize("marts", ["duckdb"], indirect=True)
def test_docs_site_lists_every_mart_with_its_columns(
    marts: MartsBuild, built: Built, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`voronka docs` builds dbt's docs from the warehouse: descriptions, columns, lineage."""
    from voronka import cli

    for name, value in built.env.items():
        monkeypatch.setenv(name, value)
    target = tmp_path / "docs"
    assert cli.main(["docs", "--target-path", str(target)]) == 0
    catalog = json.loads((target / "catalog.json").read_text())
    manifest = json.loads((target / "manifest.json").read_text())
    orders = catalog["nodes"]["model.voronka.fct_orders"]
    assert orders["metadata"]["schema"] == "marts"  # read from this warehouse's catalog
    assert "order_source" in orders["columns"]
    described = manifest["nodes"]["model.voronka.fct_orders"]
    assert described["description"] and described["columns"]["order_source"]["description"]
    assert "model.voronka.int_orders" in described["depends_on"]["nodes"]  # lineage
    assert (target / "index.html").exists()

    # a BI user never opens the SQL: every mart and every one of its columns is described
    marts = [uid for uid, node in manifest["nodes"].items()
             if node["resource_type"] == "model" and node["schema"] == "marts"]
    assert len(marts) >= 18, marts
    for uid in marts:
        node = manifest["nodes"][uid]
        assert node["description"].strip(), uid
        columns = catalog["nodes"][uid]["columns"]
        undocumented = [c for c in columns
                        if not node["columns"].get(c, {}).get("description", "").strip()]
        assert not undocumented, (uid, undocumented)
    # what consumes the marts, and the metric catalogue on the site's front page
    exposures = manifest["exposures"]
    dashboard = exposures["exposure.voronka.marketing_dashboard"]["depends_on"]["nodes"]
    audiences = exposures["exposure.voronka.audience_exports"]["depends_on"]["nodes"]
    assert "model.voronka.fct_acquisition_monthly" in dashboard
    assert {"model.voronka.dim_customers", "model.voronka.fct_lookalike_seed"} <= set(audiences)
    overview = manifest["docs"]["doc.voronka.__overview__"]["block_contents"]
    assert "Metric catalogue" in overview and "fct_lookalike_seed" in overview

