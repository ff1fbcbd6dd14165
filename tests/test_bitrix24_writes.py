"""Bitrix24 write side (activation_apis.md §2): the emulator's write methods on their own, then
Bitrix24WriteClient against them (flag, to-dos, deals, batching, faults, redaction)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import requests

from audiences.clients.bitrix24 import Bitrix24WriteClient, flag_field_name
from emulators.bitrix24 import Bitrix24Emulator
from extractors.bitrix24 import Bitrix24Source
from extractors.http import ApiError, HttpOptions

WEBHOOK_CODE = "wh-write-code-5t9x2k"
CLIENT_SECRET = "b24-write-secret-Hq72"
INITIAL_REFRESH = "b24-write-refresh-0-Zp41"
SECRETS = (WEBHOOK_CODE, CLIENT_SECRET, INITIAL_REFRESH)
N_CONTACTS = 130
T0 = datetime.fromisoformat("2026-01-02T09:00:00+03:00")


def b24_data() -> dict[str, list[dict]]:
    users = [{"ID": i, "ACTIVE": True, "NAME": f"Manager{i}", "LAST_NAME": "Test"}
             for i in (1, 12, 15)]
    statuses = []
    for entity_id, prefix, cat in (("DEAL_STAGE", "", 0), ("DEAL_STAGE_1", "C1:", 1)):
        for sort, (status_id, sem) in enumerate((("NEW", None), ("PREPARATION", None),
                                                 ("WON", "S"), ("LOSE", "F")), start=1):
            statuses.append({"ID": len(statuses) + 1, "ENTITY_ID": entity_id,
                             "STATUS_ID": prefix + status_id, "NAME": status_id.title(),
                             "SORT": sort * 10, "CATEGORY_ID": cat, "SEMANTICS": sem})
    categories = [{"id": 0, "name": "Продажи", "sort": 100, "entityTypeId": 2},
                  {"id": 1, "name": "Повторные продажи", "sort": 200, "entityTypeId": 2}]
    contacts = [{"ID": 5000 + i, "NAME": f"Client {i}", "ASSIGNED_BY_ID": 12,
                 "DATE_CREATE": T0.isoformat(), "DATE_MODIFY": T0.isoformat(),
                 "UF_CRM_SEGMENT": "b2c",
                 "PHONE": [{"ID": 9000 + i, "VALUE_TYPE": "MOBILE",
                            "VALUE": f"+7 912 000-{i:04d}", "TYPE_ID": "PHONE"}]}
                for i in range(N_CONTACTS)]
    deals = [{"ID": 1000 + i, "TITLE": f"Order {i}", "CATEGORY_ID": 0, "STAGE_ID": "WON",
              "STAGE_SEMANTIC_ID": "S", "CONTACT_ID": 5000 + i, "ASSIGNED_BY_ID": 12,
              "DATE_CREATE": T0.isoformat(),
              "DATE_MODIFY": (T0 + timedelta(minutes=i)).isoformat()} for i in range(3)]
    stagehistory = [{"ID": 1 + i, "ENTITY_TYPE_ID": 2, "TYPE_ID": 1, "OWNER_ID": 1000 + i,
                     "CREATED_TIME": T0.isoformat(), "CATEGORY_ID": 0, "STAGE_ID": "NEW",
                     "STAGE_SEMANTIC_ID": "P"} for i in range(3)]
    return {"users": users, "statuses": statuses, "categories": categories,
            "contacts": contacts, "deals": deals, "stagehistory": stagehistory}


class RecordingSleep:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def options(sleep: RecordingSleep | None = None) -> HttpOptions:
    return HttpOptions(timeout=(2.0, 5.0), max_retries=3, backoff_base=0.01, backoff_max=0.05,
                       sleep=sleep or RecordingSleep())


@pytest.fixture(autouse=True)
def _no_secret_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    yield
    for secret in SECRETS:
        assert secret not in caplog.text


@pytest.fixture
def b24() -> Iterator[Bitrix24Emulator]:
    emulator = Bitrix24Emulator(
        b24_data(), webhook_code=WEBHOOK_CODE, client_secret=CLIENT_SECRET,
        refresh_token=INITIAL_REFRESH,
        contact_userfields=({"FIELD_NAME": "UF_CRM_VIP", "USER_TYPE_ID": "boolean"},)).start()
    yield emulator
    emulator.stop()


@pytest.fixture
def sleeper() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
def client(b24: Bitrix24Emulator, sleeper: RecordingSleep) -> Iterator[Bitrix24WriteClient]:
    env = {"BITRIX24_WEBHOOK_URL": b24.webhook_url, "BITRIX24_RATE_LIMIT_PER_S": "50"}
    with Bitrix24WriteClient.from_env(env, http_options=options(sleeper)) as c:
        yield c


def call(b24: Bitrix24Emulator, method: str, body: dict) -> tuple[int, dict]:
    resp = requests.post(f"{b24.webhook_url}{method}.json", json=body, timeout=5)
    return resp.status_code, resp.json()


def batch_path(b24: Bitrix24Emulator) -> str:
    return f"/rest/{b24.webhook_user_id}/{WEBHOOK_CODE}/batch"


def todo(owner: int, title: str = "Позвонить", **extra) -> dict:
    return {"ownerTypeId": 3, "ownerId": owner, "deadline": "2026-12-10T12:00:00+03:00",
            "title": title, "description": "Сегмент winback", "responsibleId": 12, **extra}


# ---------------------------------------------------------------------------------------------
# the emulator on its own
# ---------------------------------------------------------------------------------------------
def test_emulator_userfield_rules(b24: Bitrix24Emulator) -> None:
    status, body = call(b24, "crm.contact.userfield.add",
                        {"fields": {"FIELD_NAME": "wh_flag", "USER_TYPE_ID": "boolean",
                                    "LABEL": "Flag"}})
    assert status == 200 and isinstance(body["result"], int)
    status, body = call(b24, "crm.contact.userfield.list",
                        {"filter": {"FIELD_NAME": "UF_CRM_WH_FLAG"}})
    assert [f["USER_TYPE_ID"] for f in body["result"]] == ["boolean"]
    assert body["result"][0]["EDIT_FORM_LABEL"] == "Flag"
    # the same name again, a name over 50 characters, a multiple boolean: refused
    status, body = call(b24, "crm.contact.userfield.add",
                        {"fields": {"FIELD_NAME": "WH_FLAG", "USER_TYPE_ID": "string"}})
    assert status == 400 and body["error"] == "" and "UF_CRM_WH_FLAG" in body["error_description"]
    status, body = call(b24, "crm.contact.userfield.add",
                        {"fields": {"FIELD_NAME": "X" * 44, "USER_TYPE_ID": "string"}})
    assert status == 400 and "50" in body["error_description"]
    status, _ = call(b24, "crm.contact.userfield.add",
                     {"fields": {"FIELD_NAME": "B", "USER_TYPE_ID": "boolean", "MULTIPLE": "Y"}})
    assert status == 400
    # the UF_* keys the contacts already carry are known fields
    status, body = call(b24, "crm.contact.userfield.list", {})
    assert {f["FIELD_NAME"] for f in body["result"]} == {"UF_CRM_WH_FLAG", "UF_CRM_VIP",
                                                          "UF_CRM_SEGMENT"}
    assert b24.write_requests() == [("crm.contact.userfield.add", 1)] * 4


def test_emulator_contact_update(b24: Bitrix24Emulator) -> None:
    before = b24.contact_field(5000, "DATE_MODIFY")
    for value, stored in (("Y", "1"), (0, "0"), ("true", "1"), (False, "0")):
        status, body = call(b24, "crm.contact.update",
                            {"ID": 5000, "FIELDS": {"UF_CRM_VIP": value}})
        assert (status, body["result"]) == (200, True)
        assert b24.contact_field(5000, "UF_CRM_VIP") == stored
    assert b24.contact_field(5000, "DATE_MODIFY") > before
    assert b24.contact_field(5000, "UF_CRM_SEGMENT") == "b2c"
    status, body = call(b24, "crm.contact.update", {"ID": 5000, "FIELDS": {"UF_CRM_VIP": "maybe"}})
    assert status == 400 and "UF_CRM_VIP" in body["error_description"]
    status, body = call(b24, "crm.contact.update", {"ID": 5000, "FIELDS": {"UF_CRM_NOPE": "1"}})
    assert status == 400 and "UF_CRM_NOPE" in body["error_description"]
    status, body = call(b24, "crm.contact.update", {"ID": 99, "FIELDS": {"UF_CRM_VIP": "1"}})
    assert (status, body) == (400, {"error": "", "error_description": "Contact is not found"})
    # reads render the value: crm.contact.get always, crm.contact.list with UF_*
    _, body = call(b24, "crm.contact.get", {"id": 5000})
    assert body["result"]["UF_CRM_VIP"] == "0"
    _, body = call(b24, "crm.contact.list", {"filter": {"ID": 5000}, "select": ["*", "UF_*"]})
    assert body["result"][0]["UF_CRM_VIP"] == "0"


def test_emulator_todo_and_activity_list(b24: Bitrix24Emulator) -> None:
    status, body = call(b24, "crm.activity.todo.add", todo(5001))
    assert status == 200 and body["result"] == {"id": 1}
    for bad, code in (({"deadline": "tomorrow"}, "WRONG_DATETIME_FORMAT"),
                      ({"deadline": "2026-12-10"}, "WRONG_DATETIME_FORMAT"),
                      ({"ownerId": 77}, "OWNER_NOT_FOUND"),
                      ({"ownerTypeId": 99}, "NOT_FOUND")):
        status, body = call(b24, "crm.activity.todo.add", {**todo(5001), **bad})
        assert (status, body["error"]) == (400, code)
    status, body = call(b24, "crm.activity.todo.add", {"ownerTypeId": 3, "ownerId": 5001})
    assert (status, body["error"]) == (400, "100") and "deadline" in body["error_description"]
    # a deal owner works too; the default responsible is the calling user [decided]
    call(b24, "crm.activity.todo.add", {"ownerTypeId": 2, "ownerId": 1000,
                                        "deadline": "2026-12-10 12:00:00"})
    assert [t["RESPONSIBLE_ID"] for t in b24.todos()] == [12, b24.webhook_user_id]
    _, body = call(b24, "crm.activity.list",
                   {"filter": {"OWNER_TYPE_ID": 3, "OWNER_ID": [5001, 5002], "COMPLETED": "N"},
                    "select": ["ID", "SUBJECT", "DEADLINE", "COMPLETED"]})
    assert body["total"] == 1
    assert body["result"] == [{"ID": "1", "SUBJECT": "Позвонить",
                               "DEADLINE": "2026-12-10T12:00:00+03:00", "COMPLETED": "N"}]
    status, body = call(b24, "crm.activity.update", {"id": 1, "fields": {"COMPLETED": "Y"}})
    assert (status, body["result"]) == (200, True)
    _, body = call(b24, "crm.activity.list", {"filter": {"OWNER_ID": 5001, "COMPLETED": "N"}})
    assert body["result"] == []


def test_emulator_deal_add(b24: Bitrix24Emulator) -> None:
    fields = {"TITLE": "Win-back", "CATEGORY_ID": 1, "CONTACT_IDS": [5003],
              "ASSIGNED_BY_ID": 15, "ORIGINATOR_ID": "voronka", "ORIGIN_ID": "wb:5003"}
    status, body = call(b24, "crm.deal.add", {"FIELDS": fields})
    assert status == 200
    deal_id = body["result"]
    [deal] = b24.created_deals()
    assert (deal["ID"], deal["STAGE_ID"], deal["STAGE_SEMANTIC_ID"], deal["CONTACT_ID"]) == (
        deal_id, "C1:NEW", "P", 5003)
    _, body = call(b24, "crm.deal.list", {"filter": {"ORIGINATOR_ID": "voronka"},
                                          "select": ["*"]})
    assert [(r["ID"], r["ORIGIN_ID"]) for r in body["result"]] == [(str(deal_id), "wb:5003")]
    assert datetime.fromisoformat(deal["DATE_MODIFY"]) > datetime.fromisoformat(
        b24.data["deals"][2]["DATE_MODIFY"])
    history = [r for r in b24.data["stagehistory"] if r["OWNER_ID"] == deal_id]
    assert [(r["ID"], r["STAGE_ID"]) for r in history] == [(4, "C1:NEW")]
    for bad in ({"STAGE_ID": "WON"}, {"CATEGORY_ID": 7}, {"CONTACT_ID": 1},
                {"ASSIGNED_BY_ID": 999}):
        status, body = call(b24, "crm.deal.add", {"fields": {**fields, **bad}})
        assert status == 400 and body["error"] == ""
    status, _ = call(b24, "crm.deal.add", {"fields": "x"})
    assert status == 400
    assert len(b24.created_deals()) == 1


def test_emulator_after_write_drop_applies_then_drops(b24: Bitrix24Emulator) -> None:
    b24.faults.add("drop", path_prefix=f"/rest/1/{WEBHOOK_CODE}/crm.activity.todo.add",
                   after_write=True)
    with pytest.raises(requests.ConnectionError):
        call(b24, "crm.activity.todo.add", todo(5000))
    assert len(b24.todos()) == 1
    call(b24, "crm.activity.todo.add", todo(5000))  # the fault is spent
    assert len(b24.todos()) == 2


# ---------------------------------------------------------------------------------------------
# the client
# ---------------------------------------------------------------------------------------------
def test_flag_created_once_and_reused(client: Bitrix24WriteClient, b24: Bitrix24Emulator) -> None:
    assert client.ensure_contact_flag("winback_30", "Win-back 30") == "UF_CRM_WINBACK_30"
    assert client.ensure_contact_flag("WINBACK_30", "Win-back 30") == "UF_CRM_WINBACK_30"
    assert b24.write_requests() == [("crm.contact.userfield.add", 1)]
    _, body = call(b24, "crm.contact.userfield.list", {"filter": {"FIELD_NAME":
                                                                  "UF_CRM_WINBACK_30"}})
    assert [(f["USER_TYPE_ID"], f["EDIT_FORM_LABEL"]) for f in body["result"]] == [
        ("boolean", "Win-back 30")]
    # a bad code fails before any call; a non-boolean field of that name is not reused
    for bad in ("win-back", "x" * 44, ""):
        with pytest.raises(ValueError):
            client.ensure_contact_flag(bad, "x")
    with pytest.raises(ValueError, match="string"):
        client.ensure_contact_flag("segment", "Segment")
    assert flag_field_name("uf_crm_abc") == "UF_CRM_ABC"
    assert len(b24.write_requests()) == 1


def test_flag_create_answer_lost_is_looked_up(client: Bitrix24WriteClient,
                                              b24: Bitrix24Emulator) -> None:
    b24.faults.add("drop", path_prefix=f"/rest/1/{WEBHOOK_CODE}/crm.contact.userfield.add",
                   after_write=True)
    assert client.ensure_contact_flag("lost", "Lost") == "UF_CRM_LOST"
    assert b24.write_requests() == [("crm.contact.userfield.add", 1)]  # not re-sent


def test_set_and_unset_touch_only_the_flag(client: Bitrix24WriteClient,
                                           b24: Bitrix24Emulator) -> None:
    name = client.ensure_contact_flag("wb", "WB")
    call(b24, "crm.contact.update", {"ID": 5001, "FIELDS": {"UF_CRM_VIP": "Y"}})
    before = {k: b24.contact_field(5001, k) for k in ("NAME", "UF_CRM_SEGMENT", "UF_CRM_VIP",
                                                      "PHONE", "DATE_MODIFY")}
    result = client.set_contact_flag([5000, 5001, 5001], name, True)
    assert (result.rows, result.batches, result.operation) == (2, [2], "add")
    assert [b24.contact_field(c, name) for c in (5000, 5001, 5002)] == ["1", "1", None]
    after = {k: b24.contact_field(5001, k) for k in before}
    assert after["DATE_MODIFY"] > before["DATE_MODIFY"]
    assert {k: v for k, v in after.items() if k != "DATE_MODIFY"} == {
        k: v for k, v in before.items() if k != "DATE_MODIFY"}
    client.set_contact_flag([5001], name, False)
    assert [b24.contact_field(c, name) for c in (5000, 5001)] == ["1", "0"]
    assert b24.contact_field(5001, "UF_CRM_VIP") == "1"


def test_120_contacts_go_in_three_batches(client: Bitrix24WriteClient,
                                          b24: Bitrix24Emulator) -> None:
    ids = [5000 + i for i in range(120)]
    result = client.set_contact_flag(ids, "UF_CRM_VIP", True)
    assert result.batches == [50, 50, 20] and result.calls == 3
    assert b24.write_requests() == [("batch", 50), ("batch", 50), ("batch", 20)]
    assert all(b24.contact_field(c, "UF_CRM_VIP") == "1" for c in ids)
    assert b24.contact_field(5120, "UF_CRM_VIP") is None


def test_unknown_contact_is_named_and_the_others_are_set(client: Bitrix24WriteClient,
                                                         b24: Bitrix24Emulator) -> None:
    with pytest.raises(ApiError) as info:
        client.set_contact_flag([5000, 999999, 5001], "UF_CRM_VIP", True)
    text = str(info.value)
    assert "999999" in text and "Contact is not found" in text and "1 of 3" in text
    assert "(contact ids 999999)" in text
    assert WEBHOOK_CODE not in text and WEBHOOK_CODE not in info.value.body_excerpt
    assert [b24.contact_field(c, "UF_CRM_VIP") for c in (5000, 5001)] == ["1", "1"]


def test_todos_added_and_listed_by_owner(client: Bitrix24WriteClient,
                                         b24: Bitrix24Emulator) -> None:
    out = client.add_todos([todo(5000, "A"), todo(5001, "B"), todo(777, "C"),
                            todo(5002, "D", deadline="someday")])
    assert isinstance(out[0], int) and isinstance(out[1], int)
    assert isinstance(out[2], ApiError) and out[2].error_code == "OWNER_NOT_FOUND"
    assert "to-do #2" in str(out[2]) and "3:777" in str(out[2])
    assert isinstance(out[3], ApiError) and out[3].error_code == "WRONG_DATETIME_FORMAT"
    assert b24.write_requests() == [("batch", 4)]
    rows = client.todos(3, [5000, 5001, 5002])
    assert [(int(r["ID"]), r["SUBJECT"], r["OWNER_ID"], r["RESPONSIBLE_ID"]) for r in rows] == [
        (out[0], "A", "5000", "12"), (out[1], "B", "5001", "12")]
    b24.complete_todo(out[0])
    assert [r["SUBJECT"] for r in client.todos(3, [5000, 5001])] == ["B"]
    assert [r["SUBJECT"] for r in client.todos(3, [5000, 5001], open_only=False)] == ["A", "B"]
    assert client.todos(2, [5000]) == []


def test_deals_added_with_origin_and_found_by_it(client: Bitrix24WriteClient,
                                                 b24: Bitrix24Emulator) -> None:
    categories = client.deal_categories()
    assert categories == [{"id": 0, "name": "Продажи"}, {"id": 1, "name": "Повторные продажи"}]
    repeat = next(c["id"] for c in categories if c["name"] == "Повторные продажи")
    stages = client.deal_stages(repeat)
    assert [s["id"] for s in stages] == ["C1:NEW", "C1:PREPARATION", "C1:WON", "C1:LOSE"]
    assert [s["semantics"] for s in stages] == ["P", "P", "S", "F"]
    assert {u["id"]: u["name"] for u in client.users()}[12] == "Manager12 Test"
    deals = [{"TITLE": f"Повторная продажа {c}", "CATEGORY_ID": repeat, "CONTACT_ID": c,
              "ASSIGNED_BY_ID": 12, "ORIGINATOR_ID": "voronka", "ORIGIN_ID": f"wb:{c}"}
             for c in (5000, 5001)]
    deals.append({**deals[0], "STAGE_ID": "WON", "ORIGIN_ID": "wb:bad"})
    out = client.add_deals(deals)
    assert isinstance(out[0], int) and isinstance(out[1], int)
    assert isinstance(out[2], ApiError) and "wb:bad" in str(out[2])
    found = client.deals_by_origin(["wb:5001", "wb:5000", "wb:none"])
    assert sorted((int(d["ID"]), d["ORIGIN_ID"], d["STAGE_ID"]) for d in found) == [
        (out[0], "wb:5000", "C1:NEW"), (out[1], "wb:5001", "C1:NEW")]
    assert [d["ID"] for d in b24.created_deals()] == out[:2]


def test_query_limit_503_is_retried_for_a_create(client: Bitrix24WriteClient,
                                                 b24: Bitrix24Emulator,
                                                 sleeper: RecordingSleep) -> None:
    b24.faults.add("5xx", count=2, path_prefix=batch_path(b24), status=503)
    out = client.add_todos([todo(5000)])
    assert isinstance(out[0], int)
    assert len(b24.todos()) == 1 and len(sleeper.calls) == 2
    assert [e["status"] for e in b24.request_log if e["path"].startswith(batch_path(b24))] == [
        503, 503, 200]


@pytest.mark.parametrize("kind", ["todos", "deals"])
def test_create_answer_lost_raises_without_duplicate(client: Bitrix24WriteClient,
                                                     b24: Bitrix24Emulator, kind: str) -> None:
    b24.faults.add("drop", path_prefix=batch_path(b24), after_write=True)
    with pytest.raises(ApiError) as info:
        if kind == "todos":
            client.add_todos([todo(5000), todo(5001)])
        else:
            client.add_deals([{"TITLE": "x", "CATEGORY_ID": 1, "CONTACT_ID": 5000,
                               "ORIGIN_ID": "wb:5000"}])
    assert info.value.status is None and WEBHOOK_CODE not in str(info.value)
    assert len(b24.todos() if kind == "todos" else b24.created_deals()) == (
        2 if kind == "todos" else 1)
    assert len([e for e in b24.request_log if e["path"].startswith(batch_path(b24))]) == 1
    # what the caller does next: look up what exists rather than add again
    if kind == "deals":
        assert [d["ORIGIN_ID"] for d in client.deals_by_origin(["wb:5000"])] == ["wb:5000"]


def test_create_not_resent_after_500_or_a_bare_503(client: Bitrix24WriteClient,
                                                   b24: Bitrix24Emulator) -> None:
    b24.faults.add("5xx", path_prefix=batch_path(b24), status=500)
    b24.faults.add("html_5xx", path_prefix=batch_path(b24), status=503)
    for _ in range(2):
        with pytest.raises(ApiError):
            client.add_todos([todo(5000)])
    assert len([e for e in b24.request_log if e["path"].startswith(batch_path(b24))]) == 2


def test_update_is_retried_after_a_drop(client: Bitrix24WriteClient, b24: Bitrix24Emulator,
                                        sleeper: RecordingSleep) -> None:
    b24.faults.add("drop", path_prefix=batch_path(b24), after_write=True)
    result = client.set_contact_flag([5000, 5001], "UF_CRM_VIP", True)
    assert result.batches == [2] and len(sleeper.calls) == 1
    assert b24.write_requests() == [("batch", 2), ("batch", 2)]  # the same update, twice
    assert b24.contact_field(5001, "UF_CRM_VIP") == "1"


def test_oauth_token_renewed_mid_run(b24: Bitrix24Emulator, tmp_path: Path) -> None:
    env = {"BITRIX24_PORTAL_URL": b24.base_url, "BITRIX24_CLIENT_ID": b24.client_id,
           "BITRIX24_CLIENT_SECRET": CLIENT_SECRET, "BITRIX24_REFRESH_TOKEN": INITIAL_REFRESH,
           "BITRIX24_OAUTH_URL": f"{b24.base_url}/oauth/token/",
           "BITRIX24_RATE_LIMIT_PER_S": "50", "VORONKA_STATE_DIR": str(tmp_path)}
    with Bitrix24WriteClient.from_env(env, http_options=options()) as client:
        assert isinstance(client.add_todos([todo(5000)])[0], int)
        b24.expire_access_tokens()
        assert isinstance(client.add_todos([todo(5001)])[0], int)
    assert b24.token_refreshes == 2 and len(b24.todos()) == 2
    assert (tmp_path / "bitrix24_127.0.0.1_token.json").exists()


def test_from_env_names_missing_variables_never_values() -> None:
    with pytest.raises(ValueError, match="BITRIX24_WEBHOOK_URL"):
        Bitrix24WriteClient.from_env({})
    with pytest.raises(ValueError, match="BITRIX24_CLIENT_SECRET") as info:
        Bitrix24WriteClient.from_env({"BITRIX24_PORTAL_URL": "https://p.bitrix24.ru",
                                      "BITRIX24_CLIENT_ID": "local.1"})
    assert "local.1" not in str(info.value)


def test_wrong_webhook_error_hides_the_code(b24: Bitrix24Emulator) -> None:
    source = Bitrix24Source(b24.base_url, account="p", http_options=options(),
                            webhook_url=f"{b24.base_url}/rest/1/{WEBHOOK_CODE}x/",
                            rate_limit_per_s=50)
    with Bitrix24WriteClient(source) as client, pytest.raises(ApiError) as info:
        client.add_todos([todo(5000)])
    assert info.value.status == 401 and WEBHOOK_CODE not in str(info.value)
    assert repr(client) == "Bitrix24WriteClient(account='p')"


def test_batches_run_concurrently_from_threads(b24: Bitrix24Emulator) -> None:
    """Two clients on one portal share its bucket and state without losing writes."""
    env = {"BITRIX24_WEBHOOK_URL": b24.webhook_url, "BITRIX24_RATE_LIMIT_PER_S": "50"}
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            with Bitrix24WriteClient.from_env(env, http_options=options()) as c:
                c.add_todos([todo(5000 + offset + i) for i in range(10)])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n * 10,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(t["ID"] for t in b24.todos()) == list(range(1, 31))
