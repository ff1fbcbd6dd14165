"""AmoCRMSource against the real amoCRM emulator on loopback, landing into DuckDB."""

from __future__ import annotations

import itertools
import json
import logging
import math
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulators import AmoCRMEmulator
from extractors.amocrm import AmoCRMSource
from extractors.http import ApiError, AuthorizationError, HttpOptions
from extractors.state import TokenSet, TokenStore
from extractors.sync import sync_entity
from warehouse.duckdb_backend import DuckDBWarehouse

BASE_TS = 1767225600  # 2026-01-01T00:00:00Z
N_LEADS = 230
N_CONTACTS = 120
N_EVENTS = 130
N_COMPANIES = 60
N_CUSTOMERS = 70
N_TRANSACTIONS = 120
N_DELETED = 55
ACCOUNT_ID = 31990211
CLIENT_SECRET = "demo-secret-Zq81x"
INITIAL_REFRESH = "demo-refresh-0-Kp20a"
PIPELINE_ID = 7310455


def amo_data() -> dict[str, list[dict]]:
    users = [{"id": 8812000 + i, "name": f"Manager {i}", "email": f"m{i}@example.com",
              "lang": "ru", "rights": {}} for i in range(3)]
    statuses = [
        {"id": 61880209, "name": "Incoming leads", "sort": 10, "is_editable": False,
         "pipeline_id": PIPELINE_ID, "color": "#c1c1c1", "type": 1, "account_id": 31990211},
        {"id": 61880213, "name": "First contact", "sort": 20, "is_editable": True,
         "pipeline_id": PIPELINE_ID, "color": "#99ccff", "type": 0, "account_id": 31990211},
        {"id": 142, "name": "Closed - won", "sort": 10000, "is_editable": False,
         "pipeline_id": PIPELINE_ID, "color": "#CCFF66", "type": 0, "account_id": 31990211},
        {"id": 143, "name": "Closed - lost", "sort": 11000, "is_editable": False,
         "pipeline_id": PIPELINE_ID, "color": "#D5D8DB", "type": 0, "account_id": 31990211},
    ]
    pipelines = [{"id": PIPELINE_ID, "name": "Sales", "sort": 1, "is_main": True,
                  "is_unsorted_on": True, "is_archive": False, "account_id": 31990211,
                  "_embedded": {"statuses": statuses}}]
    loss_reasons = [{"id": 9001 + i, "name": name, "sort": i, "created_at": BASE_TS,
                     "updated_at": BASE_TS + i} for i, name in enumerate(["Price", "No answer"])]
    contacts = [
        {"id": 51000000 + i, "name": f"Client {i}", "first_name": "Client", "last_name": str(i),
         "responsible_user_id": 8812000, "group_id": 0, "created_by": 8812000, "updated_by": 0,
         "created_at": BASE_TS + 30 * i, "updated_at": BASE_TS + 30 * i + 5,
         "closest_task_at": None, "is_deleted": False, "is_unsorted": False,
         "account_id": 31990211,
         "custom_fields_values": [{"field_id": 551201, "field_name": "Phone",
                                   "field_code": "PHONE", "field_type": "multitext",
                                   "values": [{"value": f"+7 912 000-{i:04d}", "enum_id": 880311,
                                               "enum_code": "MOB"}]}]}
        for i in range(N_CONTACTS)
    ]
    leads = [
        {"id": 30000000 + i, "name": f"Order #{i}", "price": 1000 * (i % 17),
         "responsible_user_id": 8812000 + i % 3, "group_id": 0,
         "status_id": (142, 143, 61880213)[i % 3], "pipeline_id": PIPELINE_ID,
         "loss_reason_id": 9001 if i % 3 == 1 else None, "created_by": 0, "updated_by": 0,
         "created_at": BASE_TS + 60 * i, "updated_at": BASE_TS + 60 * i + 30,
         "closed_at": None, "closest_task_at": None, "is_deleted": False, "score": None,
         "account_id": 31990211, "labor_cost": None, "custom_fields_values": None,
         "_embedded": {"tags": [], "companies": [],
                       "contacts": [{"id": 51000000 + i % N_CONTACTS, "is_main": True}]}}
        for i in range(N_LEADS)
    ]
    events = [
        {"id": f"01jh{i:022d}", "type": "lead_status_changed", "entity_id": 30000000 + i,
         "entity_type": "lead", "created_by": 0, "created_at": BASE_TS + 60 * i + 30,
         "account_id": 31990211,
         "value_before": [{"lead_status": {"id": 61880209, "pipeline_id": PIPELINE_ID}}],
         "value_after": [{"lead_status": {"id": 61880213, "pipeline_id": PIPELINE_ID}}]}
        for i in range(N_EVENTS)
    ]
    # an event of another type must be filtered out by the extractor's request
    events.append({"id": "01jhzzzzzzzzzzzzzzzzzzzzzz", "type": "lead_added",
                   "entity_id": 30000000, "entity_type": "lead", "created_by": 0,
                   "created_at": BASE_TS + 10, "account_id": 31990211,
                   "value_before": [], "value_after": [{"note": {"id": 1}}]})
    leads += [{**lead, "id": 39000000 + i, "is_deleted": True,
               "updated_at": BASE_TS + 10**5 + i}  # in the bin: only with=only_deleted
              for i, lead in enumerate(leads[:N_DELETED])]
    return {"users": users, "pipelines": pipelines, "loss_reasons": loss_reasons,
            "contacts": contacts, "leads": leads, "events": events, **buyer_data()}


