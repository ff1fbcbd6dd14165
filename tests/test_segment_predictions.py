"""Segments on the CLV predictions (issue 16): p_alive, its 30-day change, expected purchases,
expected order value and predicted 12-month value as fields of conditions, ``value:`` and
``top_share:``, read from marts.fct_customer_predictions through a join that only segments
using them have; a clear error where the predictions are not published.

A scratch warehouse of eight customers (DuckDB; the same checks on PostgreSQL when
VORONKA_TEST_POSTGRES=1), its predictions written with the real table DDL."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from _support import scratch_warehouse

from audiences.segments import (
    FIELDS,
    PREDICTION_FIELDS,
    PREDICTIONS,
    SegmentError,
    compile_segment,
    load_segments,
    parse_segment,
    prediction_fields,
    segment_frame,
    segment_members,
)
from predictions.customers import Settings, fit_models, fit_table
from predictions.tables import FIT_DDL, FIT_MODEL, PREDICTIONS_DDL, PREDICTIONS_MODEL, ddl_columns

AS_OF = date(2026, 10, 31)
# customer_id, is_contactable, orders_count, revenue
CUSTOMERS = [
    ("c1", True, 5, 900.0), ("c2", True, 4, 100.0), ("c3", False, 6, 2000.0),
    ("c4", True, 1, 50.0), ("c5", True, 1, 40.0), ("c6", True, 2, 300.0),
    ("c7", True, 3, 400.0), ("c8", True, 2, 700.0),
]
# customer_id -> (p_alive, p_alive_change_30d, expected_purchases_90d, predicted_value_12m);
# c5 has no prediction (a first order on the as-of date), c6 a row without a value, c7 no
# change (not a customer 30 days ago)
PREDICTED = {
    "c1": (0.90, -0.05, 1.2, 900.0), "c2": (0.95, 0.01, 0.9, 800.0),
    "c3": (0.40, -0.20, 0.8, 1000.0), "c4": (0.30, -0.30, 0.1, 100.0),
    "c6": (0.99, 0.00, None, None), "c7": (1.00, None, 0.6, 500.0),
    "c8": (0.60, -0.10, 0.7, 700.0),
}
CONTACTABLE = [c for c, ok, _, _ in CUSTOMERS if ok]


def predictions_frame(rows: dict[str, tuple]) -> pd.DataFrame:
    """The rows in the published table's columns (PREDICTIONS_DDL order)."""
    frame = pd.DataFrame(None, index=range(len(rows)), columns=ddl_columns(PREDICTIONS_DDL))
    for i, (cid, (alive, change, purchases, value)) in enumerate(rows.items()):
        frame.loc[i, ["customer_id", "p_alive", "p_alive_change_30d",
                      "expected_purchases_90d", "predicted_value_12m"]] = [
            cid, alive, change, purchases, value]
        frame.loc[i, ["model_version", "fit_date"]] = ["bgnbd-gg-mle-1", AS_OF]
    numbers = [c for c in frame.columns if c not in ("customer_id", "model_version",
                                                     "fit_date")]
    return frame.astype({c: "float64" for c in numbers})


def build_shop(wh: Any, predictions: dict[str, tuple] | None = PREDICTED) -> None:
    """marts.dim_customers of CUSTOMERS and (unless None) marts.fct_customer_predictions."""
    mark = "?" if wh.kind == "duckdb" else "%s"
    with wh.connect() as conn:
        cur = conn.cursor()
        for schema in ("marts", "intermediate"):
            cur.execute(f"create schema if not exists {schema}")
        cur.execute("create table marts.dim_customers (customer_id varchar, is_contactable "
                    "boolean, orders_count integer, revenue numeric(18, 2))")
        cur.executemany(f"insert into marts.dim_customers values ({mark}, {mark}, {mark}, "
                        f"{mark})", CUSTOMERS)
        cur.execute("create table intermediate.int_as_of_date (as_of_date date)")
        cur.execute(f"insert into intermediate.int_as_of_date values ({mark})", [AS_OF])
    if predictions is not None:
        wh.replace_table("marts", PREDICTIONS_MODEL, predictions_frame(predictions),
                         PREDICTIONS_DDL)


