"""Honest periods (issue 13 point 4; docs metrics.md "Periods"), on DuckDB and PostgreSQL.

The flags come from the shared `marts` build and the expectations from the synthetic business
itself: the as-of date is the simulation's last day (its data runs through it), the first order
is the simulator's first order of any source, and each source system's data range is read from
the simulator's model (leads, deals, transactions, shop orders, ad rows), never from the marts.
- month_complete (fct_crr_monthly, fct_manager_performance_monthly): the as-of date is after
  the month's last day; cohort cells (fct_cohort_retention, fct_cohort_ltv_by_channel) are
  is_observable when month cohort + k is complete.
- fct_crr_monthly.is_warm_up: the month starts less than W (180) days after the first order.
- dim_report_dates has a row per source system with its first and last data day, and the
  publication's Dagster metadata records the as-of date and those ranges.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import yaml
from _support import DBT_PROJECT, MartsBuild

from orchestration.assets.publish import PUBLISHED_KEY, build_published_marts
from orchestration.resources import WarehouseResource
from synthetic import truth
from synthetic.model import msk_date
from warehouse.publication import report_dates_metadata

SYSTEMS = ("amocrm", "bitrix24", "files", "yandex_direct", "vk_ads", "google_ads", "meta_ads")
DATASETS = ("crm_leads", "amocrm_transactions", "files_orders", "ad_spend")


def _day(value) -> date:
    return pd.Timestamp(value).date()


def _as_of(marts: MartsBuild) -> date:
    """The simulation's last day: its data runs through it and no later (the build's default
    as-of date is the newest data date, which the test checks equals it)."""
    return marts.business.end


def _month_end(month: date) -> date:
    nxt = date(month.year + month.month // 12, month.month % 12 + 1, 1)
    return nxt - timedelta(days=1)


def _add_months(month: date, k: int) -> date:
    n = month.year * 12 + month.month - 1 + k
    return date(n // 12, n % 12 + 1, 1)


def _complete(month: date, as_of: date) -> bool:
    """metrics.md: a month is complete when the as-of date is after its last day."""
    return as_of > _month_end(month)


def _activity_window_days() -> int:
    """The `activity_window_days` var as dbt_project.yml sets it."""
    project = yaml.safe_load((Path(DBT_PROJECT) / "dbt_project.yml").read_text())
    return int(project["vars"]["activity_window_days"])


def test_honest_period_nodes_pass(marts: MartsBuild) -> None:
    for node in ("int_months", "fct_crr_monthly", "fct_cohort_retention",
                 "fct_cohort_ltv_by_channel", "fct_manager_performance_monthly",
                 "dim_report_dates"):
        marts.assert_nodes_passed(node)


def test_the_build_reports_up_to_the_simulations_last_day(marts: MartsBuild) -> None:
    as_of = marts.df("select as_of_date from intermediate.int_as_of_date")["as_of_date"]
    assert _day(as_of.iloc[0]) == _as_of(marts)


@pytest.mark.parametrize("mart", ["fct_crr_monthly", "fct_manager_performance_monthly"])
def test_month_complete_means_the_as_of_date_is_past_the_months_last_day(
        marts: MartsBuild, mart: str) -> None:
    rows = marts.df(f"select distinct month, month_complete from marts.{mart}")
    as_of = _as_of(marts)
    got = {_day(m): bool(c) for m, c in zip(rows["month"], rows["month_complete"], strict=True)}
    assert len(got) == len(rows), "one flag per month"
    expected = {m: _complete(m, as_of) for m in got}
    assert got == expected
    # the as-of month (which ends on the as-of date in this business) is the incomplete one
    assert [m for m, c in got.items() if not c] == [as_of.replace(day=1)]


@pytest.mark.parametrize("mart", ["fct_cohort_retention", "fct_cohort_ltv_by_channel"])
def test_a_cohort_cell_is_observable_when_month_cohort_plus_k_is_complete(
        marts: MartsBuild, mart: str) -> None:
    cells = marts.df(f"select cohort_month, month_offset, is_observable from marts.{mart}")
    as_of = _as_of(marts)
    expected = [_complete(_add_months(_day(c), int(k)), as_of)
                for c, k in zip(cells["cohort_month"], cells["month_offset"], strict=True)]
    got = [bool(x) for x in cells["is_observable"]]
    assert got == expected
    assert any(got) and not all(got)
    # every cohort's last cell (the as-of month) is the one still growing
    last = cells.loc[cells.groupby("cohort_month")["month_offset"].idxmax()]
    assert not last["is_observable"].astype(bool).any()


def test_crr_warm_up_months_start_less_than_the_window_after_the_first_order(
        marts: MartsBuild) -> None:
    sim = marts.business.ground_truth._sim
    first_order = min(o.day for o in truth.orders(sim))
    warm_until = first_order + timedelta(days=_activity_window_days())
    crr = marts.df("select month, is_warm_up, customers_active_start, crr "
                   "from marts.fct_crr_monthly order by month")
    got = {_day(m): bool(w) for m, w in zip(crr["month"], crr["is_warm_up"], strict=True)}
    assert got == {m: m < warm_until for m in got}
    assert any(got.values()) and not all(got.values())
    # the reason for the flag: nobody of the data can have lapsed before the window is over,
    # so a month that ends inside it keeps every customer active at its start (CRR >= 100)
    crr["month_end"] = [_month_end(_day(m)) for m in crr["month"]]
    inside = crr[(crr["month_end"] < warm_until) & (crr["customers_active_start"] > 0)]
    assert len(inside) > 0 and (inside["crr"].astype(float) >= 100).all()
    assert inside["is_warm_up"].astype(bool).all()


def _crm_ranges(sim) -> dict[str, tuple[date, date]]:
    """(first record day, newest day of anything sent) per CRM, from the simulator: records
    are leads/deals created and buyer transactions; anything sent adds edits, closes and
    stage moves."""
    amo_created = [x.created_ts for x in sim.leads] + [t.completed_ts for t in sim.transactions]
    amo_any = amo_created + [x.updated_ts for x in sim.leads] + [
        x.closed_ts for x in sim.leads if x.closed_ts] + [m[0] for x in sim.leads for m in x.moves]
    b24 = [*sim.b24.leads, *sim.b24.deals]
    b24_created = [x.created_ts for x in b24]
    b24_any = b24_created + [x.updated_ts for x in b24] + [
        x.closed_ts for x in b24 if x.closed_ts] + [m[0] for x in b24 for m in x.moves]
    return {"amocrm": (msk_date(min(amo_created)), msk_date(max(amo_any))),
            "bitrix24": (msk_date(min(b24_created)), msk_date(max(b24_any)))}


def _expected_ranges(marts: MartsBuild) -> dict[str, tuple[date | None, date | None]]:
    business = marts.business
    sim = business.ground_truth._sim
    out: dict[str, tuple[date | None, date | None]] = dict(_crm_ranges(sim))
    shop_days = [o.day for o in sim.shop_orders]
    out["files"] = (min(shop_days), max(shop_days))
    for platform, rows in business.ad_rows().items():
        days = [date.fromisoformat(r["date"]) for r in rows]
        out[platform] = (min(days), max(days)) if days else (None, None)
    return out


def test_report_dates_publish_each_source_systems_data_range(marts: MartsBuild) -> None:
    dates = marts.df("select * from marts.dim_report_dates")
    assert set(dates["source_kind"]) == {"dataset", "system"}
    assert set(dates.loc[dates["source_kind"] == "dataset", "source"]) == set(DATASETS)
    systems = dates[dates["source_kind"] == "system"].set_index("source")
    assert set(systems.index) == set(SYSTEMS)
    assert (pd.to_datetime(dates["as_of_date"]).dt.date == _as_of(marts)).all()
    assert (pd.to_numeric(dates["records_after_as_of"]) == 0).all()
    for source, (first, last) in _expected_ranges(marts).items():
        row = systems.loc[source]
        got = (None if pd.isna(row["first_data_date"]) else _day(row["first_data_date"]),
               None if pd.isna(row["last_data_date"]) else _day(row["last_data_date"]))
        assert got == (first, last), source


def _publish_report_dates(frame: pd.DataFrame, tmp_path: Path,
                          monkeypatch: pytest.MonkeyPatch) -> dg.AssetMaterialization:
    """Run the real `published/marts` asset over a one-mart DuckDB warehouse holding
    `frame` as marts.dim_report_dates; return the publication's materialization."""
    for key in ("VORONKA_WAREHOUSE", "VORONKA_DUCKDB_PATH", "VORONKA_PUBLISHED_PATH"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("VORONKA_WAREHOUSE", "duckdb")
    monkeypatch.setenv("VORONKA_DUCKDB_PATH", str(tmp_path / "warehouse.duckdb"))
    monkeypatch.setenv("VORONKA_PUBLISHED_PATH", str(tmp_path / "voronka.duckdb"))
    key = dg.AssetKey(["marts", "dim_report_dates"])

    @dg.asset(key=key)
    def report_dates(warehouse: WarehouseResource) -> None:
        with warehouse.open().connect() as conn:
            cur = conn.cursor()
            cur.execute("create schema if not exists marts")
            cur.register("frame", frame)
            cur.execute("create or replace table marts.dim_report_dates as "
                        "select * from frame")

    defs = dg.Definitions(assets=[report_dates, build_published_marts(["dim_report_dates"], [])],
                          resources={"warehouse": WarehouseResource()})
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=dg.DagsterInstance.ephemeral())
    assert result.success
    [published] = [m for m in result.asset_materializations_for_node("published__marts")
                   if m.asset_key == PUBLISHED_KEY]
    return published


