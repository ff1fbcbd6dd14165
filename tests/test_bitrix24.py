"""Bitrix24: the emulator on its own, then Bitrix24Source against it, landing into DuckDB."""

from __future__ import annotations

import json
import logging
import stat
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import requests

from emulators.bitrix24 import Bitrix24Emulator
from extractors.bitrix24 import Bitrix24Source, php_query
from extractors.http import ApiError, AuthorizationError, HttpOptions
from extractors.state import TokenSet, TokenStore
from extractors.sync import sync_entity
from warehouse.duckdb_backend import DuckDBWarehouse

T0 = datetime.fromisoformat("2026-01-02T09:00:00+03:00")
N_DEALS = 130
N_CONTACTS = 60
N_LEADS = 20
WEBHOOK_CODE = "wh-code-7f3k2p9q1z"
CLIENT_SECRET = "b24-secret-Qx81vT"
INITIAL_REFRESH = "b24-refresh-0-Lm20a"
TIMEOUT = 5


def moscow(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


def b24_data() -> dict[str, list[dict]]:
    users = [{"ID": i, "ACTIVE": True, "NAME": f"Manager {i}", "LAST_NAME": "Test",
              "EMAIL": f"m{i}@example.com"} for i in (1, 12, 15)]
    statuses = []
    for entity_id, prefix in (("STATUS", ""), ("DEAL_STAGE", ""), ("DEAL_STAGE_1", "C1:")):
        stages = (("NEW", None, "process"), ("CONVERTED" if entity_id == "STATUS" else "WON",
                                             "S", "success"),
                  ("JUNK" if entity_id == "STATUS" else "LOSE", "F", "failure"))
        for sort, (status_id, semantics, extra) in enumerate(stages, start=1):
            statuses.append({"ID": len(statuses) + 1, "ENTITY_ID": entity_id,
                             "STATUS_ID": prefix + status_id, "NAME": status_id.title(),
                             "SORT": sort * 10, "SYSTEM": "Y",
                             "CATEGORY_ID": 1 if prefix else 0, "COLOR": "#39A8EF",
                             "SEMANTICS": semantics,
                             "EXTRA": {"SEMANTICS": extra, "COLOR": "#39A8EF"}})
    categories = [{"id": 0, "name": "General", "sort": 100, "entityTypeId": 2, "isDefault": "Y"},
                  {"id": 1, "name": "Wholesale", "sort": 200, "entityTypeId": 2,
                   "isDefault": "N"}]
    deals = [{"ID": 1000 + i, "TITLE": f"Order #{i}", "CATEGORY_ID": i % 2,
              "STAGE_ID": ("WON", "C1:NEW")[i % 2], "STAGE_SEMANTIC_ID": ("S", "P")[i % 2],
              "OPPORTUNITY": 45000.0 + i, "CURRENCY_ID": "RUB", "ASSIGNED_BY_ID": 12,
              "CONTACT_ID": 5000 + i % N_CONTACTS, "DATE_CREATE": moscow(2 * i - 1),
              "DATE_MODIFY": moscow(2 * i), "UTM_SOURCE": "yandex" if i % 3 else None,
              "UF_CRM_CHANNEL": "web"} for i in range(N_DEALS)]
    contacts = [{"ID": 5000 + i, "NAME": f"Client {i}", "LAST_NAME": "Test",
                 "DATE_CREATE": moscow(i), "DATE_MODIFY": moscow(i + 1), "HAS_PHONE": "Y",
                 "UF_CRM_SEGMENT": "b2c",
                 "PHONE": [{"ID": 9000 + i, "VALUE_TYPE": "MOBILE",
                            "VALUE": f"+7 912 000-{i:04d}", "TYPE_ID": "PHONE"}],
                 "EMAIL": [{"ID": 9500 + i, "VALUE_TYPE": "WORK",
                            "VALUE": f"client{i}@example.com", "TYPE_ID": "EMAIL"}]}
                for i in range(N_CONTACTS)]
    leads = [{"ID": 300 + i, "TITLE": f"Lead {i}", "STATUS_ID": "NEW",
              "STATUS_SEMANTIC_ID": "P", "OPPORTUNITY": "0.00", "CURRENCY_ID": "RUB",
              "DATE_CREATE": moscow(i), "DATE_MODIFY": moscow(i),
              "PHONE": [{"ID": 7000 + i, "VALUE_TYPE": "WORK", "VALUE": f"+7 495 000-{i:04d}",
                         "TYPE_ID": "PHONE"}]} for i in range(N_LEADS)]
    stagehistory = [{"ID": 9001 + i, "ENTITY_TYPE_ID": 2, "TYPE_ID": 1 if i < N_DEALS else 3,
                     "OWNER_ID": 1000 + i % N_DEALS, "CREATED_TIME": moscow(2 * (i % N_DEALS)),
                     "CATEGORY_ID": 0, "STAGE_SEMANTIC_ID": "P", "STAGE_ID": "NEW"}
                    for i in range(N_DEALS + 10)]
    stagehistory += [{"ID": 101 + i, "ENTITY_TYPE_ID": 1, "TYPE_ID": 1, "OWNER_ID": 300 + i,
                      "CREATED_TIME": moscow(i), "STATUS_ID": "NEW", "STATUS_SEMANTIC_ID": "P"}
                     for i in range(N_LEADS)]
    return {"users": users, "statuses": statuses, "categories": categories, "deals": deals,
            "contacts": contacts, "leads": leads, "stagehistory": stagehistory}


class RecordingSleep:
    """Injected into the HTTP layer: records requested waits, sleeps a capped real time, and
    moves the emulator's clock by the requested time (for its operating-time budget)."""

    def __init__(self, emulator: Bitrix24Emulator | None = None, cap: float = 0.01) -> None:
        self.calls: list[float] = []
        self.cap = cap
        self.offset = 0.0
        if emulator is not None:
            emulator.clock = lambda: time.time() + self.offset

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        self.offset += seconds
        threading.Event().wait(min(seconds, self.cap))


@pytest.fixture
def b24() -> Iterator[Bitrix24Emulator]:
    emulator = Bitrix24Emulator(b24_data(), webhook_code=WEBHOOK_CODE,
                                client_secret=CLIENT_SECRET, refresh_token=INITIAL_REFRESH).start()
    yield emulator
    emulator.stop()


@pytest.fixture
def wh(tmp_path: Path) -> DuckDBWarehouse:
    return DuckDBWarehouse(tmp_path / "w.duckdb")


def options(sleeper: RecordingSleep | None = None, **kw) -> HttpOptions:
    params = {"timeout": (2.0, 2.0), "max_retries": 3, "backoff_base": 0.01,
              "backoff_max": 0.05, "sleep": sleeper or RecordingSleep(), **kw}
    return HttpOptions(**params)


def webhook_source(emu: Bitrix24Emulator, sleeper: RecordingSleep | None = None,
                   **kwargs) -> Bitrix24Source:
    opts = kwargs.pop("http_options", None) or options(sleeper)
    return Bitrix24Source(emu.base_url, account="voronka.bitrix24.ru",
                          webhook_url=emu.webhook_url, http_options=opts, **kwargs)


def oauth_source(emu: Bitrix24Emulator, store_path: Path, sleeper: RecordingSleep | None = None,
                 **kwargs) -> Bitrix24Source:
    opts = kwargs.pop("http_options", None) or options(sleeper)
    return Bitrix24Source(emu.base_url, account="voronka.bitrix24.ru", client_id="local.demo",
                          client_secret=CLIENT_SECRET, token_store=TokenStore(store_path),
                          initial_refresh_token=INITIAL_REFRESH,
                          oauth_url=f"{emu.base_url}/oauth/token/", http_options=opts,
                          **kwargs)


def call(emu: Bitrix24Emulator, method: str, body: dict | None = None, *,
         webhook: bool = True, **kw) -> requests.Response:
    url = (f"{emu.webhook_url}{method}" if webhook else f"{emu.base_url}/rest/{method}")
    return requests.post(url, json=body or {}, timeout=TIMEOUT, **kw)


def api_log(emu: Bitrix24Emulator) -> list[dict]:
    return [r for r in emu.request_log if r["path"].startswith("/rest/")]


def all_strings(value) -> bool:
    if isinstance(value, dict):
        return all(all_strings(v) for v in value.values())
    if isinstance(value, list):
        return all(all_strings(v) for v in value)
    return value is None or isinstance(value, str)


# --------------------------------------------------------------------------------------------
# the emulator on its own
# --------------------------------------------------------------------------------------------
def test_emulator_paging_next_total_start_minus_one_filters_and_strings(b24):
    first = call(b24, "crm.deal.list", {"start": 0}).json()
    assert len(first["result"]) == 50 and first["total"] == N_DEALS and first["next"] == 50
    assert set(first["time"]) >= {"start", "finish", "duration", "processing", "date_start",
                                  "date_finish", "operating"}
    last = call(b24, "crm.deal.list", {"start": 100}).json()
    assert len(last["result"]) == 30 and "next" not in last and last["total"] == N_DEALS
    fast = call(b24, "crm.deal.list", {"start": -1, "order": {"ID": "ASC"},
                                       "filter": {">ID": 1100}}).json()
    assert [r["ID"] for r in fast["result"]] == [str(i) for i in range(1101, 1130)]
    assert fast["total"] == 0 and "next" not in fast
    # GET with PHP-style nested query works too, with or without .json
    q = "filter[>DATE_MODIFY]=" + requests.utils.quote(moscow(2 * 125)) + "&order[ID]=DESC"
    got = requests.get(f"{b24.webhook_url}crm.deal.list.json?{q}", timeout=TIMEOUT).json()
    assert [r["ID"] for r in got["result"]] == ["1129", "1128", "1127", "1126"]
    # every value is a string; money with two decimals; dates with the portal offset
    row = first["result"][0]
    assert all_strings(first["result"])
    assert (row["ID"], row["OPPORTUNITY"], row["CATEGORY_ID"]) == ("1000", "45000.00", "0")
    assert row["DATE_MODIFY"] == "2026-01-02T09:00:00+03:00"
    assert row["UTM_SOURCE"] is None
    # select: the default and "*" omit multifields and UF_*; they come only when named
    contact = call(b24, "crm.contact.list", {"select": ["*"]}).json()["result"][0]
    assert "PHONE" not in contact and "EMAIL" not in contact and "UF_CRM_SEGMENT" not in contact
    assert "PHONE" not in call(b24, "crm.contact.list").json()["result"][0]
    named = call(b24, "crm.contact.list",
                 {"select": ["ID", "NAME", "PHONE", "UF_*"]}).json()["result"][0]
    assert named["PHONE"] == [{"ID": "9000", "VALUE_TYPE": "MOBILE", "VALUE": "+7 912 000-0000",
                               "TYPE_ID": "PHONE"}]
    assert named["UF_CRM_SEGMENT"] == "b2c" and "EMAIL" not in named and "LAST_NAME" not in named
    bad = call(b24, "crm.deal.list", {"filter": "ID>5"})
    assert bad.status_code == 400
    assert bad.json()["error_description"] == "Parameter 'filter' must be array."


def test_emulator_other_methods(b24):
    sh = call(b24, "crm.stagehistory.list", {"entityTypeId": 2, "start": -1,
                                             "filter": {">ID": 9100}}).json()
    items = sh["result"]["items"]
    assert [i["ID"] for i in items][:2] == [9101, 9102] and sh["total"] == 0
    assert isinstance(items[0]["OWNER_ID"], int) and "ENTITY_TYPE_ID" not in items[0]
    leads_sh = call(b24, "crm.stagehistory.list", {"entityTypeId": 1}).json()
    assert leads_sh["total"] == N_LEADS and "STATUS_ID" in leads_sh["result"]["items"][0]
    err = call(b24, "crm.stagehistory.list", {"entityTypeId": 7})
    assert (err.status_code, err.json()["error"]) == (400, "ENTITY_TYPE_NOT_SUPPORTED")
    err = call(b24, "crm.stagehistory.list", {"entityTypeId": 2, "filter": {"TITLE": "x"}})
    assert err.json()["error"] == "INVALID_ARG_VALUE"
    assert "'TITLE' is not allowed in filter" in err.json()["error_description"]
    st = call(b24, "crm.status.list", {"filter": {"ENTITY_ID": "DEAL_STAGE_1"}}).json()
    assert [s["STATUS_ID"] for s in st["result"]] == ["C1:NEW", "C1:WON", "C1:LOSE"]
    assert st["result"][1]["SEMANTICS"] == "S"
    assert st["result"][1]["EXTRA"]["SEMANTICS"] == "success"
    cats = call(b24, "crm.category.list", {"entityTypeId": 2}).json()["result"]["categories"]
    assert [c["id"] for c in cats] == [0, 1]
    legacy = call(b24, "crm.dealcategory.list").json()["result"]
    assert [c["ID"] for c in legacy] == ["1"]
    stages = call(b24, "crm.dealcategory.stage.list", {"id": 1}).json()["result"]
    assert [s["STATUS_ID"] for s in stages] == ["C1:NEW", "C1:WON", "C1:LOSE"]
    users = call(b24, "user.get", {"FILTER": {">ID": 1}}).json()
    assert [u["ID"] for u in users["result"]] == ["12", "15"] and users["total"] == 2
    assert call(b24, "crm.nothing.list").json()["error"] == "ERROR_METHOD_NOT_FOUND"


def test_emulator_webhook_and_oauth_auth(b24):
    wrong = requests.post(f"{b24.base_url}/rest/1/not-the-code/crm.deal.list", json={},
                          timeout=TIMEOUT)
    assert wrong.status_code == 401 and wrong.json()["error"] == "NO_AUTH_FOUND"
    other_user = requests.post(f"{b24.base_url}/rest/2/{WEBHOOK_CODE}/crm.deal.list", json={},
                               timeout=TIMEOUT)
    assert other_user.status_code == 401
    assert call(b24, "crm.deal.list", webhook=False).json()["error"] == "NO_AUTH_FOUND"

    token_url = f"{b24.base_url}/oauth/token/"
    params = {"grant_type": "refresh_token", "client_id": "local.demo",
              "client_secret": CLIENT_SECRET, "refresh_token": INITIAL_REFRESH}
    tok = requests.get(token_url, params=params, timeout=TIMEOUT).json()
    assert tok["expires_in"] == 3600 and tok["refresh_token"] != INITIAL_REFRESH
    assert tok["client_endpoint"] == f"{b24.base_url}/rest/" and tok["scope"] == "crm,user"
    spent = requests.get(token_url, params=params, timeout=TIMEOUT)
    assert (spent.status_code, spent.json()["error"]) == (400, "invalid_grant")
    bad_client = requests.get(token_url, params={**params, "client_secret": "nope",
                                                 "refresh_token": tok["refresh_token"]},
                              timeout=TIMEOUT)
    assert (bad_client.status_code, bad_client.json()["error"]) == (401, "invalid_client")
    assert b24.current_refresh_token == tok["refresh_token"]

    ok = call(b24, "crm.deal.list", {"auth": tok["access_token"]}, webhook=False)
    assert ok.status_code == 200 and len(ok.json()["result"]) == 50
    bearer = call(b24, "user.get", webhook=False,
                  headers={"Authorization": f"Bearer {tok['access_token']}"})
    assert bearer.status_code == 200
    q = requests.get(f"{b24.base_url}/rest/user.get.json?auth={tok['access_token']}",
                     timeout=TIMEOUT)
    assert q.status_code == 200
    b24.expire_access_tokens()
    expired = call(b24, "crm.deal.list", {"auth": tok["access_token"]}, webhook=False)
    assert expired.status_code == 401 and expired.json()["error"] == "expired_token"


def test_emulator_batch_references_errors_halt_and_length(b24):
    q = php_query({"order": {"ID": "ASC"}, "filter": {">ID": "$result[p1][49][ID]"},
                   "select": ["ID"], "start": -1})
    cmd = {"p1": "crm.deal.list?" + php_query({"order": {"ID": "ASC"}, "filter": {">ID": 0},
                                               "select": ["ID"], "start": -1}),
           "p2": "crm.deal.list?" + q,
           "p3": "crm.deal.list?" + q.replace("p1", "p2"),
           "p4": "crm.deal.list?" + q.replace("p1", "p3"),
           "bad": "crm.stagehistory.list?entityTypeId=9"}
    body = call(b24, "batch", {"halt": 0, "cmd": cmd}).json()
    res = body["result"]
    assert [r["ID"] for r in res["result"]["p2"]][:2] == ["1050", "1051"]
    assert len(res["result"]["p3"]) == 30
    # p3 is short: there is no row 49 to chain on, so p4 fails (checked by the extractor)
    assert res["result_error"]["p4"]["error"] == "INVALID_ARG_VALUE"
    assert res["result_error"]["bad"]["error"] == "ENTITY_TYPE_NOT_SUPPORTED"
    assert res["result_total"]["p1"] == 0 and "operating" in res["result_time"]["p1"]
    assert "time" in body
    # halt=1 stops at the first error
    halted = call(b24, "batch", {"halt": 1, "cmd": {"a": "crm.stagehistory.list?entityTypeId=9",
                                                    "b": "user.get"}}).json()["result"]
    assert list(halted["result_error"]) == ["a"] and halted["result"] == []
    nested = call(b24, "batch", {"cmd": {"x": "batch?cmd[y]=user.get"}}).json()["result"]
    assert nested["result_error"]["x"]["error"] == "ERROR_BATCH_METHOD_NOT_ALLOWED"
    too_long = call(b24, "batch", {"cmd": {f"c{i}": "user.get" for i in range(51)}})
    assert (too_long.status_code, too_long.json()["error"]) == (400,
                                                                  "ERROR_BATCH_LENGTH_EXCEEDED")
    assert len(call(b24, "batch", {"cmd": {f"c{i}": "user.get" for i in range(50)}})
               .json()["result"]["result"]) == 50


def test_emulator_leaky_bucket_and_operating_limit():
    with Bitrix24Emulator(b24_data(), bucket_size=5, drain_per_s=2.0) as emu:
        statuses = [call(emu, "user.get").status_code for _ in range(7)]
        assert statuses[:5] == [200] * 5 and 503 in statuses[5:]
        over = call(emu, "user.get")
        assert over.status_code == 503
        assert over.json() == {"error": "QUERY_LIMIT_EXCEEDED",
                               "error_description": "Too many requests"}
        emu.reset_limits()
        assert call(emu, "user.get").status_code == 200
    with Bitrix24Emulator(b24_data(), operating_limit_s=0.2, operating_cost_s=0.05) as emu:
        answers = [call(emu, "crm.deal.list") for _ in range(5)]
        assert [a.status_code for a in answers] == [200, 200, 200, 200, 429]
        assert answers[3].json()["time"]["operating"] == pytest.approx(0.2)
        blocked = answers[4].json()
        assert blocked["error"] == "OPERATION_TIME_LIMIT"
        assert blocked["time"]["operating_reset_at"] > time.time()
        assert call(emu, "crm.contact.list").status_code == 200  # other methods keep working
        emu.clock = lambda: time.time() + 601
        assert call(emu, "crm.deal.list").status_code == 200


# --------------------------------------------------------------------------------------------
# the extractor against the emulator
# --------------------------------------------------------------------------------------------
def test_webhook_full_sync_lands_everything_with_fast_export_and_batch(b24, wh):
    src = webhook_source(b24, batch_pages=2)
    results = {e: sync_entity(src, e, wh, run_id="run-1") for e in src.ENTITIES}
    expected = {"users": 3, "statuses": 9, "categories": 2, "leads": N_LEADS,
                "deals": N_DEALS, "contacts": N_CONTACTS, "stagehistory": N_DEALS + 10 + N_LEADS}
    for entity, n in expected.items():
        assert wh.count_rows(f"raw.bitrix24__{entity}") == n, entity
        assert results[entity].inserted == n and results[entity].duplicates == 0
    assert results["deals"].pages == 3

    # deals: fast export via batch: order ID, >ID chained on row 49, start=-1; 2 HTTP calls
    batches = [r for r in api_log(b24) if r["api_method"] == "batch"]
    assert all(r["status"] == 200 for r in api_log(b24))
    assert not any(r["path"].endswith("crm.deal.list.json") for r in api_log(b24))
    assert wh.get_cursor("bitrix24", "voronka.bitrix24.ru", "deals") == moscow(2 * 129)
    assert wh.get_cursor("bitrix24", "voronka.bitrix24.ru", "stagehistory") == json.dumps(
        {"1": 100 + N_LEADS, "2": 9000 + N_DEALS + 10})
    assert wh.get_cursor("bitrix24", "voronka.bitrix24.ru", "users") is None
    deal_batches = [b["params"]["cmd"] for b in batches if "crm.deal.list" in b["params"]["cmd"]
                    ["p0"]]
    assert len(deal_batches) == 2  # 130 deals = 3 pages, 2 pages per batch
    p1 = deal_batches[0]["p1"]
    assert "filter[%3EID]=$result[p0][49][ID]" in p1 and "start=-1" in p1
    assert "order[ID]=ASC" in p1
    contact_cmd = next(b["params"]["cmd"]["p0"] for b in batches
                       if "crm.contact.list" in b["params"]["cmd"]["p0"])
    assert "select[]=PHONE" in contact_cmd and "select[]=EMAIL" in contact_cmd

    deal = json.loads(wh.scalar("select payload from raw.bitrix24__deals "
                                "where record_id = '1007'"))
    assert deal["OPPORTUNITY"] == "45007.00" and deal["STAGE_ID"] == "C1:NEW"
    assert deal["UF_CRM_CHANNEL"] == "web" and all_strings(deal)
    assert str(wh.scalar("select updated_at from raw.bitrix24__deals where record_id = '1007'")
               ) == "2026-01-02 06:14:00"  # 09:14 +03:00 in naive UTC
    contact = json.loads(wh.scalar("select payload from raw.bitrix24__contacts "
                                   "where record_id = '5003'"))
    assert contact["PHONE"][0]["VALUE"] == "+7 912 000-0003"
    assert contact["EMAIL"][0]["VALUE"] == "client3@example.com" and all_strings(contact)
    assert "PHONE" not in deal
    sh = json.loads(wh.scalar("select payload from raw.bitrix24__stagehistory "
                              "where record_id = '2:9001'"))
    assert sh["_entityTypeId"] == 2 and sh["OWNER_ID"] == 1000  # native ints, as received
    assert wh.scalar("select count(*) from raw.bitrix24__stagehistory "
                     "where record_id like '1:%'") == N_LEADS
    status = json.loads(wh.scalar("select payload from raw.bitrix24__statuses "
                                  "where record_id = '8'"))
    assert (status["ENTITY_ID"], status["STATUS_ID"], status["SEMANTICS"]) == (
        "DEAL_STAGE_1", "C1:WON", "S")


def test_fast_export_pages_of_fifty_and_the_request_shape(b24):
    src = webhook_source(b24, batch_pages=1)
    pages = list(src.pages("deals", None))
    assert [len(p.records) for p in pages] == [50, 50, 30]
    calls = [r for r in api_log(b24) if r["api_method"] == "crm.deal.list"]
    assert len(calls) == 3
    assert all(r["path"] == f"/rest/1/{WEBHOOK_CODE}/crm.deal.list.json" for r in calls)
    assert [c["params"]["filter"] for c in calls] == [{">ID": 0}, {">ID": 1049}, {">ID": 1099}]
    assert all(c["params"]["start"] == -1 and c["params"]["order"] == {"ID": "ASC"}
               and c["params"]["select"] == ["*", "UF_*"] for c in calls)
    assert all(c["method"] == "POST" and c["query"] == {} for c in calls)
    assert pages[-1].cursor_after == moscow(2 * 129)
    rec = pages[0].records[0]
    assert (rec.source, rec.account, rec.entity, rec.record_id) == (
        "bitrix24", "voronka.bitrix24.ru", "deals", "1000")
    assert rec.payload["ID"] == "1000" and rec.payload["CATEGORY_ID"] == "0"
    assert rec.updated_at == datetime(2026, 1, 2, 6, 0, 0)
    # users and categories use start/next paging
    assert [len(p.records) for p in src.pages("users", None)] == [3]
    assert [r.record_id for p in src.pages("categories", None) for r in p.records] == ["0", "1"]


def test_incremental_start_next_paging_uses_batch_after_total_is_known(b24):
    src = webhook_source(b24, batch_pages=5, overlap_s=0)
    cursor = moscow(0)  # everything but deal 1000 is newer
    pages = list(src.pages("deals", cursor))
    assert [len(p.records) for p in pages] == [50, 50, 29]
    direct = [r for r in api_log(b24) if r["api_method"] == "crm.deal.list"]
    assert len(direct) == 1  # start=0 → total=129, next=50; the rest in one batch
    log = api_log(b24)
    assert [r["api_method"] for r in log] == ["crm.deal.list", "batch"]
    assert log[0]["params"]["filter"] == {">DATE_MODIFY": "2026-01-02T09:00:00+03:00"}
    assert log[0]["params"]["start"] == 0 and log[0]["params"]["order"] == {"ID": "ASC"}
    assert [c.rsplit("start=", 1)[1] for c in log[1]["params"]["cmd"].values()] == ["50", "100"]
    assert pages[-1].cursor_after == moscow(2 * 129)


def test_batch_command_error_surfaces_naming_the_command(b24):
    b24.fail_method("crm.deal.list", "INVALID_ARG_VALUE", "Invalid filter: field 'X'", count=2)
    src = webhook_source(b24, batch_pages=3)
    with pytest.raises(ApiError) as info:
        list(src.pages("deals", None))
    msg = str(info.value)
    assert "batch command 'p0' (crm.deal.list) failed" in msg and "INVALID_ARG_VALUE" in msg
    assert info.value.error_code == "INVALID_ARG_VALUE"
    assert WEBHOOK_CODE not in msg and WEBHOOK_CODE not in info.value.url
    # the same fault on a direct call is a normal HTTP 400 error
    b24.fail_method("user.get", "ACCESS_DENIED", "REST is available only on commercial plans",
                    status=403)
    with pytest.raises(ApiError) as info:
        list(src.pages("users", None))
    assert info.value.status == 403 and "ACCESS_DENIED" in str(info.value)


def test_oauth_refresh_only_on_expired_token_persisted_before_use(b24, tmp_path):
    saved_at: list[int] = []
    store_path = tmp_path / "state" / "b24_tokens.json"

    class SpyStore(TokenStore):
        def save(self, tokens):
            super().save(tokens)
            saved_at.append(len(api_log(b24)))

    src = oauth_source(b24, store_path, batch_pages=1)
    src.token_store = SpyStore(store_path)
    pages = src.pages("deals", None)
    got = list(next(pages).records)
    assert b24.token_refreshes == 1 and saved_at == [0]  # saved before any API call
    b24.expire_access_tokens()
    got += [r for p in pages for r in p.records]
    assert len({r.record_id for r in got}) == N_DEALS
    assert b24.token_refreshes == 2
    errors = [r["error"] for r in api_log(b24) if r["status"] == 401]
    assert errors == ["expired_token"]
    # the renewed pair was saved right after the 401, before the retry used the new token
    i401 = next(i for i, r in enumerate(api_log(b24)) if r["status"] == 401)
    assert saved_at[1] == i401 + 1
    assert api_log(b24)[i401 + 1]["status"] == 200
    saved = json.loads(store_path.read_text())
    assert saved["refresh_token"] == b24.current_refresh_token != INITIAL_REFRESH
    assert stat.S_IMODE(store_path.stat().st_mode) == 0o600
    assert not any(p.name.endswith(".tmp") for p in store_path.parent.iterdir())
    # the access token went as auth= in the body, never in the URL
    assert all("auth" not in r["query"] for r in api_log(b24))

    # a new process with a stored token whose own expiry looks past does NOT renew up front
    store = TokenStore(store_path)
    old = store.load()
    store.save(TokenSet(old.access_token, old.refresh_token, time.time() - 10))
    assert sum(len(p.records) for p in oauth_source(b24, store_path).pages("users", None)) == 3
    assert b24.token_refreshes == 2
    # an injected expired_token takes the same one-refresh path
    b24.faults.add("expired_token", path_prefix="/rest/user.get")
    assert sum(len(p.records) for p in oauth_source(b24, store_path).pages("users", None)) == 3
    assert b24.token_refreshes == 3


def test_spent_refresh_token_gives_clear_authorization_error(b24, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    list(oauth_source(b24, tmp_path / "a.json").pages("users", None))  # spends INITIAL_REFRESH
    second = oauth_source(b24, tmp_path / "b.json")  # empty store → tries the spent token
    with pytest.raises(AuthorizationError) as info:
        list(second.pages("users", None))
    msg = str(info.value)
    assert "refused the refresh token" in msg and "re-authorise" in msg
    assert "invalid_grant" in msg and "HTTP 400" in msg
    for secret in (INITIAL_REFRESH, CLIENT_SECRET):
        assert secret not in msg and secret not in caplog.text and secret not in repr(info.value)
    assert not (tmp_path / "b.json").exists()


def test_wrong_webhook_is_a_clear_authorization_error_without_the_code(b24, caplog):
    caplog.set_level(logging.DEBUG)
    src = Bitrix24Source(b24.base_url, account="x",
                         webhook_url=f"{b24.base_url}/rest/1/stale-code-123456/",
                         http_options=options())
    with pytest.raises(AuthorizationError) as info:
        list(src.pages("users", None))
    msg = str(info.value)
    assert "NO_AUTH_FOUND" in msg and "create a new webhook" in msg and "401" in msg
    assert "stale-code-123456" not in msg and "stale-code-123456" not in caplog.text
    assert "/rest/1/***/user.get.json" in info.value.url


def test_503_query_limit_burst_is_retried(b24, wh):
    sleeper = RecordingSleep()
    b24.faults.add("5xx", count=3, path_prefix=f"/rest/1/{WEBHOOK_CODE}/batch", status=503)
    src = webhook_source(b24, sleeper, batch_pages=2, rate_limit_per_s=50.0)
    result = sync_entity(src, "deals", wh, run_id="r")
    assert result.inserted == N_DEALS
    statuses = [(r["status"], r["error"]) for r in api_log(b24)]
    assert statuses[:4] == [(503, "QUERY_LIMIT_EXCEEDED")] * 3 + [(200, None)]
    assert len(sleeper.calls) >= 3  # it backed off (the limiter waits)


def test_normal_run_never_overflows_the_bucket():
    deals = [{"ID": i, "TITLE": f"D{i}", "DATE_MODIFY": moscow(i)} for i in range(1, 651)]
    with Bitrix24Emulator({"deals": deals}, bucket_size=6, drain_per_s=10.0) as emu:
        src = Bitrix24Source(emu.base_url, account="b", webhook_url=emu.webhook_url,
                             rate_limit_per_s=10.0, burst=6, batch_pages=1,
                             http_options=options(sleep=time.sleep))
        started = time.monotonic()
        for _ in range(2):
            assert sum(len(p.records) for p in src.pages("deals", None)) == 650
        elapsed = time.monotonic() - started
        log = api_log(emu)
        assert len(log) == 28
        assert [r for r in log if r["status"] != 200] == []
        # replay the server's bucket over the arrival times: never above its size
        level, last = 0.0, log[0]["t"]
        for r in sorted(log, key=lambda r: r["t"]):
            level = max(0.0, level - (r["t"] - last) * 10.0) + 1
            last = r["t"]
            assert level <= 6
        assert elapsed >= (28 - 6) / 10.0 * 0.9  # really throttled


def test_operation_time_limit_waits_until_operating_reset_at(wh):
    with Bitrix24Emulator(b24_data(), operating_limit_s=0.1, operating_cost_s=0.05) as emu:
        sleeper = RecordingSleep(emu)
        src = webhook_source(emu, sleeper, batch_pages=1)
        result = sync_entity(src, "deals", wh, run_id="r")
        assert result.inserted == N_DEALS
        log = [r for r in api_log(emu) if r["api_method"] == "crm.deal.list"]
        assert [r["status"] for r in log] == [200, 200, 429, 200]
        assert log[2]["error"] == "OPERATION_TIME_LIMIT"
        waits = [s for s in sleeper.calls if s > 1]
        assert len(waits) == 1 and 1 < waits[0] <= 602  # until operating_reset_at, not backoff

        # inside a batch the blocked sub-call is in result_error; the batch is re-run later
        emu.reset_limits()
        sleeper.offset = 0.0  # the emulator's clock back in step with ours
        # two calls per ten minutes: the third command of the batch is blocked
        sleeper.calls.clear()
        src2 = webhook_source(emu, sleeper, batch_pages=3)
        pages = list(src2.pages("deals", None))
        assert [len(p.records) for p in pages] == [50, 50, 30]
        assert len({r.record_id for p in pages for r in p.records}) == N_DEALS
        waits = [s for s in sleeper.calls if s > 1]
        assert len(waits) == 1 and 1 < waits[0] <= 602
        batches = [r for r in api_log(emu) if r["api_method"] == "batch"]
        assert [r["status"] for r in batches] == [200, 200]


def test_incremental_cursor_relands_only_the_modified_deal(b24, wh):
    src = webhook_source(b24, overlap_s=60)
    first = sync_entity(src, "deals", wh, run_id="run-1")
    assert first.cursor_after == moscow(2 * 129)
    b24.update("deals", 1005, OPPORTUNITY="99999.00", STAGE_ID="LOSE", STAGE_SEMANTIC_ID="F",
               DATE_MODIFY=moscow(2 * 129 + 30))
    b24.request_log.clear()
    second = sync_entity(src, "deals", wh, run_id="run-2")
    q = [r for r in api_log(b24) if r["api_method"] == "crm.deal.list"]
    assert len(q) == 1
    since = (T0 + timedelta(minutes=2 * 129, seconds=-60)).isoformat()
    assert q[0]["params"]["filter"] == {">DATE_MODIFY": since}  # cursor - overlap, +03:00
    # the overlap window (60 s) re-reads only the newest old deal, plus the changed one
    assert second.fetched == 2 and second.inserted == 1 and second.duplicates == 1
    assert second.cursor_after == moscow(2 * 129 + 30)
    assert wh.count_rows("raw.bitrix24__deals") == N_DEALS + 1
    versions = wh.query_df("select payload from raw.bitrix24__deals where record_id = '1005'")
    assert sorted(json.loads(p)["OPPORTUNITY"] for p in versions["payload"]) == [
        "45005.00", "99999.00"]
    third = sync_entity(src, "deals", wh, run_id="run-3")
    assert third.inserted == 0 and third.cursor_after == moscow(2 * 129 + 30)

    # stage history is append-only by >ID: only new rows come back
    sync_entity(src, "stagehistory", wh, run_id="run-1")
    b24.data["stagehistory"].append({"ID": 9500, "ENTITY_TYPE_ID": 2, "TYPE_ID": 3,
                                     "OWNER_ID": 1005, "CREATED_TIME": moscow(2 * 129 + 30),
                                     "CATEGORY_ID": 0, "STAGE_SEMANTIC_ID": "F",
                                     "STAGE_ID": "LOSE"})
    again = sync_entity(src, "stagehistory", wh, run_id="run-2")
    assert (again.fetched, again.inserted) == (1, 1)


def test_resume_after_failure_at_page_n_loses_and_duplicates_nothing(b24, wh):
    sleeper = RecordingSleep()
    src = webhook_source(b24, sleeper, batch_pages=1)
    seen: list[int] = []

    def validate_and_break_after_page_2(records):
        seen.append(len(records))
        if len(seen) == 2:  # the portal starts failing while we land page 2
            b24.faults.add("5xx", count=50, path_prefix=f"/rest/1/{WEBHOOK_CODE}/", status=500)
        return records, []

    with pytest.raises(ApiError) as info:
        sync_entity(src, "deals", wh, run_id="run-1", validate=validate_and_break_after_page_2,
                    batch_records=1)
    assert info.value.status == 500 and info.value.attempts == 4
    assert WEBHOOK_CODE not in str(info.value)
    assert wh.count_rows("raw.bitrix24__deals") == 100
    assert wh.get_cursor("bitrix24", "voronka.bitrix24.ru", "deals") is None

    b24.faults.clear()
    result = sync_entity(src, "deals", wh, run_id="run-2")
    assert result.cursor_before is None
    assert result.inserted == N_DEALS - 100 and result.duplicates == 100
    ids = list(wh.query_df("select record_id from raw.bitrix24__deals")["record_id"])
    assert len(ids) == len(set(ids)) == N_DEALS
    assert wh.get_cursor("bitrix24", "voronka.bitrix24.ru", "deals") == moscow(2 * 129)


def test_no_secret_reaches_errors_or_logs(b24, wh, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    sleeper = RecordingSleep()
    b24.faults.add("5xx", path_prefix="/rest/batch", status=503)
    b24.faults.add("expired_token", path_prefix="/rest/batch")
    b24.faults.add("5xx", path_prefix="/rest/batch", status=502)
    src = oauth_source(b24, tmp_path / "t.json", sleeper, rate_limit_per_s=50.0)
    sync_entity(src, "deals", wh, run_id="r")
    b24.faults.add("5xx", count=10, path_prefix="/rest/user.get", status=500)
    with pytest.raises(ApiError) as oauth_err:
        sync_entity(src, "users", wh, run_id="r")
    hook = webhook_source(b24, sleeper)
    b24.faults.add("5xx", count=10, path_prefix=f"/rest/1/{WEBHOOK_CODE}/user.get", status=500)
    with pytest.raises(ApiError) as hook_err:
        sync_entity(hook, "users", wh, run_id="r")
    assert b24.token_refreshes == 2
    tokens = TokenStore(tmp_path / "t.json").load()
    assert "retry" in caplog.text and "page 1" in caplog.text  # it did log
    for secret in (CLIENT_SECRET, INITIAL_REFRESH, WEBHOOK_CODE, tokens.access_token,
                   tokens.refresh_token):
        assert secret not in caplog.text
        for err in (oauth_err.value, hook_err.value):
            assert secret not in str(err) and secret not in repr(err) and secret not in err.url
