"""Repeat-purchase reminders (issue 13, point 2): amoCRM's own next purchase date as the
expected next order, the median-gap fallback, days until the expected order, overdue vs lapsed
(the overdue expiry) and the shipped reminder segments.

Expected values are recomputed here, never read from the repeat columns under test: amoCRM's
dates come from the simulator's buyers (the generator's own next date, manager-set ones
included, and when the buyer record was last touched), the median rule from the order rows of
marts.fct_orders, and the vars from dbt_project.yml. Both backends share the `marts` build;
the reminder windows' edges are checked on a small hand-made warehouse."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from _support import MartsBuild, scratch_warehouse

from audiences.segments import get_segment, load_segments, segment_members
from synthetic import amocrm_extra as X
from synthetic.model import DAY, msk_date

DBT_VARS = yaml.safe_load(
    (Path(__file__).resolve().parents[1] / "dbt_project" / "dbt_project.yml").read_text()
)["vars"]
DUE_WINDOW_DAYS = int(DBT_VARS["due_window_days"])
EXPIRY_MULTIPLE = float(DBT_VARS["overdue_expiry_gap_multiple"])
EXPIRY_MIN_DAYS = int(DBT_VARS["overdue_expiry_min_days"])
FIXED_EXPIRY = DBT_VARS["overdue_expiry_days"]
#: reminder segment -> days until the expected next order it covers (inclusive), as its file
#: documents: each covers its lead time until the next reminder takes over
REMINDERS = {"reminder_30_days_before": (8, 30), "reminder_7_days_before": (2, 7),
             "reminder_1_day_before": (0, 1)}


def _day(value: Any) -> date | None:
    return None if value is None or pd.isna(value) else pd.Timestamp(value).date()


def _opt(value: Any) -> Any:
    """None for SQL NULL (NaN / NA / None), else a plain Python value."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def expiry_days(gap: float) -> int:
    """metrics.md: twice the expected gap, at least 90 days (both vars), or the fixed var."""
    if FIXED_EXPIRY is not None:
        return int(FIXED_EXPIRY)
    return max(math.ceil(EXPIRY_MULTIPLE * gap), EXPIRY_MIN_DAYS)


def status_of(days_until: int, expiry: int) -> str:
    if days_until > DUE_WINDOW_DAYS:
        return "upcoming"
    if days_until >= 0:
        return "due"
    return "overdue" if -days_until <= expiry else "lapsed"


# -- the independent route ----------------------------------------------------------------------
@dataclass(frozen=True)
class BuyerDate:
    """One simulated amoCRM buyer: its next purchase date as the generator sets it, the day its
    record was last touched (created, or a purchase recorded) and the customer it maps to."""

    customer_id: str
    next_date: date
    touched: date
    periodicity_date: date  # last purchase (or creation) + periodicity: the date without a manager


def simulated_buyer_dates(build: MartsBuild) -> list[BuyerDate]:
    """Every buyer of the simulator, keyed to the mart's customer through its main contact's
    identity node (the only link a test has between a simulated person and a customer_id)."""
    sim = build.business.ground_truth._sim
    overrides = X.next_date_overrides(sim)
    nodes = build.df("select node_id, customer_id from intermediate.int_customers__resolved "
                     "where node_source = 'amocrm'")
    by_contact = {int(n.rsplit(":", 1)[1]): c for n, c in zip(nodes.node_id, nodes.customer_id,
                                                              strict=True)}
    out = []
    for buyer in sim.customers:
        period = X.buyer_periods(buyer, overrides.get(buyer.id))[-1]
        touched = max([buyer.created_ts, *(t.created_ts for t in buyer.transactions)])
        out.append(BuyerDate(
            customer_id=by_contact.get(buyer.contact.id, f"b_{buyer.id}"),
            next_date=msk_date(period.next_ts), touched=msk_date(touched),
            periodicity_date=msk_date(period.start_ts + buyer.product.cycle_days * DAY)))
    return out


def median_rule(orders: pd.DataFrame) -> dict[str, tuple[date, float | None, str | None]]:
    """customer -> (last order date, median gap, basis): own median (when at least half a
    day), else the median of every gap after an order of the last order's product category,
    else of all gaps."""
    by_customer: dict[str, list] = defaultdict(list)
    for row in orders.itertuples(index=False):
        by_customer[row.customer_id].append(row)
    own: dict[str, list[int]] = {}
    by_category: dict[str, list[int]] = defaultdict(list)
    for customer, rows in by_customer.items():
        rows.sort(key=lambda r: r.order_number)
        own[customer] = [(b.order_date - a.order_date).days for a, b in pairwise(rows)]
        for a, b in pairwise(rows):
            if _opt(a.product_category) is not None:
                by_category[a.product_category].append((b.order_date - a.order_date).days)
    every = [g for gaps in own.values() for g in gaps]
    out = {}
    for customer, rows in by_customer.items():
        category = _opt(rows[-1].product_category)
        # an own median under half a day (every repeat on the same day) gives no rhythm
        mine = statistics.median(own[customer]) if own[customer] else None
        mine = mine if mine is not None and mine >= 0.5 else None
        choices = (
            (mine, "customer"),
            (statistics.median(by_category[category])
             if mine is None and by_category.get(category) else None, "category"),
            (statistics.median(every) if every else None, "overall"),
        )
        gap, basis = next(((g, b) for g, b in choices if g is not None), (None, None))
        out[customer] = (rows[-1].order_date, gap, basis)
    return out


