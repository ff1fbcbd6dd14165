"""The mart rules only the GX mart suites held before issue 17 are dbt tests now: each fails
on a row that breaks it.

The rules are broken in a copy of the shared DuckDB build (a PostgreSQL database cannot be
copied as cheaply; the same tests pass on PostgreSQL's build) and only their dbt tests run.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest
from _support import MartsBuild, run_dbt


def _first(table: str, where: str, order: str = "rowid") -> str:
    """A predicate selecting one row of `table`: the first matching `where` by `order`."""
    return (f"rowid = (select rowid from marts.{table} where {where} "
            f"order by {order} limit 1)")


#: dbt test -> (statements that break its rule once or twice, the failures it must report)
BROKEN: dict[str, tuple[list[str], int]] = {
    "assert_orders_are_in_one_currency": (
        [f"update marts.fct_orders set currency = 'USD' where {_first('fct_orders', 'true')}"],
        2),  # one row per currency
    "dim_customers_last_order_not_before_first": (
        ["update marts.dim_customers set last_order_date = first_order_date - 1 "
         f"where {_first('dim_customers', 'true')}"], 1),
    "fct_acquisition_monthly_margin_and_spend_coverage": (
        ["update marts.fct_acquisition_monthly set attributed_gross_margin = "
         "attributed_revenue + 1 where "
         + _first("fct_acquisition_monthly", "channel = 'all'", "month"),
         # a month without complete spend that still publishes a CPL reads as cheap
         "update marts.fct_acquisition_monthly set spend_covered = false where "
         + _first("fct_acquisition_monthly", "channel = 'all' and cpl is not null",
                  "month desc")], 2),
    "fct_campaign_performance_monthly_margin_and_spend_coverage": (
        ["update marts.fct_campaign_performance_monthly set attributed_gross_margin = "
         "attributed_revenue + 1 where " + _first("fct_campaign_performance_monthly", "true")],
        1),
    "fct_cohort_ltv_by_channel_cumulative_and_coverage": (
        ["update marts.fct_cohort_ltv_by_channel set spend_covered = false where "
         + _first("fct_cohort_ltv_by_channel", "cac is not null")], 1),
    "fct_funnel_stage_conversion_median_within_p90": (
        ["update marts.fct_funnel_stage_conversion set p90_hours_in_stage = "
         "median_hours_in_stage - 1 where "
         + _first("fct_funnel_stage_conversion", "median_hours_in_stage > 1")], 1),
    "fct_funnel_stage_slices_reach_and_time": (
        ["update marts.fct_funnel_stage_slices set p90_hours_in_stage = "
         "median_hours_in_stage - 1 where "
         + _first("fct_funnel_stage_slices", "median_hours_in_stage > 1")], 1),
    "fct_lookalike_seed_rank_within_seed": (
        ["update marts.fct_lookalike_seed set seed_size = lookalike_rank - 1 where "
         + _first("fct_lookalike_seed", "true", "lookalike_rank desc")], 1),
    "fct_lead_stages_grain": (  # the same lead, pipeline and stage twice (under another account)
        ["insert into marts.fct_lead_stages select * replace ('other' as account) "
         "from marts.fct_lead_stages where " + _first("fct_lead_stages", "true")], 1),
}

#: column_values tests -> the (column, rule) rows they must report
COLUMN_RULES: dict[str, tuple[list[str], set[tuple[str, str, int]]]] = {
    "column_values_fct_acquisition_monthly": (
        ["update marts.fct_acquisition_monthly set romi_gross = -150 where "
         + _first("fct_acquisition_monthly", "channel <> 'all'", "month"),
         "update marts.fct_acquisition_monthly set attributed_gross_margin = -1 where "
         + _first("fct_acquisition_monthly", "channel <> 'all'", "month desc")],
        {("attributed_gross_margin", "non_negative", 1), ("romi_gross", "between", 1)}),
    "column_values_fct_customer_value_monthly": (
        ["update marts.fct_customer_value_monthly set margin_rate = 1.5 where "
         + _first("fct_customer_value_monthly", "true")],
        {("margin_rate", "between", 1)}),
}


@pytest.mark.parametrize("marts", ["duckdb"], indirect=True)
def test_each_rule_moved_from_gx_to_dbt_fails_on_a_row_that_breaks_it(
        marts: MartsBuild, tmp_path: Path) -> None:
    for name in [*BROKEN, *COLUMN_RULES]:  # the shared build passed them all
        marts.assert_nodes_passed(f"test.voronka.{name}")
    path = tmp_path / "warehouse.duckdb"
    shutil.copy(marts.env["VORONKA_DUCKDB_PATH"], path)
    with duckdb.connect(str(path)) as con:
        for statements, _ in [*BROKEN.values(), *COLUMN_RULES.values()]:
            for sql in statements:
                con.execute(sql)
    env = {**marts.env, "VORONKA_DUCKDB_PATH": str(path)}
    code, out, results = run_dbt(tmp_path, env, "test", "--store-failures",
                                 "--select", *BROKEN, *COLUMN_RULES)
    assert code == 1, out[-3000:]
    by_name = {r["unique_id"].split(".")[2]: r for r in results["results"]}
    assert set(by_name) == {*BROKEN, *COLUMN_RULES}
    for name, (_, failures) in BROKEN.items():
        assert (by_name[name]["status"], by_name[name]["failures"]) == ("fail", failures), name
    with duckdb.connect(str(path), read_only=True) as con:
        for name, (_, rules) in COLUMN_RULES.items():
            assert by_name[name]["status"] == "fail", name
            got = con.execute(f"select column_name, rule, failing_rows "
                              f"from {by_name[name]['relation_name']}").fetchall()
            assert set(got) == rules, name
