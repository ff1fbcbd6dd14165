"""Great Expectations suites: raw batches (quarantine path), marts, revenue reconciliation."""

from __future__ import annotations

import copy
import json
from datetime import datetime
from typing import Any

import pandas as pd
import pytest

from expectations import (
    GX_TIMINGS,
    MART_COLUMNS,
    MART_SUITES,
    RAW_SUITES,
    reconcile_revenue,
    validate_mart,
    validate_records,
)
from expectations.marts import CHANNELS
from warehouse.duckdb_backend import DuckDBWarehouse
from warehouse.records import RawRecord

LEAD = {
    "id": 30412577, "name": "Order #1187", "price": 45000, "responsible_user_id": 8812031,
    "group_id": 0, "status_id": 142, "pipeline_id": 7310455, "loss_reason_id": None,
    "created_by": 8812031, "updated_by": 0, "created_at": 1767160212,
    "updated_at": 1767229811, "closed_at": 1767229811, "closest_task_at": None,
    "is_deleted": False, "score": None, "account_id": 31990211, "labor_cost": None,
    "custom_fields_values": [{"field_id": 1204417, "field_name": "utm_source",
                              "field_code": "UTM_SOURCE", "field_type": "tracking_data",
                              "values": [{"value": "yandex"}]}],
    "_embedded": {"tags": [], "companies": [], "contacts": [{"id": 51022987, "is_main": True}]},
}
OPEN_LEAD = {**LEAD, "id": 30412603, "price": 0, "status_id": 61880213, "closed_at": None,
             "custom_fields_values": None}
STATS_ROW = {"Date": "2026-05-01", "CampaignId": "70012345", "CampaignName": "Brand_Search",
             "Impressions": "1520", "Clicks": "96", "Cost": "4312500000",
             "_currency": "RUB", "_include_vat": "NO", "_money_in_micros": True}


def lead(record_id: Any = None, **changes: Any) -> RawRecord:
    payload = copy.deepcopy(LEAD)
    payload.update(changes)
    if record_id is not None:
        payload["id"] = record_id
    return RawRecord("amocrm", "acme", "leads", str(payload.get("id")), payload)


def stats(date: str, campaign: str, **changes: Any) -> RawRecord:
    payload = {**STATS_ROW, "Date": date, "CampaignId": campaign, **changes}
    return RawRecord("yandex_direct", "acme-login", "campaign_stats", f"{date}|{campaign}",
                     payload)


def amocrm(entity: str, payload: dict[str, Any]) -> RawRecord:
    return RawRecord("amocrm", "acme", entity, str(payload.get("id")), payload)


def by_id(result: Any) -> dict[str, str]:
    return {q.record.record_id: q.reason for q in result.quarantined}


# -- raw suites --------------------------------------------------------------------------------


def test_good_batches_pass_for_every_raw_suite() -> None:
    pipeline = {"id": 7310455, "name": "Sales", "_embedded": {"statuses": [
        {"id": 142, "name": "won", "pipeline_id": 7310455}]}}
    event = {"id": "01jh3k8q2v9x7c0m4n5p6r1s2t", "type": "lead_status_changed",
             "entity_id": 30412577, "entity_type": "lead", "created_at": 1767229811,
             "value_before": [{"lead_status": {"id": 61880213, "pipeline_id": 7310455}}],
             "value_after": [{"lead_status": {"id": 142, "pipeline_id": 7310455}}]}
    batches = [
        [lead(), RawRecord("amocrm", "acme", "leads", "30412603", OPEN_LEAD),
         lead(30412577, updated_at=1767229999, closed_at=1767229999)],  # a newer version
        [amocrm("contacts", {"id": 1, "custom_fields_values": None}),
         amocrm("contacts", {"id": 2, "custom_fields_values": [{"field_code": "PHONE"}]})],
        [amocrm("events", event)],
        [amocrm("pipelines", pipeline)],
        [amocrm("users", {"id": 8812031, "name": "Anna"})],
        [amocrm("loss_reasons", {"id": 1, "name": "Too expensive"})],
        [stats("2026-05-01", "70012345"), stats("2026-05-01", "70012346", Cost="2890.00")],
    ]
    assert {(b[0].source, b[0].entity) for b in batches} == set(RAW_SUITES)
    for batch in batches:
        result = validate_records(batch)
        assert result.quarantined == [], [q.reason for q in result.quarantined]
        assert result.good == batch
        assert result.success
        assert all(r["success"] for r in result.results)
        assert any(r["expectation"].startswith("expect_") for r in result.results)


