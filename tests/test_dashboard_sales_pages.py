"""The sales formula, funnel and managers pages' payloads against the marts they read.

Every expected figure is read from the shared marts build (schema `marts`) with its own SQL,
never typed in: the payload must carry the marts' numbers, the waterfall must split exactly
the change of V the mart's log contributions explain, and the sums the funnel and managers
scripts do over a month range must give what the marts' whole-period rows say.
DuckDB only (the payloads are backend-neutral frames; the marts are compared on one backend).
"""

import json
import math
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from _support import MartsBuild

from dashboard.data import Marts, month_str, read_marts
from dashboard.pages import funnel, managers, sales_formula


@pytest.fixture(scope="module")
def marts(marts_alt: MartsBuild) -> MartsBuild:
    """The dashboard reads the second business (`marts_alt`, DuckDB): its own xdist group,
    so these tests do not lengthen the worker that runs the main DuckDB build's tests."""
    return marts_alt

TOL = 1e-9
STATIC = Path(__file__).resolve().parents[1] / "dashboard" / "static"


@pytest.fixture(scope="module")
def payloads(marts: MartsBuild) -> dict[str, dict[str, Any]]:
    """Each page's payload, built once from the published-marts reader."""
    data = read_marts(marts.wh.query_df)
    return {mod.PAGE.slug: mod.build(data, "ru") for mod in (sales_formula, funnel, managers)}


def _close(a: Any, b: Any, tol: float = TOL) -> bool:
    """Equal numbers (relative tolerance), or both null."""
    a_null = a is None or (isinstance(a, float) and math.isnan(a))
    b_null = b is None or (isinstance(b, float) and math.isnan(b)) or b is pd.NA
    if a_null or b_null:
        return a_null and b_null
    return math.isclose(float(a), float(b), rel_tol=tol, abs_tol=tol)


def _expand(table: dict[str, Any], page: dict[str, Any]) -> pd.DataFrame:
    """A columnar payload table back as records (what funnel.js `expand` does)."""
    frame = pd.DataFrame(table["rows"], columns=table["columns"])
    keys = [p["key"] for p in page["pipelines"]]
    frame["pipeline"] = frame["pipeline"].map(lambda i: keys[int(i)])
    mkeys = [m["key"] for m in page["managers"]]
    frame["manager"] = frame["manager"].map(lambda i: None if pd.isna(i) else mkeys[int(i)])
    return frame


def test_payloads_are_json_with_labels_for_every_metric(marts: MartsBuild, payloads) -> None:
    """Pure JSON (no NaN), in both languages, with a title, definition and unit per metric."""
    data = read_marts(marts.wh.query_df)
    for mod in (sales_formula, funnel, managers):
        for lang in ("ru", "en"):
            json.dumps(mod.build(data, lang), allow_nan=False)
        page = payloads[mod.PAGE.slug]
        for key, unit in page["units"].items():
            assert unit in {"money", "count", "percent", "ratio", "days", "hours", "months"}
            for label in (key, f"{key}__def"):
                assert page["labels"][label]["ru"] and page["labels"][label]["en"], label


def test_sales_formula_months_are_the_mart(marts: MartsBuild, payloads) -> None:
    """Every factor, contribution and completeness flag of every month, as the mart has it."""
    mart = marts.df("select * from marts.fct_sales_formula_monthly order by month")
    rows = payloads["sales_formula"]["months"]
    assert [r["month"] for r in rows] == [month_str(m) for m in mart["month"]]
    for row, expected in zip(rows, mart.to_dict("records"), strict=True):
        assert row["month_complete"] == bool(expected["month_complete"])
        for col in ("leads", "customers", "orders", "revenue", "gross_margin", "cv", "aov",
                    "orders_per_customer", "margin", "value", "contribution_leads",
                    "contribution_cv", "contribution_aov", "contribution_orders_per_customer",
                    "contribution_margin", "value_log_change"):
            assert _close(row[col], expected[col]), (row["month"], col)


