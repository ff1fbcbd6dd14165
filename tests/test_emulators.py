"""Behaviour of the local API emulators (amoCRM v4, Yandex Direct Reports v5)."""

from __future__ import annotations

import threading
import time
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from emulators import (
    AmoCRMEmulator,
    Bitrix24Emulator,
    FaultPlan,
    YandexDirectEmulator,
    serve_forever,
)

T0 = 1767225600  # 2026-01-01 00:00:00 UTC
PIPELINE_ID = 7310455
TIMEOUT = 5


# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------
def amo_data() -> dict[str, list[dict]]:
    users = [{"id": 8812031 + i, "name": f"Manager {i}", "email": f"m{i}@example.com",
              "lang": "ru", "rights": {}} for i in range(3)]
    statuses = [
        {"id": 61880201, "name": "Incoming", "sort": 10, "is_editable": False,
         "pipeline_id": PIPELINE_ID, "color": "#c1c1c1", "type": 1, "account_id": 31990211},
        {"id": 61880213, "name": "Qualified", "sort": 20, "is_editable": True,
         "pipeline_id": PIPELINE_ID, "color": "#99ccff", "type": 0, "account_id": 31990211},
        {"id": 142, "name": "Won", "sort": 10000, "is_editable": False,
         "pipeline_id": PIPELINE_ID, "color": "#CCFF66", "type": 0, "account_id": 31990211},
        {"id": 143, "name": "Lost", "sort": 11000, "is_editable": False,
         "pipeline_id": PIPELINE_ID, "color": "#D5D8DB", "type": 0, "account_id": 31990211},
    ]
    pipelines = [{"id": PIPELINE_ID, "name": "Sales", "sort": 1, "is_main": True,
                  "is_unsorted_on": True, "is_archive": False, "account_id": 31990211,
                  "_embedded": {"statuses": statuses}}]
    loss_reasons = [{"id": 9001, "name": "Too expensive", "sort": 1, "created_at": T0,
                     "updated_at": T0},
                    {"id": 9002, "name": "No answer", "sort": 2, "created_at": T0,
                     "updated_at": T0}]
    contacts = [{"id": 51022980 + i, "name": f"Client {i}", "first_name": "Client",
                 "last_name": str(i), "responsible_user_id": 8812031, "group_id": 0,
                 "created_by": 8812031, "updated_by": 8812031, "created_at": T0 + i,
                 "updated_at": T0 + 100 + i, "closest_task_at": None, "is_deleted": False,
                 "is_unsorted": False, "account_id": 31990211,
                 "custom_fields_values": [
                     {"field_id": 551201, "field_name": "Phone", "field_code": "PHONE",
                      "field_type": "multitext",
                      "values": [{"value": f"+7 912 000-11-2{i}", "enum_id": 880311,
                                  "enum_code": "MOB"}]}],
                 "_embedded": {"tags": [], "companies": []}} for i in range(5)]
    leads = []
    for i in range(12):
        # updated_at deliberately not in id order
        updated = T0 + 1000 + ((i * 7) % 12) * 60
        leads.append({
            "id": 30412500 + i, "name": f"Deal {i}", "price": 1000 * (i + 1),
            "responsible_user_id": 8812031, "group_id": 0, "status_id": 61880213,
            "pipeline_id": PIPELINE_ID, "loss_reason_id": None, "created_by": 0,
            "updated_by": 0, "created_at": T0 + i, "updated_at": updated, "closed_at": None,
            "closest_task_at": None, "is_deleted": False, "score": None,
            "account_id": 31990211, "labor_cost": None, "custom_fields_values": None,
            "_embedded": {"tags": [], "companies": [],
                          "contacts": [{"id": 51022980 + i % 5, "is_main": True}]},
        })
    events = []
    for i in range(130):
        events.append({
            "id": f"01evt{i:021d}", "type": "lead_status_changed" if i % 13 else "lead_added",
            "entity_id": 30412500 + i % 12, "entity_type": "lead", "created_by": 0,
            # created_at not in list order, to check the sort
            "created_at": T0 + 10_000 + (129 - i) * 10,
            "value_after": [{"lead_status": {"id": 61880213, "pipeline_id": PIPELINE_ID}}],
            "value_before": [{"lead_status": {"id": 61880201, "pipeline_id": PIPELINE_ID}}],
            "account_id": 31990211,
        })
    return {"users": users, "pipelines": pipelines, "loss_reasons": loss_reasons,
            "contacts": contacts, "leads": leads, "events": events, **buyer_funnel_data()}


def buyer_funnel_data() -> dict[str, list[dict]]:
    """Companies, customers (buyer funnel), their statuses and transactions."""
    companies = [{"id": 61000000 + i, "name": f"Company {i}", "responsible_user_id": 8812031,
                  "created_at": T0 + i, "updated_at": T0 + 500 + ((i * 5) % 7) * 10,
                  "is_deleted": False, "custom_fields_values": None, "account_id": 31990211,
                  "_embedded": {"tags": []}} for i in range(7)]
    customers = [{"id": 62000000 + i, "name": f"Buyer {i}", "next_price": 2500,
                  "next_date": T0 + 86400 * 30, "periodicity": 30, "status_id": 7100001,
                  "responsible_user_id": 8812031, "created_at": T0 + i,
                  "updated_at": T0 + 700 + ((i * 5) % 6) * 10, "is_deleted": False,
                  "ltv": 5000, "purchases_count": 2, "average_check": 2500,
                  "custom_fields_values": None, "account_id": 31990211,
                  "_embedded": {"tags": [], "segments": [],
                                "contacts": [{"id": 51022980 + i % 5, "is_main": True}]}}
                 for i in range(6)]
    customer_statuses = [{"id": 7100001 + n, "name": name, "sort": 10 * n, "is_default": n == 0,
                          "color": "#99ccff", "type": n, "account_id": 31990211}
                         for n, name in enumerate(("Regular", "Expected", "Did not buy"))]
    transactions = [{"id": 63000000 + i, "price": 2500 + i, "completed_at": T0 + 3600 * i,
                     "comment": None, "customer_id": 62000000 + i % 3, "created_by": 0,
                     "updated_by": 0, "created_at": T0 + 3600 * i, "updated_at": T0 + 3600 * i,
                     "is_deleted": False, "account_id": 31990211} for i in range(8)]
    return {"companies": companies, "customers": customers,
            "customer_statuses": customer_statuses, "transactions": transactions}