def recompute(orders: pd.DataFrame, buyers: list[BuyerDate], as_of: date) -> dict[str, dict]:
    """customer -> the expected next order and its status, per metrics.md and the documented
    choices (a CRM date counts when its buyer was last touched by the as-of date, it is after
    the last order and not past its expiry; its gap = date - last order)."""
    crm: dict[str, list[BuyerDate]] = defaultdict(list)
    for buyer in buyers:
        crm[buyer.customer_id].append(buyer)
    out = {}
    for customer, (last, median_gap, median_basis) in median_rule(orders).items():
        applying = [b.next_date for b in crm.get(customer, [])
                    if b.touched <= as_of and b.next_date > last
                    and (as_of - b.next_date).days <= expiry_days((b.next_date - last).days)]
        if applying:
            expected = min(applying)
            gap, basis = float((expected - last).days), "crm"
        elif median_gap is not None:
            expected = last + timedelta(days=math.floor(median_gap + 0.5))
            gap, basis = float(median_gap), median_basis
        else:
            out[customer] = {"expected_next_order_date": None, "repurchase_status": None,
                             "is_due": False, "is_overdue": False, "last_order_date": last}
            continue
        until = (expected - as_of).days
        status = status_of(until, expiry_days(gap))
        out[customer] = {
            "last_order_date": last, "expected_next_order_date": expected,
            "expected_next_order_basis": basis, "expected_gap_days": gap,
            "days_until_expected_order": until, "overdue_expiry_days": expiry_days(gap),
            "repurchase_status": status, "is_due": status == "due",
            "is_overdue": status == "overdue",
        }
    return out


# -- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def as_of(marts: MartsBuild) -> date:
    return _day(marts.df("select as_of_date from intermediate.int_as_of_date").iloc[0, 0])


@pytest.fixture(scope="module")
def buyers(marts: MartsBuild) -> list[BuyerDate]:
    return simulated_buyer_dates(marts)


@pytest.fixture(scope="module")
def expected(marts: MartsBuild, buyers: list[BuyerDate], as_of: date) -> dict[str, dict]:
    orders = marts.df("select customer_id, order_number, order_date, product_category "
                      "from marts.fct_orders")
    orders["order_date"] = orders.order_date.map(_day)
    orders["order_number"] = orders.order_number.astype(int)
    return recompute(orders, buyers, as_of)


@pytest.fixture(scope="module")
def dim(marts: MartsBuild) -> pd.DataFrame:
    return marts.df("select * from marts.dim_customers").set_index("customer_id")


# -- tests on the shared build ------------------------------------------------------------------
def test_models_and_their_yaml_tests_pass(marts: MartsBuild) -> None:
    marts.assert_nodes_passed("int_customer_next_order")
    marts.assert_nodes_passed("dim_customers")
    ids = marts.statuses()
    for unit in ("next_order_fallbacks", "next_order_crm_date_and_expiry",
                 "next_order_fixed_overdue_expiry", "dim_customers_due_overdue_and_one_order"):
        assert any(unit in k for k in ids), unit


def test_every_customer_matches_the_recomputation(dim: pd.DataFrame,
                                                  expected: dict[str, dict]) -> None:
    assert set(dim.index) == set(expected)
    for customer, want in expected.items():
        got = dim.loc[customer]
        for column, value in want.items():
            actual = _opt(got[column])
            if column.endswith("_date"):
                actual = _day(actual)
            elif column == "expected_gap_days" and actual is not None:
                actual = float(actual)
            assert actual == value, (customer, column, actual, value)


def test_the_intermediate_model_agrees_and_names_the_crm_date(
        marts: MartsBuild, expected: dict[str, dict]) -> None:
    rows = marts.df("select customer_id, crm_next_order_date, expected_next_order_basis, "
                    "expected_next_order_date, days_until_expected_order, repurchase_status "
                    "from intermediate.int_customer_next_order").set_index("customer_id")
    assert set(rows.index) == set(expected)
    for customer, want in expected.items():
        got = rows.loc[customer]
        crm = want.get("expected_next_order_basis") == "crm"
        assert _day(got["crm_next_order_date"]) == (
            want["expected_next_order_date"] if crm else None), customer
        assert _opt(got["repurchase_status"]) == want["repurchase_status"], customer
        assert _opt(got["days_until_expected_order"]) == want.get("days_until_expected_order")