def test_sales_formula_waterfall_splits_the_change_of_v(marts: MartsBuild, payloads) -> None:
    """One waterfall per month whose ln(V1/V0) the mart defines; the five effects add up to
    V1 − V0 and stand in the ratio of the mart's log contributions."""
    mart = marts.df("select month, value, value_log_change, contribution_leads, "
                    "contribution_cv, contribution_aov, contribution_orders_per_customer, "
                    "contribution_margin, lag(value) over (order by month) as prev_value "
                    "from marts.fct_sales_formula_monthly order by month")
    defined = mart[mart["value_log_change"].notna()]
    falls = {w["month"]: w for w in payloads["sales_formula"]["waterfall"]}
    assert sorted(falls) == sorted(month_str(m) for m in defined["month"])
    assert falls, "the shared business must have months with a defined change of V"
    for r in defined.to_dict("records"):
        w = falls[month_str(r["month"])]
        v0, v1 = float(r["prev_value"]), float(r["value"])
        assert _close(w["prev_value"], v0) and _close(w["value"], v1)
        assert math.isclose(sum(w["effects"].values()), v1 - v0, abs_tol=0.01)
        for factor in ("leads", "cv", "aov", "orders_per_customer", "margin"):
            c = float(r[f"contribution_{factor}"])
            assert _close(w["contributions"][factor], c)
            log_change = float(r["value_log_change"])
            expected = v0 * c if abs(log_change) < 1e-12 else (v1 - v0) * c / log_change
            assert math.isclose(w["effects"][factor], expected, rel_tol=1e-9, abs_tol=1e-6)


def test_funnel_slices_are_the_mart(marts: MartsBuild, payloads) -> None:
    """Every slice row of fct_funnel_stage_slices, counts and percentiles unchanged."""
    page = payloads["funnel"]
    got = _expand(page["slices"], page)
    mart = marts.df("select * from marts.fct_funnel_stage_slices")
    assert len(got) == len(mart)
    mart["pipeline"] = mart["crm"] + ":" + mart["account"] + ":" + mart["pipeline_id"].astype(str)
    mart["manager"] = [f"{c}:{a}:{u}" if b else None for c, a, u, b in
                       zip(mart["crm"], mart["account"], mart["responsible_user_id"],
                           mart["by_manager"], strict=True)]
    mart["month"] = [month_str(m) if b else None
                     for m, b in zip(mart["created_month"], mart["by_month"], strict=True)]
    mart["status_id"] = mart["status_id"].astype(str)
    mart["channel"] = mart["channel"].where(mart["by_channel"], None)
    key = ["pipeline", "status_id", "by_channel", "by_manager", "by_month", "channel",
           "manager", "month"]
    merged = got.merge(mart, on=key, suffixes=("", "_m"), how="outer", indicator=True)
    assert (merged["_merge"] == "both").all()
    for col in ("leads_in_pipeline", "leads_reached", "leads_reached_next", "leads_won",
                "leads_dropped_off", "median_hours_in_stage", "p90_hours_in_stage"):
        bad = [k for k, (a, b) in enumerate(zip(merged[col], merged[f"{col}_m"], strict=True))
               if not _close(a, None if pd.isna(b) else b)]
        assert not bad, (col, merged.iloc[bad[0]][key].to_dict())


def test_funnel_month_sums_give_the_whole_period(marts: MartsBuild, payloads) -> None:
    """What funnel.js does over a month range: the month slices' counts summed give the
    whole-period slice; the whole period equals fct_funnel_stage_conversion; the loss-reason
    rows summed by stage give the drop-off; the won-weighted mean cycle gives the mean."""
    page = payloads["funnel"]
    rows = _expand(page["slices"], page)
    plain = rows[~rows["by_channel"] & ~rows["by_manager"]]
    whole = plain[~plain["by_month"]].set_index(["pipeline", "status_id"])
    summed = plain[plain["by_month"]].groupby(["pipeline", "status_id"])[
        ["leads_reached", "leads_dropped_off", "leads_won", "leads_in_pipeline"]].sum()
    for col in summed.columns:
        assert (summed[col] == whole.loc[summed.index, col]).all(), col
    conv = marts.df("select crm || ':' || account || ':' || cast(pipeline_id as varchar) as "
                    "pipeline, cast(status_id as varchar) as status_id, leads_reached, "
                    "leads_dropped_off from marts.fct_funnel_stage_conversion")
    conv = conv.set_index(["pipeline", "status_id"])
    for col in ("leads_reached", "leads_dropped_off"):
        assert (whole.loc[conv.index, col] == conv[col]).all(), col
    loss = _expand(page["loss"], page).groupby(["pipeline", "status_id"])["leads_lost"].sum()
    dropped = whole["leads_dropped_off"]
    assert (loss == dropped.loc[loss.index]).all()
    assert dropped.drop(loss.index).eq(0).all()
    cycle = _expand(page["cycle"], page)
    cycle = cycle[~cycle["by_channel"] & ~cycle["by_manager"]]
    for pipeline, group in cycle[cycle["by_month"]].groupby("pipeline"):
        total = cycle[~cycle["by_month"] & (cycle["pipeline"] == pipeline)].iloc[0]
        weighted = (group["leads_won"] * group["mean_sales_cycle_days"]).sum() \
            / group["leads_won"].sum()
        assert group["leads_won"].sum() == total["leads_won"]
        assert math.isclose(weighted, total["mean_sales_cycle_days"], abs_tol=1e-5)


