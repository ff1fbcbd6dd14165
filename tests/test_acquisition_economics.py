"""Acquisition economics recomputed in Python from order, customer, lead and spend facts.

The shared `marts` build (seeded synthetic business, full `dbt build`, DuckDB and PostgreSQL)
is read back and every new column of fct_acquisition_monthly, fct_campaign_performance_monthly
and fct_cohort_ltv_by_channel — attributed revenue and gross margin, ROMI, LTV at the horizon,
LTV/CAC, CAC payback and the per-channel cohort curves — is recomputed by an independent route:
plain loops over marts.fct_orders (customer, month, amount, gross margin), marts.dim_customers
(cohort month, first-touch channel, first lead), marts.fct_ad_spend_daily (spend per day and
campaign) and, for campaigns, the first touch's utm_campaign (marts.fct_leads, or the orders
file row in staging.stg_files__orders) matched to the spend rows' campaign ids / names. No
intermediate model of the marts is read. Money is compared to the cent, rates to 1e-9.
Edge cases (spend without customers, no orders, payback in month 0 / never, organic) are dbt
unit tests in the marts' YAML; they run in the same build and are checked here as nodes.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from _support import MartsBuild

LTV_HORIZON_MONTHS = 12  # dbt var ltv_horizon_months (default)
CENT = Decimal("0.01")
OWN_NODES = (
    "int_customer_acquisition",
    "int_cohort_value_by_offset",
    "fct_acquisition_monthly",
    "fct_campaign_performance_monthly",
    "fct_cohort_ltv_by_channel",
    "assert_acquisition_",
    "assert_cohort_ltv_",
    "assert_campaigns_add_up_to_channels",
)


# -- small value helpers ----------------------------------------------------------------------
def _opt(value: Any) -> Any:
    """None for SQL null (pandas may hold it as None, NaN or NaT)."""
    if value is None:
        return None
    try:
        if value != value:  # NaN / NaT
            return None
    except TypeError:
        pass
    return value


def _dec(value: Any) -> Decimal | None:
    value = _opt(value)
    return None if value is None else Decimal(str(value))


def _day(value: Any) -> date:
    return value.date() if hasattr(value, "date") and callable(value.date) else value


def _money(numerator: Decimal, denominator: Decimal | int) -> Decimal | None:
    """money(safe_divide(n, d)): null on a zero denominator, else rounded half up to cents."""
    if denominator == 0:
        return None
    return (Decimal(numerator) / Decimal(denominator)).quantize(CENT, rounding=ROUND_HALF_UP)


def _month(d: date) -> date:
    return date(d.year, d.month, 1)


def _add_months(m: date, n: int) -> date:
    k = m.year * 12 + m.month - 1 + n
    return date(k // 12, k % 12 + 1, 1)


def _offset(start: date, end: date) -> int:
    return (end.year - start.year) * 12 + end.month - start.month


def _romi(value: Decimal, spend: Decimal) -> float | None:
    return None if spend == 0 else float((value - spend) / spend * 100)


def _ratio(num: Decimal | None, den: Decimal | None) -> float | None:
    if num is None or den is None or den == 0:
        return None
    return float(num) / float(den)


def _same_rate(actual: Any, expected: float | None) -> bool:
    actual = _opt(actual)
    if expected is None or actual is None:
        return actual is None and expected is None
    return math.isclose(float(actual), expected, rel_tol=1e-9, abs_tol=1e-9)


def _same_money(actual: Any, expected: Decimal | None) -> bool:
    actual = _dec(actual)
    if expected is None or actual is None:
        return actual is None and expected is None
    return abs(actual - expected) < Decimal("0.005")


def _same_int(actual: Any, expected: int | None) -> bool:
    actual = _opt(actual)
    return (actual is None and expected is None) or (
        actual is not None and expected is not None and int(actual) == expected)


# -- the independent recomputation -------------------------------------------------------------
@dataclass
class Facts:
    """The raw facts the metrics are defined on."""

    as_of: date
    orders: list[tuple[str, date, Decimal, Decimal, bool]]   # customer, month, amount, gm, known
    cohort: dict[str, date]                                  # customer -> cohort month
    channel: dict[str, str]                                  # customer -> first-touch channel
    campaign: dict[str, tuple | None]                        # ad-touch customer -> campaign key
    spend_by_channel: dict[tuple[date, str], Decimal]
    spend_by_campaign: dict[tuple[date, tuple], Decimal]

    @property
    def as_of_month(self) -> date:
        return _month(self.as_of)

    def complete(self, month: date) -> bool:
        """The as-of date is after the month's last day (metrics.md "Periods")."""
        return _add_months(month, 1) <= self.as_of