CUSTOMER_STATUS_IDS = (71001, 71002, 71003, 71004)


def buyer_data() -> dict[str, list[dict]]:
    """Companies and the buyer funnel (customers, their statuses, transactions)."""
    companies = [
        {"id": 52000000 + i, "name": f"Company {i}", "responsible_user_id": 8812000,
         "group_id": 0, "created_by": 0, "updated_by": 0, "created_at": BASE_TS + 40 * i,
         "updated_at": BASE_TS + 40 * i + 7, "closest_task_at": None, "is_deleted": False,
         "custom_fields_values": None, "account_id": ACCOUNT_ID, "_embedded": {"tags": []}}
        for i in range(N_COMPANIES)
    ]
    statuses = [
        {"id": sid, "name": name, "sort": 10 * (n + 1), "is_default": n == 0,
         "color": "#99ccff", "type": kind, "account_id": ACCOUNT_ID}
        for n, (sid, name, kind) in enumerate(zip(
            CUSTOMER_STATUS_IDS, ("Regular", "Expected purchase", "Did not buy", "Closed"),
            (0, 1, 2, 3), strict=True))
    ]
    customers = [
        {"id": 53000000 + i, "name": f"Buyer {i}", "next_price": 1500 * (i % 5),
         "next_date": BASE_TS + 30 * 86400 + i, "responsible_user_id": 8812000,
         "status_id": CUSTOMER_STATUS_IDS[i % 4], "periodicity": 30, "created_by": 0,
         "updated_by": 0, "created_at": BASE_TS + 50 * i, "updated_at": BASE_TS + 50 * i + 9,
         "closest_task_at": None, "is_deleted": False, "custom_fields_values": None,
         "ltv": 1500 * (i % 3), "purchases_count": i % 3, "average_check": 1500 if i % 3 else 0,
         "account_id": ACCOUNT_ID, "group_id": 0,
         "_embedded": {"tags": [], "segments": [],
                       "contacts": [{"id": 51000000 + i % N_CONTACTS, "is_main": True}]}}
        for i in range(N_CUSTOMERS)
    ]
    transactions = [
        {"id": 54000000 + i, "price": 1500 + 10 * i, "completed_at": BASE_TS + 3600 * i,
         "comment": None if i % 2 else f"purchase {i}", "customer_id": 53000000 + i % N_CUSTOMERS,
         "created_by": 0, "updated_by": 0, "created_at": BASE_TS + 3600 * i,
         "updated_at": BASE_TS + 3600 * i, "is_deleted": False, "account_id": ACCOUNT_ID}
        for i in range(N_TRANSACTIONS)
    ]
    return {"companies": companies, "customers": customers, "customer_statuses": statuses,
            "transactions": transactions}


class RecordingSleep:
    """Injected into the HTTP layer: records requested waits, sleeps a capped real time."""

    def __init__(self, cap: float = 0.01) -> None:
        self.calls: list[float] = []
        self.cap = cap

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        threading.Event().wait(min(seconds, self.cap))


@pytest.fixture
def amo() -> Iterator[AmoCRMEmulator]:
    emulator = AmoCRMEmulator(amo_data(), client_secret=CLIENT_SECRET,
                              refresh_token=INITIAL_REFRESH).start()
    yield emulator
    emulator.stop()


@pytest.fixture
def wh(tmp_path: Path) -> DuckDBWarehouse:
    return DuckDBWarehouse(tmp_path / "wh.duckdb")


@pytest.fixture
def sleeper() -> RecordingSleep:
    return RecordingSleep()