def test_corrupted_lead_batch_quarantines_exactly_the_bad_records() -> None:
    missing = copy.deepcopy(LEAD)
    missing["id"] = 5
    del missing["status_id"]
    batch = [
        lead(1),
        lead(2, price=-5),
        lead(None, id=None),
        lead(4, updated_at=1767160000),  # before created_at
        RawRecord("amocrm", "acme", "leads", "5", missing),
        lead(6, closed_at=None),  # won without closed_at
        lead(7, price="abc"),
        lead(8, created_at=5),
        lead(9, price=None, status_id=61880213, closed_at=None),  # null price is allowed
        lead(10), lead(10, price=1),  # same (id, updated_at), different payloads
        lead(1),  # an identical repeat of a good record is not a duplicate
        RawRecord("amocrm", "acme", "leads", "11", ["not", "an", "object"]),  # type: ignore[arg-type]
    ]
    result = validate_records(batch)
    reasons = by_id(result)
    assert [q.record.record_id for q in result.quarantined] == [
        "2", "None", "4", "5", "6", "7", "8", "10", "10", "11"]
    assert [r.record_id for r in result.good] == ["1", "9", "1"]
    assert reasons["2"] == ("amocrm leads id=2: field 'price' expected a non-negative integer, "
                            "got -5 (expect_column_values_to_be_between)")
    assert "field 'id' expected a lead id, got null (expect_column_values_to_not_be_null)" in (
        reasons["None"])
    assert "batch position 2" in reasons["None"]
    assert "field 'updated_at' expected updated_at >= created_at" in reasons["4"]
    assert "updated_at=1767160000, created_at=1767160212" in reasons["4"]
    assert reasons["5"] == "amocrm leads id=5: payload is missing key(s) 'status_id' (flatten)"
    assert "field 'closed_at'" in reasons["6"] and "won lead" in reasons["6"]
    assert "field 'price'" in reasons["7"] and "got 'abc'" in reasons["7"]
    assert "field 'created_at'" in reasons["8"] and "got 5" in reasons["8"]
    assert "(expect_compound_columns_to_be_unique)" in reasons["10"]
    assert reasons["11"] == ("amocrm leads id=11 (batch position 12): payload is list, "
                             "expected a JSON object (flatten)")
    failed = {q.record.record_id: q.failed_fields for q in result.quarantined}
    assert failed["2"] == ("price",) and failed["4"] == ("updated_at",)
    assert failed["5"] == ("status_id",) and failed["None"] == ("id",)
    summary = {(r["expectation"], r["field"]): r["unexpected_count"]
               for r in result.results if not r["success"]}
    assert summary[("expect_column_values_to_be_between", "price")] == 1
    assert summary[("flatten", None)] == 2


def test_corrupted_direct_batch_quarantines_exactly_the_bad_rows() -> None:
    batch = [
        stats("2026-05-01", "1"),
        stats("2026-05-01", "2", Impressions="abc"),
        stats("2026-05-01", "3", Impressions="10", Clicks="200"),
        stats("2026-05-01", "4", Cost="-1.5"),
        stats("01.05.2026", "5"),
        stats("2026-05-01", "6x"),
        RawRecord("yandex_direct", "acme-login", "campaign_stats", "2026-05-01|7",
                  {k: v for k, v in STATS_ROW.items() if k != "Clicks"}),
        stats("2026-05-02", "1"),
    ]
    result = validate_records(batch)
    reasons = by_id(result)
    assert [r.record_id for r in result.good] == ["2026-05-01|1", "2026-05-02|1"]
    assert set(reasons) == {"2026-05-01|2", "2026-05-01|3", "2026-05-01|4", "01.05.2026|5",
                            "2026-05-01|6x", "2026-05-01|7"}
    assert reasons["2026-05-01|2"] == (
        "yandex_direct campaign_stats id=2026-05-01|2: field 'Impressions' expected a "
        "non-negative integer string, got 'abc' (expect_column_values_to_match_regex)")
    assert "field 'Clicks' expected Clicks <= Impressions, got Clicks='200', " \
           "Impressions='10'" in reasons["2026-05-01|3"]
    assert "field 'Cost'" in reasons["2026-05-01|4"]
    assert "field 'Date'" in reasons["01.05.2026|5"]
    assert "field 'CampaignId'" in reasons["2026-05-01|6x"]
    assert "missing key(s) 'Clicks'" in reasons["2026-05-01|7"]