@dataclass
class Economics:
    """Everything a group labelling (customer -> label) implies."""

    attributed: dict[tuple[date, Any], list] = field(default_factory=dict)  # rev, gm, unknown
    cohort_size: dict[tuple[date, Any], int] = field(default_factory=dict)
    month_value: dict[tuple[date, Any, date], list] = field(default_factory=dict)  # rev, gm


def load_facts(marts: MartsBuild) -> Facts:
    as_of = _day(marts.df("select as_of_date from intermediate.int_as_of_date").iloc[0, 0])
    orders_df = marts.df("select customer_id, order_id, order_source, order_date, amount, "
                         "gross_margin, margin_known from marts.fct_orders")
    customers = marts.df("select customer_id, cohort_month, channel, first_lead_id "
                         "from marts.dim_customers")
    leads = marts.df("select lead_id, utm_campaign from marts.fct_leads")
    file_rows = marts.df("select order_record_id, utm_campaign from staging.stg_files__orders")
    spend_rows = marts.df("select spend_date, channel, platform, account, campaign_id, "
                          "campaign_name, spend from marts.fct_ad_spend_daily")

    orders = [(r.customer_id, _month(_day(r.order_date)), _dec(r.amount), _dec(r.gross_margin),
               bool(r.margin_known)) for r in orders_df.itertuples(index=False)]
    cohort = {r.customer_id: _day(r.cohort_month) for r in customers.itertuples(index=False)}
    channel = {r.customer_id: r.channel for r in customers.itertuples(index=False)}

    # spend per month and channel / campaign; a campaign's name is its newest one
    spend_by_channel: dict[tuple[date, str], Decimal] = defaultdict(Decimal)
    spend_by_campaign: dict[tuple[date, tuple], Decimal] = defaultdict(Decimal)
    newest: dict[tuple, tuple[date, str]] = {}
    for r in spend_rows.itertuples(index=False):
        key = (r.channel, r.platform, r.account, r.campaign_id)
        day = _day(r.spend_date)
        spend_by_channel[(_month(day), r.channel)] += _dec(r.spend)
        spend_by_campaign[(_month(day), key)] += _dec(r.spend)
        seen = newest.get(key)
        # newest spend date, ties to the smaller name
        if seen is None or day > seen[0] or (day == seen[0] and r.campaign_name < seen[1]):
            newest[key] = (day, r.campaign_name)
    ad_channels = {key[0] for key in newest}

    # each customer's first touch's utm_campaign: the first lead's, else the first file order's
    lead_utm = {r.lead_id: _opt(r.utm_campaign) for r in leads.itertuples(index=False)}
    file_utm = {"files_" + str(r.order_record_id): _opt(r.utm_campaign)
                for r in file_rows.itertuples(index=False)}
    first_file: dict[str, tuple[date, str]] = {}
    for r in orders_df.itertuples(index=False):
        if r.order_source == "files":
            candidate = (_day(r.order_date), r.order_id)
            if r.customer_id not in first_file or candidate < first_file[r.customer_id]:
                first_file[r.customer_id] = candidate
    campaign: dict[str, tuple | None] = {}
    for r in customers.itertuples(index=False):
        if r.channel not in ad_channels:
            continue
        if _opt(r.first_lead_id) is not None:
            utm = lead_utm[r.first_lead_id]
        else:
            utm = file_utm[first_file[r.customer_id][1]]
        matches = []
        if utm is not None:
            for key, (_, name) in newest.items():
                if key[0] != r.channel:
                    continue
                if utm.lower() == key[3].lower():
                    matches.append((0, key[1], key[2], key[3], key))
                elif name is not None and utm.lower() == name.lower():
                    matches.append((1, key[1], key[2], key[3], key))
        campaign[r.customer_id] = min(matches)[4] if matches else None

    return Facts(as_of, orders, cohort, channel, campaign, dict(spend_by_channel),
                 dict(spend_by_campaign))


def economics(facts: Facts, labels_of: dict[str, list]) -> Economics:
    """Attributed values per (month, label), cohort sizes and month values per cohort."""
    out = Economics()
    for customer, labels in labels_of.items():
        for label in labels:
            key = (facts.cohort[customer], label)
            out.cohort_size[key] = out.cohort_size.get(key, 0) + 1
    for customer, month, amount, gm, known in facts.orders:
        for label in labels_of.get(customer, []):
            att = out.attributed.setdefault((month, label), [Decimal(0), Decimal(0), 0])
            att[0] += amount
            att[1] += gm
            att[2] += 0 if known else 1
            val = out.month_value.setdefault((facts.cohort[customer], label, month),
                                             [Decimal(0), Decimal(0)])
            val[0] += amount
            val[1] += gm
    return out