def make_source(amo: AmoCRMEmulator, store_path: Path, sleeper: RecordingSleep | None = None,
                **kwargs) -> AmoCRMSource:
    # a 10 s read timeout: on a loaded 2-core CI machine (two workers, dbt, PostgreSQL) a page
    # can take over 2 s, and a retried page would break the tests that count the requests
    options = kwargs.pop("http_options", None) or HttpOptions(
        timeout=(2.0, 10.0), max_retries=3, backoff_base=0.01, backoff_max=0.05,
        sleep=sleeper or RecordingSleep(),
    )
    params = {"page_limit": 50, "overlap_s": 600, **kwargs}
    return AmoCRMSource(
        amo.base_url, account="voronka-demo", client_id="demo-client",
        client_secret=CLIENT_SECRET, redirect_uri="http://127.0.0.1/callback",
        token_store=TokenStore(store_path), initial_refresh_token=INITIAL_REFRESH,
        http_options=options, **params,
    )


def api_requests(amo: AmoCRMEmulator, prefix: str = "/api/v4/") -> list[dict]:
    return [r for r in amo.request_log if r["path"].startswith(prefix)]


def raw_ids(wh: DuckDBWarehouse, entity: str) -> list[str]:
    df = wh.query_df(f"select record_id from raw.amocrm__{entity}")
    return list(df["record_id"])


# ---------------------------------------------------------------------------------------------


def test_calls_are_paced_and_a_token_refresh_takes_its_own_slot(amo, wh, tmp_path, sleeper):
    """amoCRM counts every arrival in a sliding second, the token request too: each call is
    paced (no burst after idling), and the refresh a call needs goes out in its own slot, not
    in the call's with the call right behind it (which put 8 arrivals in 0.86 s: a 429)."""
    src = make_source(amo, tmp_path / "tokens.json", sleeper)
    for entity in ("users", "pipelines", "loss_reasons", "contacts"):
        sync_entity(src, entity, wh, run_id="run-1")
    log = amo.request_log
    assert log[0]["path"] == "/oauth2/access_token" and log[1]["path"] == "/api/v4/users"
    gaps = [b["t"] - a["t"] for a, b in itertools.pairwise(log)]
    assert min(gaps) >= 1 / 7 - 0.01, gaps  # the default 7 req/s, paced
    assert not [r for r in log if r["status"] == 429]


