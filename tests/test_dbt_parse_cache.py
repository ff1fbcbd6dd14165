"""dbt's partial parse is reused only for the same target, database and vars.

dbt itself does not notice another PostgreSQL database (it compares the profile's keys, not
their values), yet every parsed source carries the database it was parsed for: a parse kept for
one database and reused for another pointed a run's staging at the wrong database.
"""

from __future__ import annotations

from pathlib import Path

from voronka.dbt_parse_cache import PARSE_FILE, cache_dir, keep_parse, parse_key, seed_target

PG = {"VORONKA_WAREHOUSE": "postgres", "VORONKA_POSTGRES_DB": "shop_a"}
VARS = ["build", "--vars", '{"as_of_date": "2026-10-31"}']


def test_the_key_follows_target_database_and_vars_only() -> None:
    assert parse_key(PG, VARS) == parse_key(dict(PG), ["test", *VARS[1:]])
    assert parse_key(PG, VARS) != parse_key({**PG, "VORONKA_POSTGRES_DB": "shop_b"}, VARS)
    assert parse_key(PG, VARS) != parse_key(PG, ["build", "--vars", '{"as_of_date": null}'])
    assert parse_key(PG, VARS) != parse_key({"VORONKA_WAREHOUSE": "duckdb"}, VARS)
    duck = {"VORONKA_WAREHOUSE": "duckdb", "VORONKA_DUCKDB_PATH": "/a/warehouse.duckdb"}
    # DuckDB names the database after the file: another folder is the same database name
    moved = {**duck, "VORONKA_DUCKDB_PATH": "/b/warehouse.duckdb"}
    renamed = {**duck, "VORONKA_DUCKDB_PATH": "/a/other.duckdb"}
    assert parse_key(duck, VARS) == parse_key(moved, VARS)
    assert parse_key(duck, VARS) != parse_key(renamed, VARS)


def test_a_kept_parse_seeds_only_its_own_key(tmp_path: Path) -> None:
    project = tmp_path / "project"
    first = tmp_path / "run1"
    first.mkdir()
    (first / PARSE_FILE).write_bytes(b"parsed for shop_a")
    key = parse_key(PG, VARS)
    keep_parse(first, project, key)
    assert (cache_dir(project) / f"{key}.msgpack").read_bytes() == b"parsed for shop_a"
    assert seed_target(tmp_path / "run2", project, key)
    assert (tmp_path / "run2" / PARSE_FILE).read_bytes() == b"parsed for shop_a"
    other = parse_key({**PG, "VORONKA_POSTGRES_DB": "shop_b"}, VARS)
    assert not seed_target(tmp_path / "run3", project, other)
    assert not (tmp_path / "run3" / PARSE_FILE).exists()
    # an invocation that wrote no parse (it failed before parsing) keeps nothing
    keep_parse(tmp_path / "empty", project, other)
    assert not (cache_dir(project) / f"{other}.msgpack").exists()


def test_a_run_never_removes_another_runs_target_only_a_killed_ones_leftovers(tmp_path: Path):
    """Runs on two warehouses share the project's target/runs: the second run to start must
    leave the first one's directory alone (dbt was still writing into it), and only a
    directory a day old (a killed run's) is cleared."""
    import os
    import time
    from types import SimpleNamespace

    from orchestration.assets.dbt import STALE_RUN_DIR_S, run_target_path

    # the two paths run_target_path reads of a dagster_dbt.DbtProject
    project = SimpleNamespace(project_dir=tmp_path, target_path=tmp_path / "target")
    first = run_target_path("run-a", "key", project)
    (first / "compiled").mkdir()
    killed = run_target_path("run-killed", "key", project)
    old = time.time() - STALE_RUN_DIR_S - 60
    os.utime(killed, (old, old))
    second = run_target_path("run-b", "key", project)
    assert first.is_dir() and (first / "compiled").is_dir() and second.is_dir()
    assert not killed.exists()


def test_dbt_runs_in_the_warehouse_folder_so_a_warehouse_elsewhere_keeps_the_parse(
        tmp_path: Path) -> None:
    """dbt hashes the profile's DuckDB path into its partial parse: with the absolute path a
    warehouse in another folder (a scratch or benchmark warehouse) parsed the whole project
    again. Dagster's dbt (the script) runs in the warehouse's folder and names the file
    relative to it, so a second warehouse of the same name elsewhere parses nothing."""
    import json
    import os
    import subprocess

    from orchestration.assets.dbt import DBT_EXECUTABLE, DBT_IN_WAREHOUSE_FOLDER, DBT_PROJECT

    target = tmp_path / "target"
    env = {**os.environ, "VORONKA_WAREHOUSE": "duckdb",
           "VORONKA_DBT_EXECUTABLE": str(DBT_EXECUTABLE),
           "DBT_PROJECT_DIR": str(DBT_PROJECT.project_dir),
           "DBT_PROFILES_DIR": str(DBT_PROJECT.profiles_dir),
           "DBT_LOG_LEVEL_FILE": "none", "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}

    def parse(folder: Path) -> dict:
        folder.mkdir()
        env["VORONKA_DUCKDB_PATH"] = str(folder / "warehouse.duckdb")
        subprocess.run([str(DBT_IN_WAREHOUSE_FOLDER), "parse", "--quiet",
                        "--target-path", str(target)],
                       env=env, cwd=tmp_path, check=True, timeout=120)
        return json.loads((target / "perf_info.json").read_text())

    assert parse(tmp_path / "first")["parsed_path_count"] > 100  # the whole project
    assert parse(tmp_path / "elsewhere")["parsed_path_count"] == 0