def cohort_curve(facts: Facts, eco: Economics, cohort: date, label: Any) -> list[dict]:
    """Offsets 0..as-of month: revenue, cumulative revenue and gross margin, per customer."""
    size = eco.cohort_size.get((cohort, label), 0)
    rows, cum_rev, cum_gm = [], Decimal(0), Decimal(0)
    for k in range(_offset(cohort, facts.as_of_month) + 1):
        month = _add_months(cohort, k)
        rev, gm = eco.month_value.get((cohort, label, month), (Decimal(0), Decimal(0)))
        cum_rev += rev
        cum_gm += gm
        rows.append({"month_offset": k, "month": month, "cohort_size": size, "revenue": rev,
                     "cumulative_revenue": cum_rev, "cumulative_gross_margin": cum_gm,
                     "ltv": _money(cum_rev, size),
                     "gross_margin_per_customer": _money(cum_gm, size),
                     "month_complete": facts.complete(month)})
    return rows


def expected_economics(facts: Facts, eco: Economics, month: date, label: Any,
                       spend: Decimal) -> dict:
    """The new columns of one (month, channel / campaign) row."""
    size = eco.cohort_size.get((month, label), 0)
    cac = _money(spend, size)
    rev, gm, unknown = eco.attributed.get((month, label), (Decimal(0), Decimal(0), 0))
    ltv_horizon = payback = None
    if size:
        curve = cohort_curve(facts, eco, month, label)
        if len(curve) > LTV_HORIZON_MONTHS and curve[LTV_HORIZON_MONTHS]["month_complete"]:
            ltv_horizon = curve[LTV_HORIZON_MONTHS]["ltv"]
        if cac is not None:
            payback = next((row["month_offset"] for row in curve
                            if row["gross_margin_per_customer"] >= cac), None)
    return {
        "new_customers": size,
        "cac": cac,
        "attributed_revenue": rev,
        "attributed_gross_margin": gm,
        "gross_margin_known": unknown == 0,
        "romi": _romi(rev, spend),
        # each order's own gross margin, margin_rate for the rest: never null for that
        "romi_gross": _romi(gm, spend),
        "ltv_horizon": ltv_horizon,
        "ltv_cac": _ratio(ltv_horizon, cac),
        "cac_payback_months": payback,
    }


MONEY = ("cac", "attributed_revenue", "attributed_gross_margin", "ltv_horizon")
RATES = ("romi", "romi_gross", "ltv_cac")


def compare_row(actual: Any, expected: dict, where: str) -> list[str]:
    problems = []
    for column, value in expected.items():
        got = getattr(actual, column)
        if column in MONEY:
            ok = _same_money(got, value)
        elif column in RATES:
            ok = _same_rate(got, value)
        elif column in ("new_customers", "cac_payback_months"):
            ok = _same_int(got, value)
        else:
            ok = bool(got) == value
        if not ok:
            problems.append(f"{where} {column}: mart {got!r} != expected {value!r}")
    return problems


@pytest.fixture(scope="module")
def facts(marts: MartsBuild) -> Facts:
    return load_facts(marts)


def channel_labels(facts: Facts) -> dict[str, list]:
    return {c: [ch, "all"] for c, ch in facts.channel.items()}


# -- the tests ---------------------------------------------------------------------------------
def test_own_nodes_passed(marts: MartsBuild) -> None:
    """Models, data tests, singular tests and the edge-case unit tests all passed."""
    ran = [node for fragment in OWN_NODES for node in marts.assert_nodes_passed(fragment)]
    for unit_test in ("acquisition_economics_edge_cases", "campaign_economics_edge_cases",
                      "cohort_ltv_and_payback_curves"):
        assert any(node.startswith("unit_test.") and node.endswith(unit_test) for node in ran)


def test_acquisition_monthly_economics(marts: MartsBuild, facts: Facts) -> None:
    eco = economics(facts, channel_labels(facts))
    mart = marts.df("select * from marts.fct_acquisition_monthly")
    keys = {(_day(r.month), r.channel) for r in mart.itertuples(index=False)}
    # every month with orders has its channel rows and the blended row
    assert {key for key in eco.attributed} <= keys
    spend_all: dict[date, Decimal] = defaultdict(Decimal)
    for (month, _), value in facts.spend_by_channel.items():
        spend_all[month] += value
    problems: list[str] = []
    checked_horizon = checked_payback = 0
    for row in mart.itertuples(index=False):
        month = _day(row.month)
        spend = (spend_all.get(month, Decimal(0)) if row.channel == "all"
                 else facts.spend_by_channel.get((month, row.channel), Decimal(0)))
        expected = expected_economics(facts, eco, month, row.channel, spend)
        problems += compare_row(row, expected, f"{month} {row.channel}")
        checked_horizon += expected["ltv_horizon"] is not None
        checked_payback += expected["cac_payback_months"] is not None
    assert not problems, "\n".join(problems[:20])
    # the data exercise the horizon and the payback, not only their null branches
    assert checked_horizon > 0 and checked_payback > 0
    assert (mart.romi.notna()).any() and (mart.attributed_revenue.astype(float) > 0).any()