def test_other_amocrm_suites_catch_bad_shapes() -> None:
    good_event = {"id": "e1", "type": "lead_status_changed", "entity_id": 1,
                  "created_at": 1767229811, "value_after": [{"lead_status": {"id": 142}}]}
    events = validate_records([
        amocrm("events", good_event),
        amocrm("events", {**good_event, "id": "e2", "type": "lead_added"}),
        amocrm("events", {**good_event, "id": "e3", "value_after": [{"note": {"id": 1}}]}),
        amocrm("events", {**good_event, "id": "e4", "entity_id": None}),
    ])
    assert [r.record_id for r in events.good] == ["e1"]
    assert "field 'type'" in by_id(events)["e2"]
    assert "field 'value_after'" in by_id(events)["e3"]
    assert "field 'entity_id'" in by_id(events)["e4"]
    pipelines = validate_records([
        amocrm("pipelines", {"id": 1, "_embedded": {"statuses": []}}),
        amocrm("pipelines", {"id": 2}),
    ])
    assert len(pipelines.quarantined) == 2
    assert "a non-empty list of statuses" in by_id(pipelines)["1"]
    contacts = validate_records([amocrm("contacts", {"id": 3, "custom_fields_values": "x"})])
    assert "field 'custom_fields_values' expected null or a list" in by_id(contacts)["3"]
    with pytest.raises(ValueError, match="no raw suite"):
        validate_records([amocrm("tasks", {"id": 1})])
    assert validate_records([]).good == []


def test_quarantine_path_lands_good_records_and_keeps_bad_ones(tmp_path: Any) -> None:
    wh = DuckDBWarehouse(tmp_path / "w.duckdb")
    batch = [lead(1), lead(2, price=-5), lead(3), lead(None, id=None), lead(4)]
    result = validate_records(batch)
    assert wh.quarantine(result.quarantined, "run-1") == 2
    assert wh.land(result.good, "run-1").inserted == 3
    raw = wh.query_df("select record_id from raw.amocrm__leads order by record_id")
    assert raw["record_id"].tolist() == ["1", "3", "4"]
    q = wh.query_df("select record_id, reason, failed_fields, run_id, payload "
                    "from raw._quarantine order by record_id")
    assert q["record_id"].tolist() == ["2", "None"]
    assert q["reason"].str.contains("field 'price'").tolist() == [True, False]
    assert "field 'id'" in q["reason"].iloc[1]
    assert q["failed_fields"].tolist() == ["price", "id"]
    assert set(q["run_id"]) == {"run-1"}
    assert json.loads(q["payload"].iloc[0])["price"] == -5


def test_validation_is_cached_and_cheap_after_the_first_call() -> None:
    batch = [lead(30000000 + i) for i in range(250)]
    validate_records(batch)
    assert {"import_s", "context_s", "first_validation_s"} <= set(GX_TIMINGS)
    start = datetime.now()
    result = validate_records(batch)
    assert len(result.good) == 250
    assert (datetime.now() - start).total_seconds() < 5


# -- mart suites --------------------------------------------------------------------------------


def test_mart_suites_cover_the_contract() -> None:
    assert set(MART_SUITES) == {"fct_orders", "dim_customers", "fct_cohort_retention",
                                "fct_acquisition_monthly", "fct_crr_monthly",
                                "fct_funnel_stage_conversion"}
    from synthetic.catalog import CHANNELS as SYNTHETIC_CHANNELS
    assert tuple(CHANNELS) == tuple(SYNTHETIC_CHANNELS)


def _frame(model: str, rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(MART_COLUMNS[model]))