def test_funnel_filters_list_the_marts_dimensions(marts: MartsBuild, payloads) -> None:
    """Pipelines, channels, managers and lead months offered are those of the marts."""
    page = payloads["funnel"]
    pipes = marts.df("select distinct crm, account, pipeline_id from "
                     "marts.fct_funnel_stage_slices")
    assert len(page["pipelines"]) == len(pipes)
    assert len({p["label"] for p in page["pipelines"]}) == len(page["pipelines"])
    channels = marts.df("select distinct channel from marts.fct_funnel_stage_slices "
                        "where by_channel and channel is not null")
    assert set(channels["channel"]) <= set(page["channels"])
    months = marts.df("select distinct created_month from marts.fct_funnel_stage_slices "
                      "where by_month order by 1")
    assert [m["month"] for m in page["months"]] == [month_str(m) for m in months["created_month"]]
    labels = [m["label"] for m in page["managers"]]
    assert len(set(labels)) == len(labels)


def test_managers_rows_are_the_mart(marts: MartsBuild, payloads) -> None:
    """Every manager-month row as the mart has it; the range sums the script does give the
    mart's own formulas (win rate = won / assigned, AOV = revenue / won)."""
    page = payloads["managers"]
    mart = marts.df("select * from marts.fct_manager_performance_monthly "
                    "order by month, crm, account, responsible_user_id")
    assert len(page["rows"]) == len(mart)
    for row, expected in zip(page["rows"], mart.to_dict("records"), strict=True):
        assert row["month"] == month_str(expected["month"])
        assert row["month_complete"] == bool(expected["month_complete"])
        for col in managers.VALUE_COLUMNS:
            assert _close(row[col], expected[col]), (row["month"], col)
    totals = marts.df("select crm || ':' || account || ':' || responsible_user_id as manager, "
                      "sum(leads_won) as won, sum(leads_assigned) as assigned, "
                      "sum(revenue) as revenue from marts.fct_manager_performance_monthly "
                      "group by 1").set_index("manager")
    frame = pd.DataFrame(page["rows"]).groupby("manager")[
        ["leads_won", "leads_assigned", "revenue"]].sum()
    assert set(frame.index) == set(totals.index)
    for manager, r in frame.iterrows():
        assert r["leads_won"] == totals.loc[manager, "won"]
        assert _close(r["revenue"], float(totals.loc[manager, "revenue"]), 1e-9)
    keys = {m["key"] for m in page["managers"]}
    assert keys == set(totals.index)


def test_empty_marts_give_empty_pages(marts: MartsBuild) -> None:
    """A build whose marts have no rows (a new account, an empty month range) still gives
    JSON payloads: empty lists, no waterfall, no exception."""
    data = read_marts(marts.wh.query_df)
    empty = Marts({name: frame.iloc[0:0] for name, frame in data.items()})
    for mod in (sales_formula, funnel, managers):
        payload = mod.build(empty, "en")
        json.dumps(payload, allow_nan=False)
    assert sales_formula.build(empty, "en")["waterfall"] == []
    assert funnel.build(empty, "en")["slices"]["rows"] == []
    assert managers.build(empty, "en")["rows"] == []


def test_every_label_a_script_asks_for_exists(payloads) -> None:
    """Each `V.t("key")` in the three scripts is in the page's labels or core.js's own, so no
    chart is titled with a raw key."""
    core = set(re.findall(r'^\s+"?([\w:]+)"?: \{ru:', (STATIC / "core.js").read_text(), re.M))
    for slug, page in payloads.items():
        script = (STATIC / "pages" / f"{slug}.js").read_text()
        asked = set(re.findall(r'V\.t\("([\w:]+)"\)', script))
        assert asked, slug
        missing = asked - set(page["labels"]) - core
        assert not missing, (slug, missing)
