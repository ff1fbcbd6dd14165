"""marts.fct_customer_value_monthly recomputed in pandas from marts.fct_orders.

The shared full build of the seeded business (the `marts` fixture: models, data tests, unit
tests, once per backend) is read, and every column
of every month is recomputed from the order facts alone (customer, date, amount): a route
independent of the mart's SQL (no order numbers, no windows, plain set arithmetic per month).
The PostgreSQL variant runs only with VORONKA_TEST_POSTGRES=1.
"""

from __future__ import annotations

import calendar
from datetime import date, timedelta

import pandas as pd
import pytest
from _support import MartsBuild

ACTIVITY_WINDOW_DAYS = 180
LTV_MAX_LIFETIME_YEARS = 5
MARGIN_RATE = 1.0
LAPSED_DAYS = (90, 180, 365)

MONEY_COLUMNS = ("revenue", "aov", "revenue_12m", "aov_12m", "formula_ltv")


# -- the independent route ------------------------------------------------------------------
def _day(value) -> date:
    return pd.Timestamp(value).date()


def _add_months(day: date, months: int) -> date:
    """Calendar months later (earlier when negative), the day clamped to the month's end."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return date(year, month + 1, min(day.day, last))


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def recompute(orders: pd.DataFrame, month: date, as_of: date) -> dict:
    """Every column of one month from (customer_id, order_date, amount, gross_margin) rows."""
    month_end = date(month.year, month.month, calendar.monthrange(month.year, month.month)[1])
    period_end = min(month_end, as_of)
    stop = period_end + timedelta(days=1)  # "at the end" = on the day after period_end
    window = timedelta(days=ACTIVITY_WINDOW_DAYS)

    def between(start: date, end: date) -> pd.DataFrame:  # [start, end)
        return orders[(orders.order_date >= start) & (orders.order_date < end)]

    def active_on(day: date) -> set[str]:
        return set(between(day - window, day).customer_id)

    in_month = between(month, stop)
    trailing = between(_add_months(month, -11), stop)
    to_date = orders[orders.order_date < stop]
    per_customer = to_date.groupby("customer_id").order_date.agg(["size", "max"])

    before, at_end = active_on(_add_months(stop, -12)), active_on(stop)
    retention = _ratio(len(before & at_end), len(before))
    if retention is None:
        lifetime = None
    elif retention >= 1:
        lifetime = float(LTV_MAX_LIFETIME_YEARS)
    else:
        lifetime = min(1 / (1 - retention), LTV_MAX_LIFETIME_YEARS)
    aov_12m = _ratio(trailing.amount.sum(), len(trailing))
    frequency_year = _ratio(len(trailing), trailing.customer_id.nunique())
    # each order's own gross margin (source margin, else amount x margin_rate)
    margin_12m = _ratio(trailing.gross_margin.sum(), trailing.amount.sum())
    factors = (aov_12m, frequency_year, lifetime, margin_12m)
    customers = len(per_customer)
    row = {
        "period_end": period_end,
        "orders": len(in_month),
        "revenue": in_month.amount.sum(),
        "customers_with_order": in_month.customer_id.nunique(),
        "aov": _ratio(in_month.amount.sum(), len(in_month)),
        "purchase_frequency": _ratio(len(in_month), in_month.customer_id.nunique()),
        "orders_12m": len(trailing),
        "revenue_12m": trailing.amount.sum(),
        "customers_with_order_12m": trailing.customer_id.nunique(),
        "aov_12m": aov_12m,
        "purchase_frequency_per_year": frequency_year,
        "customers_active_year_before": len(before),
        "customers_retained_year": len(before & at_end),
        "annual_retention": retention,
        "expected_lifetime_years": lifetime,
        "margin_rate": MARGIN_RATE,
        "margin_12m": margin_12m,
        "formula_ltv": (None if None in factors
                        else aov_12m * frequency_year * lifetime * margin_12m),
        "customers_to_date": customers,
        "repeat_customers": int((per_customer["size"] >= 2).sum()),
        "repeat_purchase_rate": _ratio(int((per_customer["size"] >= 2).sum()), customers),
        "active_customers": len(at_end),
        "churned_customers": customers - len(at_end),
    }
    for n in LAPSED_DAYS:
        row[f"lapsed_{n}d"] = int((per_customer["max"] < stop - timedelta(days=n)).sum())
    return row


# -- fixtures' data -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def built(marts: MartsBuild) -> MartsBuild:
    """The shared full build of the seeded business (tests/conftest.py)."""
    return marts


@pytest.fixture(scope="module")
def orders(built: MartsBuild) -> pd.DataFrame:
    frame = built.df("select customer_id, order_date, amount, gross_margin from marts.fct_orders")
    frame["order_date"] = frame.order_date.map(_day)
    frame["amount"] = frame.amount.astype(float)
    frame["gross_margin"] = frame.gross_margin.astype(float)
    return frame


@pytest.fixture(scope="module")
def mart(built: MartsBuild) -> pd.DataFrame:
    frame = built.df("select * from marts.fct_customer_value_monthly order by month")
    frame["month"] = frame.month.map(_day)
    frame["period_end"] = frame.period_end.map(_day)
    return frame


@pytest.fixture(scope="module")
def as_of(built: MartsBuild) -> date:
    return _day(built.df("select as_of_date from intermediate.int_as_of_date").iloc[0, 0])


# -- tests ----------------------------------------------------------------------------------
def test_build_succeeds(built: MartsBuild) -> None:
    mine = built.assert_nodes_passed("customer_value") + built.assert_nodes_passed("assert_value_")
    kinds = {k.split(".")[0] for k in mine}
    assert {"model", "test", "unit_test"} <= kinds, mine


def test_one_row_per_month_of_the_spine(built: MartsBuild, mart: pd.DataFrame, as_of: date) -> None:
    spine = built.df("select month from intermediate.int_months order by month")
    assert list(mart.month) == [_day(m) for m in spine.month]
    assert mart.month.iloc[-1] == as_of.replace(day=1)
    assert mart.period_end.iloc[-1] == as_of


def test_every_column_recomputed_from_orders(
    mart: pd.DataFrame, orders: pd.DataFrame, as_of: date,
) -> None:
    months = list(mart.month)
    # every month; at least the first, a month with a year of history, and the as-of month
    assert len(months) > 13
    checked = 0
    for _, got in mart.iterrows():
        expected = recompute(orders, got.month, as_of)
        for column, value in expected.items():
            actual = got[column]
            where = f"{got.month} {column}"
            if value is None or (isinstance(value, float) and pd.isna(value)):
                assert actual is None or pd.isna(actual), where
            elif isinstance(value, date):
                assert _day(actual) == value, where
            else:
                tolerance = 0.006 if column in MONEY_COLUMNS else 1e-9
                assert float(actual) == pytest.approx(float(value), abs=tolerance,
                                                      rel=1e-9), where
        checked += 1
    assert checked == len(months)
    # the data really exercises the formulas
    assert mart.annual_retention.notna().any()
    assert mart.formula_ltv.notna().any()
    assert (mart.repeat_customers > 0).any()
    assert (mart.churned_customers > 0).any()


def test_one_order_customers_count_to_date_but_never_repeat(
    mart: pd.DataFrame, orders: pd.DataFrame,
) -> None:
    counts = orders.groupby("customer_id").size()
    single = counts[counts == 1]
    assert len(single) > 0, "the synthetic business has no one-order customer"
    last = mart.iloc[-1]
    # as of the as-of date every customer is to date; the non-repeat ones are exactly those
    # with a single order
    assert last.customers_to_date == len(counts)
    assert last.customers_to_date - last.repeat_customers == len(single)
    # one such customer, from the month of their only order on: without them the month has
    # one customer to date less and exactly as many repeat customers
    customer = single.index[0]
    day = orders.loc[orders.customer_id == customer, "order_date"].iloc[0]
    others = orders[orders.customer_id != customer]
    for month in (day.replace(day=1), mart.month.iloc[-1]):
        row = mart[mart.month == month].iloc[0]
        without = recompute(others, month, last.period_end)
        assert row.customers_to_date == without["customers_to_date"] + 1
        assert row.repeat_customers == without["repeat_customers"]


def test_first_month_has_no_year_before(mart: pd.DataFrame) -> None:
    first = mart.iloc[0]
    assert first.customers_active_year_before == 0
    assert pd.isna(first.annual_retention)
    assert pd.isna(first.expected_lifetime_years)
    assert pd.isna(first.formula_ltv)
