"""Issue 12, items 2, 12 and 13: the as-of date never passes today (Moscow) by default and the
marts publish it; published numbers are exact (bit-identical between builds); dates of birth
stay in the working warehouse, and working-warehouse and audience files are owner-only."""

from __future__ import annotations

import json
import shutil
import stat
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import pandas as pd
import pytest
from _support import MartsBuild, run_dbt

from audiences.export import export_segment_file
from warehouse.duckdb_backend import DuckDBWarehouse

MOSCOW = ZoneInfo("Europe/Moscow")
COMPILED = Path("dbt_target/compiled/voronka/models/intermediate/int_as_of_date.sql")


def _owner_only(path: Path) -> bool:
    return stat.S_IMODE(path.stat().st_mode) & 0o077 == 0


SENTINEL_TODAY = "1999-12-31"  # compiled once as `as_of_today`, then replaced per case


class _Rollback(Exception):
    """Raised to roll a test's edits of the shared build back."""


@dataclass(frozen=True)
class AsOfSql:
    """int_as_of_date compiled against the shared build: with a stand-in for today, and as
    a pipeline run compiles it (no vars)."""

    capped: str
    default: str

    def with_today(self, today: date) -> str:
        return self.capped.replace(f"'{SENTINEL_TODAY}'", f"'{today.isoformat()}'")


def _compile(marts: MartsBuild, workdir: Path, *vars_args: str) -> str:
    code, out, _ = run_dbt(workdir, marts.env, "compile", "-s", "int_as_of_date", *vars_args)
    assert code == 0, out[-3000:]
    return (workdir / COMPILED).read_text()


@pytest.fixture(scope="module")
def as_of_sql(marts: MartsBuild, tmp_path_factory: pytest.TempPathFactory) -> AsOfSql:
    """Two compiles (a few seconds each): the no-vars one reuses the build's parse."""
    capped_dir = tmp_path_factory.mktemp("as_of_capped")
    capped = _compile(marts, capped_dir, "--vars", json.dumps({"as_of_today": SENTINEL_TODAY}))
    default_dir = tmp_path_factory.mktemp("as_of_default")
    parsed = marts.workdir / "dbt_target" / "partial_parse.msgpack"
    if parsed.exists():
        (default_dir / "dbt_target").mkdir()
        shutil.copy(parsed, default_dir / "dbt_target" / parsed.name)
    return AsOfSql(capped, _compile(marts, default_dir))


def _as_of(marts: MartsBuild, sql: str) -> date:
    found = marts.df(f"select as_of_date from ({sql}) as a")["as_of_date"].iloc[0]
    return pd.Timestamp(found).date()


def _newest_data_date(marts: MartsBuild) -> date:
    """The build's as-of date: the seeded business ends before today, so it is the newest
    data date (test_marts_publish_... checks the basis)."""
    row = marts.df("select as_of_date as d from intermediate.int_as_of_date")
    return pd.Timestamp(row["d"].iloc[0]).date()


# -- item 2: the as-of date never passes today (Moscow) unless set ------------------------------
def test_as_of_date_is_capped_at_today_in_moscow(marts: MartsBuild, as_of_sql: AsOfSql) -> None:
    """A row dated after today cannot move the as-of date: with 'today' ten days before the
    newest data date, the as-of date is today; with today later, the data's own date."""
    newest = _newest_data_date(marts)
    assert _as_of(marts, as_of_sql.with_today(newest - timedelta(10))) == newest - timedelta(10)
    assert _as_of(marts, as_of_sql.with_today(newest + timedelta(30))) == newest


def test_an_order_dated_2099_does_not_move_the_as_of_date(marts: MartsBuild,
                                                          as_of_sql: AsOfSql) -> None:
    """The issue's case: one file order typed as 2099 (edited into the build inside a
    transaction that is rolled back) leaves the as-of date at today, not 2099-01-01."""
    newest = _newest_data_date(marts)
    sql = as_of_sql.with_today(newest)
    with pytest.raises(_Rollback), marts.wh.connect() as conn:  # an assert rolls back too
        cur = conn.cursor()
        cur.execute("update staging.stg_files__orders set order_date = date '2099-01-01' "
                    "where order_date = (select max(order_date) from staging.stg_files__orders)")
        cur.execute(f"select as_of_date from ({sql}) as a")
        assert pd.Timestamp(cur.fetchall()[0][0]).date() == newest
        cur.execute(f"select as_of_basis from ({sql}) as a")
        assert cur.fetchall()[0][0] == "today"
        raise _Rollback


