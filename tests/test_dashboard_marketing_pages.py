"""The acquisition, cohorts and retention pages' payloads say what the marts say.

Each page is built from the shared DuckDB marts build (read through dashboard.data.read_marts,
as the site does) and its records are compared, cell by cell, with the marts read by a query
of their own: same rows, same values, incomplete-period flags kept. Expected figures come from
the marts, never from constants. A build from no marts at all gives empty pages, not errors.
"""

import json
import math
from typing import Any

import pandas as pd
import pytest
from _support import MartsBuild

from dashboard.data import Marts, jsonable, read_marts
from dashboard.pages import PageSpec, acquisition, cohorts, retention


@pytest.fixture(scope="module")
def marts(marts_alt: MartsBuild) -> MartsBuild:
    """The dashboard reads the second business (`marts_alt`, DuckDB): its own xdist group,
    so these tests do not lengthen the worker that runs the main DuckDB build's tests."""
    return marts_alt

UNITS = {"money", "count", "percent", "ratio", "days", "hours", "months"}
PAGES = (acquisition, cohorts, retention)


@pytest.fixture(scope="module")
def built(marts: MartsBuild) -> dict[str, dict[str, dict]]:
    """Every page's payload in both languages, from one read of the marts."""
    read = read_marts(marts.wh.query_df)
    return {mod.PAGE.slug: {lang: mod.build(read, lang) for lang in ("ru", "en")}
            for mod in PAGES}


def _expected(marts: MartsBuild, sql: str) -> list[dict[str, Any]]:
    frame = marts.df(sql)
    return [{c: jsonable(v) for c, v in row.items()} for row in frame.to_dict("records")]


def _same(got: list[dict], want: list[dict], key: tuple[str, ...]) -> None:
    """The payload rows are the mart rows: same keys, every cell equal (money to the cent)."""
    assert len(got) == len(want) and want, "the payload has a row per mart row"
    index = {tuple(r[k] for k in key): r for r in want}
    for row in got:
        expected = index[tuple(row[k] for k in key)]
        for column, value in row.items():
            mart = expected[column]
            if isinstance(mart, float) and value is not None:
                assert math.isclose(value, mart, rel_tol=1e-9, abs_tol=1e-9), (key, column)
            else:
                assert value == mart, (row, column)


def test_payloads_are_json_with_metric_texts_in_both_languages(built, marts: MartsBuild
                                                              ) -> None:
    as_of = _expected(marts, "select max(as_of_date) as d from marts.dim_report_dates")[0]["d"]
    for slug, by_lang in built.items():
        ru, en = by_lang["ru"], by_lang["en"]
        assert json.loads(json.dumps(ru)) == ru and json.loads(json.dumps(en)) == en
        assert ru["slug"] == slug and ru["metrics"].keys() == en["metrics"].keys()
        for key, meta in ru["metrics"].items():
            assert meta["unit"] in UNITS and meta["title"] and meta["definition"]
            assert en["metrics"][key]["definition"] != meta["definition"], key
        assert ru["as_of_date"] == as_of, slug


def test_acquisition_rows_and_campaigns_equal_the_marts(built, marts: MartsBuild) -> None:
    page = built["acquisition"]["en"]
    want = _expected(marts, "select {} from marts.fct_acquisition_monthly".format(
        ", ".join(acquisition.ACQ_COLUMNS)))
    _same(page["rows"], want, ("month", "channel"))
    campaigns = _expected(marts, "select {} from marts.fct_campaign_performance_monthly".format(
        ", ".join(acquisition.CAMPAIGN_COLUMNS)))
    _same(page["campaigns"], campaigns, ("month", "channel", "campaign_id"))
    channels = {r["channel"] for r in want} - {"all"}
    assert set(page["channels"]) == channels and "all" not in page["channels"]
    # the months axis carries the mart's completeness: the as-of month is marked incomplete
    complete = {r["month"]: r["month_complete"] for r in want if r["channel"] == "all"}
    assert {m["month"]: m["complete"] for m in page["months"]} == complete
    assert not all(complete.values()), "the as-of month is incomplete in the shared build"
    assert [m["month"] for m in page["months"]] == sorted(complete)


def test_cohort_cells_equal_the_marts(built, marts: MartsBuild) -> None:
    page = built["cohorts"]["ru"]
    retention_rows = _expected(marts, "select {} from marts.fct_cohort_retention".format(
        ", ".join(cohorts.RETENTION_COLUMNS)))
    _same(page["retention"], retention_rows, ("cohort_month", "month_offset"))
    ltv = _expected(marts, "select {} from marts.fct_cohort_ltv_by_channel".format(
        ", ".join(cohorts.LTV_COLUMNS)))
    _same(page["ltv"], ltv, ("cohort_month", "channel", "month_offset"))
    assert any(not r["is_observable"] for r in page["retention"]), "partial cells are sent"
    assert [m["month"] for m in page["months"]] == sorted(
        {r["cohort_month"] for r in retention_rows})


def test_retention_rows_equal_the_marts(built, marts: MartsBuild) -> None:
    page = built["retention"]["en"]
    crr = _expected(marts, "select {} from marts.fct_crr_monthly".format(
        ", ".join(retention.CRR_COLUMNS)))
    _same(page["crr"], crr, ("month",))
    value = _expected(marts, "select {} from marts.fct_customer_value_monthly".format(
        ", ".join(retention.VALUE_COLUMNS)))
    _same(page["customers"], value, ("month",))
    assert any(r["is_warm_up"] for r in page["crr"]), "warm-up months reach the page"
    assert [r["month"] for r in page["crr"]] == sorted(r["month"] for r in crr)


@pytest.mark.parametrize("module", PAGES, ids=lambda m: m.PAGE.slug)
def test_a_page_of_empty_marts_is_empty_not_an_error(module, marts: MartsBuild) -> None:
    """No mart (an older or empty build) gives a page with no rows and its texts intact.
    (`marts` is unused: the module-wide parametrization needs the argument.)"""
    assert isinstance(module.PAGE, PageSpec)
    page = module.build(Marts(), "ru")
    lists = [v for k, v in page.items() if isinstance(v, list)]
    assert lists and all(v == [] for v in lists)
    assert page["metrics"] and page["as_of_date"] is None
    json.dumps(page)
    # an empty month (a frame with the contract's columns and no rows) is the same case
    assert module.build(Marts({"fct_acquisition_monthly": pd.DataFrame()}), "en")["slug"]