def walk(session: requests.Session, emu: AmoCRMEmulator, path: str, key: str,
         **params) -> tuple[list[dict], list[int]]:
    """Every item of a paged collection by following _links.next; also the page sizes."""
    resp = get(session, emu, path, **params)
    items: list[dict] = []
    sizes: list[int] = []
    while resp.status_code == 200:
        body = resp.json()
        sizes.append(len(body["_embedded"][key]))
        items += body["_embedded"][key]
        if "next" not in body["_links"]:
            break
        resp = session.get(body["_links"]["next"]["href"], timeout=TIMEOUT)
    return items, sizes


@pytest.fixture
def amo():
    with AmoCRMEmulator(amo_data(), rate_limit_per_s=1000) as emulator:
        yield emulator


def oauth(emu: AmoCRMEmulator, refresh_token: str, **overrides) -> requests.Response:
    body = {"client_id": "demo-client", "client_secret": "demo-secret",
            "grant_type": "refresh_token", "refresh_token": refresh_token,
            "redirect_uri": "http://127.0.0.1/callback", **overrides}
    return requests.post(f"{emu.base_url}/oauth2/access_token", json=body, timeout=TIMEOUT)


@pytest.fixture
def amo_session(amo):
    resp = oauth(amo, "demo-refresh-0")
    assert resp.status_code == 200
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {resp.json()['access_token']}"
    yield amo, session
    session.close()


def get(session: requests.Session, emu: AmoCRMEmulator, path: str, **params):
    return session.get(f"{emu.base_url}{path}", params=params, timeout=TIMEOUT)


# --------------------------------------------------------------------------------------------
# amoCRM: OAuth
# --------------------------------------------------------------------------------------------
def test_refresh_token_rotation_and_spent_token(amo):
    first = oauth(amo, "demo-refresh-0")
    assert first.status_code == 200
    body = first.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 86400
    assert abs(body["server_time"] - time.time()) < 5
    assert body["refresh_token"] != "demo-refresh-0"
    assert body["access_token"].count(".") == 2  # JWT-shaped

    reused = oauth(amo, "demo-refresh-0")
    assert reused.status_code == 401
    assert reused.headers["Content-Type"].startswith("application/problem+json")
    problem = reused.json()
    assert problem["hint"] == "Token has been revoked"
    assert problem["type"] == "https://developers.amocrm.ru/v3/errors/OAuthProblemJson"
    assert problem["status"] == 401
    assert problem["title"] == "Unauthorized"

    second = oauth(amo, body["refresh_token"])
    assert second.status_code == 200
    assert second.json()["refresh_token"] not in (body["refresh_token"], "demo-refresh-0")
    assert amo.current_refresh_token == second.json()["refresh_token"]
    # both access tokens remain valid until they expire
    for token in (body["access_token"], second.json()["access_token"]):
        r = requests.get(f"{amo.base_url}/api/v4/account",
                         headers={"Authorization": f"Bearer {token}"}, timeout=TIMEOUT)
        assert r.status_code == 200


def test_oauth_rejects_bad_client_secret_and_unknown_token(amo):
    bad_secret = oauth(amo, "demo-refresh-0", client_secret="nope")
    assert bad_secret.status_code == 401
    assert bad_secret.json()["type"].endswith("OAuthProblemJson")
    # a failed client authentication does not spend the refresh token
    assert oauth(amo, "demo-refresh-0").status_code == 200
    assert oauth(amo, "never-issued").status_code == 401
    assert oauth(amo, "x", grant_type="password").status_code == 400


def test_authorization_code_is_single_use(amo):
    code = amo.issue_authorization_code()
    body = {"code": code, "grant_type": "authorization_code"}
    ok = oauth(amo, "", **body)
    assert ok.status_code == 200
    assert ok.json()["refresh_token"]
    again = oauth(amo, "", **body)
    assert again.status_code == 400
    wrong_redirect = oauth(amo, "", code=amo.issue_authorization_code(),
                           grant_type="authorization_code", redirect_uri="http://evil/")
    assert wrong_redirect.status_code == 400


def test_api_requires_valid_bearer(amo_session):
    amo, session = amo_session
    no_auth = requests.get(f"{amo.base_url}/api/v4/leads", timeout=TIMEOUT)
    assert no_auth.status_code == 401
    assert no_auth.headers["Content-Type"].startswith("application/problem+json")
    assert no_auth.json() == {"title": "Unauthorized", "type": "https://httpstatus.es/401",
                              "status": 401, "detail": no_auth.json()["detail"]}
    unknown = requests.get(f"{amo.base_url}/api/v4/leads", timeout=TIMEOUT,
                           headers={"Authorization": "Bearer forged"})
    assert unknown.status_code == 401

    assert get(session, amo, "/api/v4/leads").status_code == 200
    amo.expire_access_tokens()
    expired = get(session, amo, "/api/v4/leads")
    assert expired.status_code == 401
    assert expired.json()["status"] == 401
    # a refresh gives a working token again
    fresh = oauth(amo, amo.current_refresh_token).json()["access_token"]
    session.headers["Authorization"] = f"Bearer {fresh}"
    assert get(session, amo, "/api/v4/leads").status_code == 200


