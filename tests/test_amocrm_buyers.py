"""amoCRM companies, buyer funnel (customers, statuses, transactions) and deleted leads:
AmoCRMSource against the emulator on loopback, landing into DuckDB, through the raw suites."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
from test_extractors_amocrm import (
    BASE_TS,
    CLIENT_SECRET,
    INITIAL_REFRESH,
    N_COMPANIES,
    N_CUSTOMERS,
    N_DELETED,
    N_LEADS,
    N_TRANSACTIONS,
    amo_data,
    api_requests,
    make_source,
)

from emulators import AmoCRMEmulator
from expectations import validate_records
from extractors.sync import sync_entity
from warehouse.duckdb_backend import DuckDBWarehouse
from warehouse.records import RawRecord

BUYER_ENTITIES = ("companies", "customers", "customer_statuses", "transactions",
                  "deleted_leads")


@pytest.fixture
def amo():
    with AmoCRMEmulator(amo_data(), client_secret=CLIENT_SECRET,
                        refresh_token=INITIAL_REFRESH) as emulator:
        yield emulator


@pytest.fixture
def wh(tmp_path: Path) -> DuckDBWarehouse:
    return DuckDBWarehouse(tmp_path / "wh.duckdb")


def payloads(wh: DuckDBWarehouse, entity: str, where: str = "true") -> list[dict]:
    df = wh.query_df(f"select payload from raw.amocrm__{entity} where {where} order by record_id")
    return [json.loads(p) for p in df["payload"]]


def queries(amo: AmoCRMEmulator, path: str) -> list[dict]:
    return [r["query"] for r in api_requests(amo, path) if r["path"] == path]


def test_companies_and_customers_are_incremental_with_overlap(amo, wh, tmp_path):
    src = make_source(amo, tmp_path / "tokens.json")
    for entity, n, step, plus in (("companies", N_COMPANIES, 40, 7),
                                  ("customers", N_CUSTOMERS, 50, 9)):
        first = sync_entity(src, entity, wh, run_id="run-1", validate=_suite)
        assert (first.inserted, first.pages) == (n, math.ceil(n / 50))
        cursor = int(first.cursor_after)
        assert cursor == BASE_TS + step * (n - 1) + plus

        changed = amo.update_item(entity, amo.data[entity][3]["id"], name="Renamed",
                                  updated_at=cursor + 120)
        amo.request_log.clear()
        second = sync_entity(src, entity, wh, run_id="run-2", validate=_suite)
        q = queries(amo, f"/api/v4/{entity}")[0]
        assert q["filter[updated_at][from]"] == str(cursor - 600)
        assert q["order[updated_at]"] == "asc"
        in_overlap = sum(1 for i in range(n) if BASE_TS + step * i + plus >= cursor - 600)
        assert second.fetched == in_overlap + 1
        assert (second.inserted, second.duplicates) == (1, in_overlap)
        assert second.cursor_after == str(cursor + 120)
        names = [p["name"] for p in payloads(wh, entity, f"record_id = '{changed['id']}'")]
        assert sorted(names) == sorted(["Renamed", amo_data()[entity][3]["name"]])


def test_customers_come_with_their_contacts_and_buyer_fields(amo, wh, tmp_path):
    src = make_source(amo, tmp_path / "tokens.json")
    sync_entity(src, "customers", wh, run_id="r", validate=_suite)
    assert {q["with"] for q in queries(amo, "/api/v4/customers")} == {"contacts"}
    customer = payloads(wh, "customers", "record_id = '53000007'")[0]
    assert customer["_embedded"]["contacts"] == [{"id": 51000007, "is_main": True}]
    assert {"next_price", "next_date", "periodicity", "status_id", "ltv", "purchases_count",
            "average_check"} <= set(customer)
    assert "_links" not in json.dumps(customer)


def test_transactions_are_full_pulls_with_the_fields_of_an_order(amo, wh, tmp_path):
    src = make_source(amo, tmp_path / "tokens.json")
    first = sync_entity(src, "transactions", wh, run_id="run-1", validate=_suite)
    assert (first.inserted, first.pages, first.cursor_after) == (
        N_TRANSACTIONS, math.ceil(N_TRANSACTIONS / 50), None)
    txn = payloads(wh, "transactions", "record_id = '54000005'")[0]
    assert {k: txn[k] for k in ("id", "price", "completed_at", "customer_id", "is_deleted")} == {
        "id": 54000005, "price": 1550, "completed_at": BASE_TS + 3600 * 5,
        "customer_id": 53000005, "is_deleted": False}
    assert txn["_embedded"] == {"customer": {"id": 53000005}}
    assert "_links" not in json.dumps(txn)
    assert str(wh.scalar("select updated_at from raw.amocrm__transactions "
                         "where record_id = '54000000'")) == "2026-01-01 00:00:00"

    amo.request_log.clear()
    again = sync_entity(src, "transactions", wh, run_id="run-2", validate=_suite)
    assert (again.fetched, again.inserted) == (N_TRANSACTIONS, 0)  # full pull, de-duplicated
    assert all(not any(k.startswith("filter[") for k in q)
               for q in queries(amo, "/api/v4/customers/transactions"))


def test_customer_statuses_land_and_a_disabled_buyer_funnel_is_zero_records(wh, tmp_path,
                                                                            caplog):
    caplog.set_level(logging.WARNING, logger="voronka.extractors")
    with AmoCRMEmulator(amo_data(), client_secret=CLIENT_SECRET,
                        refresh_token=INITIAL_REFRESH) as amo:
        src = make_source(amo, tmp_path / "a.json")
        result = sync_entity(src, "customer_statuses", wh, run_id="r", validate=_suite)
        assert (result.inserted, result.pages) == (4, 1)
        assert [p["type"] for p in payloads(wh, "customer_statuses")] == [0, 1, 2, 3]
    with AmoCRMEmulator(amo_data(), client_secret=CLIENT_SECRET,
                        refresh_token=INITIAL_REFRESH, customers_mode="disabled") as amo:
        src = make_source(amo, tmp_path / "b.json")
        result = sync_entity(src, "customer_statuses", wh, run_id="r2", validate=_suite)
        assert (result.fetched, result.pages, result.cursor_after) == (0, 0, None)
        assert [r["status"] for r in api_requests(amo)] == [422]  # not retried
    assert "customer_statuses: HTTP 422, the feature is off" in caplog.text


def test_deleted_leads_list_only_the_bin_and_pick_up_later_deletions(amo, wh, tmp_path):
    src = make_source(amo, tmp_path / "tokens.json")
    leads = sync_entity(src, "leads", wh, run_id="run-1")
    assert leads.inserted == N_LEADS  # the bin is not in the normal list
    first = sync_entity(src, "deleted_leads", wh, run_id="run-1", validate=_suite)
    assert (first.inserted, first.pages, first.cursor_after) == (
        N_DELETED, math.ceil(N_DELETED / 50), None)
    assert {q["with"] for q in queries(amo, "/api/v4/leads") if "order[updated_at]" not in q} == {
        "only_deleted"}
    deleted = payloads(wh, "deleted_leads")
    assert deleted[0] == {"id": 39000000, "updated_at": BASE_TS + 10**5, "is_deleted": True}
    assert all(set(p) == {"id", "updated_at", "is_deleted"} for p in deleted)

    gone = amo.delete_lead(30000011)
    amo.request_log.clear()
    again = sync_entity(src, "leads", wh, run_id="run-2")
    assert again.inserted == 0  # the deleted lead is not served any more, despite its bump
    later = sync_entity(src, "deleted_leads", wh, run_id="run-2", validate=_suite)
    assert (later.fetched, later.inserted, later.duplicates) == (N_DELETED + 1, 1, N_DELETED)
    assert payloads(wh, "deleted_leads", "record_id = '30000011'") == [
        {"id": 30000011, "updated_at": gone["updated_at"], "is_deleted": True}]
    # the live version we hold is older than the deletion: staging can tell
    held = payloads(wh, "leads", "record_id = '30000011'")
    assert [p["is_deleted"] for p in held] == [False]
    assert held[0]["updated_at"] < gone["updated_at"]


def test_new_entities_on_an_empty_account_are_204_and_no_pages(wh, tmp_path):
    data = {**amo_data(), "companies": [], "customers": [], "transactions": [],
            "customer_statuses": []}
    data["leads"] = [lead for lead in data["leads"] if not lead.get("is_deleted")]
    with AmoCRMEmulator(data, client_secret=CLIENT_SECRET,
                        refresh_token=INITIAL_REFRESH) as amo:
        src = make_source(amo, tmp_path / "tokens.json")
        for entity in BUYER_ENTITIES:
            amo.request_log.clear()
            result = sync_entity(src, entity, wh, run_id="r")
            assert (result.pages, result.fetched, result.cursor_after) == (0, 0, None), entity
            assert [r["status"] for r in api_requests(amo)] == [204], entity


def test_suites_quarantine_a_corrupted_buyer_record_naming_the_field(amo, tmp_path):
    src = make_source(amo, tmp_path / "tokens.json")
    cases = {"companies": ("updated_at", "yesterday"), "customers": ("next_price", -1),
             "customer_statuses": ("id", "x"), "transactions": ("customer_id", None),
             "deleted_leads": ("is_deleted", False)}
    for entity, (field, value) in cases.items():
        batch = [r for p in src.pages(entity, None) for r in p.records]
        result = validate_records(batch)
        assert result.good == batch, [q.reason for q in result.quarantined]
        bad = RawRecord("amocrm", batch[1].account, entity, batch[1].record_id,
                        {**batch[1].payload, field: value})
        result = validate_records([batch[0], bad, *batch[2:]])
        assert [q.record.record_id for q in result.quarantined] == [bad.record_id], entity
        q = result.quarantined[0]
        assert q.failed_fields[0] == field
        assert f"amocrm {entity} id={bad.record_id}: field '{field}'" in q.reason


def _suite(records: list[RawRecord]):
    """The raw GX suite as the raw assets use it: every landed page passes through it."""
    result = validate_records(records)
    assert result.quarantined == [], [q.reason for q in result.quarantined]
    return result.good, result.quarantined
