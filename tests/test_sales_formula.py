"""The sales formula mart (marts.fct_sales_formula_monthly) on a landed synthetic business.

V = leads x cv x aov x orders_per_customer x margin must equal the month's gross margin (each
order's own source margin, else amount x margin_rate; revenue when no order has a source margin
and margin_rate is 1) to the cent, the factors must be what pandas
recomputes from fct_orders / fct_leads, and the month-over-month log decomposition must add
up. A second, tiny business with hand-added early records covers the documented edge months
(no leads and no orders, orders without leads, leads without orders) and the margin_rate var.
The PostgreSQL variants run only with VORONKA_TEST_POSTGRES=1.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
from _support import MartsBuild, failed_nodes, run_dbt, scratch_warehouse

import synthetic
from synthetic.landing import land_business
from warehouse.base import Warehouse

SEED, SCALE = 7, 0.3
# the mart, its tests and everything upstream, plus the facts pandas recomputes it from;
# `cautious`: no test of an upstream model that needs a mart outside this selection
SELECT = ["--select", "+fct_sales_formula_monthly+ +fct_orders +fct_leads",
          "--indirect-selection", "cautious"]
FACTORS = ["leads", "cv", "aov", "orders_per_customer", "margin"]
COLUMNS = (["month", "month_complete", "leads", "customers", "orders", "revenue", "margin_rate",
            "gross_margin", "margin_known_share", "cv", "aov", "orders_per_customer", "margin",
            "value"]
           + [f"contribution_{f}" for f in FACTORS] + ["value_log_change"])

POSTGRES_ON = os.environ.get("VORONKA_TEST_POSTGRES") == "1"
BACKENDS = [
    "duckdb",
    pytest.param("postgres", marks=[
        pytest.mark.postgres,
        pytest.mark.skipif(not POSTGRES_ON, reason="set VORONKA_TEST_POSTGRES=1"),
    ]),
]


@dataclass
class Built:
    backend: str
    wh: Warehouse
    env: dict[str, str]
    workdir: Path
    business: synthetic.SyntheticBusiness
    run_results: dict
    returncode: int
    output: str

    def df(self, sql: str) -> pd.DataFrame:
        return self.wh.query_df(sql)

    def mart(self) -> pd.DataFrame:
        frame = self.df("select * from marts.fct_sales_formula_monthly order by month")
        frame["month"] = frame["month"].map(_iso)
        return frame


def _iso(value: object) -> str:
    return pd.Timestamp(value).date().isoformat()


def _money(value: object) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"))


def _build(request, tmp_path_factory, business, label: str) -> Iterator[Built]:
    workdir = tmp_path_factory.mktemp(f"sales_formula_{label}_{request.param}")
    with scratch_warehouse(request.param, workdir, f"sf_{label}") as (wh, env):
        land_business(business, wh)
        code, out, results = run_dbt(workdir, env, "build", *SELECT)
        yield Built(request.param, wh, env, workdir, business, results, code, out)


def _assert_build_passed(built: Built) -> None:
    assert built.returncode == 0, built.output[-4000:]
    statuses = {r["unique_id"]: r["status"] for r in built.run_results["results"]}
    failed = failed_nodes(built.run_results)
    assert not failed, failed
    assert "model.voronka.fct_sales_formula_monthly" in statuses
    ran = {k for k in statuses if "sales_formula" in k and k.startswith("test.")}
    assert any("assert_sales_formula_value_equals_gross_margin" in k for k in ran), ran
    assert any("assert_sales_formula_log_decomposition_adds_up" in k for k in ran), ran


# -- the seeded business ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def built(marts: MartsBuild) -> Built:
    """The shared full build of the seeded business (tests/conftest.py)."""
    return Built(marts.backend, marts.wh, marts.env, marts.workdir, marts.business,
                 marts.run_results, marts.returncode, marts.output)


def test_build_passes_with_the_formula_tests(marts: MartsBuild) -> None:
    ran = marts.assert_nodes_passed("sales_formula")
    assert "model.voronka.fct_sales_formula_monthly" in ran
    assert any("assert_sales_formula_value_equals_gross_margin" in k for k in ran), ran
    assert any("assert_sales_formula_log_decomposition_adds_up" in k for k in ran), ran


def test_columns_follow_the_contract(built: Built) -> None:
    got = list(built.df("select * from marts.fct_sales_formula_monthly where 1 = 0").columns)
    assert got == COLUMNS


def test_one_row_per_month_of_the_spine(built: Built) -> None:
    mart = built.mart()
    spine = built.df("select month from intermediate.int_months order by month")
    assert list(mart.month) == [_iso(m) for m in spine.month]
    assert mart.month.iloc[-1] == built.business.end.replace(day=1).isoformat()


def test_revenue_and_orders_equal_the_ground_truth(built: Built) -> None:
    mart = built.mart().set_index("month")
    truth = built.business.ground_truth.revenue_by_month.copy()
    truth["month"] = truth["month"].map(_iso)
    truth = truth.set_index("month")
    assert set(truth.index) <= set(mart.index)
    for month, row in mart.iterrows():
        if month in truth.index:
            assert _money(row.revenue) == _money(truth.revenue[month]), month
            assert int(row.orders) == int(truth.orders[month]), month
        else:
            assert _money(row.revenue) == 0 and int(row.orders) == 0, month


def test_leads_equal_the_ground_truth(built: Built) -> None:
    mart = built.mart().set_index("month")
    truth = built.business.ground_truth.leads_by_channel_month.copy()
    truth["month"] = truth["month"].map(_iso)
    expected = truth.groupby("month").leads.sum()
    for month, row in mart.iterrows():
        assert int(row.leads) == int(expected.get(month, 0)), month


def _recomputed(built: Built) -> pd.DataFrame:
    """The factors recomputed in pandas from the order and lead facts, per mart month."""
    orders = built.df("select order_month, customer_id, amount, gross_margin from marts.fct_orders")
    orders["month"] = orders["order_month"].map(_iso)
    orders["amount"] = orders["amount"].map(Decimal)
    orders["gross_margin"] = orders["gross_margin"].map(Decimal)
    leads = built.df("select created_month from marts.fct_leads")
    leads["month"] = leads["created_month"].map(_iso)
    rows = []
    for month in built.mart().month:
        month_orders = orders[orders.month == month]
        n_leads = int((leads.month == month).sum())
        n_orders = len(month_orders)
        n_customers = month_orders.customer_id.nunique()
        revenue = sum(month_orders.amount, Decimal("0"))
        gross_margin = sum(month_orders.gross_margin, Decimal("0"))
        rows.append({
            "month": month, "leads": n_leads, "customers": n_customers, "orders": n_orders,
            "revenue": revenue, "gross_margin": gross_margin,
            "margin": float(gross_margin) / float(revenue) if revenue else None,
            "cv": n_customers / n_leads if n_leads else None,
            "aov": float(revenue) / n_orders if n_orders else None,
            "orders_per_customer": n_orders / n_customers if n_customers else None,
        })
    return pd.DataFrame(rows).set_index("month")


def _close(got: object, expected: object) -> bool:
    if expected is None or (isinstance(expected, float) and math.isnan(expected)):
        return got is None or pd.isna(got)
    return got is not None and not pd.isna(got) and math.isclose(
        float(got), float(expected), rel_tol=1e-12, abs_tol=1e-12)


def test_factors_recomputed_from_the_facts(built: Built) -> None:
    mart = built.mart().set_index("month")
    expected = _recomputed(built)
    for month, row in mart.iterrows():
        want = expected.loc[month]
        assert int(row.leads) == want.leads, month
        assert int(row.customers) == want.customers, month
        assert int(row.orders) == want.orders, month
        assert _money(row.revenue) == want.revenue, month
        assert _money(row.gross_margin) == want.gross_margin, month
        for factor in ("cv", "aov", "orders_per_customer", "margin"):
            assert _close(row[factor], want[factor]), (month, factor, row[factor], want[factor])
        assert float(row.margin_rate) == 1.0


def test_product_reconciles_to_revenue_to_the_cent(built: Built) -> None:
    mart = built.mart()
    assert (mart.orders > 0).sum() >= 12 and (mart.leads > 0).all()
    # the shop's orders carry their own margins: some months' gross margin is below revenue
    assert (mart.gross_margin < mart.revenue).any()
    for row in mart.itertuples(index=False):
        # the rounded product is exactly the month's gross margin
        assert row.value is not None and _money(row.value) == _money(row.gross_margin), row.month
        product = row.leads * row.cv * row.aov * row.orders_per_customer * row.margin
        assert abs(product - float(row.gross_margin)) < 0.005, row.month


def test_log_decomposition_adds_up(built: Built) -> None:
    mart = built.mart()
    assert mart.iloc[0][[f"contribution_{f}" for f in FACTORS] + ["value_log_change"]].isna().all()
    checked = 0
    for previous, current in zip(mart.iloc[:-1].itertuples(), mart.iloc[1:].itertuples(),
                                 strict=True):
        for factor in FACTORS:
            f0, f1 = getattr(previous, factor), getattr(current, factor)
            got = getattr(current, f"contribution_{factor}")
            want = math.log(float(f1) / float(f0)) if f0 and f1 else None
            assert _close(got, want), (current.month, factor, got, want)
        want_change = math.log(float(current.gross_margin) / float(previous.gross_margin))
        assert _close(current.value_log_change, want_change), current.month
        total = sum(getattr(current, f"contribution_{f}") for f in FACTORS)
        assert math.isclose(total, current.value_log_change, rel_tol=0, abs_tol=1e-9)
        checked += 1
    assert checked == len(mart) - 1


# -- edge months and the margin_rate var --------------------------------------------------------
EDGE_START, EDGE_END = date(2025, 1, 1), date(2025, 4, 30)
SPEND_ONLY, ORDERS_NO_LEADS, LEADS_NO_ORDERS = "2024-10-01", "2024-11-01", "2024-12-01"


def edge_business() -> synthetic.SyntheticBusiness:
    """A tiny business from January 2025, plus three hand-added earlier months: October 2024
    with ad spend only (no leads, no orders), November with one shop order and no lead,
    December with one open Bitrix24 lead and no order."""
    base = synthetic.generate(seed=SEED, scale=0.05, start=EDGE_START, end=EDGE_END)
    spend = {**base.yandex_direct[0], "date": "2024-10-15"}
    shop_order = {**base.file_orders[0], "order_id": "SHOP-EDGE-1", "order_date": "2024-11-20",
                  "amount": "1234.56", "customer_phone": "+79990001122", "customer_email": "",
                  "customer_name": "Пограничный Случай"}
    lead = {**base.bitrix24["leads"][0], "ID": 99001, "STATUS_ID": "NEW",
            "STATUS_SEMANTIC_ID": "P", "DATE_CREATE": "2024-12-10T10:00:00+03:00",
            "DATE_MODIFY": "2024-12-10T10:00:00+03:00", "DATE_CLOSED": None, "CONTACT_ID": None,
            "PHONE": [{"ID": 99001, "VALUE_TYPE": "MOBILE", "VALUE": "+79990003344",
                       "TYPE_ID": "PHONE"}]}
    return dataclasses.replace(
        base,
        yandex_direct=[spend, *base.yandex_direct],
        file_orders=[shop_order, *base.file_orders],
        bitrix24={**base.bitrix24, "leads": [*base.bitrix24["leads"], lead]},
    )


# The edge months are SQL-shape cases, not backend ones: the formula's arithmetic is checked on
# both backends by the shared build above, so the edge business is built on DuckDB only (the
# suite's time budget).
@pytest.fixture(scope="module", params=["duckdb"])
def edge(request, tmp_path_factory) -> Iterator[Built]:
    yield from _build(request, tmp_path_factory, edge_business(), "edge")


def test_edge_build_passes(edge: Built) -> None:
    _assert_build_passed(edge)


def test_month_without_leads_and_orders(edge: Built) -> None:
    row = edge.mart().set_index("month").loc[SPEND_ONLY]
    assert (row.leads, row.customers, row.orders) == (0, 0, 0)
    assert _money(row.revenue) == 0 and _money(row.gross_margin) == 0
    assert pd.isna(row.cv) and pd.isna(row.aov) and pd.isna(row.orders_per_customer)
    assert _money(row.value) == 0  # nothing sold: value 0, though the factors are undefined
    assert pd.isna(row.value_log_change)


def test_month_with_orders_and_no_leads(edge: Built) -> None:
    row = edge.mart().set_index("month").loc[ORDERS_NO_LEADS]
    assert (row.leads, row.customers, row.orders) == (0, 1, 1)
    # the file row's own gross margin (copied from another order): the margin is real
    stated = Decimal(edge.business.file_orders[0]["gross_margin"].replace(",", "."))
    assert _money(row.revenue) == Decimal("1234.56")
    assert _money(row.gross_margin) == stated and float(row.margin_known_share) == 1
    assert pd.isna(row.cv)  # customers / 0 leads: undefined
    assert float(row.aov) == pytest.approx(1234.56) and float(row.orders_per_customer) == 1
    assert row.value is None or pd.isna(row.value)  # the formula is undefined here
    assert pd.isna(row.contribution_leads) and pd.isna(row.value_log_change)


def test_month_with_leads_and_no_orders(edge: Built) -> None:
    mart = edge.mart().set_index("month")
    row = mart.loc[LEADS_NO_ORDERS]
    assert (row.leads, row.customers, row.orders) == (1, 0, 0)
    assert float(row.cv) == 0
    assert pd.isna(row.aov) and pd.isna(row.orders_per_customer)
    assert _money(row.value) == 0
    # previous month had no leads, this one has no orders (no revenue, so no margin either):
    # no factor is positive in both months, no contribution is defined
    assert row[[f"contribution_{f}" for f in FACTORS] + ["value_log_change"]].isna().all()
    # the next month compares sales with a month that sold nothing: ln(V1/0) is null too
    after = mart.loc[EDGE_START.isoformat()]
    assert _money(after.value) == _money(after.gross_margin) > 0
    assert pd.isna(after.value_log_change) and pd.isna(after.contribution_cv)
    assert after.contribution_leads == pytest.approx(math.log(after.leads / 1))


def test_margin_rate_var_must_be_a_rate(edge: Built) -> None:
    """A margin_rate that is not a number in [0, 1] stops the build with a clear message (it
    would otherwise be pasted into SQL). The arithmetic with a margin rate is the dbt unit test
    sales_formula_with_a_margin_rate, run on both backends by the shared build."""
    code, out, _ = run_dbt(edge.workdir, edge.env, "compile", "--select",
                           "fct_sales_formula_monthly", "--vars", "{margin_rate: 'x; drop'}")
    assert code != 0 and "margin_rate must be a number in [0, 1]" in out


def test_margin_rate_unit_test_ran(marts: MartsBuild) -> None:
    ran = marts.assert_nodes_passed("sales_formula_with_a_margin_rate")
    assert any(k.startswith("unit_test.") for k in ran), ran