def test_campaign_performance_economics(marts: MartsBuild, facts: Facts) -> None:
    labels = {c: [(facts.channel[c], *(key[1:] if key else (None, None, None)))]
              for c, key in facts.campaign.items()}
    eco = economics(facts, labels)
    mart = marts.df("select * from marts.fct_campaign_performance_monthly")
    keys = {(_day(r.month), (r.channel, _opt(r.platform), _opt(r.account), _opt(r.campaign_id)))
            for r in mart.itertuples(index=False)}
    assert set(eco.attributed) <= keys
    problems: list[str] = []
    for row in mart.itertuples(index=False):
        month = _day(row.month)
        label = (row.channel, _opt(row.platform), _opt(row.account), _opt(row.campaign_id))
        spend = facts.spend_by_campaign.get((month, label), Decimal(0))
        expected = expected_economics(facts, eco, month, label, spend)
        problems += compare_row(row, expected, f"{month} {label}")
    assert not problems, "\n".join(problems[:20])
    # the campaign rows add up to the channel's attributed revenue (every customer of an ad
    # channel is counted under one campaign or the unmatched row)
    by_channel = economics(facts, {c: [facts.channel[c]] for c in facts.campaign})
    for (month, channel), (rev, gm, _) in by_channel.attributed.items():
        rows = mart[(mart.channel == channel) & (mart.month.map(_day) == month)]
        assert sum((_dec(v) for v in rows.attributed_revenue), Decimal(0)) == rev
        assert sum((_dec(v) for v in rows.attributed_gross_margin), Decimal(0)) == gm


def test_cohort_ltv_by_channel(marts: MartsBuild, facts: Facts) -> None:
    eco = economics(facts, channel_labels(facts))
    acquisition_cac = {}
    spend_all: dict[date, Decimal] = defaultdict(Decimal)
    for (month, _), value in facts.spend_by_channel.items():
        spend_all[month] += value
    expected: dict[tuple, dict] = {}
    for (cohort, label), size in eco.cohort_size.items():
        spend = (spend_all.get(cohort, Decimal(0)) if label == "all"
                 else facts.spend_by_channel.get((cohort, label), Decimal(0)))
        acquisition_cac[(cohort, label)] = _money(spend, size)
        for point in cohort_curve(facts, eco, cohort, label):
            cac = acquisition_cac[(cohort, label)]
            expected[(cohort, label, point["month_offset"])] = {
                **point, "cac": cac,
                "payback_reached": None if cac is None
                else point["gross_margin_per_customer"] >= cac}
    mart = marts.df("select * from marts.fct_cohort_ltv_by_channel")
    actual = {(_day(r.cohort_month), r.channel, int(r.month_offset)): r
              for r in mart.itertuples(index=False)}
    assert set(actual) == set(expected)
    problems: list[str] = []
    for key, exp in expected.items():
        row = actual[key]
        for column in ("revenue", "cumulative_revenue", "ltv", "cumulative_gross_margin",
                       "gross_margin_per_customer", "cac"):
            if not _same_money(getattr(row, column), exp[column]):
                problems.append(f"{key} {column}: {getattr(row, column)!r} != {exp[column]!r}")
        if int(row.cohort_size) != exp["cohort_size"]:
            problems.append(f"{key} cohort_size")
        if bool(row.month_complete) != exp["month_complete"]:
            problems.append(f"{key} month_complete")
        if _opt(row.payback_reached) != exp["payback_reached"]:
            problems.append(f"{key} payback_reached: {row.payback_reached!r}")
    assert not problems, "\n".join(problems[:20])


def test_cohort_ltv_all_matches_cohort_retention(marts: MartsBuild) -> None:
    """The blended curve is the one fct_cohort_retention publishes (also a dbt test)."""
    blended = marts.df("select cohort_month, month_offset, ltv "
                       "from marts.fct_cohort_ltv_by_channel where channel = 'all'")
    retention = marts.df("select cohort_month, month_offset, ltv from marts.fct_cohort_retention")
    as_dict = {(_day(r.cohort_month), int(r.month_offset)): _dec(r.ltv)
               for r in blended.itertuples(index=False)}
    assert as_dict == {(_day(r.cohort_month), int(r.month_offset)): _dec(r.ltv)
                       for r in retention.itertuples(index=False)}
    assert len(as_dict) > 0