def test_full_sync_of_every_entity_pages_and_lands_everything(amo, wh, tmp_path, sleeper):
    src = make_source(amo, tmp_path / "tokens.json", sleeper)
    results = {e: sync_entity(src, e, wh, run_id="run-1") for e in src.ENTITIES}

    expected = {"users": 3, "pipelines": 1, "loss_reasons": 2, "contacts": N_CONTACTS,
                "leads": N_LEADS, "events": N_EVENTS, "companies": N_COMPANIES,
                "customers": N_CUSTOMERS, "customer_statuses": 4,
                "transactions": N_TRANSACTIONS, "deleted_leads": N_DELETED}
    # customer_events: this account has no buyer status events (a 204 note page, no table)
    assert set(expected) | {"customer_events"} == set(src.ENTITIES)
    assert (results["customer_events"].fetched, results["customer_events"].pages) == (0, 0)
    for entity, n in expected.items():
        assert wh.count_rows(f"raw.amocrm__{entity}") == n, entity
        assert results[entity].fetched == n
        assert results[entity].inserted == n
        assert results[entity].duplicates == 0
    assert results["leads"].pages == math.ceil(N_LEADS / 50)
    assert results["events"].pages == math.ceil(N_EVENTS / 50)
    for entity in ("companies", "customers", "transactions", "deleted_leads"):
        assert results[entity].pages == math.ceil(expected[entity] / 50) > 1, entity
    assert len(set(raw_ids(wh, "leads"))) == N_LEADS

    # cursors: max updated_at / created_at; full-pull entities keep none
    assert wh.get_cursor("amocrm", "voronka-demo", "leads") == str(BASE_TS + 60 * 229 + 30)
    assert wh.get_cursor("amocrm", "voronka-demo", "contacts") == str(BASE_TS + 30 * 119 + 5)
    assert wh.get_cursor("amocrm", "voronka-demo", "events") == str(BASE_TS + 60 * 129 + 30)
    assert wh.get_cursor("amocrm", "voronka-demo", "companies") == str(BASE_TS + 40 * 59 + 7)
    assert wh.get_cursor("amocrm", "voronka-demo", "customers") == str(BASE_TS + 50 * 69 + 9)
    for entity in ("pipelines", "customer_statuses", "transactions", "deleted_leads"):
        assert wh.get_cursor("amocrm", "voronka-demo", entity) is None, entity

    # the requests carried the documented parameters
    lead_q = [r["query"] for r in api_requests(amo, "/api/v4/leads")
              if r["path"] == "/api/v4/leads" and r["query"].get("with") != "only_deleted"]
    assert all(q["order[updated_at]"] == "asc" and q["with"] == "contacts" for q in lead_q)
    # keyset windows (issue 12 item 1): always page 1, from the newest updated_at seen
    assert [q["page"] for q in lead_q] == ["1", "1", "1", "1", "1"]
    assert "filter[updated_at][from]" not in lead_q[0]  # first run: no cursor
    assert [int(q["filter[updated_at][from]"]) for q in lead_q[1:]] == [
        BASE_TS + 60 * i + 30 for i in (49, 98, 147, 196)]
    ev_q = [r["query"] for r in api_requests(amo, "/api/v4/events")]
    # events: page_limit 50 here; the cap is 100 (see test_events_limit_is_capped_at_100)
    # (the customer_events entity asks the same endpoint for its own type: one request, 204)
    assert sorted(q["filter[type]"] for q in ev_q).count("customer_status_changed") == 1
    ev_q = [q for q in ev_q if q["filter[type]"] != "customer_status_changed"]
    assert all(q["limit"] == "50" and q["filter[type]"] == "lead_status_changed" for q in ev_q)

    # payloads as returned minus _links; embedded statuses and contacts kept
    pipeline = json.loads(wh.scalar("select payload from raw.amocrm__pipelines"))
    assert [s["id"] for s in pipeline["_embedded"]["statuses"]] == [61880209, 61880213, 142, 143]
    assert "_links" not in json.dumps(pipeline)
    lead = json.loads(wh.scalar(
        "select payload from raw.amocrm__leads where record_id = '30000007'"))
    assert lead["_embedded"]["contacts"][0]["id"] == 51000007
    assert "_links" not in json.dumps(lead)
    assert str(wh.scalar(
        "select updated_at from raw.amocrm__leads where record_id = '30000000'"
    )) == "2026-01-01 00:00:30"

    # a normal run at 7 req/s never trips the server's limit
    assert [r for r in amo.request_log if r["status"] == 429] == []
    assert amo.token_refreshes == 1


def test_normal_run_stays_under_7_requests_per_second(amo, tmp_path):
    src = make_source(amo, tmp_path / "tokens.json", page_limit=10)
    # 26 keyset windows (each re-reads the previous page's newest record) + 1 refresh
    n = sum(len(p.records) for p in src.pages("leads", None))
    assert n == N_LEADS
    log = amo.request_log
    assert len(log) == 27
    assert [r for r in log if r["status"] != 200] == []
    times = sorted(r["t"] for r in log)
    # no 1-second window on the server holds more than 7 arrivals
    assert max(sum(1 for u in times if t <= u < t + 1.0) for t in times) <= 7
    assert times[-1] - times[0] >= 2.5  # it really was throttled, not just lucky


def test_events_limit_is_capped_at_100(amo, tmp_path):
    src = make_source(amo, tmp_path / "tokens.json", page_limit=250)
    pages = list(src.pages("events", None))
    assert [len(p.records) for p in pages] == [100, 30]
    assert {r["query"]["limit"] for r in api_requests(amo, "/api/v4/events")} == {"100"}
    assert {p.records[0].payload["type"] for p in pages} == {"lead_status_changed"}
    assert pages[-1].cursor_after == str(BASE_TS + 60 * 129 + 30)


def test_empty_collection_is_204_and_yields_no_pages(tmp_path, wh):
    data = amo_data()
    data["leads"] = []
    with AmoCRMEmulator(data, client_secret=CLIENT_SECRET, refresh_token=INITIAL_REFRESH) as amo:
        src = make_source(amo, tmp_path / "tokens.json")
        result = sync_entity(src, "leads", wh, run_id="r")
        assert (result.pages, result.fetched, result.cursor_after) == (0, 0, None)
        assert [r["status"] for r in api_requests(amo)] == [204]
        # an incremental run past the newest event also ends on 204 and keeps the cursor
        wh.set_cursor("amocrm", "voronka-demo", "events", str(BASE_TS + 10**6))
        result = sync_entity(src, "events", wh, run_id="r")
        assert result.pages == 0
        assert wh.get_cursor("amocrm", "voronka-demo", "events") == str(BASE_TS + 10**6)