def test_default_cap_is_the_run_day_in_moscow(marts: MartsBuild, as_of_sql: AsOfSql) -> None:
    """Without vars the cap is the day the dbt run started, in Moscow (never the data)."""
    today = datetime.now(MOSCOW).date()
    assert _as_of(marts, as_of_sql.default) == min(_newest_data_date(marts), today)


def test_marts_publish_the_as_of_date_and_each_sources_range(marts: MartsBuild) -> None:
    """marts.dim_report_dates (published with the marts) says which as-of date the build
    used, why, each source's data range and how many of its records it left out."""
    dates = marts.df("select * from marts.dim_report_dates where source_kind = 'dataset' "
                     "order by source")
    as_of = marts.df("select as_of_date from intermediate.int_as_of_date")["as_of_date"].iloc[0]
    assert set(dates["source"]) == {"crm_leads", "amocrm_transactions", "files_orders",
                                    "ad_spend"}
    assert (pd.to_datetime(dates["as_of_date"]) == pd.Timestamp(as_of)).all()
    assert set(dates["as_of_basis"]) == {"data"}  # the seeded business ends before today
    assert (pd.to_numeric(dates["records_after_as_of"]) == 0).all()
    assert (pd.to_datetime(dates["first_data_date"])
            <= pd.to_datetime(dates["last_data_date"])).all()
    assert pd.to_datetime(dates["last_data_date"]).max() == pd.Timestamp(as_of)


# -- item 12: exact, order-independent numbers -------------------------------------------------
def test_sales_cycle_is_exact_decimal(marts: MartsBuild) -> None:
    """fct_sales_cycle's mean comes from an exact sum of whole seconds (no parallel float sum),
    published as a decimal: the same data gives the same digits in every build."""
    cycle = marts.df("select * from marts.fct_sales_cycle "
                     "where not by_channel and not by_manager and not by_month")
    won = marts.df("select crm, account, pipeline_id, created_at, won_at "
                   "from intermediate.int_lead_stage_reached "
                   "where is_won_step and pipeline_outcome = 'won'")
    won["seconds"] = [int((pd.Timestamp(w) - pd.Timestamp(c)).total_seconds())
                      for c, w in zip(won["created_at"], won["won_at"], strict=True)]
    exact = won.groupby(["crm", "account", "pipeline_id"])["seconds"].agg(["sum", "count"])
    assert len(cycle) > 0
    for row in cycle.itertuples():
        for col in ("mean_sales_cycle_days", "median_sales_cycle_days", "p90_sales_cycle_days"):
            assert isinstance(getattr(row, col), Decimal), (col, type(getattr(row, col)))
        total, n = exact.loc[(row.crm, row.account, row.pipeline_id)]
        expected = Decimal(int(total)) / Decimal(int(n) * 86400)
        assert abs(row.mean_sales_cycle_days - expected) <= Decimal("0.000001")


def test_hours_in_stage_is_an_exact_sum_of_seconds(marts: MartsBuild) -> None:
    """A stage stayed in several times: its hours are the exact total seconds / 3600, not a
    float sum whose last bit depends on the order the rows were added in."""
    stages = marts.df("select account, lead_id, pipeline_id, status_id, hours_in_stage "
                      "from intermediate.int_lead_stage_reached "
                      "where hours_in_stage is not null")
    stays = marts.df("select account, lead_id, pipeline_id, status_id, entered_at, left_at "
                     "from intermediate.int_lead_stage_history where left_at is not null")
    stays["seconds"] = [int((pd.Timestamp(b) - pd.Timestamp(a)).total_seconds())
                        for a, b in zip(stays["entered_at"], stays["left_at"], strict=True)]
    keys = ["account", "lead_id", "pipeline_id", "status_id"]
    totals = stays.groupby(keys)["seconds"].sum()
    merged = stages.join(totals, on=keys, how="inner")
    assert len(merged) > 0
    assert (merged["hours_in_stage"] == merged["seconds"] / 3600.0).all()


