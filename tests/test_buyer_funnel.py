"""The amoCRM buyer funnel («Покупатели», issue 13 point 1): marts.fct_buyer_funnel_monthly and
marts.fct_buyer_status_moves against the simulator's own buyer model (synthetic/truth_buyers),
on DuckDB and PostgreSQL (the shared `marts` build) and on the second business (`marts_alt`,
DuckDB, a mid-month as-of date).

The truth evaluates the funnel's status rule at each month end straight from the simulator's
buyers, purchases and hand-set next dates; the marts rebuild the statuses from the landed
`customer_status_changed` events and the next dates from the landed customers.
"""

from __future__ import annotations

import pandas as pd
from _support import MartsBuild

from synthetic import amocrm_extra, truth_buyers
from voronka.summary import buyer_funnel_lines

FUNNEL_KEY = ["month", "status_id"]
MOVES_KEY = ["month", "from_status_id", "to_status_id"]


def _ints(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Month as a date, counts and ids as plain ints (backends return different dtypes)."""
    out = frame.copy()
    out["month"] = pd.to_datetime(out["month"]).dt.date
    for column in columns:
        if column != "month":
            out[column] = out[column].astype("int64")
    return out.sort_values(columns[:3]).reset_index(drop=True)


def _funnel(marts: MartsBuild) -> pd.DataFrame:
    columns = [*FUNNEL_KEY, *truth_buyers.FUNNEL_COLUMNS]
    frame = marts.df(f"select {', '.join(columns)} from marts.fct_buyer_funnel_monthly")
    return _ints(frame, columns)


def _moves(marts: MartsBuild) -> pd.DataFrame:
    columns = [*MOVES_KEY, "moves", "buyers"]
    return _ints(marts.df(f"select {', '.join(columns)} from marts.fct_buyer_status_moves"),
                 columns)


def _truth(marts: MartsBuild, name: str, columns: list[str]) -> pd.DataFrame:
    return _ints(marts.business.ground_truth.table(name), columns)


def _assert_funnel_matches_truth(marts: MartsBuild) -> None:
    columns = [*FUNNEL_KEY, *truth_buyers.FUNNEL_COLUMNS]
    got, want = _funnel(marts), _truth(marts, "buyer_funnel_monthly", columns)
    assert want["buyers_at_month_end"].sum() > 0 and want["purchases_made"].sum() > 0
    pd.testing.assert_frame_equal(got[columns], want[columns])


def test_buyer_funnel_nodes_build_and_pass(marts: MartsBuild):
    for fragment in ("stg_amocrm__customer_status_events", "int_buyer_status_spells",
                     "int_buyer_purchase_periods", "fct_buyer_funnel_monthly",
                     "fct_buyer_status_moves"):
        marts.assert_nodes_passed(fragment)


def test_funnel_per_month_and_status_matches_the_simulator(marts: MartsBuild):
    _assert_funnel_matches_truth(marts)


def test_status_moves_match_the_simulator(marts: MartsBuild):
    columns = [*MOVES_KEY, "moves", "buyers"]
    got, want = _moves(marts), _truth(marts, "buyer_status_moves", columns)
    assert len(want) > 0
    pd.testing.assert_frame_equal(got[columns], want[columns])


def test_stock_and_flows_add_up_and_names_come_from_the_crm(marts: MartsBuild):
    """buyers at a month end = the previous month's + entered - exited, in every status; the
    moves mart's moves are the events counted as entries and exits."""
    frame = marts.df("select month, status_id, status_name, buyers_at_month_end, entered, "
                     "exited from marts.fct_buyer_funnel_monthly")
    frame = _ints(frame, ["month", "status_id", "buyers_at_month_end", "entered", "exited"])
    frame = frame.sort_values(["status_id", "month"])
    previous = frame.groupby("status_id")["buyers_at_month_end"].shift(1, fill_value=0)
    assert (frame["buyers_at_month_end"] == previous + frame["entered"]
            - frame["exited"]).all()
    names = {s["id"]: s["name"] for s in marts.business.amocrm["customer_statuses"]}
    assert dict(zip(frame["status_id"], frame["status_name"], strict=True)) == names
    moves = _moves(marts)
    assert moves["moves"].sum() == frame["exited"].sum() == len(
        marts.business.amocrm["customer_events"])


def test_months_run_from_the_first_buyer_to_the_as_of_month(marts: MartsBuild):
    months = marts.df("select min(month) as first, max(month) as last, "
                      "count(distinct month) as n from marts.fct_buyer_funnel_monthly")
    as_of = pd.Timestamp(marts.df("select as_of_month from intermediate.int_as_of_date")
                         .iloc[0, 0]).date()
    first_buyer = min(c["created_at"] for c in marts.business.amocrm["customers"])
    first = pd.Timestamp(first_buyer, unit="s", tz="Europe/Moscow").date().replace(day=1)
    assert pd.Timestamp(months.iloc[0]["last"]).date() == as_of
    assert pd.Timestamp(months.iloc[0]["first"]).date() == first
    span = (as_of.year - first.year) * 12 + as_of.month - first.month + 1
    assert int(months.iloc[0]["n"]) == span


def test_the_current_period_uses_amocrms_own_next_date(marts: MartsBuild, monkeypatch):
    """Buyers whose manager set the next date by hand: with last purchase + periodicity
    instead, the expected and overdue counts would differ, and the mart matches the CRM's."""
    sim = marts.business.ground_truth._sim
    by_periodicity = truth_buyers.tables(sim)["buyer_funnel_monthly"]
    monkeypatch.setattr(amocrm_extra, "next_date_overrides", lambda _sim: {})
    naive = truth_buyers.tables(sim)["buyer_funnel_monthly"]
    columns = ["purchases_expected", "buyers_overdue_at_month_end"]
    assert not naive[columns].equals(by_periodicity[columns])
    basis = marts.df("select expected_basis, count(*) as n "
                     "from intermediate.int_buyer_purchase_periods group by expected_basis")
    counts = dict(zip(basis["expected_basis"], basis["n"].astype(int), strict=True))
    assert counts["crm"] == len(marts.business.amocrm["customers"])


def test_second_business_with_a_mid_month_as_of_date_matches_too(marts_alt: MartsBuild):
    marts_alt.assert_nodes_passed("fct_buyer_funnel_monthly")
    _assert_funnel_matches_truth(marts_alt)
    columns = [*MOVES_KEY, "moves", "buyers"]
    pd.testing.assert_frame_equal(_moves(marts_alt)[columns],
                                  _truth(marts_alt, "buyer_status_moves", columns)[columns])


def test_demo_summary_shows_the_as_of_months_funnel(marts: MartsBuild):
    truth = marts.business.ground_truth.table("buyer_funnel_monthly")
    last = truth[truth["month"] == truth["month"].max()]
    names = {s["id"]: s["name"] for s in marts.business.amocrm["customer_statuses"]}
    lines = buyer_funnel_lines(marts.wh)
    assert lines[0].startswith(f"Buyer funnel (amoCRM «Покупатели»), "
                               f"{last['month'].iloc[0]:%Y-%m} up to {marts.business.end}")
    for row in last.itertuples():
        assert any(line.split() == [*names[row.status_id].split(),
                                    f"{row.buyers_at_month_end:,}"] for line in lines), row
    assert lines[-2] == (
        f"  purchases this month: {last.purchases_expected.sum():,} expected, "
        f"{last.purchases_made.sum():,} made; overdue buyers: "
        f"{last.buyers_overdue_at_month_end.sum():,}")