def test_429_retry_after_is_honoured_and_retried(amo, wh, tmp_path, sleeper):
    amo.faults.add("429", count=2, path_prefix="/api/v4/leads", retry_after=1)
    src = make_source(amo, tmp_path / "tokens.json", sleeper)
    result = sync_entity(src, "leads", wh, run_id="r")
    assert result.inserted == N_LEADS
    statuses = [r["status"] for r in api_requests(amo, "/api/v4/leads")]
    assert statuses[:3] == [429, 429, 200]
    assert sleeper.calls[:2] == [1.0, 1.0]  # the server's delay, not the tiny test backoff


def test_transient_faults_5xx_slow_and_drop_are_retried(amo, wh, tmp_path, sleeper):
    amo.faults.add("5xx", path_prefix="/api/v4/contacts", status=500)
    amo.faults.add("5xx", path_prefix="/api/v4/contacts", status=502)  # nginx HTML body
    amo.faults.add("drop", path_prefix="/api/v4/contacts")
    amo.faults.add("slow", path_prefix="/api/v4/contacts", seconds=1.5)  # > 0.5 s read timeout
    options = HttpOptions(timeout=(1.0, 0.5), max_retries=5, backoff_base=0.01,
                          backoff_max=0.02, sleep=sleeper)
    src = make_source(amo, tmp_path / "tokens.json", http_options=options)
    result = sync_entity(src, "contacts", wh, run_id="r")
    assert result.inserted == N_CONTACTS
    assert wh.count_rows("raw.amocrm__contacts") == N_CONTACTS
    # the log entry of the slow request appears only once the server finishes it (1.5 s)
    for _ in range(100):
        if any(r["fault"] == "slow" for r in amo.request_log):
            break
        threading.Event().wait(0.05)
    # ... and the log is appended in completion order; order by arrival time
    faults = [r["fault"] for r in sorted(api_requests(amo, "/api/v4/contacts"),
                                         key=lambda r: r["t"])]
    assert faults[:5] == ["5xx", "5xx", "drop", "slow", None]
    assert len(sleeper.calls) == 4
    assert all(0 < s <= 0.02 for s in sleeper.calls)


def test_exhausted_retries_raise_api_error_without_secrets(amo, tmp_path, sleeper):
    amo.faults.add("5xx", count=10, path_prefix="/api/v4/users", status=503)
    src = make_source(amo, tmp_path / "tokens.json", sleeper)
    with pytest.raises(ApiError) as info:
        list(src.pages("users", None))
    err = info.value
    assert err.status == 503
    assert err.attempts == 4  # 1 + max_retries
    assert err.source == "amocrm"
    assert "/api/v4/users" in err.url and "HTTP 503" in str(err) and "4 attempts" in str(err)
    tokens = TokenStore(tmp_path / "tokens.json").load()
    for secret in (CLIENT_SECRET, INITIAL_REFRESH, tokens.access_token, tokens.refresh_token):
        assert secret not in str(err) and secret not in repr(err)


def test_refresh_token_rotation_is_persisted_before_first_use(amo, tmp_path):
    seen: list[tuple[int, dict]] = []

    class SpyStore(TokenStore):
        def save(self, tokens):
            super().save(tokens)
            seen.append((len(api_requests(amo)), dict(amo.request_log[-1])))

    store_path = tmp_path / "state" / "amocrm_tokens.json"
    src = make_source(amo, store_path)
    src.token_store = SpyStore(store_path)
    records = [r for p in src.pages("users", None) for r in p.records]
    assert len(records) == 3

    # saved right after the token endpoint answered, before any API call used the new token
    assert len(seen) == 1
    api_calls_before_save, last = seen[0]
    assert api_calls_before_save == 0
    assert (last["method"], last["path"], last["status"]) == ("POST", "/oauth2/access_token", 200)

    saved = json.loads(store_path.read_text())
    assert saved["refresh_token"] == amo.current_refresh_token != INITIAL_REFRESH
    assert saved["expires_at"] > 1.7e9 and saved["access_token"]
    assert stat.S_IMODE(store_path.stat().st_mode) == 0o600
    assert [p.name for p in store_path.parent.iterdir() if p.name.endswith(".tmp")] == []

    # a new process reuses the stored pair: no second refresh, initial token ignored
    src2 = make_source(amo, store_path)
    assert sum(len(p.records) for p in src2.pages("users", None)) == 3
    assert amo.token_refreshes == 1