def test_the_publication_records_the_as_of_date_and_each_sources_range(
        marts: MartsBuild, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    frame = marts.df("select * from marts.dim_report_dates")
    meta = _publish_report_dates(frame, tmp_path, monkeypatch).metadata
    assert meta["as_of_date"].value == _as_of(marts).isoformat()
    assert meta["as_of_basis"].value == "data"
    ranges = {r["source"]: r for r in meta["source_data_ranges"].value}
    assert set(ranges) == set(SYSTEMS) | set(DATASETS)
    for source, (first, last) in _expected_ranges(marts).items():
        got = ranges[source]
        assert got["source_kind"] == "system"
        assert (got["first_data_date"], got["last_data_date"]) == (
            first and first.isoformat(), last and last.isoformat()), source
        assert got["records_after_as_of"] == 0
    assert report_dates_metadata(frame.iloc[0:0]) == {}


def test_the_second_business_with_a_mid_month_as_of_date(marts_alt: MartsBuild) -> None:
    """The same rules on another seed and scale whose as-of date falls mid-month (`marts_alt`,
    DuckDB): the as-of month is partial and the only incomplete one."""
    assert _as_of(marts_alt).day not in (1, _month_end(_as_of(marts_alt)).day)
    test_the_build_reports_up_to_the_simulations_last_day(marts_alt)
    for mart in ("fct_crr_monthly", "fct_manager_performance_monthly"):
        test_month_complete_means_the_as_of_date_is_past_the_months_last_day(marts_alt, mart)
    for mart in ("fct_cohort_retention", "fct_cohort_ltv_by_channel"):
        test_a_cohort_cell_is_observable_when_month_cohort_plus_k_is_complete(marts_alt, mart)
    test_crr_warm_up_months_start_less_than_the_window_after_the_first_order(marts_alt)
    test_report_dates_publish_each_source_systems_data_range(marts_alt)