# -- item 13: birthdays out of BI; owner-only files --------------------------------------------
def test_dim_customers_publishes_month_and_day_not_the_date(marts: MartsBuild) -> None:
    """BI sees birthday month and day (what segments need); the full date stays in the
    working warehouse's intermediate.int_customer_birthday."""
    dim = marts.df("select * from marts.dim_customers")
    assert "birthday" not in dim.columns
    private = marts.df("select customer_id, birthday from intermediate.int_customer_birthday")
    merged = dim.merge(private, on="customer_id", how="left")
    known = merged.dropna(subset=["birthday"])
    assert len(known) > 0
    days = pd.to_datetime(known["birthday"])
    assert (known["birthday_month"].astype(int) == days.dt.month).all()
    assert (known["birthday_day"].astype(int) == days.dt.day).all()
    unknown = merged[merged["birthday"].isna()]
    assert unknown["birthday_month"].isna().all() and unknown["birthday_day"].isna().all()


def test_working_warehouse_file_is_owner_only(tmp_path: Path) -> None:
    """The working warehouse holds dates of birth and contacts: created 0600, and an older
    file created with the umask's 0644 is tightened on the next open."""
    wh = DuckDBWarehouse(tmp_path / "warehouse.duckdb", tmp_path / "voronka.duckdb")
    with wh.connect() as conn:
        conn.cursor().execute("create table t as select 1 as x")
    assert _owner_only(wh.path)
    wh.path.chmod(0o644)
    with wh.connect() as conn:
        conn.cursor().execute("select 1").fetchall()
    assert _owner_only(wh.path)


def test_audience_export_files_are_owner_only(tmp_path: Path) -> None:
    """Audience files carry hashed contacts: every file and the manifest are 0600."""
    frame = pd.DataFrame([(f"c{i}", "phone", f"+7916{i:07d}") for i in range(120)],
                         columns=["customer_id", "kind", "value"])
    result = export_segment_file(frame, "meta", tmp_path, "seg", 0, allow_small=True)
    for path in (*result.files, result.manifest_path):
        assert _owner_only(path), path


@pytest.mark.parametrize("existing_mode", [0o644])
def test_audience_export_tightens_an_existing_file(tmp_path: Path, existing_mode: int) -> None:
    """An export over a file left world-readable by an older version makes it owner-only."""
    frame = pd.DataFrame([(f"c{i}", "phone", f"+7916{i:07d}") for i in range(120)],
                         columns=["customer_id", "kind", "value"])
    first = export_segment_file(frame, "meta", tmp_path, "seg", 0, allow_small=True)
    for path in (*first.files, first.manifest_path):
        path.chmod(existing_mode)
    again = export_segment_file(frame, "meta", tmp_path, "seg", 0, allow_small=True)
    for path in (*again.files, again.manifest_path):
        assert _owner_only(path), path


@pytest.mark.parametrize("marts", ["duckdb"], indirect=True)
def test_a_rebuild_of_the_same_data_publishes_bit_identical_marts(
        marts: MartsBuild, tmp_path: Path) -> None:
    """Every model rebuilt on a copy of the shared build (DuckDB runs aggregates on several
    threads): every row of every mart is identical to the last bit, floats included."""
    path, first = tmp_path / "warehouse.duckdb", tmp_path / "first.duckdb"
    shutil.copy(marts.env["VORONKA_DUCKDB_PATH"], path)
    shutil.copy(marts.env["VORONKA_DUCKDB_PATH"], first)
    env = {**marts.env, "VORONKA_DUCKDB_PATH": str(path)}
    code, out, _ = run_dbt(tmp_path, env, "run")
    assert code == 0, out[-3000:]
    with duckdb.connect(str(path), read_only=True) as con:
        con.execute(f"attach '{first}' as first (read_only)")
        tables = [r[0] for r in con.execute(
            "select table_name from information_schema.tables where table_catalog = "
            "current_database() and table_schema = 'marts' order by 1").fetchall()]
        assert len(tables) >= 18
        for table in tables:
            [(differing,)] = con.execute(
                f"select count(*) from ((select * from marts.{table} except all "
                f"select * from first.marts.{table}) union all (select * from "
                f"first.marts.{table} except all select * from marts.{table}))").fetchall()
            assert differing == 0, table