def test_spent_refresh_token_gives_clear_error_without_secret(amo, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    first = make_source(amo, tmp_path / "a.json")
    list(first.pages("users", None))  # spends INITIAL_REFRESH
    second = make_source(amo, tmp_path / "b.json")  # empty store -> tries the spent token
    with pytest.raises(AuthorizationError) as info:
        list(second.pages("users", None))
    msg = str(info.value)
    assert "re-authorise" in msg and "refresh token" in msg and "401" in msg
    assert INITIAL_REFRESH not in msg and CLIENT_SECRET not in msg
    assert INITIAL_REFRESH not in caplog.text and CLIENT_SECRET not in caplog.text
    assert not (tmp_path / "b.json").exists()  # nothing half-written


def test_access_token_expiring_mid_run_is_refreshed_and_run_continues(amo, wh, tmp_path):
    store_path = tmp_path / "tokens.json"
    src = make_source(amo, store_path)
    pages = src.pages("leads", None)
    got = list(next(pages).records)
    amo.expire_access_tokens()  # server-side expiry; our stored expiry still looks valid
    got += [r for p in pages for r in p.records]
    assert len({r.record_id for r in got}) == N_LEADS
    assert amo.token_refreshes == 2
    statuses = [r["status"] for r in api_requests(amo, "/api/v4/leads")]
    assert statuses.count(401) == 1
    assert json.loads(store_path.read_text())["refresh_token"] == amo.current_refresh_token

    # the emulator's injected 401 takes the same path
    amo.faults.add("expired_token", path_prefix="/api/v4/users")
    assert sum(len(p.records) for p in src.pages("users", None)) == 3
    assert amo.token_refreshes == 3


def test_expired_stored_access_token_is_refreshed_before_the_first_call(amo, tmp_path):
    store = TokenStore(tmp_path / "tokens.json")
    list(make_source(amo, store.path).pages("users", None))
    old = store.load()
    store.save(TokenSet(old.access_token, old.refresh_token, time.time() - 10))
    amo.request_log.clear()
    assert sum(len(p.records) for p in make_source(amo, store.path).pages("users", None)) == 3
    assert amo.token_refreshes == 2
    assert [r["path"] for r in amo.request_log] == ["/oauth2/access_token", "/api/v4/users"]
    assert store.load().refresh_token == amo.current_refresh_token != old.refresh_token


def test_corrupt_token_store_gives_a_clear_error(amo, tmp_path):
    path = tmp_path / "tokens.json"
    path.write_text('{"refresh_token": "def50200-half-writ')
    with pytest.raises(ValueError, match="not a valid JSON object") as info:
        list(make_source(amo, path).pages("users", None))
    assert "def50200" not in str(info.value)


def test_concurrent_workers_refresh_only_once(amo, tmp_path):
    store_path = tmp_path / "tokens.json"
    sources = [make_source(amo, store_path) for _ in range(4)]
    errors: list[BaseException] = []

    def run(src: AmoCRMSource) -> None:
        try:
            assert sum(len(p.records) for p in src.pages("users", None)) == 3
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in sources]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert amo.token_refreshes == 1


def test_incremental_cursor_with_overlap_relands_only_changed_rows(amo, wh, tmp_path):
    src = make_source(amo, tmp_path / "tokens.json")
    first = sync_entity(src, "leads", wh, run_id="run-1")
    cursor = int(first.cursor_after)
    sync_entity(src, "events", wh, run_id="run-1")

    changed_id = 30000005
    amo.update_lead(changed_id, price=999_999, status_id=142, updated_at=cursor + 120)
    amo.request_log.clear()

    second = sync_entity(src, "leads", wh, run_id="run-2")
    q = api_requests(amo, "/api/v4/leads")[0]["query"]
    assert q["filter[updated_at][from]"] == str(cursor - 600)
    # overlap window re-reads the leads updated in the last 600 s, plus the changed one
    in_overlap = sum(1 for i in range(N_LEADS) if BASE_TS + 60 * i + 30 >= cursor - 600)
    assert second.fetched == in_overlap + 1
    assert second.inserted == 1 and second.duplicates == in_overlap
    assert second.cursor_after == str(cursor + 120)
    assert wh.count_rows("raw.amocrm__leads") == N_LEADS + 1
    versions = wh.query_df(
        f"select payload from raw.amocrm__leads where record_id = '{changed_id}'")
    prices = sorted(json.loads(p)["price"] for p in versions["payload"])
    assert prices == [5000, 999_999]

    # the status change produced one new lead_status_changed event
    ev = sync_entity(src, "events", wh, run_id="run-2")
    assert ev.inserted == 1
    assert wh.count_rows("raw.amocrm__events") == N_EVENTS + 1

    third = sync_entity(src, "leads", wh, run_id="run-3")  # nothing new: all duplicates
    assert third.inserted == 0 and third.cursor_after == str(cursor + 120)