def segment(conditions: str, *, value: str | None = None, kind: str = "dynamic") -> Any:
    head = f"name: s\nkind: {kind}\n" + (f"value: {value}\n" if value else "")
    return parse_segment(head + "conditions:\n" + conditions, "s.yml")


def contactable_ranking(key: int) -> list[str]:
    """Contactable customers by a PREDICTED column, descending, no prediction last, ties by
    customer_id: what top_share must select from, recomputed here."""
    def sort_key(cid: str) -> tuple:
        value = PREDICTED.get(cid, (None,) * 4)[key]
        return (value is None, -(value or 0.0), cid)
    return sorted(CONTACTABLE, key=sort_key)


@pytest.fixture
def duck(tmp_path: Path) -> Any:
    from warehouse.duckdb_backend import DuckDBWarehouse

    return DuckDBWarehouse(tmp_path / "warehouse.duckdb", tmp_path / "voronka.duckdb")


# -- the contract with the predictions table -------------------------------------------------


def test_prediction_fields_are_numeric_columns_of_the_published_table():
    assert f"marts.{PREDICTIONS_MODEL}" == PREDICTIONS
    columns = ddl_columns(PREDICTIONS_DDL)
    assert set(PREDICTION_FIELDS) == {"p_alive", "p_alive_change_30d", "expected_purchases_90d",
                                      "expected_purchases_365d", "expected_order_value",
                                      "predicted_value_12m"}
    for field, (column, ftype) in PREDICTION_FIELDS.items():
        assert column in columns and ftype == "number" and FIELDS[field] == (column, ftype)
    assert {"group_name", "status", "message"} <= set(ddl_columns(FIT_DDL))


# -- compiling -----------------------------------------------------------------------------------


def test_prediction_conditions_compile_to_bound_parameters_on_both_backends():
    seg = segment("  - {field: p_alive, op: between, value: [0.55, 0.975]}\n"
                  "  - {field: p_alive_change_30d, op: '<', value: -0.0125}\n"
                  "  - any:\n"
                  "      - {field: expected_purchases_365d, op: '>=', value: 2.5}\n"
                  "      - {field: expected_order_value, op: in, value: [1234.5, 4321.5]}\n")
    for backend, mark in (("duckdb", "?"), ("postgres", "%s")):
        sql, params = compile_segment(seg, backend)
        assert params == [Decimal("0.55"), Decimal("0.975"), Decimal("-0.0125"),
                          Decimal("2.5"), Decimal("1234.5"), Decimal("4321.5")]
        assert sql.count(mark) == len(params)
        for pasted in ("0.55", "0.975", "0.0125", "2.5", "1234.5", "4321.5"):
            assert pasted not in sql
        assert (f"left join {PREDICTIONS} as p on p.customer_id = d.customer_id") in sql
        assert f"p.p_alive between {mark} and {mark}" in sql
        assert f"p.p_alive_change_30d < {mark}" in sql
        assert f"p.expected_order_value in ({mark}, {mark})" in sql
    assert prediction_fields(seg) == ("p_alive", "p_alive_change_30d",
                                      "expected_purchases_365d", "expected_order_value")


def test_segments_without_prediction_fields_have_no_join():
    seg = segment("  - {field: revenue, op: '>', value: 100}\n"
                  "  - top_share: {field: revenue, share: 0.5}\n", value="revenue")
    sql, _ = compile_segment(seg, "duckdb")
    assert "fct_customer_predictions" not in sql and prediction_fields(seg) == ()
    for shipped in load_segments():
        sql, _ = compile_segment(shipped, "postgres")
        assert ("fct_customer_predictions" in sql) == bool(prediction_fields(shipped)), \
            shipped.name
    # asking for a prediction column is a use of the predictions too
    sql, _ = compile_segment(seg, "duckdb", ["p_alive", "orders_count"])
    assert "left join marts.fct_customer_predictions as p" in sql
    assert "p.p_alive" in sql and "d.orders_count" in sql


