"""Known-answer tests of the staging models of the sources added by issue 3.

Hand-written raw rows, in the exact shape the extractors land them (docs/SOURCES_CONTRACT.md
§1: Bitrix24 legacy rows with every scalar a string, stage history with native ints and
`_entityTypeId`, amoCRM companies/customers/transactions/deleted leads, an orders CSV read
by the real files source), are landed through the warehouse API into a fresh warehouse, then
one `dbt build` of the staging layer (models and their data tests) runs per backend and the
typed columns must hold the expected values: string -> number / boolean casts, ISO offsets ->
local time, `C{n}:` stages and categories, stage semantics, converted / junk flags, the
deleted-leads rule, decimal-comma money. The PostgreSQL variant proves the SQL is portable;
it runs only with VORONKA_TEST_POSTGRES=1.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
from _support import failed_nodes, run_dbt, scratch_warehouse

from extractors.bitrix24 import parse_b24_datetime
from extractors.files import FilesSource, Limits, validate_file_rows
from warehouse.base import Warehouse
from warehouse.contact_points import CONTACT_POINT_COLUMNS, CONTACT_POINT_DDL
from warehouse.records import RawRecord

PORTAL = "voronka.bitrix24.ru"
AMO = "voronka"
FILES_ACCOUNT = "files-test"
NEW_MODELS = (
    "stg_bitrix24__deals", "stg_bitrix24__leads", "stg_bitrix24__contacts",
    "stg_bitrix24__stages", "stg_bitrix24__categories", "stg_bitrix24__stage_history",
    "stg_bitrix24__users", "stg_bitrix24__contact_points", "stg_amocrm__companies",
    "stg_amocrm__customers", "stg_amocrm__customer_statuses", "stg_amocrm__transactions",
    "stg_amocrm__deleted_leads", "stg_amocrm__leads", "stg_amocrm__contact_points",
    "stg_files__orders", "stg_files__order_contact_points", "stg_files__ad_spend",
)


# -- raw rows -----------------------------------------------------------------------------
def b24(entity: str, payload: dict, record_id: str | None = None,
        updated_field: str | None = "DATE_MODIFY") -> RawRecord:
    """A Bitrix24 row as Bitrix24Source lands it (record_id = ID, updated_at = DATE_MODIFY)."""
    updated = parse_b24_datetime(payload.get(updated_field)) if updated_field else None
    return RawRecord("bitrix24", PORTAL, entity, record_id or str(payload["ID"]), payload,
                     updated_at=updated)


def status(sid: int, entity_id: str, status_id: str, name: str, sort: int,
           category: str | None, semantics: str | None, extra: str | None) -> RawRecord:
    row = {"ID": str(sid), "ENTITY_ID": entity_id, "STATUS_ID": status_id, "NAME": name,
           "NAME_INIT": name, "SORT": str(sort), "SYSTEM": "Y", "COLOR": "#39A8EF",
           "SEMANTICS": semantics}
    if category is not None:
        row["CATEGORY_ID"] = category
    if extra is not None:
        row["EXTRA"] = {"SEMANTICS": extra, "COLOR": "#39A8EF"}
    return b24("statuses", row, updated_field=None)


STATUSES = [
    status(1, "STATUS", "NEW", "New", 10, None, None, "process"),
    status(2, "STATUS", "CONVERTED", "Converted", 20, None, "S", "success"),
    status(3, "STATUS", "JUNK", "Junk", 30, None, "F", "failure"),
    status(4, "DEAL_STAGE", "NEW", "New", 10, "0", None, "process"),
    status(5, "DEAL_STAGE", "WON", "Won", 20, "0", "S", "success"),
    status(6, "DEAL_STAGE", "LOSE", "Lost", 30, "0", "F", "failure"),
    # category 7 stages: no CATEGORY_ID (parsed from ENTITY_ID), semantics only in EXTRA
    status(7, "DEAL_STAGE_7", "C7:NEW", "New (wholesale)", 10, None, None, None),
    status(8, "DEAL_STAGE_7", "C7:WON", "Shipped", 20, None, None, "success"),
    status(9, "DEAL_STAGE_7", "C7:LOSE", "Refused", 30, None, None, "failure"),
    status(10, "SOURCE", "WEB", "Website", 10, None, None, None),  # not a stage
]

CATEGORIES = [
    b24("categories", {"id": 0, "name": "General", "sort": 100, "entityTypeId": 2,
                       "isDefault": "Y"}, record_id="0", updated_field=None),
    b24("categories", {"id": 7, "name": "Wholesale", "sort": 200, "entityTypeId": 2,
                       "isDefault": "N"}, record_id="7", updated_field=None),
]


def deal(deal_id: int, **fields: str | None) -> RawRecord:
    row: dict[str, str | None] = {
        "ID": str(deal_id), "TITLE": f"Deal {deal_id}", "TYPE_ID": "SALE", "CATEGORY_ID": "0",
        "STAGE_ID": "NEW", "STAGE_SEMANTIC_ID": "P", "OPPORTUNITY": "0.00",
        "CURRENCY_ID": "RUB", "ASSIGNED_BY_ID": "12", "CREATED_BY_ID": "12",
        "DATE_CREATE": "2026-01-02T09:15:07+03:00", "DATE_MODIFY": "2026-01-03T10:00:00+03:00",
        "CLOSEDATE": "2026-01-20T03:00:00+03:00", "CLOSED": "N", "LEAD_ID": None,
        "CONTACT_ID": "5001", "COMPANY_ID": None, "SOURCE_ID": "WEB", "UTM_SOURCE": None,
        "UTM_MEDIUM": None, "UTM_CAMPAIGN": None, "UTM_CONTENT": None, "UTM_TERM": None,
    }
    row.update(fields)
    return b24("deals", row)


DEALS = [
    # won in category 0, converted from lead 301, money with two decimals, UTM to normalise
    deal(1001, STAGE_ID="WON", STAGE_SEMANTIC_ID="S", OPPORTUNITY="45000.50", CLOSED="Y",
         CLOSEDATE="2026-01-05T18:30:00+03:00", LEAD_ID="301", UTM_SOURCE=" Yandex ",
         UTM_MEDIUM="CPC", UTM_CAMPAIGN="", COMPANY_ID="0"),
    # open in category 7: CLOSEDATE is only planned; the offset is not Moscow's
    deal(1002, CATEGORY_ID="7", STAGE_ID="C7:NEW", OPPORTUNITY="1200.00",
         DATE_CREATE="2026-01-02T06:15:07+00:00", DATE_MODIFY="2026-01-04T07:00:00Z"),
    # lost in category 7; no STAGE_SEMANTIC_ID nor CATEGORY_ID: both from its stage
    deal(1003, CATEGORY_ID=None, STAGE_ID="C7:LOSE", STAGE_SEMANTIC_ID=None, CLOSED="Y",
         OPPORTUNITY="999.99", CLOSEDATE="2026-01-06T12:00:00+03:00", CONTACT_ID=None),
]


def lead(lead_id: int, status_id: str, semantic: str, **fields: str | None) -> RawRecord:
    row: dict[str, object] = {
        "ID": str(lead_id), "TITLE": f"Lead {lead_id}", "NAME": "Anna", "LAST_NAME": "Test",
        "STATUS_ID": status_id, "STATUS_SEMANTIC_ID": semantic, "OPPORTUNITY": "0.00",
        "CURRENCY_ID": "RUB", "ASSIGNED_BY_ID": "15",
        "DATE_CREATE": "2026-01-01T23:30:00+03:00", "DATE_MODIFY": "2026-01-02T08:00:00+03:00",
        "DATE_CLOSED": None, "CONTACT_ID": "5001", "UTM_SOURCE": "vk", "UTM_MEDIUM": "cpc",
        "UTM_CAMPAIGN": "Winter", "UTM_CONTENT": None, "UTM_TERM": None,
        "PHONE": [{"ID": "7001", "VALUE_TYPE": "WORK", "VALUE": "+7 495 000-0001",
                   "TYPE_ID": "PHONE"}],
    }
    row.update(fields)
    return b24("leads", row)


LEADS = [
    lead(301, "CONVERTED", "S", DATE_CLOSED="2026-01-02T09:00:00+03:00", OPPORTUNITY="45000.50"),
    lead(302, "JUNK", "F", DATE_CLOSED="2026-01-03T10:00:00+03:00"),
    lead(303, "IN_PROCESS", "P", CONTACT_ID="5002"),
]

CONTACTS = [
    b24("contacts", {
        "ID": "5001", "NAME": "Client", "LAST_NAME": "One", "ASSIGNED_BY_ID": "12",
        "DATE_CREATE": "2026-01-01T10:00:00+03:00", "DATE_MODIFY": "2026-01-01T11:00:00+03:00",
        "PHONE": [{"ID": "9001", "VALUE_TYPE": "MOBILE", "VALUE": "+7 912 000-0001",
                   "TYPE_ID": "PHONE"}],
        "EMAIL": [{"ID": "9501", "VALUE_TYPE": "WORK", "VALUE": "Client1@Example.com",
                   "TYPE_ID": "EMAIL"}]}),
    b24("contacts", {
        "ID": "5002", "NAME": "Solo", "LAST_NAME": None, "ASSIGNED_BY_ID": "15",
        "DATE_CREATE": "2026-01-01T12:00:00+03:00", "DATE_MODIFY": "2026-01-01T12:00:00+03:00"}),
]

STAGEHISTORY = [
    b24("stagehistory", {"ID": 1, "TYPE_ID": 1, "OWNER_ID": 1002,
                         "CREATED_TIME": "2026-01-02T09:15:07+03:00", "CATEGORY_ID": 7,
                         "STAGE_ID": "C7:NEW", "STAGE_SEMANTIC_ID": "P", "_entityTypeId": 2},
        record_id="2:1", updated_field="CREATED_TIME"),
    b24("stagehistory", {"ID": 2, "TYPE_ID": 3, "OWNER_ID": 1001,
                         "CREATED_TIME": "2026-01-05T18:30:00+03:00", "CATEGORY_ID": 0,
                         "STAGE_ID": "WON", "STAGE_SEMANTIC_ID": "S", "_entityTypeId": 2},
        record_id="2:2", updated_field="CREATED_TIME"),
    # a lead row with the same ID as a deal row: separate sequences
    b24("stagehistory", {"ID": 1, "TYPE_ID": 1, "OWNER_ID": 301,
                         "CREATED_TIME": "2026-01-01T20:30:00Z", "STATUS_ID": "NEW",
                         "STATUS_SEMANTIC_ID": "P", "_entityTypeId": 1},
        record_id="1:1", updated_field="CREATED_TIME"),
]

USERS = [
    b24("users", {"ID": "12", "ACTIVE": "Y", "NAME": "Olga", "LAST_NAME": "Petrova",
                  "EMAIL": "Olga@Example.COM", "WORK_POSITION": "Manager"}, updated_field=None),
    # the real user.get sends ACTIVE as a JSON boolean
    b24("users", {"ID": "15", "ACTIVE": False, "NAME": "Ivan", "LAST_NAME": "",
                  "EMAIL": None, "WORK_POSITION": None}, updated_field=None),
]


def epoch(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp())


def amo(entity: str, payload: dict, updated: int | None = None) -> RawRecord:
    """An amoCRM element as AmoCRMSource lands it (updated_at = the element's, in UTC)."""
    ts = updated if updated is not None else payload.get("updated_at")
    return RawRecord("amocrm", AMO, entity, str(payload["id"]), payload,
                     updated_at=datetime.fromtimestamp(ts, UTC).replace(tzinfo=None)
                     if ts else None)


T_LEAD = epoch("2026-02-01T12:00:00+03:00")


def amo_lead(lead_id: int, updated: int, company_id: int | None = None) -> RawRecord:
    return amo("leads", {
        "id": lead_id, "name": f"Lead {lead_id}", "price": 1000, "responsible_user_id": 7,
        "group_id": 0, "status_id": 142, "pipeline_id": 10, "loss_reason_id": None,
        "created_by": 0, "updated_by": 7, "created_at": T_LEAD - 86400, "updated_at": updated,
        "closed_at": None, "closest_task_at": None, "is_deleted": False, "score": None,
        "account_id": 1, "labor_cost": None, "custom_fields_values": None,
        "_embedded": {"tags": [], "companies": [{"id": company_id}] if company_id else [],
                      "contacts": [{"id": 11, "is_main": True}]},
    })


AMO_LEADS = [
    amo_lead(101, T_LEAD, company_id=401),  # deleted after this version
    amo_lead(102, T_LEAD + 7200),  # deleted, then restored (newer updated_at)
    amo_lead(103, T_LEAD),  # never deleted
    amo_lead(104, T_LEAD),  # deleted at the very second of this version
]
DELETED_LEADS = [
    amo("deleted_leads", {"id": 101, "updated_at": T_LEAD + 3600, "is_deleted": True}),
    amo("deleted_leads", {"id": 102, "updated_at": T_LEAD + 3600, "is_deleted": True}),
    amo("deleted_leads", {"id": 104, "updated_at": T_LEAD, "is_deleted": True}),
]
AMO_CONTACTS = [
    amo("contacts", {"id": 11, "name": "Maria Ivanova", "first_name": "Maria",
                     "last_name": "Ivanova", "responsible_user_id": 7, "created_at": T_LEAD,
                     "updated_at": T_LEAD, "is_deleted": False, "custom_fields_values": None}),
]
COMPANIES = [
    amo("companies", {"id": 401, "name": "OOO Romashka", "responsible_user_id": 7,
                      "group_id": 0, "created_by": 7, "updated_by": 7,
                      "created_at": epoch("2026-01-10T09:00:00+03:00"),
                      "updated_at": epoch("2026-01-11T09:00:00+03:00"),
                      "closest_task_at": None, "is_deleted": False,
                      "custom_fields_values": None, "account_id": 1,
                      "_embedded": {"tags": []}}),
]
CUSTOMERS = [
    amo("customers", {"id": 601, "name": "Maria (repeat)", "next_price": 5000,
                      "next_date": epoch("2026-03-01T00:00:00+03:00"), "responsible_user_id": 7,
                      "status_id": 71, "periodicity": 30, "created_by": 7, "updated_by": 7,
                      "created_at": epoch("2026-01-15T10:00:00+03:00"),
                      "updated_at": epoch("2026-02-15T10:00:00+03:00"),
                      "closest_task_at": None, "is_deleted": False,
                      "custom_fields_values": None, "ltv": 23456.78, "purchases_count": 2,
                      "average_check": 11728.39, "account_id": 1,
                      "_embedded": {"tags": [], "contacts": [{"id": 10, "is_main": False},
                                                            {"id": 11, "is_main": True}]}}),
]
CUSTOMER_STATUSES = [
    amo("customer_statuses", {"id": 71, "name": "Recently bought", "sort": 10,
                              "is_default": True, "color": "#99ccff", "type": 1,
                              "account_id": 1}),
    amo("customer_statuses", {"id": 72, "name": "Waiting", "sort": 20, "is_default": False,
                              "color": "#fffeb2", "type": 0, "account_id": 1}),
]


def transaction(tid: int, price: float | int, completed: str, *, deleted: bool = False,
                with_customer_id: bool = True) -> RawRecord:
    ts = epoch(completed)
    row = {"id": tid, "price": price, "completed_at": ts, "comment": f"purchase {tid}",
           "created_by": 7, "updated_by": 7, "created_at": ts, "updated_at": ts,
           "is_deleted": deleted, "account_id": 1, "_embedded": {"customer": {"id": 601}}}
    if with_customer_id:
        row["customer_id"] = 601
    return amo("transactions", row)


TRANSACTIONS = [
    transaction(801, 12345.5, "2026-01-20T14:00:00+03:00"),
    transaction(802, 11111, "2026-02-14T23:59:59+03:00", with_customer_id=False),
    transaction(803, 500, "2026-02-20T10:00:00+03:00", deleted=True),
]

ORDERS_CSV = "\n".join([
    "order_id;order_date;amount;currency;customer_phone;customer_email;customer_name;product;"
    "gross_margin;utm_source;utm_medium;utm_campaign",
    "A-1;05.03.2026;45 000,50;;8 (912) 000-00-01;Buyer@Example.com;Ivan;Sofa;10 000,25;"
    "Yandex;CPC;Spring",
    "A-2;2026-03-06;1234.5;USD;;;;Chair;;;;",
]) + "\n"

CONTACT_POINTS = [
    ("amocrm", AMO, "11", "phone", "+7 912 111-11-11", "+79121111111"),
    ("bitrix24", PORTAL, "5001", "phone", "+7 912 000-0001", "+79120000001"),
    ("bitrix24", PORTAL, "5001", "email", "Client1@Example.com", "client1@example.com"),
    ("files", FILES_ACCOUNT, "A-1", "phone", "8 (912) 000-00-01", "+79120000001"),
    ("files", FILES_ACCOUNT, "A-1", "email", "Buyer@Example.com", "buyer@example.com"),
]


def file_orders(folder: Path) -> list[RawRecord]:
    (folder / "orders").mkdir(parents=True, exist_ok=True)
    (folder / "orders" / "shop.csv").write_text(ORDERS_CSV, encoding="utf-8")
    source = FilesSource(folder, account=FILES_ACCOUNT)
    records = [r for page in source.pages("orders", None) for r in page.records]
    # staging carries a currency cell as written; the contract's one-account-currency rule
    # (which would quarantine A-2) is tested in test_files_contract
    good, bad = validate_file_rows(records, Limits(datetime.max.date(), "USD"))
    assert not bad, [q.reason for q in bad]
    return good


# -- building -------------------------------------------------------------------------------
@dataclass
class Built:
    wh: Warehouse
    run_results: dict
    returncode: int
    output: str

    def df(self, sql: str) -> pd.DataFrame:
        """The query's rows, SQL NULL as None whatever the backend's dtype made of it."""
        frame = self.wh.query_df(sql).astype(object)
        return frame.where(frame.notna(), None)

    def rows(self, model: str, key: str) -> dict:
        """{key value: row as a dict} of a staging model."""
        frame = self.df(f"select * from staging.{model}")
        return {row[key]: row for row in frame.to_dict("records")}


def _land_and_build(wh: Warehouse, workdir: Path, env: dict[str, str]) -> Built:
    records = (STATUSES + CATEGORIES + DEALS + LEADS + CONTACTS + STAGEHISTORY + USERS
               + AMO_LEADS + DELETED_LEADS + AMO_CONTACTS + COMPANIES + CUSTOMERS
               + CUSTOMER_STATUSES + TRANSACTIONS + file_orders(workdir / "files"))
    assert wh.land(records, "staging-sources").inserted == len(records)
    wh.replace_table("raw", "contact_points",
                     pd.DataFrame(CONTACT_POINTS, columns=CONTACT_POINT_COLUMNS),
                     CONTACT_POINT_DDL)
    # the staging layer only: its models and the tests that touch nothing else
    code, out, results = run_dbt(workdir, env, "build", "--select", "path:models/staging",
                                 "--indirect-selection", "cautious")
    return Built(wh, results, code, out)


@pytest.fixture(scope="module", params=["duckdb", pytest.param("postgres",
                                                                marks=pytest.mark.postgres)])
def built(request, tmp_path_factory) -> Iterator[Built]:
    workdir = tmp_path_factory.mktemp(f"staging_sources_{request.param}")
    with scratch_warehouse(request.param, workdir, "staging") as (wh, env):
        yield _land_and_build(wh, workdir, env)


def ts(value) -> str | None:
    """A timestamp column value as 'YYYY-MM-DD HH:MM:SS' (None for null)."""
    return None if pd.isna(value) else pd.Timestamp(value).strftime("%Y-%m-%d %H:%M:%S")


def money(value) -> Decimal | None:
    return None if pd.isna(value) else Decimal(str(value)).quantize(Decimal("0.01"))


def opt_int(value) -> int | None:
    return None if pd.isna(value) else int(value)


# -- the tests ------------------------------------------------------------------------------
def test_staging_build_succeeds_with_all_tests_passing(built: Built) -> None:
    assert built.returncode == 0, built.output[-4000:]
    statuses = {r["unique_id"]: r["status"] for r in built.run_results["results"]}
    failed = failed_nodes(built.run_results)
    assert not failed, failed
    for model in NEW_MODELS:
        assert f"model.voronka.{model}" in statuses, model
    assert sum(k.startswith("test.") for k in statuses) > 50


def test_bitrix24_deals_cast_strings_and_localise_iso_offsets(built: Built) -> None:
    deals = built.rows("stg_bitrix24__deals", "deal_id")
    assert set(deals) == {1001, 1002, 1003}
    won, open_, lost = deals[1001], deals[1002], deals[1003]
    assert won["account"] == PORTAL
    assert (won["category_id"], won["stage_id"], won["stage_semantic"]) == (0, "WON", "S")
    assert (won["is_won"], won["is_lost"], won["is_closed"]) == (True, False, True)
    assert money(won["amount"]) == Decimal("45000.50") and won["currency"] == "RUB"
    assert (opt_int(won["source_lead_id"]), opt_int(won["contact_id"])) == (301, 5001)
    assert opt_int(won["company_id"]) is None  # '0' = no company
    assert opt_int(won["responsible_user_id"]) == 12
    assert (won["utm_source"], won["utm_medium"]) == ("yandex", "cpc")
    assert won["utm_campaign"] is None and won["utm_term"] is None
    assert ts(won["created_at"]) == "2026-01-02 09:15:07"  # +03:00 is Moscow already
    assert ts(won["closed_at"]) == "2026-01-05 18:30:00"
    # C{n}: a category-7 deal; other offsets are converted to Moscow time
    assert (open_["category_id"], open_["stage_id"], open_["stage_semantic"]) == (
        7, "C7:NEW", "P")
    assert (open_["is_won"], open_["is_lost"], open_["is_closed"]) == (False, False, False)
    assert ts(open_["created_at"]) == "2026-01-02 09:15:07"  # 06:15:07+00:00
    assert ts(open_["updated_at"]) == "2026-01-04 10:00:00"  # 07:00:00Z
    assert ts(open_["closed_at"]) is None  # an open deal's CLOSEDATE is only a plan
    assert money(open_["amount"]) == Decimal("1200.00")
    # no CATEGORY_ID, no STAGE_SEMANTIC_ID: both from the stage
    assert (lost["category_id"], lost["stage_semantic"]) == (7, "F")
    assert (lost["is_lost"], lost["is_closed"]) == (True, True)
    assert ts(lost["closed_at"]) == "2026-01-06 12:00:00"
    assert opt_int(lost["contact_id"]) is None


def test_bitrix24_stages_categories_and_semantics(built: Built) -> None:
    frame = built.df("select * from staging.stg_bitrix24__stages")
    stages = {(r["entity_id"], r["status_id"]): r for r in frame.to_dict("records")}
    assert set(stages) == {
        ("STATUS", "NEW"), ("STATUS", "CONVERTED"), ("STATUS", "JUNK"),
        ("DEAL_STAGE", "NEW"), ("DEAL_STAGE", "WON"), ("DEAL_STAGE", "LOSE"),
        ("DEAL_STAGE_7", "C7:NEW"), ("DEAL_STAGE_7", "C7:WON"), ("DEAL_STAGE_7", "C7:LOSE"),
    }  # the SOURCE list is not a funnel
    got = {k: (opt_int(r["category_id"]), r["semantics"], r["is_won"], r["is_lost"],
               r["is_open_stage"], opt_int(r["stage_sort"])) for k, r in stages.items()}
    assert got[("STATUS", "NEW")] == (None, "P", False, False, True, 10)
    assert got[("STATUS", "CONVERTED")] == (None, "S", True, False, False, 20)
    assert got[("STATUS", "JUNK")] == (None, "F", False, True, False, 30)
    assert got[("DEAL_STAGE", "WON")] == (0, "S", True, False, False, 20)
    # DEAL_STAGE_7 without CATEGORY_ID and SEMANTICS: category from ENTITY_ID, EXTRA/null
    assert got[("DEAL_STAGE_7", "C7:NEW")] == (7, "P", False, False, True, 10)
    assert got[("DEAL_STAGE_7", "C7:WON")] == (7, "S", True, False, False, 20)
    assert got[("DEAL_STAGE_7", "C7:LOSE")] == (7, "F", False, True, False, 30)
    assert stages[("DEAL_STAGE_7", "C7:WON")]["stage_name"] == "Shipped"

    cats = built.rows("stg_bitrix24__categories", "category_id")
    assert {k: (v["category_name"], v["category_sort"], v["is_default"])
            for k, v in cats.items()} == {0: ("General", 100, True),
                                          7: ("Wholesale", 200, False)}


def test_bitrix24_leads_converted_and_junk(built: Built) -> None:
    leads = built.rows("stg_bitrix24__leads", "lead_id")
    got = {k: (v["status_id"], v["status_semantic"], v["is_converted"], v["is_junk"])
           for k, v in leads.items()}
    assert got == {301: ("CONVERTED", "S", True, False), 302: ("JUNK", "F", False, True),
                   303: ("IN_PROCESS", "P", False, False)}
    converted = leads[301]
    assert money(converted["amount"]) == Decimal("45000.50")
    assert (opt_int(converted["contact_id"]), opt_int(converted["responsible_user_id"])) == (
        5001, 15)
    assert (converted["utm_source"], converted["utm_campaign"]) == ("vk", "winter")
    assert ts(converted["created_at"]) == "2026-01-01 23:30:00"
    assert ts(converted["closed_at"]) == "2026-01-02 09:00:00"
    assert ts(leads[303]["closed_at"]) is None


def test_bitrix24_contacts_users_history_and_points(built: Built) -> None:
    contacts = built.rows("stg_bitrix24__contacts", "contact_id")
    assert {k: (v["contact_name"], v["first_name"], v["last_name"])
            for k, v in contacts.items()} == {5001: ("Client One", "Client", "One"),
                                              5002: ("Solo", "Solo", None)}
    assert ts(contacts[5001]["updated_at"]) == "2026-01-01 11:00:00"

    users = built.rows("stg_bitrix24__users", "user_id")
    assert {k: (v["user_name"], v["email"], v["is_active"]) for k, v in users.items()} == {
        12: ("Olga Petrova", "olga@example.com", True), 15: ("Ivan", None, False)}

    frame = built.df("select * from staging.stg_bitrix24__stage_history")
    history = {(r["entity_type"], r["history_id"]): r for r in frame.to_dict("records")}
    assert set(history) == {("deal", 1), ("deal", 2), ("lead", 1)}
    moved = history[("deal", 1)]
    assert (moved["owner_id"], moved["history_type_id"], moved["category_id"],
            moved["stage_id"], moved["stage_semantic"]) == (1002, 1, 7, "C7:NEW", "P")
    assert ts(moved["changed_at"]) == "2026-01-02 09:15:07"
    lead_row = history[("lead", 1)]
    assert (lead_row["owner_id"], lead_row["stage_id"], opt_int(lead_row["category_id"])) == (
        301, "NEW", None)
    assert ts(lead_row["changed_at"]) == "2026-01-01 23:30:00"  # 20:30Z

    points = built.df("select contact_id, point_kind, value_normalized, is_valid "
                      "from staging.stg_bitrix24__contact_points")
    assert sorted(map(tuple, points.to_numpy().tolist())) == [
        (5001, "email", "client1@example.com", True), (5001, "phone", "+79120000001", True)]


def test_amocrm_deleted_leads_rule_and_company(built: Built) -> None:
    leads = built.rows("stg_amocrm__leads", "lead_id")
    # 101 deleted after the version we hold; 102 restored later (newer updated_at);
    # 104 deleted at the second of our version; 103 never deleted
    assert {k: v["is_deleted"] for k, v in leads.items()} == {
        101: True, 102: False, 103: False, 104: True}
    assert opt_int(leads[101]["company_id"]) == 401 and opt_int(leads[103]["company_id"]) is None
    assert opt_int(leads[101]["main_contact_id"]) == 11
    deleted = built.rows("stg_amocrm__deleted_leads", "lead_id")
    assert ts(deleted[101]["deleted_at"]) == "2026-02-01 13:00:00"
    assert set(deleted) == {101, 102, 104}


def test_amocrm_companies_customers_and_statuses(built: Built) -> None:
    company = built.rows("stg_amocrm__companies", "company_id")[401]
    assert (company["company_name"], company["responsible_user_id"], company["is_deleted"]) == (
        "OOO Romashka", 7, False)
    assert ts(company["created_at"]) == "2026-01-10 09:00:00"

    customer = built.rows("stg_amocrm__customers", "amocrm_customer_id")[601]
    assert customer["customer_name"] == "Maria (repeat)"
    assert (customer["status_id"], customer["periodicity"], customer["purchases_count"]) == (
        71, 30, 2)
    assert (money(customer["next_price"]), money(customer["ltv"]),
            money(customer["average_check"])) == (
        Decimal("5000.00"), Decimal("23456.78"), Decimal("11728.39"))
    assert customer["main_contact_id"] == 11  # the one flagged main, not the first
    assert ts(customer["next_purchase_at"]) == "2026-03-01 00:00:00"
    assert customer["is_deleted"] is False

    statuses = built.rows("stg_amocrm__customer_statuses", "status_id")
    assert {k: (v["status_name"], v["status_sort"], v["status_type"])
            for k, v in statuses.items()} == {71: ("Recently bought", 10, 1),
                                              72: ("Waiting", 20, 0)}


def test_amocrm_transactions_amounts(built: Built) -> None:
    tx = built.rows("stg_amocrm__transactions", "transaction_id")
    assert {k: (v["amocrm_customer_id"], money(v["amount"]), bool(v["is_deleted"]))
            for k, v in tx.items()} == {
        801: (601, Decimal("12345.50"), False),
        802: (601, Decimal("11111.00"), False),  # customer from _embedded.customer
        803: (601, Decimal("500.00"), True),
    }
    assert ts(tx[802]["completed_at"]) == "2026-02-14 23:59:59"
    assert tx[801]["comment"] == "purchase 801"


def test_files_orders_parse_money_dates_and_currency(built: Built) -> None:
    orders = built.rows("stg_files__orders", "order_id")
    first, second = orders["A-1"], orders["A-2"]
    assert first["account"] == FILES_ACCOUNT and first["order_record_id"] == "A-1"
    assert pd.Timestamp(first["order_date"]).date().isoformat() == "2026-03-05"
    assert money(first["amount"]) == Decimal("45000.50")  # '45 000,50'
    assert money(first["gross_margin"]) == Decimal("10000.25")
    assert first["currency"] == "RUB"  # empty cell: the default
    assert (first["utm_source"], first["utm_medium"], first["utm_campaign"]) == (
        "yandex", "cpc", "spring")
    assert (first["customer_phone"], first["customer_email"], first["customer_name"],
            first["product"]) == ("8 (912) 000-00-01", "Buyer@Example.com", "Ivan", "Sofa")
    assert (first["file_name"], int(first["file_line"])) == ("shop.csv", 2)
    assert pd.Timestamp(second["order_date"]).date().isoformat() == "2026-03-06"
    assert money(second["amount"]) == Decimal("1234.50") and second["currency"] == "USD"
    assert money(second["gross_margin"]) is None and second["utm_source"] is None


def test_contact_points_are_split_by_source(built: Built) -> None:
    amo_points = built.df("select contact_id, point_kind from staging.stg_amocrm__contact_points")
    assert amo_points.to_numpy().tolist() == [[11, "phone"]]
    files = built.df("select contact_id, point_kind, value_normalized "
                     "from staging.stg_files__order_contact_points order by point_kind")
    assert files.to_numpy().tolist() == [["A-1", "email", "buyer@example.com"],
                                         ["A-1", "phone", "+79120000001"]]
