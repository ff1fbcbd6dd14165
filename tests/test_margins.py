"""Real per-order gross margins in the sales formula, ROMI gross, CAC payback and formula LTV
(issue 13 point 5), against the truth.

The seeded business's shop states each order's own gross margin in the orders file; CRM orders
carry none, so their margin is amount x margin_rate (default 1). synthetic/truth_acquisition.py
sums both per month from the simulator's orders (`acq_gross_margin_by_month`); the shared
`marts` build (DuckDB and PostgreSQL) must agree: the sales formula's gross margin and
margin_known_share, the product of its factors to the cent, ROMI gross of the blended row and
the formula LTV's margin.
"""

from datetime import date

import pandas as pd
import pytest
from _support import MartsBuild


def _day(value: object) -> date:
    return pd.Timestamp(value).date()


def _margins(build: MartsBuild) -> pd.DataFrame:
    frame = build.business.ground_truth.table("acq_gross_margin_by_month").copy()
    frame["month"] = frame["month"].map(_day)
    return frame.set_index("month")


@pytest.fixture(scope="module")
def truth(marts: MartsBuild) -> pd.DataFrame:
    return _margins(marts)


def _mart(marts: MartsBuild, name: str) -> pd.DataFrame:
    frame = marts.df(f"select * from marts.{name} order by month")
    frame["month"] = frame["month"].map(_day)
    return frame


def test_own_nodes_passed(marts: MartsBuild) -> None:
    ran = (marts.assert_nodes_passed("sales_formula")
           + marts.assert_nodes_passed("customer_value"))
    for unit_test in ("sales_formula_with_a_margin_rate", "customer_value_known_answer"):
        assert any(n.startswith("unit_test.") and n.endswith(unit_test) for n in ran)


def check_sales_formula(marts: MartsBuild, truth: pd.DataFrame) -> None:
    """Gross margin, margin, margin_known_share and the product per month = the truth."""
    mart = _mart(marts, "fct_sales_formula_monthly").set_index("month")
    assert set(truth.index) <= set(mart.index)
    partial = 0
    for month, row in mart.iterrows():
        if month not in truth.index:
            assert float(row.gross_margin) == 0 and pd.isna(row.margin), month
            continue
        want = truth.loc[month]
        assert float(row.gross_margin) == pytest.approx(want.gross_margin, abs=0.005), month
        assert row.margin == pytest.approx(want.gross_margin / want.revenue, rel=1e-12), month
        assert row.margin_known_share == pytest.approx(
            want.revenue_source_margin / want.revenue, rel=1e-9, abs=1e-12), month
        # the product of the five factors is the gross margin to the cent
        if not pd.isna(row.value):
            assert float(row.value) == pytest.approx(want.gross_margin, abs=0.005), month
            product = row.leads * row.cv * row.aov * row.orders_per_customer * row.margin
            assert abs(product - want.gross_margin) < 0.005, month
        partial += 0 < row.margin_known_share < 1
    assert partial > 0  # months mixing source margins and margin_rate


def test_sales_formula_margin_equals_the_truth(marts: MartsBuild, truth: pd.DataFrame) -> None:
    check_sales_formula(marts, truth)


def test_second_business_sales_formula(marts_alt: MartsBuild) -> None:
    """The same on the second business (seed 11, scale 0.15, mid-month as-of date)."""
    check_sales_formula(marts_alt, _margins(marts_alt))


def test_romi_gross_uses_real_margins(marts: MartsBuild, truth: pd.DataFrame) -> None:
    """Blended row: attributed gross margin = the month's truth gross margin; romi_gross is
    defined wherever spend is covered and positive, whatever the share of known margins."""
    mart = _mart(marts, "fct_acquisition_monthly")
    blended = mart[mart.channel == "all"].set_index("month")
    checked = 0
    for month, row in blended.iterrows():
        gm = truth.gross_margin.get(month, 0.0)
        revenue = truth.revenue.get(month, 0.0)
        assert float(row.attributed_gross_margin) == pytest.approx(gm, abs=0.005), month
        if revenue:
            assert row.margin_known_share == pytest.approx(
                truth.revenue_source_margin[month] / revenue, rel=1e-9, abs=1e-12), month
        spend = float(row.spend)
        if row.spend_covered and spend > 0:
            assert row.romi_gross == pytest.approx((gm - spend) / spend * 100, abs=1e-6), month
            checked += not row.gross_margin_known
    assert checked > 0  # months with unknown margins still have romi_gross
    # payback rests on the same margins: its share is published beside it
    with_payback = mart[mart.cac_payback_months.notna()]
    assert not with_payback.empty and with_payback.cohort_margin_known_share.notna().all()


def test_formula_ltv_uses_the_twelve_months_margin(marts: MartsBuild,
                                                   truth: pd.DataFrame) -> None:
    mart = _mart(marts, "fct_customer_value_monthly")
    months = list(mart.month)
    checked = 0
    for row in mart.itertuples(index=False):
        window = [m for m in months if m <= row.month][-12:]
        revenue = sum(truth.revenue.get(m, 0.0) for m in window)
        gm = sum(truth.gross_margin.get(m, 0.0) for m in window)
        known = sum(truth.revenue_source_margin.get(m, 0.0) for m in window)
        if not revenue:
            assert pd.isna(row.margin_12m)
            continue
        assert row.margin_12m == pytest.approx(gm / revenue, rel=1e-9), row.month
        assert row.margin_known_share == pytest.approx(known / revenue, rel=1e-9, abs=1e-12)
        if not pd.isna(row.formula_ltv):
            want = (float(row.revenue_12m) / row.orders_12m * row.purchase_frequency_per_year
                    * row.expected_lifetime_years * gm / revenue)
            assert float(row.formula_ltv) == pytest.approx(want, abs=0.006), row.month
            checked += 1
    assert checked > 0