def test_a_bad_prediction_field_lists_what_is_allowed():
    for text, what in (
        ("  - {field: p_alive_falling, op: '<', value: 0}\n", "unknown field 'p_alive_falling'"),
        ("  - top_share: {field: predicted_value, share: 0.1}\n",
         "unknown numeric field 'predicted_value'"),
    ):
        with pytest.raises(SegmentError) as info:
            segment(text)
        message = str(info.value)
        assert message.startswith("s.yml, line 4:") and what in message, message
        assert all(f in message for f in PREDICTION_FIELDS), message
    with pytest.raises(SegmentError, match=r"value 'p_alive; drop' is not a numeric field; "
                                           r"allowed: .*predicted_value_12m"):
        segment("  - {field: orders_count, op: '>', value: 0}\n", value="p_alive; drop")
    with pytest.raises(SegmentError, match="operator 'is_true' is not allowed for p_alive"):
        segment("  - {field: p_alive, op: is_true}\n")
    with pytest.raises(SegmentError, match=r"p_alive needs a number, got '0\.5 or 1=1'"):
        segment("  - {field: p_alive, op: '<', value: '0.5 or 1=1'}\n")
    seg = segment("  - {field: orders_count, op: '>', value: 0}\n")
    with pytest.raises(SegmentError, match=r"column 'p.p_alive' is not selectable; allowed: "
                                           r".*p_alive_change_30d"):
        compile_segment(seg, "duckdb", ["p.p_alive"])


# -- members (DuckDB; PostgreSQL below) ------------------------------------------------------


def check_members(wh: Any) -> None:
    """Every prediction-field behaviour against `wh` holding build_shop's tables."""
    # a condition: p_alive falling; no change (c7) and no prediction (c5) never match
    members = segment_members(wh, segment(
        "  - {field: p_alive_change_30d, op: '<', value: 0}\n"))
    assert members.customer_ids == ("c1", "c4", "c8") and members.excluded_count == 1  # c3
    members = segment_members(wh, segment(
        "  - {field: p_alive, op: '>=', value: 0.9}\n"
        "  - {field: expected_purchases_90d, op: '>', value: 0.65}\n"))
    assert members.customer_ids == ("c1", "c2")
    # top_share by predicted value: c6 (null value) and c5 (no row) rank last
    by_value = contactable_ranking(3)
    assert by_value == ["c1", "c2", "c8", "c7", "c4", "c5", "c6"]
    for share, size in ((0.25, 2), (0.5, 4), (0.8, 6), (1, 7)):
        members = segment_members(wh, segment(
            f"  - top_share: {{field: predicted_value_12m, share: {share}}}\n"))
        assert members.customer_ids == tuple(sorted(by_value[:size])), share
        assert members.excluded_count == 0  # c3 is never ranked: not contactable
    # the look-alike option: value + top_share on predicted value (the shipped seed at 50 %)
    members = segment_members(wh, segment(
        "  - top_share: {field: predicted_value_12m, share: 0.5}\n",
        value="predicted_value_12m", kind="static"))
    assert members.customer_ids == ("c1", "c2", "c7", "c8")
    assert members.values == (900.0, 800.0, 500.0, 700.0)
    # a value where some members have no prediction: 0 for them
    members = segment_members(wh, segment("  - {field: orders_count, op: '<=', value: 2}\n",
                                          value="predicted_value_12m"))
    assert members.customer_ids == ("c4", "c5", "c6", "c8")
    assert members.values == (100.0, 0.0, 0.0, 700.0)
    # the shipped high_value_slipping rule at a share this small shop can show: top 4 of 7
    # by value (c1 c2 c8 c7), p_alive falling (c1 c8)
    members = segment_members(wh, segment(
        "  - top_share: {field: predicted_value_12m, share: 0.5}\n"
        "  - {field: p_alive_change_30d, op: '<', value: 0}\n"))
    assert members.customer_ids == ("c1", "c8")
    # extra columns come from the predictions table
    frame = segment_frame(wh, segment("  - {field: revenue, op: '>=', value: 300}\n"),
                          ["p_alive", "predicted_value_12m", "revenue"])
    assert list(frame.columns) == ["customer_id", "is_contactable", "p_alive",
                                   "predicted_value_12m", "revenue"]
    assert frame["customer_id"].tolist() == ["c1", "c3", "c6", "c7", "c8"]
    assert frame["p_alive"].astype(float).tolist() == [0.9, 0.4, 0.99, 1.0, 0.6]


