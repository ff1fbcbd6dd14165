"""Great Expectations suites: raw batches (quarantine path), the marts dbt does not build,
revenue reconciliation."""

from __future__ import annotations

import copy
import json
from datetime import datetime
from typing import Any

import pandas as pd
import pytest

from expectations import (
    GX_TIMINGS,
    MART_SUITES,
    PYTHON_MART_SUITES,
    RAW_SUITES,
    mart_columns,
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


# payloads exactly as the extractors build them (see test_raw_suites_pass_emulator_payloads)
VK_PLAN = {"id": 20865519, "name": "Brand_VK", "status": "active",
           "created": "2026-01-01 10:00:00", "updated": "2026-01-01 10:00:00"}
VK_STATS = {"date": "2026-05-01", "ad_plan_id": 20865519,
            "base": {"shows": 15000, "clicks": 120, "spent": "3520.40", "cpm": "234.69",
                     "cpc": "29.34", "ctr": 0.8, "vk": {"goals": 0, "cpa": "0.00", "cr": 0.0},
                     "goals": 0, "cpa": "0.00", "cr": 0.0},
            "_currency": "RUB"}
GOOGLE_ROW = {"customer": {"resourceName": "customers/1234567890", "currencyCode": "RUB",
                           "timeZone": "Europe/Moscow"},
              "campaign": {"resourceName": "customers/1234567890/campaigns/21001",
                           "id": "21001", "name": "Brand Search", "status": "ENABLED"},
              "metrics": {"impressions": "1000", "clicks": "50", "costMicros": "4312500000"},
              "segments": {"date": "2026-05-01"}}
META_ROW = {"campaign_id": "120210000000001", "campaign_name": "Prospecting RU",
            "account_currency": "RUB", "impressions": "36000", "clicks": "600",
            "spend": "3520.40", "date_start": "2026-05-01", "date_stop": "2026-05-01"}
ORDERS_CSV = (
    "order_id;order_date;amount;currency;customer_phone;gross_margin\n"
    "A-1;2026-05-01;45 000,50;RUB;+79001234567;12000\n"
    "A-2;02.05.2026;1200;;;\n"
)
AD_SPEND_CSV = (
    "date,platform,campaign_id,campaign_name,spend,currency,impressions,clicks\n"
    "2026-05-01,telegram_ads,tg-1,Launch,1500.00,RUB,10000,120\n"
    "2026-05-01,telegram_ads,tg-2,Retarget,300.5,RUB,,\n"
)


# amoCRM companies, buyer funnel and the bin, as the extractor lands them (docs/SOURCES_CONTRACT)
COMPANY = {"id": 52000001, "name": "ООО Ромашка", "responsible_user_id": 8812031,
           "group_id": 0, "created_by": 0, "updated_by": 0, "created_at": 1767160212,
           "updated_at": 1767229811, "closest_task_at": None, "is_deleted": False,
           "custom_fields_values": None, "account_id": 31990211, "_embedded": {"tags": []}}
CUSTOMER = {"id": 53000001, "name": "Buyer", "next_price": 2500, "next_date": 1769821811,
            "responsible_user_id": 8812031, "status_id": 71001, "periodicity": 30,
            "created_by": 0, "updated_by": 0, "created_at": 1767160212,
            "updated_at": 1767229811, "closest_task_at": None, "is_deleted": False,
            "custom_fields_values": None, "ltv": 5000, "purchases_count": 2,
            "average_check": 2500.5, "account_id": 31990211, "group_id": 0,
            "_embedded": {"tags": [], "contacts": [{"id": 51022987, "is_main": True}]}}
CUSTOMER_STATUS = {"id": 71001, "name": "Regular", "sort": 10, "is_default": True,
                   "color": "#99ccff", "type": 0, "account_id": 31990211}
TRANSACTION = {"id": 54000001, "price": 2500, "completed_at": 1767229811, "comment": None,
               "customer_id": 53000001, "created_by": 0, "updated_by": 0,
               "created_at": 1767229811, "updated_at": 1767229811, "is_deleted": False,
               "account_id": 31990211, "_embedded": {"customer": {"id": 53000001}}}
DELETED_LEAD = {"id": 30412577, "updated_at": 1767229811, "is_deleted": True}

# Bitrix24 rows as the extractor lands them: legacy crm.*.list all strings, history native ints
B24_DEAL = {"ID": "1204", "TITLE": "Order #1204", "TYPE_ID": "SALE", "CATEGORY_ID": "0",
            "STAGE_ID": "WON", "STAGE_SEMANTIC_ID": "S", "OPPORTUNITY": "45000.00",
            "CURRENCY_ID": "RUB", "ASSIGNED_BY_ID": "12", "CREATED_BY_ID": "12",
            "DATE_CREATE": "2026-01-02T09:15:07+03:00",
            "DATE_MODIFY": "2026-01-03T10:00:00+03:00",
            "CLOSEDATE": "2026-01-03T10:00:00+03:00", "CLOSED": "Y", "LEAD_ID": None,
            "CONTACT_ID": "5001", "COMPANY_ID": None, "SOURCE_ID": "WEB",
            "UTM_SOURCE": "yandex", "UTM_MEDIUM": "cpc", "UTM_CAMPAIGN": None,
            "UTM_CONTENT": None, "UTM_TERM": None}
B24_LEAD = {"ID": "300", "TITLE": "Lead", "NAME": "Ivan", "LAST_NAME": "P",
            "STATUS_ID": "CONVERTED", "STATUS_SEMANTIC_ID": "S", "OPPORTUNITY": "0.00",
            "CURRENCY_ID": "RUB", "ASSIGNED_BY_ID": "12",
            "DATE_CREATE": "2026-01-02T09:00:00+03:00",
            "DATE_MODIFY": "2026-01-02T09:00:00+03:00", "DATE_CLOSED": "", "CONTACT_ID": "5001",
            "PHONE": [{"ID": "7000", "VALUE_TYPE": "WORK", "VALUE": "+7 495 000-0000",
                       "TYPE_ID": "PHONE"}]}
B24_CONTACT = {"ID": "5001", "NAME": "Ivan", "LAST_NAME": "P", "ASSIGNED_BY_ID": "12",
               "DATE_CREATE": "2026-01-02T09:00:00+03:00",
               "DATE_MODIFY": "2026-01-02T09:01:00+03:00",
               "EMAIL": [{"ID": "9500", "VALUE_TYPE": "WORK", "VALUE": "i@example.com",
                          "TYPE_ID": "EMAIL"}]}
B24_STATUS = {"ID": "4", "ENTITY_ID": "DEAL_STAGE_1", "STATUS_ID": "C1:WON", "NAME": "Won",
              "NAME_INIT": "Won", "SORT": "20", "SYSTEM": "Y", "CATEGORY_ID": "1",
              "COLOR": "#39A8EF", "SEMANTICS": "S",
              "EXTRA": {"SEMANTICS": "success", "COLOR": "#39A8EF"}}
B24_CATEGORY = {"id": 1, "name": "Wholesale", "sort": 200, "entityTypeId": 2, "isDefault": "N"}
B24_USER = {"ID": "12", "ACTIVE": True, "NAME": "Anna", "LAST_NAME": "K",
            "EMAIL": "a@example.com", "WORK_POSITION": "Manager"}
B24_HISTORY = {"ID": 9001, "TYPE_ID": 2, "OWNER_ID": 1204,
               "CREATED_TIME": "2026-01-03T10:00:00+03:00", "CATEGORY_ID": 0,
               "STAGE_ID": "WON", "STAGE_SEMANTIC_ID": "S", "_entityTypeId": 2}


def b24(entity: str, payload: dict[str, Any], record_id: str | None = None) -> RawRecord:
    rid = record_id or str(payload.get("ID", payload.get("id")))
    return RawRecord("bitrix24", "voronka.bitrix24.ru", entity, rid, payload)


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


def changed(payload: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of `payload` with the dotted `path` set to `value` (`...` deletes it)."""
    out = copy.deepcopy(payload)
    *parents, last = path.split(".")
    node = out
    for key in parents:
        node = node[key]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return out


def vk_plan(plan_id: Any, **changes: Any) -> RawRecord:
    payload = {**VK_PLAN, "id": plan_id, **changes}
    return RawRecord("vk_ads", "vk-cabinet", "ad_plans", str(plan_id), payload)


def vk_stats(day: str, plan_id: Any, payload: dict[str, Any] | None = None) -> RawRecord:
    payload = {**(payload or VK_STATS), "date": day, "ad_plan_id": plan_id}
    return RawRecord("vk_ads", "vk-cabinet", "ad_plan_stats", f"{day}|{plan_id}", payload)


def google(day: str, campaign: str, payload: dict[str, Any] | None = None) -> RawRecord:
    payload = changed(changed(payload or GOOGLE_ROW, "segments.date", day), "campaign.id",
                      campaign)
    return RawRecord("google_ads", "1234567890", "campaign_stats", f"{day}|{campaign}",
                     payload)


def meta(day: str, campaign: str, **changes: Any) -> RawRecord:
    payload = {**META_ROW, "date_start": day, "date_stop": day, "campaign_id": campaign,
               **changes}
    return RawRecord("meta_ads", "act_1234567890", "campaign_insights", f"{day}|{campaign}",
                     payload)


def file_records(tmp_path: Any, entity: str, text: str, name: str) -> list[RawRecord]:
    from extractors.files import FilesSource

    folder = tmp_path / "drop" / entity
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")
    pages = list(FilesSource(tmp_path / "drop").pages(entity, None))
    return [r for page in pages for r in page.records if r.payload["_file"] == name]


# -- raw suites --------------------------------------------------------------------------------


def test_good_batches_pass_for_every_raw_suite(tmp_path: Any) -> None:
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
        [amocrm("customer_events", {
            "id": "01jh3k8q2v9x7c0m4n5p6r1s2u", "type": "customer_status_changed",
            "entity_id": 1530001, "entity_type": "customer", "created_at": 1767229811,
            "value_before": [{"customer_status": {"id": 4401001}}],
            "value_after": [{"customer_status": {"id": 4401005}}]})],
        [amocrm("pipelines", pipeline)],
        [amocrm("users", {"id": 8812031, "name": "Anna"})],
        [amocrm("loss_reasons", {"id": 1, "name": "Too expensive"})],
        [amocrm("companies", COMPANY), amocrm("companies", {**COMPANY, "id": 52000002})],
        [amocrm("customers", CUSTOMER),
         amocrm("customers", {**CUSTOMER, "id": 53000002, "next_price": None, "next_date": None,
                              "_embedded": {"tags": []}})],
        [amocrm("customer_statuses", CUSTOMER_STATUS),
         amocrm("customer_statuses", {**CUSTOMER_STATUS, "id": 71002, "type": 4})],
        [amocrm("transactions", TRANSACTION),
         amocrm("transactions", {**TRANSACTION, "id": 54000002, "price": 0})],
        [amocrm("deleted_leads", DELETED_LEAD)],
        [b24("users", B24_USER), b24("users", {**B24_USER, "ID": "15", "ACTIVE": "N"})],
        [b24("statuses", B24_STATUS),
         b24("statuses", {**B24_STATUS, "ID": "5", "STATUS_ID": "C1:NEW", "SEMANTICS": None})],
        [b24("categories", B24_CATEGORY),
         b24("categories", {**B24_CATEGORY, "id": "0", "isDefault": "Y"})],
        [b24("leads", B24_LEAD), b24("leads", {**B24_LEAD, "ID": "301", "CONTACT_ID": None})],
        [b24("deals", B24_DEAL),
         b24("deals", {**B24_DEAL, "ID": "1205", "STAGE_SEMANTIC_ID": "P", "CLOSED": "N",
                       "CLOSEDATE": "2026-02-01T03:00:00+03:00", "LEAD_ID": "300"})],
        [b24("contacts", B24_CONTACT), b24("contacts", {**B24_CONTACT, "ID": "5002"})],
        [b24("stagehistory", B24_HISTORY, "2:9001"),
         b24("stagehistory", {"ID": 101, "TYPE_ID": 1, "OWNER_ID": 300,
                              "CREATED_TIME": "2026-01-02T09:00:00+03:00", "STATUS_ID": "NEW",
                              "STATUS_SEMANTIC_ID": "P", "_entityTypeId": 1}, "1:101")],
        [stats("2026-05-01", "70012345"), stats("2026-05-01", "70012346", Cost="2890.00")],
        [vk_plan(20865519), vk_plan(20865520, status="deleted", created=None)],
        [vk_stats("2026-05-01", 20865519), vk_stats("2026-05-02", 20865519),
         vk_stats("2026-05-01", 20865520,
                  {**VK_STATS, "base": {"shows": 0, "clicks": 0, "spent": "0.00"}})],
        [google("2026-05-01", "21001"), google("2026-05-01", "21002"),
         google("2026-05-02", "21001", changed(GOOGLE_ROW, "metrics", {}))],  # zeros omitted
        [meta("2026-05-01", "120210000000001"), meta("2026-05-01", "120210000000002"),
         meta("2026-05-02", "120210000000001", spend="0")],
        file_records(tmp_path, "orders", ORDERS_CSV, "orders.csv"),
        file_records(tmp_path, "ad_spend", AD_SPEND_CSV, "spend.csv"),
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


def test_corrupted_vk_batches_quarantine_exactly_the_bad_records() -> None:
    plans = validate_records([
        vk_plan(1), vk_plan("2"), vk_plan("x3"), vk_plan(4, status="archived"),
        vk_plan(5, updated="05/01/2026"), vk_plan(6), vk_plan(6, name="renamed"),
    ])
    assert [r.record_id for r in plans.good] == ["1", "2"]
    reasons = by_id(plans)
    assert list(reasons) == ["x3", "4", "5", "6"]
    assert reasons["x3"] == ("vk_ads ad_plans id=x3: field 'id' expected a digit-like ad plan id, "
                             "got 'x3' (expect_column_values_to_match_regex)")
    assert "field 'status' expected a status in ['active', 'blocked', 'deleted'], got " \
           "'archived'" in reasons["4"]
    assert "field 'updated'" in reasons["5"] and "got '05/01/2026'" in reasons["5"]
    assert "(account, id) unique within the batch" in reasons["6"]
    assert len(plans.quarantined) == 5  # both rows of the duplicated plan 6

    batch = [
        vk_stats("2026-05-01", 1),
        vk_stats("2026-05-01", 2, changed(VK_STATS, "base.shows", -3)),
        vk_stats("2026-05-01", 3, changed(VK_STATS, "base.clicks", "120")),  # VK sends ints
        vk_stats("2026-05-01", 4, changed(VK_STATS, "base.spent", "-1.00")),
        vk_stats("2026-05-01", 5, changed(VK_STATS, "base.clicks", 20000)),
        vk_stats("01.05.2026", 6),
        vk_stats("2026-05-01", 7, changed(VK_STATS, "base.shows", True)),
        vk_stats("2026-05-01", 8, changed(VK_STATS, "base.spent", ...)),
        vk_stats("2026-05-01", 9, changed(VK_STATS, "base", "n/a")),
        RawRecord("vk_ads", "vk-cabinet", "ad_plan_stats", "2026-05-01|10",
                  {k: v for k, v in VK_STATS.items() if k != "base"}),
        vk_stats("2026-05-02", 1),
    ]
    result = validate_records(batch)
    reasons = by_id(result)
    assert [r.record_id for r in result.good] == ["2026-05-01|1", "2026-05-02|1"]
    assert len(result.quarantined) == 9
    failed = {q.record.record_id: q.failed_fields for q in result.quarantined}
    assert reasons["2026-05-01|2"] == (
        "vk_ads ad_plan_stats id=2026-05-01|2: field 'base.shows' expected a non-negative "
        "integer, got -3 (expect_column_values_to_match_regex); field 'base.clicks' expected "
        "base.clicks <= base.shows, got base.clicks=120, base.shows=-3 "
        "(expect_column_pair_values_a_to_be_greater_than_b)")
    assert "field 'base.clicks' expected a non-negative integer, got '120' " \
           "(expect_column_values_to_be_in_type_list)" in reasons["2026-05-01|3"]
    assert "field 'base.spent' expected a non-negative decimal string, got '-1.00'" in (
        reasons["2026-05-01|4"])
    assert "field 'base.clicks' expected base.clicks <= base.shows, got base.clicks=20000, " \
           "base.shows=15000" in reasons["2026-05-01|5"]
    assert "field 'date' expected an ISO date YYYY-MM-DD, got '01.05.2026'" in (
        reasons["01.05.2026|6"])
    assert "field 'base.shows'" in reasons["2026-05-01|7"] and "got True" in (
        reasons["2026-05-01|7"])
    assert "field 'base.spent' expected a value, got null" in reasons["2026-05-01|8"]
    assert reasons["2026-05-01|9"] == ("vk_ads ad_plan_stats id=2026-05-01|9: 'base' is str, "
                                       "expected a JSON object (flatten)")
    assert "missing key(s) 'base'" in reasons["2026-05-01|10"]
    assert failed["2026-05-01|5"] == ("base.clicks",) and failed["01.05.2026|6"] == ("date",)
    assert failed["2026-05-01|9"] == ("base",)


def test_corrupted_google_ads_batch_quarantines_exactly_the_bad_rows() -> None:
    batch = [
        google("2026-05-01", "21001"),
        google("2026-05-01", "21002", changed(GOOGLE_ROW, "metrics.costMicros", "-5")),
        google("2026-05-01", "21003", changed(GOOGLE_ROW, "metrics.costMicros", 4.3125)),
        google("2026-05-01", "21004", changed(GOOGLE_ROW, "metrics.clicks", "5000")),
        google("2026-05-01", "2100x"),
        google("2026/05/01", "21005"),
        google("2026-05-01", "21006", changed(GOOGLE_ROW, "metrics", ["1000"])),
        google("2026-05-01", "21007", changed(GOOGLE_ROW, "metrics.impressions", "1e3")),
        google("2026-05-01", "21008", changed(GOOGLE_ROW, "metrics.impressions", 1000)),
        google("2026-05-01", "21009", changed(GOOGLE_ROW, "metrics.clicks", ...)),
        google("2026-05-02", "21001"), google("2026-05-02", "21001", changed(
            GOOGLE_ROW, "metrics.clicks", "51")),  # a day's campaign twice, different numbers
    ]
    result = validate_records(batch)
    reasons = by_id(result)
    assert [r.record_id for r in result.good] == [
        "2026-05-01|21001", "2026-05-01|21008", "2026-05-01|21009"]  # int64 may come as int
    assert len(result.quarantined) == 9
    assert reasons["2026-05-01|21002"] == (
        "google_ads campaign_stats id=2026-05-01|21002: field 'metrics.costMicros' expected "
        "non-negative micros (an int64 string of digits), got '-5' "
        "(expect_column_values_to_match_regex)")
    assert "field 'metrics.costMicros'" in reasons["2026-05-01|21003"]
    assert "got 4.3125" in reasons["2026-05-01|21003"]
    assert "field 'metrics.clicks' expected metrics.clicks <= metrics.impressions, got " \
           "metrics.clicks='5000', metrics.impressions='1000'" in reasons["2026-05-01|21004"]
    assert "field 'campaign.id' expected a digit-like campaign id, got '2100x'" in (
        reasons["2026-05-01|2100x"])
    assert "field 'segments.date'" in reasons["2026/05/01|21005"]
    assert "'metrics' is list, expected a JSON object (flatten)" in reasons["2026-05-01|21006"]
    assert "field 'metrics.impressions'" in reasons["2026-05-01|21007"]
    assert "(account, segments.date, campaign.id) unique within the batch" in (
        reasons["2026-05-02|21001"])
    assert {q.failed_fields for q in result.quarantined
            if q.record.record_id == "2026-05-02|21001"} == {("campaign.id",)}


def test_corrupted_meta_ads_batch_quarantines_exactly_the_bad_rows() -> None:
    batch = [
        meta("2026-05-01", "1201"),
        meta("2026-05-01", "1202", spend="-10.00"),
        meta("2026-05-01", "1203", spend="3 520,40"),
        meta("2026-05-01", "1204", impressions="-1"),
        meta("2026-05-01", "1205", clicks="700", impressions="600"),
        meta("2026-05-01", "1206", date_stop="2026-05-07"),
        meta("2026-05-01", "act_1207"),
        meta("2026-05-01", "1208", clicks=None),  # absent metrics are allowed
        meta("2026-05-01", "1201", spend="1.00"),
        RawRecord("meta_ads", "act_1234567890", "campaign_insights", "2026-05-01|1209",
                  {k: v for k, v in META_ROW.items() if k != "date_start"}),
    ]
    result = validate_records(batch)
    reasons = by_id(result)
    assert [r.record_id for r in result.good] == ["2026-05-01|1208"]
    assert set(reasons) == {"2026-05-01|1201", "2026-05-01|1202", "2026-05-01|1203",
                            "2026-05-01|1204", "2026-05-01|1205", "2026-05-01|1206",
                            "2026-05-01|act_1207", "2026-05-01|1209"}
    assert len(result.quarantined) == 9  # both rows of the duplicated (date, campaign)
    assert reasons["2026-05-01|1202"] == (
        "meta_ads campaign_insights id=2026-05-01|1202: field 'spend' expected a non-negative "
        "decimal string, got '-10.00' (expect_column_values_to_match_regex)")
    assert "field 'spend'" in reasons["2026-05-01|1203"]
    assert "field 'impressions' expected a non-negative integer string, got '-1'" in (
        reasons["2026-05-01|1204"])
    assert "field 'clicks' expected clicks <= impressions" in reasons["2026-05-01|1205"]
    assert "field 'date_stop' expected date_stop equal to date_start (time_increment=1), got " \
           "date_start='2026-05-01', date_stop='2026-05-07'" in reasons["2026-05-01|1206"]
    assert "field 'campaign_id' expected a digit-like campaign id" in (
        reasons["2026-05-01|act_1207"])
    assert "(account, date_start, campaign_id) unique" in reasons["2026-05-01|1201"]
    assert "missing key(s) 'date_start'" in reasons["2026-05-01|1209"]


def test_raw_suites_pass_emulator_payloads_and_catch_corrupted_ones(tmp_path: Any) -> None:
    """Payloads straight from each extractor run against its emulator for two days."""
    from datetime import timedelta

    import test_google_ads as g
    import test_meta_ads as m
    import test_vk_ads as v

    from extractors.state import TokenStore

    pulled: dict[str, list[RawRecord]] = {}
    vk = v.new_emulator(v.vk_rows(days=2))
    try:
        source = v.make_source(vk, TokenStore(tmp_path / "vk.json"),
                               until_date=v.START + timedelta(days=1))
        for entity in ("ad_plans", "ad_plan_stats"):
            pulled[entity] = [r for p in source.pages(entity, None) for r in p.records]
    finally:
        vk.stop()
    with g.emulator() as emu:
        source = g.make_source(emu, until_date=g.START + timedelta(days=1))
        pulled["google"] = [r for p in source.pages("campaign_stats", None) for r in p.records]
    emu = m.MetaAdsEmulator(m.meta_rows(2), access_token=m.TOKEN).start()
    try:
        source = m.make_source(emu, until_date=m.START + timedelta(days=1))
        pulled["meta"] = [r for p in source.pages("campaign_insights", None) for r in p.records]
    finally:
        emu.stop()
    assert {k: len(b) for k, b in pulled.items()} == {
        "ad_plans": 3, "ad_plan_stats": 6, "google": 6, "meta": 4}
    for batch in pulled.values():
        result = validate_records(batch)
        assert result.good == batch, [q.reason for q in result.quarantined]

    def corrupt(record: RawRecord, path: str, value: Any) -> RawRecord:
        return RawRecord(record.source, record.account, record.entity, record.record_id,
                         changed(record.payload, path, value))

    cases = [("ad_plan_stats", "base.spent", "3520,40"), ("google", "metrics.clicks", "-1"),
             ("meta", "impressions", "many"), ("ad_plans", "id", "plan-1")]
    for key, path, value in cases:
        batch = list(pulled[key])
        batch[1] = corrupt(batch[1], path, value)
        result = validate_records(batch)
        assert [q.record.record_id for q in result.quarantined] == [batch[1].record_id]
        assert result.quarantined[0].failed_fields == (path,)
        assert f"id={batch[1].record_id}: field '{path}'" in result.quarantined[0].reason
        assert len(result.good) == len(batch) - 1


def test_file_rows_get_the_contract_then_the_gx_suite(tmp_path: Any) -> None:
    orders = file_records(tmp_path, "orders", (
        "order_id;order_date;amount;currency;gross_margin\n"
        "A-1;2026-05-01;45000;RUB;100\n"       # line 2: good
        "A-2;2026-05-01;-5;RUB;\n"             # line 3: contract (negative amount)
        "A-3;31.02.2026;10;rub;\n"             # line 4: contract (date, currency)
        "A-1;2026-05-02;1;RUB;\n"              # line 5: contract (A-1's line, another day)
        "A-4;1969-12-31;10;RUB;\n"             # line 6: contract (before 1970)
        "A-5;2026-05-01;Infinity;RUB;\n"       # line 7: GX (not a finite amount)
        "A-6;2026-05-01;10;RUB;1e13\n"         # line 8: contract (gross_margin > amount)
        "A-7;2026-05-03;7,50;;\n"              # line 9: good
    ), "shop.csv")
    result = validate_records(orders)
    assert [r.payload["_line"] for r in result.good] == [9]
    reasons = {q.record.payload["_line"]: q.reason for q in result.quarantined}
    assert sorted(reasons) == [2, 3, 4, 6, 7, 8]  # lines 2 and 5: one order (line items)
    assert reasons[3] == "shop.csv line 3: field 'amount' must not be negative, got '-5'"
    assert reasons[4] == (
        "shop.csv line 4: field 'order_date' expected a date (YYYY-MM-DD or DD.MM.YYYY), "
        "got '31.02.2026'; shop.csv line 4: field 'currency' expected an ISO 4217 code like "
        "RUB, got 'rub'")
    assert reasons[2] == ("shop.csv line 5: field 'order_date' is '2026-05-02' but line 2 of "
                          "order 'A-1' says '2026-05-01'")
    assert reasons[6] == (
        "shop.csv line 6: field 'order_date' is before 1970-01-01, got '1969-12-31'")
    assert reasons[7].startswith("shop.csv line 7: field 'amount' expected a non-negative "
                                 "finite amount")
    assert "got 'Infinity'" in reasons[7]
    assert reasons[8].startswith("shop.csv line 8: field 'gross_margin'")
    failed = {q.record.payload["_line"]: q.failed_fields for q in result.quarantined}
    assert failed[4] == ("order_date", "currency") and failed[7] == ("amount",)
    contract = next(r for r in result.results if r["expectation"] == "file_contract")
    assert contract["unexpected_count"] == 5
    assert contract["records"] == ["A-1", "A-2", "A-3", "A-4", "A-6"]
    gx_failures = {r["field"] for r in result.results
                   if r["expectation"].startswith("expect_") and not r["success"]}
    assert gx_failures == {"amount"}

    spend = file_records(tmp_path, "ad_spend", (
        "date,platform,campaign_id,spend,impressions,clicks\n"
        "2026-05-01,telegram_ads,tg-1,100,1000,10\n"    # line 2: good
        "2026-05-01,telegram_ads,tg-2,100,10,50\n"      # line 3: GX (clicks > impressions)
        "01.05.2026,telegram_ads,tg-1,90,,\n"           # line 4: GX (same key as line 2)
        "2026-05-01,telegram_ads,tg-3,abc,1,1\n"        # line 5: contract (spend)
        "2026-05-02,telegram_ads,,5,,\n"                # line 6: contract (campaign_id)
        "2026-05-02,telegram_ads,tg-1,5,-1,\n"          # line 7: contract (impressions)
        "2026-05-02,telegram_ads,tg-2,0,100,100\n"      # line 8: good
    ), "offline.csv")
    result = validate_records(spend)
    assert [r.payload["_line"] for r in result.good] == [8]
    reasons = {q.record.payload["_line"]: q.reason for q in result.quarantined}
    assert sorted(reasons) == [2, 3, 4, 5, 6, 7]
    assert reasons[3] == ("offline.csv line 3: field 'clicks' expected clicks <= impressions, "
                          "got clicks='50', impressions='10' "
                          "(expect_column_pair_values_a_to_be_greater_than_b)")
    for line in (2, 4):  # the contract compares raw keys; GX compares parsed dates
        assert reasons[line].startswith(f"offline.csv line {line}: field 'campaign_id' "
                                        "expected (account, date, platform, campaign_id) "
                                        "unique within the batch")
    assert reasons[5] == "offline.csv line 5: field 'spend' expected a number, got 'abc'"
    assert reasons[6] == "offline.csv line 6: field 'campaign_id' is required but empty"
    assert reasons[7] == "offline.csv line 7: field 'impressions' must not be negative, got '-1'"


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


def test_every_entity_an_extractor_lands_has_a_raw_suite() -> None:
    """validate_records refuses an entity without a suite, so a new entity must bring one."""
    from extractors.amocrm import AmoCRMSource
    from extractors.bitrix24 import Bitrix24Source
    from extractors.files import FilesSource
    from extractors.google_ads import GoogleAdsSource
    from extractors.meta_ads import MetaAdsSource
    from extractors.vk_ads import VKAdsSource
    from extractors.yandex_direct import YandexDirectSource

    sources = (AmoCRMSource, Bitrix24Source, FilesSource, GoogleAdsSource, MetaAdsSource,
               VKAdsSource, YandexDirectSource)
    landed = {(src.name, entity) for src in sources for entity in src.ENTITIES}
    assert landed == set(RAW_SUITES)


def test_buyer_funnel_suites_name_the_field_and_value() -> None:
    result = validate_records([
        amocrm("transactions", TRANSACTION),
        amocrm("transactions", {**TRANSACTION, "id": 2, "price": "2500"}),
        amocrm("transactions", {**TRANSACTION, "id": 3, "_embedded": {"customer": {"id": 9}}}),
        amocrm("transactions", {**TRANSACTION, "id": 4, "completed_at": None}),
        amocrm("transactions", {k: v for k, v in TRANSACTION.items() if k != "customer_id"}
               | {"id": 5}),
    ])
    reasons = by_id(result)
    assert [r.record_id for r in result.good] == ["54000001"]
    assert reasons["2"] == ("amocrm transactions id=2: field 'price' expected a non-negative "
                            "number, got '2500' (expect_column_values_to_be_in_type_list)")
    assert "field '_embedded.customer.id' expected the transaction's customer_id" in reasons["3"]
    assert "field 'completed_at' expected the moment of the purchase, got null" in reasons["4"]
    assert reasons["5"].endswith("payload is missing key(s) 'customer_id' (flatten)")

    result = validate_records([
        amocrm("customers", {**CUSTOMER, "periodicity": -30}),
        amocrm("customers", {**CUSTOMER, "id": 2, "_embedded": {"contacts": {"id": 1}}}),
        amocrm("companies", {**COMPANY, "id": 7, "updated_at": COMPANY["created_at"] - 1}),
        amocrm("companies", COMPANY), amocrm("companies", {**COMPANY, "name": "other"}),
        amocrm("customer_statuses", {**CUSTOMER_STATUS, "type": 9}),
        amocrm("deleted_leads", {**DELETED_LEAD, "updated_at": 17672298110}),
    ])
    failed = {(q.record.entity, q.record.record_id): q.failed_fields for q in result.quarantined}
    assert failed == {
        ("customers", "53000001"): ("periodicity",),
        ("customers", "2"): ("_embedded.contacts",),
        ("companies", "7"): ("updated_at",),
        ("companies", "52000001"): ("id",),  # two versions with the same updated_at
        ("customer_statuses", "71001"): ("type",),
        ("deleted_leads", "30412577"): ("updated_at",),
    }
    assert len(result.quarantined) == 5 + 2  # both same-second company versions


def test_bitrix24_suites_pass_emulator_rows_and_catch_corrupted_ones() -> None:
    """Rows straight from Bitrix24Source against its emulator; then one corrupted per entity."""
    import test_bitrix24 as t

    from emulators import Bitrix24Emulator

    with Bitrix24Emulator(t.b24_data(), webhook_code=t.WEBHOOK_CODE) as emu:
        source = t.webhook_source(emu)
        pulled = {e: [r for p in source.pages(e, None) for r in p.records]
                  for e in source.ENTITIES}
    assert {("bitrix24", e) for e in pulled} <= set(RAW_SUITES)
    for entity, batch in pulled.items():
        result = validate_records(batch)
        assert result.good == batch, (entity, [q.reason for q in result.quarantined])

    cases = [("deals", "OPPORTUNITY", "45 000,00"), ("deals", "STAGE_SEMANTIC_ID", "X"),
             ("deals", "CATEGORY_ID", ""), ("leads", "DATE_MODIFY", "02.01.2026 09:00"),
             ("contacts", "ID", "c-1"), ("statuses", "SEMANTICS", "success"),
             ("categories", "isDefault", "yes"), ("users", "ACTIVE", "1"),
             ("stagehistory", "TYPE_ID", "2"), ("stagehistory", "CREATED_TIME", None)]
    for entity, field, value in cases:
        batch = list(pulled[entity])
        bad = batch[1]
        batch[1] = RawRecord(bad.source, bad.account, bad.entity, bad.record_id,
                             {**bad.payload, field: value})
        result = validate_records(batch)
        assert [q.record.record_id for q in result.quarantined] == [bad.record_id], (
            entity, field, [q.reason for q in result.quarantined])
        q = result.quarantined[0]
        assert q.failed_fields[0] == field, (entity, field, q.reason)
        assert q.reason.startswith(f"bitrix24 {entity} id={bad.record_id}: field '{field}'")


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


def test_dbt_marts_are_checked_by_dbt_not_by_a_second_gx_suite() -> None:
    """dbt's tests and contract check the dbt marts (tests/test_mart_rules.py); a GX suite
    only for a rule dbt cannot express, on a mart of the contract."""
    contracted = set(mart_columns())
    assert set(MART_SUITES) <= contracted
    assert PYTHON_MART_SUITES and not set(PYTHON_MART_SUITES) & contracted
    with pytest.raises(ValueError, match="no mart suite for 'fct_orders'"):
        validate_mart("fct_orders", pd.DataFrame())
    from synthetic.catalog import CHANNELS as SYNTHETIC_CHANNELS
    assert tuple(CHANNELS) == tuple(SYNTHETIC_CHANNELS)


def test_the_predictions_suite_names_a_broken_rule_and_a_missing_column() -> None:
    """The GX mart layer that remains: the predictions table a Python asset writes."""
    from predictions.tables import PREDICTIONS_DDL, PREDICTIONS_MODEL, ddl_columns

    row = {"customer_id": "c_1", "frequency": 2.0, "recency_weeks": 10.0, "t_weeks": 20.0,
           "p_alive": 0.8, "p_alive_30d_ago": 0.9, "p_alive_change_30d": -0.1,
           "expected_purchases_30d": 0.2, "expected_purchases_90d": 0.5,
           "expected_purchases_365d": 1.5, "expected_order_value": 1000.0,
           "predicted_value_12m": 1500.0, "model_version": "v1", "fit_date": "2026-06-30"}
    frame = pd.DataFrame([row, {**row, "customer_id": "c_2"}],
                         columns=list(ddl_columns(PREDICTIONS_DDL)))
    assert validate_mart(PREDICTIONS_MODEL, frame).passed
    frame.loc[1, "expected_purchases_365d"] = 0.4  # fewer in a year than in 90 days
    v = validate_mart(PREDICTIONS_MODEL, frame.drop(columns=["model_version"]))
    assert [(f["column"], f["unexpected_count"]) for f in v.failures] == [
        ("model_version", None), ("expected_purchases_365d,expected_purchases_90d", 1)]
    assert "expected_purchases_365d >= expected_purchases_90d" in v.failures[1]["message"]
    json.dumps([v.failures, v.statistics])  # ready for Dagster metadata


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
        cur.execute("create table marts.fct_orders (order_id varchar, order_source varchar, "
                    "order_month date, amount decimal(18, 2))")
        cur.execute("insert into marts.fct_orders values "
                    "('amocrm_1', 'amocrm_lead', date '2026-01-01', 120), "
                    "('amocrm_2', 'amocrm_lead', date '2026-02-01', 250), "
                    # orders of other sources are reconciled by a dbt test, not here
                    "('files_A-1', 'files', date '2026-02-01', 5000)")
    return wh


def test_reconciliation_passes_when_marts_match_raw(tmp_path: Any) -> None:
    v = reconcile_revenue(_reconcile_warehouse(tmp_path))
    assert v.passed, v.failures
    assert v.statistics["raw_revenue"] == 370 and v.statistics["mart_orders"] == 2
    assert v.statistics["months_differing"] == []


def test_reconciliation_fails_naming_the_month(tmp_path: Any) -> None:
    wh = _reconcile_warehouse(tmp_path)
    with wh.connect() as conn:
        conn.cursor().execute("update marts.fct_orders set amount = 300 "
                              "where order_id = 'amocrm_2'")
    v = reconcile_revenue(wh)
    assert not v.passed
    assert v.statistics["months_differing"] == ["2026-02"]
    monthly = next(f for f in v.failures if f["expectation"] == "reconcile_monthly_revenue")
    assert monthly["unexpected_count"] == 1
    assert monthly["sample"][0]["month"] == "2026-02"
    assert "2026-02 (raw 250.00/1, mart 300.00/1)" in monthly["message"]
    assert any(f["expectation"] == "reconcile_total_revenue" for f in v.failures)


def test_reconciliation_leaves_out_leads_deleted_after_extraction(tmp_path: Any) -> None:
    wh = _reconcile_warehouse(tmp_path)
    feb_msk = 1769896800
    # lead 2 was deleted after we extracted it: amoCRM now lists it under with=only_deleted
    wh.land([RawRecord("amocrm", "acme", "deleted_leads", "2",
                       {"id": 2, "updated_at": feb_msk + 600, "is_deleted": True})], "run-3")
    v = reconcile_revenue(wh)
    assert not v.passed  # the mart still holds its order
    with wh.connect() as conn:
        conn.cursor().execute("delete from marts.fct_orders where order_id = 'amocrm_2'")
    v = reconcile_revenue(wh)
    assert v.passed, v.failures
    assert v.statistics["raw_revenue"] == 120
