"""Spend coverage (issue 12, item 4): a paid channel whose spend history is missing never reads
as free.

VK Ads serves statistics for the last 366 days only, so a first run lands VK spend from about
a year back and nothing before. The synthetic business (two years) is landed into a scratch
DuckDB warehouse with its VK rows cut the way the API's horizon cuts them, and the acquisition
marts are built: VK's coverage starts at the horizon; every channel-month before it (and the
blended `all` row of those months) has spend_covered = false and null CPL, CAC, ROMI, LTV/CAC
and payback, while the covered months and the channels with full history keep their numbers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from _support import failed_nodes, run_dbt, scratch_warehouse

import synthetic
from synthetic.landing import land_business

BACKEND = "duckdb"  # the shared marts build runs the models and their unit tests on both
VK_HISTORY_DAYS = 365  # what extractors.vk_ads pulls back (the API's 366 minus a day of margin)
UNIT_TESTS = ("spend_coverage_tells_horizon_from_account_start",
              "uncovered_spend_months_publish_no_spend_ratios",
              "uncovered_campaign_months_publish_no_spend_ratios")
NULLED = ("cpl", "cac", "romi", "romi_gross", "ltv_cac", "cac_payback_months")
MODELS = ("+fct_cohort_ltv_by_channel", "+fct_campaign_performance_monthly",
          "fct_cohort_retention", "int_ad_spend_coverage")


def _day(value: object) -> date:
    """A date from a DuckDB date or timestamp cell."""
    return value.date() if isinstance(value, datetime) else value  # type: ignore[return-value]


@dataclasses.dataclass
class Build:
    wh: object
    vk_first_day: date

    def rows(self, sql: str) -> list[dict]:
        df = self.wh.query_df(sql)  # type: ignore[attr-defined]
        return [{k: (None if v != v else v) for k, v in r.items()}  # NaN -> None
                for r in df.to_dict("records")]


@pytest.fixture(scope="module")
def truncated_vk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Build]:
    """A small business whose VK history starts at the API horizon, built on DuckDB."""
    business = synthetic.generate(seed=7, scale=0.1)
    first = business.end + timedelta(days=1) - timedelta(days=VK_HISTORY_DAYS)
    business.vk_ads = [r for r in business.vk_ads if date.fromisoformat(r["date"]) >= first]
    workdir: Path = tmp_path_factory.mktemp("spend_coverage")
    with scratch_warehouse(BACKEND, workdir, "coverage") as (wh, env):
        land_business(business, wh)
        code, out, results = run_dbt(workdir, env, "build", "--select", *MODELS,
                                     "--resource-type", "seed", "--resource-type", "model")
        assert code == 0, out[-3000:]
        code, out, results = run_dbt(
            workdir, env, "test", "--select", "int_ad_spend_coverage",
            "fct_acquisition_monthly", "fct_campaign_performance_monthly",
            "fct_cohort_ltv_by_channel")
        assert code == 0 and not failed_nodes(results), out[-3000:]
        ran = {r["unique_id"].rsplit(".", 1)[-1] for r in results["results"]}
        assert set(UNIT_TESTS) <= ran, sorted(ran)
        yield Build(wh, first)


def test_coverage_records_first_and_last_day_per_account(truncated_vk: Build) -> None:
    rows = truncated_vk.rows(
        "select platform, first_spend_date, last_spend_date, history_truncated, covered_from "
        "from intermediate.int_ad_spend_coverage where source <> 'files' order by platform")
    by_platform = {r["platform"]: r for r in rows}
    vk = by_platform["vk_ads"]
    assert _day(vk["first_spend_date"]) == truncated_vk.vk_first_day
    assert vk["history_truncated"] is True
    assert _day(vk["covered_from"]) == truncated_vk.vk_first_day
    yandex = by_platform["yandex_direct"]
    assert yandex["history_truncated"] is False and yandex["covered_from"] is None


def test_uncovered_channel_months_have_null_economics(truncated_vk: Build) -> None:
    first_month = truncated_vk.vk_first_day.replace(day=1)
    rows = truncated_vk.rows(
        "select * from marts.fct_acquisition_monthly order by month, channel")
    vk_before = [r for r in rows if r["channel"] == "vk_ads"
                 and _day(r["month"]) < first_month]
    assert vk_before, "the business has VK months before the horizon"
    # the VK leads and customers of those months exist: spend 0 would read as free
    assert sum(r["all_leads"] for r in vk_before) > 0
    for r in vk_before:
        assert all(r[c] is None for c in NULLED), r
        assert r["spend_covered"] is False, r
    blended_before = [r for r in rows if r["channel"] == "all"
                      and _day(r["month"]) < first_month]
    assert blended_before and all(r["spend_covered"] is False for r in blended_before)
    assert all(r[c] is None for r in blended_before for c in NULLED)
    # the channels with their whole history keep their numbers in the same months
    yandex_before = [r for r in rows if r["channel"] == "yandex_direct"
                     and _day(r["month"]) < first_month]
    assert all(r["spend_covered"] is True for r in yandex_before)
    assert any(r["cac"] is not None and r["romi"] is not None for r in yandex_before)


def test_covered_months_keep_their_numbers(truncated_vk: Build) -> None:
    first_month = truncated_vk.vk_first_day.replace(day=1)
    rows = truncated_vk.rows(
        "select * from marts.fct_acquisition_monthly "
        f"where month > date '{first_month}' order by month, channel")
    assert rows and all(r["spend_covered"] is True for r in rows)
    vk = [r for r in rows if r["channel"] == "vk_ads" and r["spend"] > 0]
    assert vk and all(r["cpl"] is not None for r in vk if r["acquisition_leads"] > 0)


def test_campaigns_and_curves_follow_coverage(truncated_vk: Build) -> None:
    first_month = truncated_vk.vk_first_day.replace(day=1)
    campaigns = truncated_vk.rows(
        "select * from marts.fct_campaign_performance_monthly "
        f"where channel = 'vk_ads' and month < date '{first_month}'")
    assert campaigns
    for r in campaigns:
        assert r["spend_covered"] is False, r
        assert all(r[c] is None for c in NULLED), r
    curves = truncated_vk.rows(
        "select * from marts.fct_cohort_ltv_by_channel "
        f"where channel in ('vk_ads', 'all') and cohort_month < date '{first_month}'")
    assert curves
    assert all(r["spend_covered"] is False and r["cac"] is None
               and r["payback_reached"] is None for r in curves)