def test_prediction_fields_select_the_right_customers(duck: Any):
    build_shop(duck)
    check_members(duck)


def test_a_hostile_value_on_a_prediction_field_is_bound(duck: Any):
    build_shop(duck)
    seg = segment("  - {field: p_alive, op: not_in, value: [0.9, 0.95]}\n")
    sql, params = compile_segment(seg, duck)
    assert params == [Decimal("0.9"), Decimal("0.95")] and "0.9" not in sql
    # not_in on a missing prediction is unknown, never true: c5 is not selected
    assert segment_members(duck, seg).customer_ids == ("c4", "c6", "c7", "c8")


# -- predictions not published -----------------------------------------------------------------


def test_segments_without_prediction_fields_run_with_no_predictions_table(duck: Any):
    build_shop(duck, predictions=None)
    members = segment_members(duck, segment(
        "  - top_share: {field: revenue, share: 0.5}\n", value="revenue"))
    assert members.customer_ids == ("c1", "c6", "c7", "c8")  # 900, 700, 400, 300 of the 7
    for shipped in load_segments():
        if not prediction_fields(shipped):
            sql, _ = compile_segment(shipped, duck)
            assert "fct_customer_predictions" not in sql


def test_a_missing_predictions_table_is_a_clear_error(duck: Any):
    build_shop(duck, predictions=None)
    shipped = {s.name: s for s in load_segments()}
    for name in ("high_value_slipping", "top_10_percent_predicted_value_lookalike"):
        with pytest.raises(SegmentError) as info:
            segment_members(duck, shipped[name])
        message = str(info.value)
        assert f"segment {name!r}" in message and shipped[name].file in message
        assert "uses prediction fields (predicted_value_12m" in message
        assert "predictions are not published" in message
        assert "marts.fct_customer_predictions does not exist" in message
        assert "did not fit or has not run" in message
        assert "marts.fct_clv_model_fit does not exist either" in message
    # a segment without prediction fields asking for a prediction column needs them too
    with pytest.raises(SegmentError, match=r"uses prediction fields \(p_alive\)"):
        segment_frame(duck, segment("  - {field: revenue, op: '>', value: 0}\n"), ["p_alive"])


def test_the_error_carries_the_fit_message_when_the_model_did_not_fit(duck: Any):
    """Ten one-time buyers: fit_models says why there is no fit, and the segment repeats it."""
    orders = pd.DataFrame({"customer_id": [f"x{i}" for i in range(10)],
                           "order_date": [AS_OF - timedelta(days=7 * i) for i in range(10)],
                           "amount": 1000.0})
    fit = fit_models(orders, AS_OF, Settings())
    assert not fit.usable and fit.message
    build_shop(duck, predictions={})  # the table exists and is empty
    duck.replace_table("marts", FIT_MODEL, fit_table(fit, Settings()), FIT_DDL)
    with pytest.raises(SegmentError) as info:
        segment_members(duck, segment(
            "  - {field: p_alive, op: '<', value: 0.5}\n"))
    message = str(info.value)
    assert "marts.fct_customer_predictions is empty" in message
    assert f"marts.fct_clv_model_fit says: {fit.status}: {fit.message}" in message


# -- PostgreSQL ----------------------------------------------------------------------------------


@pytest.mark.postgres
def test_prediction_fields_on_postgres(tmp_path: Path):
    """The same members on PostgreSQL (%s parameters; a descending order puts nulls first
    there unless told otherwise), and the same clear error without the table."""
    with scratch_warehouse("postgres", tmp_path, "segpred") as (wh, _):
        build_shop(wh)
        check_members(wh)
        with wh.connect() as conn:
            conn.cursor().execute(f"drop table {PREDICTIONS}")
        with pytest.raises(SegmentError, match=r"marts\.fct_customer_predictions does not "
                                               r"exist"):
            segment_members(wh, segment("  - {field: p_alive, op: '<', value: 0.5}\n"))
        members = segment_members(wh, segment("  - {field: orders_count, op: '>', value: 4}\n"))
        assert members.customer_ids == ("c1",) and members.excluded_count == 1
