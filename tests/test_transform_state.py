"""The dbt step does only what changed: nothing when nothing landed, else what the changed raw
tables feed, and the marts come out as a full build would make them."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest
from test_run_command import clean_environment, run_voronka, warehouse_settings, write_env_file

import synthetic
from orchestration.transform_state import (
    BUILD_KEY,
    FORCE_ENV,
    downstream_of,
    exclusions,
    plan_transform,
    save_state,
)
from warehouse.duckdb_backend import DuckDBWarehouse


@pytest.fixture
def wh(tmp_path: Path) -> DuckDBWarehouse:
    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    with warehouse.connect() as conn:
        cur = conn.cursor()
        cur.execute("create schema raw")
        cur.execute("create table raw.files__orders (record_id varchar, extracted_at timestamp)")
        cur.execute("insert into raw.files__orders values ('o1', '2026-01-01 10:00:00')")
        cur.execute("create table raw.channel_mapping (source varchar, channel varchar)")
        cur.execute("insert into raw.channel_mapping values ('yandex', 'paid')")
    return warehouse


def execute(wh: DuckDBWarehouse, sql: str) -> None:
    with wh.connect() as conn:
        conn.cursor().execute(sql)


TABLES = ["files__orders", "channel_mapping", "files__ad_spend"]


def test_plan_is_full_then_skip_then_only_what_changed(wh):
    first = plan_transform(wh, TABLES, "build-1", env={})
    assert first.mode == "full" and first.fingerprints["files__ad_spend"] == "absent"
    save_state(wh, first)
    assert plan_transform(wh, TABLES, "build-1", env={}).mode == "skip"
    execute(wh, "insert into raw.files__orders values ('o2', '2026-01-02 10:00:00')")
    landed = plan_transform(wh, TABLES, "build-1", env={})
    assert landed.mode == "partial" and landed.changed == ("files__orders",)
    save_state(wh, landed)
    # a derived table rewritten with other content, same row count: changed too
    execute(wh, "update raw.channel_mapping set channel = 'organic'")
    assert plan_transform(wh, TABLES, "build-1", env={}).changed == ("channel_mapping",)


def test_a_new_project_or_day_or_force_builds_everything(wh):
    save_state(wh, plan_transform(wh, TABLES, "build-1", env={}))
    assert plan_transform(wh, TABLES, "build-2", env={}).mode == "full"
    forced = plan_transform(wh, TABLES, "build-1", env={FORCE_ENV: "1"})
    assert forced.mode == "full" and FORCE_ENV in forced.reason
    assert forced.fingerprints[BUILD_KEY] == "build-1"


def test_downstream_and_exclusions_follow_the_manifest():
    manifest = {
        "sources": {"source.p.files.files__orders": {"name": "files__orders"},
                    "source.p.files.files__ad_spend": {"name": "files__ad_spend"}},
        "child_map": {"source.p.files.files__orders": ["model.p.stg_orders"],
                      "model.p.stg_orders": ["model.p.fct_orders", "test.p.not_null_x"],
                      "source.p.files.files__ad_spend": ["model.p.stg_spend"]},
        "nodes": {
            "model.p.stg_orders": {"resource_type": "model", "fqn": ["p", "stg_orders"]},
            "model.p.fct_orders": {"resource_type": "model", "fqn": ["p", "marts", "fct_orders"]},
            "test.p.not_null_x": {"resource_type": "test", "fqn": ["p", "not_null_x"]},
            "model.p.stg_spend": {"resource_type": "model", "fqn": ["p", "stg_spend"]},
            "seed.p.kinds": {"resource_type": "seed", "fqn": ["p", "kinds"]},
        },
    }
    keep = downstream_of(manifest, ["files__orders"])
    assert keep == {"model.p.stg_orders", "model.p.fct_orders", "test.p.not_null_x"}
    assert exclusions(manifest, keep) == ["fqn:p.kinds", "fqn:p.stg_spend"]


def marts_of(path: Path) -> dict[str, list[tuple]]:
    with duckdb.connect(str(path), read_only=True) as con:
        tables = [t for (t,) in con.sql("select table_name from information_schema.tables "
                                        "where table_schema = 'marts'").fetchall()]
        return {t: sorted(con.sql(f"select * from marts.{t}").fetchall(), key=repr)
                for t in sorted(tables)}


def test_a_shop_with_order_files_runs_then_skips_then_rebuilds_only_what_a_new_file_feeds(
    tmp_path,
):
    """`voronka run` as a shop with nothing but an orders export runs it, four times: settings
    in `.env`, one command, published marts whose revenue is the files' revenue, the steps
    shown as they finish. The second run lands nothing and skips dbt, checks and
    publication; after a new orders file the third builds only what the orders feed, and its
    marts equal a forced full build's. Great Expectations is imported by the first run, which
    validates the orders, and not by the second, which has nothing to validate (Python's
    import log, ``PYTHONPROFILEIMPORTTIME``, says which modules each run loaded)."""
    business = synthetic.generate(seed=5, scale=0.1)
    files_dir = tmp_path / "files"
    business.write_order_files(files_dir)
    order_files = sorted((files_dir / "orders").iterdir())
    held_back = tmp_path / "later.csv"
    shutil.move(order_files[-1], held_back)  # arrives before the third run
    # one order in another currency: quarantined with its reason, a warning, not a failure
    (files_dir / "orders" / "usd.csv").write_text(
        "order_id,order_date,amount,currency\nUSD-1,2025-01-10,99.00,USD\n")
    settings = {**warehouse_settings(tmp_path), "VORONKA_FILES_DIR": str(files_dir),
                "VORONKA_AS_OF_DATE": business.end.isoformat(),
                "VORONKA_SEGMENTS_DIR": str(tmp_path / "no_segments")}
    (tmp_path / "no_segments").mkdir()
    write_env_file(tmp_path / ".env", settings)
    published = tmp_path / "voronka.duckdb"

    import_log = {**clean_environment(), "PYTHONPROFILEIMPORTTIME": "1"}
    first = run_voronka(cwd=tmp_path, env=import_log)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "| great_expectations\n" in first.stderr
    out = first.stdout
    assert "sources files" in out and str(tmp_path / ".env") in out
    assert "ok" in out and "raw files__orders" in out and "publish marts for BI" in out
    assert "dbt build" in out and "succeeded" in out
    assert "warn         check raw/files__orders :: raw_batch_passes_suite" in out
    # two warnings: the quarantined order, and a shop too small for the customer-value models
    assert "0 failed, 2 warnings" in out and "usd.csv line 2: field 'currency' is USD" in out
    assert "clv_fit_converged_and_within_bound" in out and "too few data" in out
    all_orders = len({o["order_id"] for o in business.file_orders})
    assert 0 < published_orders(published)[0] < all_orders  # one file is still to come
    assert (tmp_path / "logs" / "run.log").stat().st_size > 0  # the full log went to the file
    before = published.stat().st_mtime_ns
    dashboard = tmp_path / "dashboard" / "index.html"  # beside the published file
    assert "Dashboard: " in out and dashboard.exists()
    built = dashboard.stat().st_mtime_ns

    second = run_voronka(cwd=tmp_path, env=import_log)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "great_expectations" not in second.stderr  # nothing new to validate
    assert "skipped, nothing new landed since the last successful build" in second.stdout
    assert "nothing new to act on" in second.stdout
    assert "publish marts for BI" not in second.stdout
    assert published.stat().st_mtime_ns == before  # nothing republished
    assert "unchanged: this run published no new marts" in second.stdout  # nor rebuilt
    assert dashboard.stat().st_mtime_ns == built

    shutil.move(held_back, order_files[-1])
    third = run_voronka(cwd=tmp_path)
    assert third.returncode == 0, third.stdout[-3000:] + third.stderr[-3000:]
    assert "unchanged, not rebuilt" in third.stdout and "publish marts for BI" in third.stdout
    partial = marts_of(published)
    assert dashboard.stat().st_mtime_ns > built  # new marts, a new dashboard
    # every file in now: the marts' revenue is the files' revenue
    assert published_orders(published) == (
        all_orders, pytest.approx(sum(float(o["amount"]) for o in business.file_orders),
                                  abs=0.01))

    env = {**clean_environment(), FORCE_ENV: "1"}
    full = run_voronka(cwd=tmp_path, env=env)
    assert full.returncode == 0, full.stdout[-3000:] + full.stderr[-3000:]
    assert "unchanged, not rebuilt" not in full.stdout
    assert marts_of(published) == partial


def published_orders(published: Path) -> tuple[int, float]:
    """(orders, revenue) in the published fct_orders."""
    with duckdb.connect(str(published), read_only=True) as con:
        [(orders, revenue)] = con.sql(
            "select count(*), sum(amount) from marts.fct_orders").fetchall()
    return orders, float(revenue)