def test_mart_suites_pass_good_frames_and_name_bad_ones() -> None:
    orders = _frame("fct_orders", [
        {"order_id": 1, "customer_id": 10, "amount": 100.0, "order_month": "2026-01-01"},
        {"order_id": 2, "customer_id": 11, "amount": 50.0, "order_month": "2026-02-01"},
    ])
    assert validate_mart("fct_orders", orders).passed
    bad_orders = pd.concat([orders, orders.iloc[[0]]], ignore_index=True)
    v = validate_mart("fct_orders", bad_orders)
    assert not v.passed
    dup = [f for f in v.failures if f["expectation"] == "expect_column_values_to_be_unique"]
    assert dup[0]["column"] == "order_id" and dup[0]["unexpected_count"] == 2
    assert dup[0]["sample"] == [1, 1]
    assert v.statistics["row_count"] == 3

    cohorts = _frame("fct_cohort_retention", [
        {"cohort_month": "2026-01-01", "month_offset": 0, "cohort_size": 10,
         "retention_rate": 1.0, "ltv": 100.0},
        {"cohort_month": "2026-01-01", "month_offset": 1, "cohort_size": 10,
         "retention_rate": 0.3, "ltv": 120.0},
    ])
    assert validate_mart("fct_cohort_retention", cohorts).passed
    cohorts.loc[1, "retention_rate"] = 1.3
    v = validate_mart("fct_cohort_retention", cohorts)
    assert [(f["column"], f["unexpected_count"], f["sample"]) for f in v.failures] == [
        ("retention_rate", 1, [1.3])]
    assert "retention_rate" in v.failures[0]["message"]

    from decimal import Decimal  # DuckDB/psycopg2 DECIMAL columns arrive as Decimal objects
    acq = _frame("fct_acquisition_monthly", [
        {"month": "2026-01-01", "channel": "all", "spend": Decimal("100.00"), "leads": 5,
         "new_customers": 2, "cpl": Decimal("20.00"), "cac": Decimal("50.00"), "cv": 0.4},
        {"month": "2026-01-01", "channel": "organic", "spend": Decimal("0"), "leads": 5,
         "new_customers": 0, "cpl": None, "cac": None, "cv": None, "cac_undefined": True},
    ])
    assert validate_mart("fct_acquisition_monthly", acq).passed
    acq.loc[0, "cac"] = Decimal("-5")
    v = validate_mart("fct_acquisition_monthly", acq)
    assert [(f["column"], f["sample"]) for f in v.failures] == [("cac", [-5.0])]

    customers = _frame("dim_customers", [{"customer_id": 1, "orders_count": 1, "revenue": 5,
                                          "channel": "tiktok"}])
    v = validate_mart("dim_customers", customers)
    assert [f["column"] for f in v.failures] == ["channel"]
    crr = _frame("fct_crr_monthly", [{"customers_active_start": -1, "strict_retention": 2}])
    assert {f["column"] for f in validate_mart("fct_crr_monthly", crr).failures} == {
        "customers_active_start", "strict_retention"}
    funnel = _frame("fct_funnel_stage_conversion", [{"conversion_to_next": 0.5},
                                                    {"conversion_to_next": None}])
    assert validate_mart("fct_funnel_stage_conversion", funnel).passed

    v = validate_mart("fct_orders", orders.drop(columns=["channel"]))
    assert any(f["expectation"] == "expect_column_to_exist" and f["column"] == "channel"
               for f in v.failures)
    json.dumps([v.failures, v.statistics])  # ready for Dagster metadata
    with pytest.raises(ValueError, match="no mart suite"):
        validate_mart("fct_leads", orders)


# -- reconciliation ------------------------------------------------------------------------------


def _reconcile_warehouse(tmp_path: Any) -> DuckDBWarehouse:
    wh = DuckDBWarehouse(tmp_path / "r.duckdb")
    # Moscow is UTC+3: 2026-01-31 22:00 UTC is already February in the reporting zone.
    jan, feb_msk = 1769860800, 1769896800  # 2026-01-31 12:00 UTC, 2026-01-31 22:00 UTC
    leads = [
        lead(1, price=100, closed_at=jan, updated_at=jan),
        lead(2, price=250, closed_at=feb_msk, updated_at=feb_msk),
        lead(3, price=999, status_id=143, closed_at=jan, updated_at=jan),  # lost
    ]
    wh.land(leads, "run-1")
    # a newer version of lead 1 with another price wins over the old one
    wh.land([lead(1, price=120, closed_at=jan, updated_at=jan + 60)], "run-2")
    with wh.connect() as conn:
        cur = conn.cursor()
        cur.execute("create schema marts")
        cur.execute("create table marts.fct_orders (order_id bigint, order_month date, "
                    "amount decimal(18, 2))")
        cur.execute("insert into marts.fct_orders values (1, date '2026-01-01', 120), "
                    "(2, date '2026-02-01', 250)")
    return wh


def test_reconciliation_passes_when_marts_match_raw(tmp_path: Any) -> None:
    v = reconcile_revenue(_reconcile_warehouse(tmp_path))
    assert v.passed, v.failures
    assert v.statistics["raw_revenue"] == 370 and v.statistics["mart_orders"] == 2
    assert v.statistics["months_differing"] == []


def test_reconciliation_fails_naming_the_month(tmp_path: Any) -> None:
    wh = _reconcile_warehouse(tmp_path)
    with wh.connect() as conn:
        conn.cursor().execute("update marts.fct_orders set amount = 300 where order_id = 2")
    v = reconcile_revenue(wh)
    assert not v.passed
    assert v.statistics["months_differing"] == ["2026-02"]
    monthly = next(f for f in v.failures if f["expectation"] == "reconcile_monthly_revenue")
    assert monthly["unexpected_count"] == 1
    assert monthly["sample"][0]["month"] == "2026-02"
    assert "2026-02 (raw 250.00/1, mart 300.00/1)" in monthly["message"]
    assert any(f["expectation"] == "reconcile_total_revenue" for f in v.failures)