def test_resume_after_failure_on_page_3_loses_nothing_and_duplicates_nothing(
    amo, wh, tmp_path, sleeper
):
    src = make_source(amo, tmp_path / "tokens.json", sleeper)
    seen_pages: list[int] = []

    def validate_and_break_after_page_2(records):
        seen_pages.append(len(records))
        if len(seen_pages) == 2:  # the server dies while we land page 2
            amo.faults.add("5xx", count=50, path_prefix="/api/v4/leads", status=500)
        return records, []

    with pytest.raises(ApiError) as info:
        sync_entity(src, "leads", wh, run_id="run-1", validate=validate_and_break_after_page_2,
                    batch_records=1)  # land page by page, so pages 1-2 are in before the crash
    assert info.value.status == 500
    assert "filter[updated_at][from]" in info.value.url  # the third keyset window
    assert wh.count_rows("raw.amocrm__leads") == 99  # pages 1-2 landed (50 + 49 new)
    assert wh.get_cursor("amocrm", "voronka-demo", "leads") is None  # cursor not advanced

    amo.faults.clear()
    result = sync_entity(src, "leads", wh, run_id="run-2")
    assert result.cursor_before is None
    assert result.inserted == N_LEADS - 99 and result.duplicates == 99
    assert wh.count_rows("raw.amocrm__leads") == N_LEADS
    ids = raw_ids(wh, "leads")
    assert len(ids) == len(set(ids)) == N_LEADS
    assert wh.get_cursor("amocrm", "voronka-demo", "leads") == str(BASE_TS + 60 * 229 + 30)


def test_validate_quarantines_bad_records_and_lands_the_rest(amo, wh, tmp_path):
    from warehouse.records import QuarantinedRecord

    def validate(records):
        good = [r for r in records if r.payload["price"] != 0]
        bad = [QuarantinedRecord(r, "price must be > 0", ("price",))
               for r in records if r.payload["price"] == 0]
        return good, bad

    src = make_source(amo, tmp_path / "tokens.json")
    result = sync_entity(src, "leads", wh, run_id="r", validate=validate)
    zero = sum(1 for i in range(N_LEADS) if i % 17 == 0)
    assert result.quarantined == zero
    assert result.inserted == N_LEADS - zero
    assert wh.count_rows("raw._quarantine") == zero


def test_no_secret_reaches_logs_in_a_run_with_faults(amo, wh, tmp_path, caplog, sleeper):
    caplog.set_level(logging.DEBUG)
    amo.faults.add("429", path_prefix="/api/v4/leads", retry_after=1)
    amo.faults.add("expired_token", path_prefix="/api/v4/leads")
    amo.faults.add("5xx", path_prefix="/api/v4/leads", status=500)
    src = make_source(amo, tmp_path / "tokens.json", sleeper)
    for entity in ("leads", "users"):
        sync_entity(src, entity, wh, run_id="r")
    amo.faults.add("5xx", count=10, path_prefix="/api/v4/contacts", status=500)
    with pytest.raises(ApiError) as info:
        sync_entity(src, "contacts", wh, run_id="r")
    assert amo.token_refreshes == 2
    tokens = TokenStore(tmp_path / "tokens.json").load()
    secrets = {CLIENT_SECRET, INITIAL_REFRESH, tokens.access_token, tokens.refresh_token}
    assert "retry" in caplog.text and "page 1" in caplog.text  # it did log
    for secret in secrets:
        assert secret not in caplog.text
        assert secret not in str(info.value)
    assert "Bearer" not in caplog.text


