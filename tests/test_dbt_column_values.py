"""The `column_values` generic test (one dbt node for a model's column rules) fails on bad data
and names the column and the rule; on the shared build it passed for every model."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest
from _support import MartsBuild, run_dbt

MART = "fct_acquisition_monthly"
TEST_NODE = f"column_values_{MART}"


def test_every_model_with_column_rules_passed_them(marts: MartsBuild) -> None:
    nodes = marts.assert_nodes_passed("test.voronka.column_values_")
    assert any(node.startswith(f"test.voronka.{TEST_NODE}.") for node in nodes)
    assert len(nodes) >= 60  # staging, intermediate and marts models each have one


@pytest.mark.parametrize("marts", ["duckdb"], indirect=True)
def test_column_values_fails_on_bad_rows_naming_column_and_rule(
        marts: MartsBuild, tmp_path: Path) -> None:
    """DuckDB only: the check corrupts a copy of the built warehouse file (a PostgreSQL
    database cannot be copied as cheaply); the macro's SQL runs on PostgreSQL in its build."""
    path = tmp_path / "warehouse.duckdb"
    shutil.copy(marts.env["VORONKA_DUCKDB_PATH"], path)
    with duckdb.connect(str(path)) as con:
        months = [r[0] for r in con.execute(
            f"select distinct month from marts.{MART} where channel = 'all' order by month"
        ).fetchall()]
        con.execute(f"update marts.{MART} set spend = -1 "
                    "where channel = 'all' and month = ?", [months[0]])
        con.execute(f"update marts.{MART} set channel = 'telegram' "
                    "where channel = 'all' and month = ?", [months[1]])
        con.execute(f"update marts.{MART} set cv = 1.5 where month = ?", [months[2]])
        cv_rows = con.execute(f"select count(*) from marts.{MART} where cv = 1.5").fetchall()[0][0]
    env = {**marts.env, "VORONKA_DUCKDB_PATH": str(path)}
    code, out, results = run_dbt(tmp_path, env, "test", "--select", TEST_NODE,
                                 "--store-failures")
    assert code == 1, out[-3000:]
    [result] = results["results"]
    assert result["status"] == "fail" and result["failures"] == 3, result
    with duckdb.connect(str(path), read_only=True) as con:
        failures = con.execute(
            f"select column_name, rule, failing_rows from {result['relation_name']} "
            "order by column_name").fetchall()
    assert failures == [("channel", "accepted_values", 1), ("cv", "between", cv_rows),
                        ("spend", "non_negative", 1)]