def test_the_seeded_business_exercises_every_branch(buyers: list[BuyerDate],
                                                    expected: dict[str, dict],
                                                    as_of: date) -> None:
    rows = list(expected.values())
    by_basis = defaultdict(int)
    for r in rows:
        by_basis[r.get("expected_next_order_basis")] += 1
    assert {"crm", "customer", "category", "overall"} <= set(by_basis)
    assert by_basis["crm"] >= 20
    statuses = {r["repurchase_status"] for r in rows}
    assert statuses == {"upcoming", "due", "overdue", "lapsed"}
    crm_customers = {c for c, r in expected.items() if r.get("expected_next_order_basis") == "crm"}
    by_customer = {b.customer_id: b for b in buyers}
    # the manager's own date, not last purchase + periodicity, reaches the expected date
    assert any(by_customer[c].next_date != by_customer[c].periodicity_date
               for c in crm_customers)
    # a CRM date an order from another source already answered falls back to the median
    stale = [b for b in buyers if b.customer_id in expected
             and b.next_date <= expected[b.customer_id]["last_order_date"]]
    assert stale and all(expected[b.customer_id].get("expected_next_order_basis") != "crm"
                         for b in stale)
    # a CRM date past its expiry falls back as well
    assert any(b.customer_id in expected and b.customer_id not in crm_customers
               and b.next_date > expected[b.customer_id]["last_order_date"]
               and b.touched <= as_of for b in buyers)


def test_no_customer_a_year_gone_and_past_the_expiry_is_overdue(dim: pd.DataFrame,
                                                                expected: dict[str, dict],
                                                                as_of: date) -> None:
    """Issue 13: customers whose last order is over a year old used to be "overdue" for ever."""
    gone = [c for c, r in expected.items() if r["expected_next_order_date"] is not None
            and (as_of - r["last_order_date"]).days > 365
            and -r["days_until_expected_order"] > r["overdue_expiry_days"]]
    assert len(gone) >= 10, "the seeded business has long-gone customers"
    assert not dim.loc[gone, "is_overdue"].astype(bool).any()
    assert set(dim.loc[gone, "repurchase_status"]) == {"lapsed"}
    # ... and every one of them was overdue under the old rule (expected date < as-of date)
    assert all(_day(d) < as_of for d in dim.loc[gone, "expected_next_order_date"])
    overdue = dim[dim["is_overdue"].astype(bool)]
    past = (pd.Timestamp(as_of) - pd.to_datetime(overdue["expected_next_order_date"])).dt.days
    assert (past <= overdue["overdue_expiry_days"].astype(int)).all()


def test_reminder_segments_select_their_window(marts: MartsBuild, dim: pd.DataFrame,
                                               expected: dict[str, dict]) -> None:
    contactable = dim["is_contactable"].astype(bool)
    members_total = 0
    for name, (low, high) in REMINDERS.items():
        seg = get_segment(name)
        assert seg.kind == "dynamic"
        match = {c for c, r in expected.items() if r["expected_next_order_date"] is not None
                 and low <= r["days_until_expected_order"] <= high}
        members = segment_members(marts.wh, seg)
        assert list(members.customer_ids) == sorted(c for c in match if contactable[c]), name
        assert members.excluded_count == sum(not contactable[c] for c in match), name
        members_total += len(members)
    assert members_total >= 5, "the seeded business has customers to remind"
    assert len(segment_members(marts.wh, get_segment("reminder_30_days_before"))) > 0


# -- the reminder windows' edges on a small warehouse -------------------------------------------
@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def tiny(request, tmp_path: Path) -> Iterator[Any]:
    """marts.dim_customers with one contactable customer per days_until_expected_order value
    from -2 to 32 (plus one without an expectation and one uncontactable at 7 days)."""
    with scratch_warehouse(request.param, tmp_path, "reminders") as (wh, _env):
        rows = [(f"d{d:+03d}", d, True) for d in range(-2, 33)]
        rows += [("none", None, True), ("blocked7", 7, False)]
        with wh.connect() as conn:
            cur = conn.cursor()
            for schema in ("marts", "intermediate"):
                cur.execute(f"create schema if not exists {schema}")
            cur.execute("create table marts.dim_customers (customer_id varchar, "
                        "days_until_expected_order integer, is_contactable boolean)")
            cur.execute("create table intermediate.int_as_of_date (as_of_date date)")
            cur.execute(f"insert into marts.dim_customers values "
                        f"{', '.join([f'({wh._marks(3)})'] * len(rows))}",
                        [v for r in rows for v in r])
        yield wh


def test_reminder_windows_do_not_overlap_and_cover_30_days(tiny: Any) -> None:
    seen: dict[str, str] = {}
    for name, (low, high) in REMINDERS.items():
        members = segment_members(tiny, get_segment(name))
        assert list(members.customer_ids) == sorted(
            f"d{d:+03d}" for d in range(low, high + 1)), name
        assert members.excluded_count == (1 if low <= 7 <= high else 0), name
        for customer in members.customer_ids:
            assert customer not in seen, (customer, name, seen.get(customer))
            seen[customer] = name
    assert set(seen) == {f"d{d:+03d}" for d in range(0, 31)}
    assert {s.name for s in load_segments()} >= set(REMINDERS)