def test_access_token_ttl():
    with AmoCRMEmulator(amo_data(), access_token_ttl_s=0, rate_limit_per_s=1000) as amo:
        token = oauth(amo, "demo-refresh-0").json()["access_token"]
        r = requests.get(f"{amo.base_url}/api/v4/account", timeout=TIMEOUT,
                         headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401


def test_long_lived_token():
    with AmoCRMEmulator(amo_data(), long_lived_token="ll-token") as amo:
        r = requests.get(f"{amo.base_url}/api/v4/account", timeout=TIMEOUT,
                         headers={"Authorization": "Bearer ll-token"})
        assert r.status_code == 200


# --------------------------------------------------------------------------------------------
# amoCRM: lists, paging, filters
# --------------------------------------------------------------------------------------------
def test_leads_paging_follows_next_and_204_past_end(amo_session):
    amo, session = amo_session
    url = f"{amo.base_url}/api/v4/leads?limit=5&with=contacts"
    pages, ids = [], []
    while url:
        r = session.get(url, timeout=TIMEOUT)
        assert r.status_code == 200
        assert r.headers["Content-Type"].startswith("application/hal+json")
        body = r.json()
        pages.append(body["_page"])
        ids.extend(lead["id"] for lead in body["_embedded"]["leads"])
        links = body["_links"]
        assert links["self"]["href"].startswith(amo.base_url)
        assert parse_qs(urlsplit(links["self"]["href"]).query)["page"] == [str(body["_page"])]
        assert ("prev" in links) == (body["_page"] > 1)
        url = links.get("next", {}).get("href")
        if url:
            query = parse_qs(urlsplit(url).query)
            assert query["limit"] == ["5"]
            assert query["with"] == ["contacts"]
            assert query["page"] == [str(body["_page"] + 1)]
    assert pages == [1, 2, 3]
    assert ids == sorted(lead["id"] for lead in amo.data["leads"])  # default order id asc

    past_end = get(session, amo, "/api/v4/leads", limit=5, page=4)
    assert past_end.status_code == 204
    assert past_end.content == b""


def test_lead_shape_and_with_contacts(amo_session):
    amo, session = amo_session
    without = get(session, amo, "/api/v4/leads", limit=1).json()["_embedded"]["leads"][0]
    assert "contacts" not in without["_embedded"]
    assert without["_embedded"]["tags"] == []
    assert without["_links"]["self"]["href"] == f"{amo.base_url}/api/v4/leads/{without['id']}"
    with_c = get(session, amo, "/api/v4/leads", limit=1, **{"with": "contacts"}).json()
    contact = with_c["_embedded"]["leads"][0]["_embedded"]["contacts"][0]
    assert contact["id"] == 51022980
    assert contact["_links"]["self"]["href"].endswith("/api/v4/contacts/51022980")
    # the stored data itself is untouched by rendering
    assert "_links" not in amo.data["leads"][0]


def test_limit_validation(amo_session):
    amo, session = amo_session
    too_big = get(session, amo, "/api/v4/leads", limit=251)
    assert too_big.status_code == 400
    assert too_big.headers["Content-Type"].startswith("application/problem+json")
    body = too_big.json()
    assert body["status"] == 400
    assert body["validation-errors"][0]["errors"][0]["path"] == "limit"
    assert get(session, amo, "/api/v4/leads", limit=250).status_code == 200
    assert get(session, amo, "/api/v4/contacts", limit=251).status_code == 400
    assert get(session, amo, "/api/v4/leads", limit="abc").status_code == 400


def test_updated_at_filter_and_order(amo_session):
    amo, session = amo_session
    lo, hi = T0 + 1000 + 3 * 60, T0 + 1000 + 8 * 60
    r = get(session, amo, "/api/v4/leads", limit=250, **{
        "filter[updated_at][from]": lo, "filter[updated_at][to]": hi,
        "order[updated_at]": "asc"})
    leads = r.json()["_embedded"]["leads"]
    got = [lead["updated_at"] for lead in leads]
    expected = sorted(lead["updated_at"] for lead in amo.data["leads"]
                      if lo <= lead["updated_at"] <= hi)
    assert got == expected
    assert got[0] == lo and got[-1] == hi  # bounds inclusive
    assert len(got) == 6

    desc = get(session, amo, "/api/v4/leads", limit=250, **{"order[updated_at]": "desc"})
    got_desc = [lead["updated_at"] for lead in desc.json()["_embedded"]["leads"]]
    assert got_desc == sorted(got_desc, reverse=True)
    assert len(got_desc) == 12

    none = get(session, amo, "/api/v4/leads", **{"filter[updated_at][from]": T0 + 10**6})
    assert none.status_code == 204


def test_update_lead_bumps_updated_at_and_adds_event(amo_session):
    amo, session = amo_session
    watermark = max(lead["updated_at"] for lead in amo.data["leads"])
    assert get(session, amo, "/api/v4/leads",
               **{"filter[updated_at][from]": watermark + 1}).status_code == 204
    updated = amo.update_lead(30412503, status_id=142, price=99000)
    assert updated["updated_at"] > watermark
    r = get(session, amo, "/api/v4/leads", **{"filter[updated_at][from]": watermark + 1})
    assert r.status_code == 200
    leads = r.json()["_embedded"]["leads"]
    assert [(lead["id"], lead["status_id"], lead["price"]) for lead in leads] == [
        (30412503, 142, 99000)]
    events = get(session, amo, "/api/v4/events", limit=100, **{
        "filter[type]": "lead_status_changed",
        "filter[created_at][from]": updated["updated_at"]}).json()["_embedded"]["events"]
    new = [e for e in events if e["entity_id"] == 30412503]
    assert new[-1]["value_after"] == [{"lead_status": {"id": 142, "pipeline_id": PIPELINE_ID}}]
    assert new[-1]["value_before"] == [
        {"lead_status": {"id": 61880213, "pipeline_id": PIPELINE_ID}}]
    with pytest.raises(KeyError):
        amo.update_lead(1, name="missing")


def test_events_limit_paging_filters(amo_session):
    amo, session = amo_session
    assert get(session, amo, "/api/v4/events", limit=101).status_code == 400
    first = get(session, amo, "/api/v4/events", limit=100, **{"filter[entity]": "lead"})
    assert first.status_code == 200
    body = first.json()
    events = body["_embedded"]["events"]
    assert len(events) == 100
    assert "next" in body["_links"]
    second = session.get(body["_links"]["next"]["href"], timeout=TIMEOUT).json()
    events += second["_embedded"]["events"]
    assert len(events) == 130
    assert "next" not in second["_links"]
    keys = [(e["created_at"], e["id"]) for e in events]
    assert keys == sorted(keys)
    assert events[0]["_links"]["self"]["href"] == f"{amo.base_url}/api/v4/events/{events[0]['id']}"

    typed = get(session, amo, "/api/v4/events", limit=100, **{
        "filter[type]": "lead_added"}).json()["_embedded"]["events"]
    assert {e["type"] for e in typed} == {"lead_added"}
    assert len(typed) == 10
    both = get(session, amo, "/api/v4/events", limit=100, page=2, **{
        "filter[type]": "lead_added,lead_status_changed"}).json()["_embedded"]["events"]
    assert len(both) == 30

    lo, hi = T0 + 10_000, T0 + 10_000 + 90
    windowed = get(session, amo, "/api/v4/events", **{
        "filter[created_at][from]": lo, "filter[created_at][to]": hi}).json()
    assert [e["created_at"] for e in windowed["_embedded"]["events"]] == list(range(lo, hi + 1, 10))
    assert get(session, amo, "/api/v4/events", **{"filter[entity]": "contact"}).status_code == 204


def test_pipelines_loss_reasons_users_account_contacts(amo_session):
    amo, session = amo_session
    pipelines = get(session, amo, "/api/v4/leads/pipelines").json()
    assert pipelines["_total_items"] == 1
    assert pipelines["_links"]["self"]["href"] == f"{amo.base_url}/api/v4/leads/pipelines"
    statuses = pipelines["_embedded"]["pipelines"][0]["_embedded"]["statuses"]
    assert {s["id"] for s in statuses} >= {142, 143}
    assert "_page" not in pipelines

    reasons = get(session, amo, "/api/v4/leads/loss_reasons").json()
    assert [x["name"] for x in reasons["_embedded"]["loss_reasons"]] == ["Too expensive",
                                                                          "No answer"]
    assert reasons["_total_items"] == 2

    users = get(session, amo, "/api/v4/users", limit=2).json()
    assert users["_page"] == 1
    assert len(users["_embedded"]["users"]) == 2
    assert "next" in users["_links"]

    account = get(session, amo, "/api/v4/account").json()
    assert account["id"] == 31990211
    assert account["subdomain"] == "voronka-demo"
    assert (account["currency"], account["currency_symbol"], account["country"],
            account["timezone"]) == ("RUB", "₽", "RU", "Europe/Moscow")

    contacts = get(session, amo, "/api/v4/contacts", **{"with": "leads"}).json()
    c0 = contacts["_embedded"]["contacts"][0]
    assert sorted(x["id"] for x in c0["_embedded"]["leads"]) == [30412500, 30412505, 30412510]
    plain = get(session, amo, "/api/v4/contacts").json()["_embedded"]["contacts"][0]
    assert "leads" not in plain["_embedded"]


def test_unknown_path_404(amo_session):
    amo, session = amo_session
    r = get(session, amo, "/api/v4/nothing")
    assert r.status_code == 404
    assert r.headers["Content-Type"].startswith("application/problem+json")
    assert r.json()["status"] == 404
    assert requests.get(f"{amo.base_url}/elsewhere", timeout=TIMEOUT).status_code == 404


def test_request_log(amo_session):
    amo, session = amo_session
    get(session, amo, "/api/v4/leads", limit=3, page=2)
    entry = amo.request_log[-1]
    assert entry["method"] == "GET"
    assert entry["path"] == "/api/v4/leads"
    assert entry["query"] == {"limit": "3", "page": "2"}
    assert entry["status"] == 200
    assert abs(entry["t"] - time.time()) < 5
    assert amo.request_log[0]["path"] == "/oauth2/access_token"


# --------------------------------------------------------------------------------------------
# amoCRM: companies, buyer funnel, deleted leads
# --------------------------------------------------------------------------------------------
def test_companies_and_customers_page_filter_and_sort(amo_session):
    amo, session = amo_session
    for entity in ("companies", "customers"):
        stored = amo.data[entity]
        items, sizes = walk(session, amo, f"/api/v4/{entity}", entity, limit=3)
        assert sizes == [3, 3] + ([1] if len(stored) == 7 else [])
        assert [i["id"] for i in items] == sorted(i["id"] for i in stored)
        assert items[0]["_links"]["self"]["href"] == (
            f"{amo.base_url}/api/v4/{entity}/{items[0]['id']}")
        lo = sorted(i["updated_at"] for i in stored)[2]
        asc, _ = walk(session, amo, f"/api/v4/{entity}", entity, limit=2,
                      **{"filter[updated_at][from]": lo, "order[updated_at]": "asc"})
        assert [i["updated_at"] for i in asc] == sorted(
            i["updated_at"] for i in stored if i["updated_at"] >= lo)
        past = get(session, amo, f"/api/v4/{entity}",
                   **{"filter[updated_at][from]": T0 + 10**6})
        assert (past.status_code, past.content) == (204, b"")
        assert get(session, amo, f"/api/v4/{entity}", limit=251).status_code == 400
        changed = amo.update_item(entity, stored[0]["id"], name="Renamed")
        newest = get(session, amo, f"/api/v4/{entity}", **{
            "filter[updated_at][from]": changed["updated_at"]}).json()["_embedded"][entity]
        assert [(i["id"], i["name"]) for i in newest] == [(stored[0]["id"], "Renamed")]


def test_customers_embed_contacts_only_with_contacts(amo_session):
    amo, session = amo_session
    plain = get(session, amo, "/api/v4/customers", limit=1).json()["_embedded"]["customers"][0]
    assert "contacts" not in plain["_embedded"]
    assert (plain["next_price"], plain["next_date"], plain["periodicity"]) == (
        2500, T0 + 86400 * 30, 30)
    with_c = get(session, amo, "/api/v4/customers", limit=1,
                 **{"with": "contacts"}).json()["_embedded"]["customers"][0]
    contact = with_c["_embedded"]["contacts"][0]
    assert (contact["id"], contact["is_main"]) == (51022980, True)
    assert contact["_links"]["self"]["href"] == f"{amo.base_url}/api/v4/contacts/51022980"
    single = get(session, amo, "/api/v4/customers/62000001").json()
    assert single["id"] == 62000001 and "contacts" not in single["_embedded"]
    assert "_links" not in amo.data["customers"][0]


def test_customer_statuses_and_the_disabled_customers_mode(amo_session):
    amo, session = amo_session
    statuses = get(session, amo, "/api/v4/customers/statuses").json()
    assert statuses["_total_items"] == 3 and "_page" not in statuses
    assert [s["type"] for s in statuses["_embedded"]["statuses"]] == [0, 1, 2]
    assert get(session, amo, "/api/v4/account").json()["customers_mode"] == "periodicity"
    with AmoCRMEmulator(amo_data(), long_lived_token="ll", customers_mode="disabled") as off:
        r = requests.get(f"{off.base_url}/api/v4/customers/statuses", timeout=TIMEOUT,
                         headers={"Authorization": "Bearer ll"})
        assert r.status_code == 422
        assert r.headers["Content-Type"].startswith("application/problem+json")
        assert (r.json()["status"], r.json()["title"]) == (422, "Unprocessable Entity")
    with pytest.raises(ValueError, match="customers_mode"):
        AmoCRMEmulator(customers_mode="off")


def test_transactions_all_and_per_customer(amo_session):
    amo, session = amo_session
    items, sizes = walk(session, amo, "/api/v4/customers/transactions", "transactions", limit=3)
    assert sizes == [3, 3, 2]
    assert [t["id"] for t in items] == [63000000 + i for i in range(8)]
    first = items[0]
    assert first["_links"]["self"]["href"] == (
        f"{amo.base_url}/api/v4/customers/transactions/63000000")
    assert first["_embedded"]["customer"]["id"] == first["customer_id"] == 62000000
    own, _ = walk(session, amo, "/api/v4/customers/62000001/transactions", "transactions")
    assert [t["id"] for t in own] == [63000001, 63000004, 63000007]
    assert get(session, amo, "/api/v4/customers/62000005/transactions").status_code == 204
    assert get(session, amo, "/api/v4/customers/segments").status_code == 404
    assert get(session, amo, "/api/v4/customers/transactions", limit=251).status_code == 400


def test_deleted_leads_only_under_only_deleted(amo_session):
    amo, session = amo_session
    assert get(session, amo, "/api/v4/leads", **{"with": "only_deleted"}).status_code == 204
    before = max(lead["updated_at"] for lead in amo.data["leads"] if lead["id"] == 30412502)
    for lead_id in (30412502, 30412507, 30412509):
        amo.delete_lead(lead_id)
    live, _ = walk(session, amo, "/api/v4/leads", "leads", limit=5, **{"with": "contacts"})
    assert len(live) == 9 and {30412502, 30412507, 30412509}.isdisjoint(x["id"] for x in live)
    deleted, sizes = walk(session, amo, "/api/v4/leads", "leads", limit=2,
                          **{"with": "only_deleted"})
    assert sizes == [2, 1]
    assert [d["id"] for d in deleted] == [30412502, 30412507, 30412509]
    assert set(deleted[0]) == {"id", "updated_at", "is_deleted", "_links"}
    assert deleted[0]["is_deleted"] is True and deleted[0]["updated_at"] > before
    assert get(session, amo, "/api/v4/leads/30412502").status_code == 204
    contact = get(session, amo, "/api/v4/contacts/51022982", **{"with": "leads"}).json()
    assert contact["_embedded"]["leads"] == []  # its two leads are in the bin
    events = get(session, amo, "/api/v4/events", **{"filter[type]": "lead_deleted"}).json()
    assert sorted(e["entity_id"] for e in events["_embedded"]["events"]) == [
        30412502, 30412507, 30412509]


def test_buyer_funnel_collections_are_204_when_empty():
    data = {**amo_data(), "companies": [], "customers": [], "transactions": [],
            "customer_statuses": []}
    with AmoCRMEmulator(data, long_lived_token="ll") as amo, requests.Session() as s:
        s.headers["Authorization"] = "Bearer ll"
        for path in ("companies", "customers", "customers/transactions",
                     "customers/statuses", "customers/62000000/transactions"):
            r = s.get(f"{amo.base_url}/api/v4/{path}", timeout=TIMEOUT)
            assert (r.status_code, r.content) == (204, b""), path


# --------------------------------------------------------------------------------------------
# amoCRM: rate limit and faults
# --------------------------------------------------------------------------------------------
def test_rate_limit_7_per_second():
    with AmoCRMEmulator(amo_data()) as amo:
        token = oauth(amo, "demo-refresh-0").json()["access_token"]  # counts too
        with requests.Session() as s:
            s.headers["Authorization"] = f"Bearer {token}"
            statuses = [s.get(f"{amo.base_url}/api/v4/account", timeout=TIMEOUT)
                        for _ in range(9)]
            codes = [r.status_code for r in statuses]
            assert codes[:6] == [200] * 6
            assert 429 in codes[6:]
            limited = next(r for r in statuses if r.status_code == 429)
            assert limited.headers["Content-Type"].startswith("application/problem+json")
            body = limited.json()
            assert body["title"] == "Too Many Requests"
            assert body["type"] == "https://httpstatus.es/429"
            assert body["retry_after"] == 1
            assert "Retry-After" not in limited.headers
            time.sleep(1.1)
            assert s.get(f"{amo.base_url}/api/v4/account", timeout=TIMEOUT).status_code == 200


def test_fault_429_and_5xx(amo_session):
    amo, session = amo_session
    amo.faults.add("429", retry_after=2)
    amo.faults.add("5xx", status=500)
    amo.faults.add("5xx", count=2, status=502)
    r = get(session, amo, "/api/v4/leads")
    assert r.status_code == 429
    assert r.headers["Retry-After"] == "2"
    assert r.json()["retry_after"] == 2
    r = get(session, amo, "/api/v4/leads")
    assert r.status_code == 500
    assert r.json()["title"] == "ErrInternalServer"
    assert r.json()["trace_id"]
    codes = [get(session, amo, "/api/v4/leads").status_code for _ in range(3)]
    assert codes == [502, 502, 200]
    assert amo.faults.pending() == 0
    assert [e["fault"] for e in amo.request_log[-5:]] == ["429", "5xx", "5xx", "5xx", None]


def test_fault_path_prefix_expired_token_slow_drop(amo_session):
    amo, session = amo_session
    amo.faults.add("expired_token", path_prefix="/api/v4/events")
    assert get(session, amo, "/api/v4/leads").status_code == 200  # not matched
    r = get(session, amo, "/api/v4/events")
    assert r.status_code == 401
    assert r.json()["title"] == "Unauthorized"
    assert get(session, amo, "/api/v4/events").status_code == 200

    amo.faults.add("slow", seconds=0.4)
    t = time.monotonic()
    assert get(session, amo, "/api/v4/account").status_code == 200
    assert time.monotonic() - t >= 0.4
    amo.faults.add("slow", seconds=0.6)
    with pytest.raises(requests.Timeout):
        session.get(f"{amo.base_url}/api/v4/account", timeout=0.2)
    # the retry is answered while the slow one is still in flight; the log keeps arrival order
    assert get(session, amo, "/api/v4/account").status_code == 200
    assert [(e["fault"], e["status"]) for e in amo.request_log[-2:]] == [("slow", None),
                                                                        (None, 200)]
    time.sleep(0.8)
    assert amo.request_log[-2]["status"] == 200  # completed after the client gave up

    amo.faults.add("drop")
    with pytest.raises(requests.ConnectionError):
        get(session, amo, "/api/v4/account")
    assert amo.request_log[-1]["status"] is None
    assert get(session, amo, "/api/v4/account").status_code == 200


def test_fault_on_oauth_endpoint(amo):
    amo.faults.add("5xx", path_prefix="/oauth2", status=503)
    assert oauth(amo, "demo-refresh-0").status_code == 503
    # the refresh token was not spent by the failed call
    assert oauth(amo, "demo-refresh-0").status_code == 200


def test_fault_plan_validation():
    plan = FaultPlan()
    with pytest.raises(ValueError):
        plan.add("teapot")
    with pytest.raises(ValueError):
        plan.add("5xx", status=404)
    plan.add("drop", count=3, path_prefix="/x")
    assert plan.take("/y") is None
    assert plan.take("/x/1").kind == "drop"
    assert plan.pending() == 2
    plan.clear()
    assert plan.pending() == 0


# --------------------------------------------------------------------------------------------
# Yandex Direct Reports
# --------------------------------------------------------------------------------------------
DIRECT_ROWS = [
    {"date": "2025-12-31", "campaign_id": 70012346, "campaign_name": "Retarget_RSYA",
     "impressions": 20411, "clicks": 153, "cost": Decimal("2890.00")},
    {"date": "2025-12-31", "campaign_id": 70012345, "campaign_name": "Brand_Search",
     "impressions": 1520, "clicks": 96, "cost": Decimal("4312.505")},
    {"date": "2026-01-01", "campaign_id": 70012345, "campaign_name": "Brand_Search",
     "impressions": 1000, "clicks": 50, "cost": Decimal("1000.00")},
    {"date": "2026-01-03", "campaign_id": 70012346, "campaign_name": "Retarget_RSYA",
     "impressions": 500, "clicks": 5, "cost": Decimal("12.34")},
]
FIELDS = ["Date", "CampaignId", "CampaignName", "Impressions", "Clicks", "Cost"]


def report_body(name: str = "r1", *, date_from="2025-12-31", date_to="2026-01-03",
                fields=None, vat="NO", **extra) -> dict:
    params = {"SelectionCriteria": {"DateFrom": date_from, "DateTo": date_to},
              "FieldNames": fields or FIELDS, "ReportName": name,
              "ReportType": "CAMPAIGN_PERFORMANCE_REPORT", "DateRangeType": "CUSTOM_DATE",
              "Format": "TSV", "IncludeVAT": vat, **extra}
    return {"params": params}


def post_report(emu: YandexDirectEmulator, body: dict, *, token="demo-direct-token",
                **headers) -> requests.Response:
    hdrs = {"Authorization": f"Bearer {token}", "Client-Login": "voronka-demo",
            "Accept-Language": "en", **headers}
    return requests.post(f"{emu.base_url}/json/v5/reports", json=body, headers=hdrs,
                         timeout=TIMEOUT)


def tsv_rows(text: str) -> list[list[str]]:
    return [line.split("\t") for line in text.splitlines()]


@pytest.fixture
def direct():
    with YandexDirectEmulator(DIRECT_ROWS, offline_polls=0) as emulator:
        yield emulator


def test_direct_offline_flow_201_202_200():
    with YandexDirectEmulator(DIRECT_ROWS, offline_polls=2, retry_in_s=3) as emu:
        body = report_body("offline-1")
        first = post_report(emu, body, processingMode="auto")
        assert first.status_code == 201
        assert first.headers["retryIn"] == "3"
        assert int(first.headers["reportsInQueue"]) >= 1
        assert first.headers["RequestId"]
        assert first.content == b""
        second = post_report(emu, body, processingMode="auto")
        assert second.status_code == 202
        assert second.headers["retryIn"] == "3"
        third = post_report(emu, body, processingMode="auto")
        assert third.status_code == 200
        assert third.headers["RequestId"]
        assert "retryIn" not in third.headers
        assert third.headers["Content-Type"].startswith("text/tab-separated-values")
        assert tsv_rows(third.text)[1] == FIELDS
        # a built report keeps being served
        assert post_report(emu, body).status_code == 200
        # processingMode=online answers at once
        assert post_report(emu, report_body("online-1"),
                           processingMode="online").status_code == 200


def test_direct_tsv_layout_and_micros(direct):
    r = post_report(direct, report_body("layout"))
    assert r.status_code == 200
    rows = tsv_rows(r.text)
    assert rows[0] == ["layout (2025-12-31 - 2026-01-03)"]
    assert rows[1] == FIELDS
    assert rows[2:-1] == [
        ["2025-12-31", "70012345", "Brand_Search", "1520", "96", "4312510000"],
        ["2025-12-31", "70012346", "Retarget_RSYA", "20411", "153", "2890000000"],
        ["2026-01-01", "70012345", "Brand_Search", "1000", "50", "1000000000"],
        ["2026-01-03", "70012346", "Retarget_RSYA", "500", "5", "12340000"],
    ]
    assert rows[-1] == ["Total rows: 4"]
    assert r.text.endswith("\n")


def test_direct_decimals_vat_and_skip_headers(direct):
    r = post_report(direct, report_body("dec", vat="YES"), returnMoneyInMicros="false",
                    skipReportHeader="true", skipColumnHeader="true", skipReportSummary="true")
    assert r.status_code == 200
    rows = tsv_rows(r.text)
    assert len(rows) == 4
    cost = {(row[0], row[1]): row[5] for row in rows}
    assert cost[("2025-12-31", "70012345")] == "5175.01"  # 4312.505 * 1.20, rounded half-up
    assert cost[("2025-12-31", "70012346")] == "3468.00"  # VAT 20 % in 2025
    assert cost[("2026-01-01", "70012345")] == "1220.00"  # VAT 22 % from 2026-01-01
    assert cost[("2026-01-03", "70012346")] == "15.05"    # 12.34 * 1.22 = 15.0548

    only_header = post_report(direct, report_body("hdr"), skipReportHeader="true")
    assert tsv_rows(only_header.text)[0] == FIELDS
    assert tsv_rows(only_header.text)[-1] == ["Total rows: 4"]


def test_direct_filters_fields_and_empty_dates(direct):
    flt = {"DateFrom": "2026-01-01", "DateTo": "2026-01-03",
           "Filter": [{"Field": "CampaignId", "Operator": "IN", "Values": ["70012346"]}]}
    body = report_body("filtered", fields=["Date", "CampaignId", "Clicks"])
    body["params"]["SelectionCriteria"] = flt
    rows = tsv_rows(post_report(direct, body, skipReportHeader="true").text)
    assert rows == [["Date", "CampaignId", "Clicks"], ["2026-01-03", "70012346", "5"],
                    ["Total rows: 1"]]
    empty = post_report(direct, report_body("empty", date_from="2026-02-01",
                                            date_to="2026-02-28"), skipReportHeader="true")
    assert empty.status_code == 200
    assert tsv_rows(empty.text) == [FIELDS, ["Total rows: 0"]]
    # without Date, rows are aggregated per campaign over the period
    agg = post_report(direct, report_body("agg", fields=["CampaignId", "Impressions"]),
                      skipReportHeader="true", skipColumnHeader="true",
                      skipReportSummary="true")
    assert tsv_rows(agg.text) == [["70012345", "2520"], ["70012346", "20911"]]


def test_direct_validation_errors(direct):
    bad_field = post_report(direct, report_body("bad", fields=["Date", "Conversions"]))
    assert bad_field.status_code == 400
    err = bad_field.json()["error"]
    assert err["error_code"] == 4000
    assert err["error_string"] == "Invalid request parameters"
    assert "Conversions" in err["error_detail"]
    assert err["request_id"] == bad_field.headers["RequestId"]

    missing = report_body("missing")
    del missing["params"]["IncludeVAT"]
    r = post_report(direct, missing)
    assert r.status_code == 400
    assert "IncludeVAT" in r.json()["error"]["error_detail"]

    assert post_report(direct, report_body("d", date_from="2026-02-01",
                                           date_to="2026-01-01")).status_code == 400
    assert post_report(direct, {"nope": 1}).status_code == 400

    ru = post_report(direct, report_body("ru", fields=["Bogus"]), **{"Accept-Language": "ru"})
    assert ru.json()["error"]["error_string"] == "Неверные параметры запроса"

    assert post_report(direct, report_body("same")).status_code == 200
    clash = post_report(direct, report_body("same", vat="YES"))
    assert clash.status_code == 400
    assert clash.json()["error"]["error_code"] == 4000
    assert "same" in clash.json()["error"]["error_detail"]


def test_direct_auth(direct):
    r = post_report(direct, report_body("auth"), token="wrong")
    assert r.status_code == 403
    assert r.json()["error"]["error_code"] == 53
    no_auth = requests.post(f"{direct.base_url}/json/v5/reports", json=report_body("a2"),
                            timeout=TIMEOUT)
    assert no_auth.status_code == 403
    other = post_report(direct, report_body("a3"), **{"Client-Login": "someone-else"})
    assert other.status_code == 403
    assert other.json()["error"]["error_code"] == 54


def test_direct_rate_limit_20_per_10s(direct):
    codes = [post_report(direct, report_body("rl")).status_code for _ in range(21)]
    assert codes[:20] == [200] * 20
    assert codes[20] == 429
    r = post_report(direct, report_body("rl"))
    assert r.status_code == 429
    assert r.json()["error"]["error_code"] == 56
    # another token has its own budget (but is not authorised)
    assert post_report(direct, report_body("rl"), token="other").status_code == 403


def test_direct_faults(direct):
    direct.faults.add("5xx", status=500)
    direct.faults.add("5xx", status=502)
    direct.faults.add("429")
    direct.faults.add("expired_token")
    direct.faults.add("drop")
    direct.faults.add("slow", seconds=0.3)
    body = report_body("faulty")
    r = post_report(direct, body)
    assert (r.status_code, r.json()["error"]["error_code"]) == (500, 1000)
    r = post_report(direct, body)
    assert r.status_code == 502
    assert r.json()["error"]["error_code"] == 1002
    r = post_report(direct, body)
    assert (r.status_code, r.json()["error"]["error_code"]) == (429, 56)
    r = post_report(direct, body)
    assert (r.status_code, r.json()["error"]["error_code"]) == (403, 53)
    with pytest.raises(requests.ConnectionError):
        post_report(direct, body)
    t = time.monotonic()
    assert post_report(direct, body).status_code == 200
    assert time.monotonic() - t >= 0.3
    assert [e["fault"] for e in direct.request_log] == [
        "5xx", "5xx", "429", "expired_token", "drop", "slow"]


def test_fixed_port_and_restart():
    probe = YandexDirectEmulator(DIRECT_ROWS).start()
    port = probe.port
    probe.stop()
    with YandexDirectEmulator(DIRECT_ROWS, port=port, offline_polls=0) as emu:
        assert emu.base_url == f"http://127.0.0.1:{port}"
        assert post_report(emu, report_body("p")).status_code == 200


def test_serve_forever_and_stop_closes_keepalive():
    amo = AmoCRMEmulator(amo_data(), long_lived_token="ll")
    direct = YandexDirectEmulator(DIRECT_ROWS)
    stop = threading.Event()
    runner = threading.Thread(target=serve_forever, args=(amo, direct),
                              kwargs={"stop_event": stop})
    runner.start()
    try:
        deadline = time.monotonic() + 5
        while not (amo.running and direct.running and amo.base_url and direct.base_url):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with requests.Session() as s:
            r = s.get(f"{amo.base_url}/api/v4/account", timeout=TIMEOUT,
                      headers={"Authorization": "Bearer ll"})
            assert r.status_code == 200
            stop.set()
            runner.join(timeout=5)
            assert not runner.is_alive()
            assert not amo.running and not direct.running
            # the kept-alive connection is closed too: nothing is served after stop()
            with pytest.raises(requests.ConnectionError):
                s.get(f"{amo.base_url}/api/v4/account", timeout=TIMEOUT,
                      headers={"Authorization": "Bearer ll"})
    finally:
        stop.set()
        runner.join(timeout=5)


@pytest.mark.parametrize("emulator", [AmoCRMEmulator, Bitrix24Emulator])
def test_records_are_copied_unless_the_caller_hands_them_over(emulator):
    """An emulator edits its records (edits between pages, created leads), so it copies what
    it is given; the demo hands its generated business over instead (a second copy was a
    third of the emulators' memory at scale 10)."""
    leads = [{"id": 1, "name": "lead"}]
    copied = emulator({"leads": leads})
    handed_over = emulator({"leads": leads}, copy_data=False)
    assert copied.data["leads"] == leads and copied.data["leads"][0] is not leads[0]
    assert handed_over.data["leads"][0] is leads[0]