def test_long_lived_token_from_the_resource_needs_no_oauth_and_stays_secret(
    tmp_path, wh, monkeypatch, caplog
):
    """AMOCRM_LONG_LIVED_TOKEN alone (no client secret, no refresh token) is enough."""
    from orchestration.resources import AmoCRMResource

    caplog.set_level(logging.DEBUG)
    token, revoked = "llt-abcdef-123456", "llt-revoked-999999"
    for name in ("AMOCRM_CLIENT_SECRET", "AMOCRM_REFRESH_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VORONKA_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("AMOCRM_LONG_LIVED_TOKEN", token)
    with AmoCRMEmulator(amo_data(), long_lived_token=token, client_secret=CLIENT_SECRET) as amo:
        resource = AmoCRMResource(base_url=amo.base_url, subdomain="voronka-demo")
        result = sync_entity(resource.source(), "leads", wh, run_id="r")
        assert result.inserted == N_LEADS and result.pages == math.ceil(N_LEADS / 250)
        assert amo.token_refreshes == 0
        assert [r for r in amo.request_log if r["path"] == "/oauth2/access_token"] == []
        assert not (tmp_path / "state").exists() or not any((tmp_path / "state").iterdir())

        monkeypatch.setenv("AMOCRM_LONG_LIVED_TOKEN", revoked)
        with pytest.raises(AuthorizationError) as info:
            list(resource.source().pages("users", None))
        assert "long-lived token" in str(info.value)
        assert [r for r in amo.request_log if r["path"] == "/oauth2/access_token"] == []
    assert "page 1" in caplog.text  # it did log
    for secret in (token, revoked):
        assert secret not in caplog.text
        assert secret not in str(info.value) and secret not in repr(info.value)
    assert "Bearer" not in caplog.text


def test_synthetic_business_lands_completely_and_reruns_add_nothing(tmp_path, wh):
    synthetic = pytest.importorskip("synthetic")
    biz = synthetic.generate(scale=0.1)
    data = biz.amocrm
    expected = {e: len(data.get(e, [])) for e in AmoCRMSource.ENTITIES}
    expected["events"] = sum(1 for ev in data["events"] if ev.get("type") == "lead_status_changed")
    expected["deleted_leads"] = sum(1 for lead in data["leads"] if lead.get("is_deleted"))
    expected["leads"] -= expected["deleted_leads"]

    def counts() -> dict[str, int]:
        tables = set(wh.list_tables("raw"))
        return {e: wh.count_rows(f"raw.amocrm__{e}") if f"amocrm__{e}" in tables else 0
                for e in AmoCRMSource.ENTITIES}

    with AmoCRMEmulator(data, client_secret=CLIENT_SECRET,
                        refresh_token=INITIAL_REFRESH) as amo:
        src = make_source(amo, tmp_path / "tokens.json", page_limit=250)
        for entity in src.ENTITIES:
            sync_entity(src, entity, wh, run_id="run-1")
        assert counts() == expected
        again = [sync_entity(src, e, wh, run_id="run-2") for e in src.ENTITIES]
        assert [r.inserted for r in again] == [0] * len(src.ENTITIES)
        assert counts() == expected
        assert [r for r in amo.request_log if r["status"] == 429] == []


def test_schema_drift_lands_what_still_fits_and_quarantines_the_rest(tmp_path, wh, sleeper):
    """The API changes shape under us: a new field on every lead lands with the payload
    (raw keeps everything as received), a price turned into text and a renamed status field
    are quarantined naming the lead and the field; nothing else is lost."""
    from expectations import validate_records
    from synthetic import generate

    business = generate(seed=4, scale=0.05)  # realistic leads: every one passes the raw suite
    data = {**business.amocrm, "leads": [x for x in business.amocrm["leads"]
                                         if not x.get("is_deleted")]}
    leads = data["leads"]
    for lead in leads:
        lead["sale_v5"] = {"amount": lead.get("price"), "currency": "RUB"}  # an added field
    drifted_price, renamed = leads[0]["id"], leads[1]["id"]
    leads[0]["price"] = "1 500 ₽"
    leads[1]["statusId"] = leads[1].pop("status_id")
    quarantined = []

    def validate(records):
        verdict = validate_records(records)
        quarantined.extend(verdict.quarantined)
        return verdict.good, verdict.quarantined

    with AmoCRMEmulator(data, account_id=business.account_id, client_secret=CLIENT_SECRET,
                        refresh_token=INITIAL_REFRESH) as amo:
        src = make_source(amo, tmp_path / "tokens.json", sleeper)
        result = sync_entity(src, "leads", wh, run_id="r", validate=validate)

    assert result.quarantined == 2
    reasons = {q.record.record_id: q.reason for q in quarantined}
    assert set(reasons) == {str(drifted_price), str(renamed)}
    assert "price" in reasons[str(drifted_price)] and "status_id" in reasons[str(renamed)]
    landed = set(raw_ids(wh, "leads"))
    assert landed == {str(x["id"]) for x in leads} - set(reasons)
    kept = wh.query_df("select payload from raw.amocrm__leads limit 1").payload[0]
    assert "sale_v5" in str(kept)  # the new field is kept as received
