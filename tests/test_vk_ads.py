"""VKAdsSource against the real VK Ads emulator on loopback (ad_apis.md §A2)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import requests

from emulators.vk_ads import STATS_PATH, TOKEN_PATH, VKAdsEmulator
from extractors.http import ApiError, AuthorizationError, HttpOptions
from extractors.state import TokenStore
from extractors.sync import sync_entity
from extractors.vk_ads import VKAdsSource
from warehouse.duckdb_backend import DuckDBWarehouse

CLIENT_ID = "vk-client-7f3a"
SECRET = "vk-secret-Zq81-very-private"
ACCOUNT = "voronka-vk-cabinet"
TODAY = datetime.now(ZoneInfo("Europe/Moscow")).date()
START = TODAY - timedelta(days=12)
UNTIL = TODAY - timedelta(days=3)  # 10 days
PLANS = {20865519: "Brand_VK", 20865520: "Ретаргет ВК", 20865521: "Lookalike"}
TIMEOUT = 5


def vk_rows(plans: dict[int, str] = PLANS, first: date = START, days: int = 10) -> list[dict]:
    rows = []
    for d in range(days):
        for n, (pid, name) in enumerate(plans.items()):
            rows.append({"date": (first + timedelta(days=d)).isoformat(), "ad_plan_id": pid,
                         "ad_plan_name": name, "shows": 15000 + 10 * d + n,
                         "clicks": 120 + d + n, "spent": Decimal("3520.40") + d + n})
    return rows


class RecordingSleep:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def new_emulator(rows: list[dict] | None = None, **kwargs) -> VKAdsEmulator:
    # the emulator's "now" is pinned to the test's TODAY, so a run crossing midnight agrees
    params = {"client_id": CLIENT_ID, "client_secret": SECRET, "rate_limit_per_s": 50,
              "today": TODAY, **kwargs}
    return VKAdsEmulator(vk_rows() if rows is None else rows, **params).start()


@pytest.fixture
def vk() -> Iterator[VKAdsEmulator]:
    emulator = new_emulator()
    yield emulator
    emulator.stop()


@pytest.fixture
def store(tmp_path: Path) -> TokenStore:
    return TokenStore(tmp_path / "state" / "vk_ads.json")


@pytest.fixture
def wh(tmp_path: Path) -> DuckDBWarehouse:
    return DuckDBWarehouse(tmp_path / "w.duckdb")


def make_source(vk: VKAdsEmulator, store: TokenStore, sleep: RecordingSleep | None = None,
                max_retries: int = 3, **kwargs) -> VKAdsSource:
    options = HttpOptions(timeout=(2.0, 2.0), max_retries=max_retries, backoff_base=0.01,
                          backoff_max=0.05, sleep=sleep or RecordingSleep())
    params = {"account": ACCOUNT, "client_id": CLIENT_ID, "client_secret": SECRET,
              "token_store": store, "start_date": START, "until_date": UNTIL,
              "chunk_days": 4, "rate_limit_per_s": 50, "today": TODAY, **kwargs}
    return VKAdsSource(vk.base_url, http_options=options, **params)


def stats_calls(vk: VKAdsEmulator) -> list[dict]:
    return [e for e in vk.request_log if e["path"] == STATS_PATH and e["status"] == 200]


def token_calls(vk: VKAdsEmulator) -> list[dict]:
    return [e for e in vk.request_log if e["path"] == TOKEN_PATH]


# ---------------------------------------------------------------------------------------------
# the emulator on its own
# ---------------------------------------------------------------------------------------------


def test_emulator_token_stats_shape_errors_and_rate_headers(vk):
    tok = requests.post(vk.base_url + TOKEN_PATH, timeout=TIMEOUT, data={
        "grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": SECRET})
    assert tok.status_code == 200
    data = tok.json()
    assert data["expires_in"] == 86400 and data["access_token"] and data["refresh_token"]
    auth = {"Authorization": f"Bearer {data['access_token']}"}
    day = START.isoformat()

    resp = requests.get(vk.base_url + STATS_PATH, headers=auth, timeout=TIMEOUT, params={
        "date_from": day, "date_to": day, "id": "20865519,20865520", "metrics": "base"})
    assert resp.status_code == 200
    for kind in ("RPS", "Hourly", "Daily"):
        assert int(resp.headers[f"X-RateLimit-{kind}-Limit"]) > 0
        assert f"X-RateLimit-{kind}-Remaining" in resp.headers
    body = resp.json()
    assert [i["id"] for i in body["items"]] == [20865519, 20865520]
    base = body["items"][0]["rows"][0]["base"]
    assert body["items"][0]["rows"][0]["date"] == day
    assert base["shows"] == 15000 and base["clicks"] == 120 and base["spent"] == "3520.40"
    assert base["cpc"] == "29.34" and base["cpm"] == "234.69" and base["ctr"] == 0.8
    assert set(base["vk"]) == {"goals", "cpa", "cr"}
    assert body["items"][0]["total"]["base"]["spent"] == "3520.40"
    assert body["total"]["base"]["spent"] == "7041.80"  # 3520.40 + 3521.40

    def err(path: str, **params) -> tuple[int, str]:
        r = requests.get(vk.base_url + path, headers=auth, params=params, timeout=TIMEOUT)
        return r.status_code, r.json()["error"]["code"]

    too_many = ",".join(str(i) for i in range(1, 202))
    assert err(STATS_PATH, date_from=day, date_to=day, id=too_many) == (400, "ERR_LIMIT_EXCEEDED")
    old = (TODAY - timedelta(days=400)).isoformat()
    assert err(STATS_PATH, date_from=old, date_to=day, id="20865519") == \
        (400, "ERR_LIMIT_EXCEEDED")
    assert err(STATS_PATH, date_from="2026-13-01", id="20865519") == (400, "ERR_WRONG_DATE")
    assert err(STATS_PATH, date_from=day, date_to=day, id="999") == (400, "ERR_WRONG_ADPLANS")
    assert err("/api/v2/ad_plans.json", limit=51) == (400, "ERR_WRONG_PARAMETER")
    assert err("/api/v2/nope.json") == (404, "ERR_WRONG_RESOURCE")
    bad = requests.get(vk.base_url + STATS_PATH, headers={"Authorization": "Bearer nope"},
                       params={"date_from": day}, timeout=TIMEOUT)
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "ERR_ACCESS_DENIED"


def test_emulator_rate_limit_is_per_calendar_second_with_429():
    with VKAdsEmulator(vk_rows(), client_id=CLIENT_ID, client_secret=SECRET,
                       rate_limit_per_s=3) as vk:
        access = requests.post(vk.base_url + TOKEN_PATH, timeout=TIMEOUT, data={
            "grant_type": "client_credentials", "client_id": CLIENT_ID,
            "client_secret": SECRET}).json()["access_token"]
        statuses, remaining = [], []
        for _ in range(8):
            r = requests.get(vk.base_url + "/api/v2/ad_plans.json", timeout=TIMEOUT,
                             headers={"Authorization": f"Bearer {access}"})
            statuses.append(r.status_code)
            remaining.append(r.headers["X-RateLimit-RPS-Remaining"])
        assert 429 in statuses  # 8 quick requests cannot fit into calendar seconds of 3
        assert "0" in remaining


# ---------------------------------------------------------------------------------------------
# tokens
# ---------------------------------------------------------------------------------------------


def test_token_is_cached_in_the_store_reused_and_renewed_on_401(vk, store):
    src = make_source(vk, store)
    assert len([r for p in src.pages("ad_plans", None) for r in p.records]) == 3
    assert len(token_calls(vk)) == 1 and vk.tokens_issued == 1
    saved = json.loads(store.path.read_text())
    assert saved["access_token"] in vk.access_tokens and saved["refresh_token"]
    assert store.path.stat().st_mode & 0o777 == 0o600

    # a second run (new process) reuses the stored token: no new grant, no extra slot
    again = make_source(vk, store)
    list(again.pages("ad_plans", None))
    assert len(token_calls(vk)) == 1 and len(vk.active_tokens()) == 1

    # the server expires the token: 401 → renewal with the refresh token (keeps the slot)
    vk.expire_tokens()
    list(again.pages("ad_plans", None))
    statuses = [e["status"] for e in vk.request_log]
    assert statuses[-3:] == [401, 200, 200]
    assert len(token_calls(vk)) == 2 and len(vk.active_tokens()) == 1
    assert json.loads(store.path.read_text())["access_token"] != saved["access_token"]

    # an injected expired-token fault is handled the same way
    vk.faults.add("expired_token", path_prefix="/api/v2/ad_plans")
    assert len([r for p in again.pages("ad_plans", None) for r in p.records]) == 3
    assert len(vk.active_tokens()) == 1


def test_token_cap_of_five_gives_a_clear_authorization_error(vk, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    for n in range(5):  # five other tools already hold tokens
        list(make_source(vk, TokenStore(tmp_path / f"other{n}.json")).pages("ad_plans", None))
    assert len(vk.active_tokens()) == 5
    src = make_source(vk, TokenStore(tmp_path / "ours.json"))
    with pytest.raises(AuthorizationError) as info:
        list(src.pages("ad_plans", None))
    err = info.value
    assert err.status == 400 and err.error_code == "ERR_LIMIT_EXCEEDED"
    assert "ERR_LIMIT_EXCEEDED" in str(err) and "5 active tokens" in str(err)
    assert "token/delete.json" in str(err)
    assert SECRET not in str(err) and SECRET not in caplog.text
    assert not (tmp_path / "ours.json").exists()


def test_bad_credentials_and_secrets_never_leak(vk, store, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "vk-secret-WRONG-0000-private"
    src = make_source(vk, store, client_secret=wrong)
    with pytest.raises(AuthorizationError) as info:
        list(src.pages("ad_plans", None))
    assert info.value.status == 401 and info.value.error_code == "ERR_ACCESS_DENIED"
    assert "client_credentials" in str(info.value)
    assert wrong not in str(info.value) and wrong not in caplog.text
    assert wrong not in info.value.body_excerpt and wrong not in info.value.url

    # a token that the server keeps rejecting: one renewal, then a clear error, no token leaked
    good = make_source(vk, store)
    list(good.pages("ad_plans", None))
    vk.faults.add("expired_token", count=2, path_prefix=STATS_PATH)
    with pytest.raises(AuthorizationError) as info:
        list(good.pages("ad_plan_stats", None))
    assert info.value.status == 401 and "ERR_ACCESS_DENIED" in str(info.value)
    for token in (*vk.access_tokens, *vk.refresh_tokens, SECRET):
        assert token not in str(info.value) and token not in caplog.text


# ---------------------------------------------------------------------------------------------
# entities
# ---------------------------------------------------------------------------------------------


def test_ad_plans_full_pull_paged_by_offset_including_deleted(store):
    plans = {30000000 + i: f"Plan {i}" for i in range(120)}
    with new_emulator(vk_rows(plans, days=1)) as vk:
        vk.ad_plans[30000007]["status"] = "deleted"
        src = make_source(vk, store)
        pages = list(src.pages("ad_plans", None))
        assert [p.meta["offset"] for p in pages] == [0, 50, 100]
        assert [len(p.records) for p in pages] == [50, 50, 20]
        assert all(p.cursor_after is None for p in pages)
        calls = [e["query"] for e in vk.request_log if e["path"] == "/api/v2/ad_plans.json"]
        assert [(c["limit"], c["offset"]) for c in calls] == [("50", "0"), ("50", "50"),
                                                              ("50", "100")]
        records = [r for p in pages for r in p.records]
        assert len({r.record_id for r in records}) == 120
        deleted = next(r for r in records if r.record_id == "30000007")
        assert deleted.payload["status"] == "deleted"  # deleted plans have spend history
        assert set(deleted.payload) == {"id", "name", "status", "created", "updated"}
        assert deleted.source == "vk_ads" and deleted.account == ACCOUNT
        assert deleted.entity == "ad_plans" and deleted.updated_at is None


def test_stats_split_ids_and_dates_and_keep_decimal_strings(store):
    plans = {40000000 + i: f"Plan {i}" for i in range(250)}
    first = UNTIL - timedelta(days=5)
    with new_emulator(vk_rows(plans, first=first, days=6)) as vk:
        src = make_source(vk, store, start_date=first, chunk_days=4)
        pages = list(src.pages("ad_plan_stats", None))
        calls = [e["query"] for e in stats_calls(vk)]
        assert len(calls) == 4  # 2 date windows × 2 id batches
        sizes = [len(c["id"].split(",")) for c in calls]
        assert sizes == [200, 50, 200, 50]
        assert [(c["date_from"], c["date_to"]) for c in calls] == [
            (first.isoformat(), (first + timedelta(days=3)).isoformat())] * 2 + [
            ((first + timedelta(days=4)).isoformat(), UNTIL.isoformat())] * 2
        assert all(c["metrics"] == "base" for c in calls)
        # the cursor moves only when every id batch of a window is in
        assert [p.cursor_after for p in pages] == [
            None, (first + timedelta(days=3)).isoformat(), (first + timedelta(days=3)).isoformat(),
            UNTIL.isoformat()]

        records = [r for p in pages for r in p.records]
        assert len(records) == 250 * 6 and len({r.record_id for r in records}) == 250 * 6
        rec = next(r for r in records if r.record_id == f"{first.isoformat()}|40000001")
        assert rec.entity == "ad_plan_stats" and rec.source == "vk_ads"
        assert rec.account == ACCOUNT and rec.updated_at is None
        assert set(rec.payload) == {"date", "ad_plan_id", "base", "_currency"}
        assert rec.payload["date"] == first.isoformat() and rec.payload["ad_plan_id"] == 40000001
        assert rec.payload["_currency"] == "RUB"
        base = rec.payload["base"]
        assert base["spent"] == "3521.40" and isinstance(base["spent"], str)  # decimal string
        assert base["cpc"] == "29.10" and isinstance(base["cpm"], str)
        assert base["shows"] == 15001 and isinstance(base["clicks"], int)


def test_history_older_than_366_days_is_clamped_with_a_warning(store, caplog):
    caplog.set_level(logging.WARNING, logger="voronka.extractors")
    with new_emulator(vk_rows({1: "Old"}, first=TODAY - timedelta(days=370), days=3)) as vk:
        src = make_source(vk, store, start_date=TODAY - timedelta(days=500),
                          until_date=TODAY - timedelta(days=360), chunk_days=92)
        records = [r for p in src.pages("ad_plan_stats", None) for r in p.records]
        earliest = TODAY - timedelta(days=365)
        assert "at most 366 days" in caplog.text and earliest.isoformat() in caplog.text
        calls = [e["query"] for e in stats_calls(vk)]
        assert [(c["date_from"], c["date_to"]) for c in calls] == [
            (earliest.isoformat(), (TODAY - timedelta(days=360)).isoformat())]
        assert [e["status"] for e in vk.request_log if e["path"] == STATS_PATH] == [200]
        assert len(records) == 6 and min(r.payload["date"] for r in records) == \
            earliest.isoformat()


def test_err_limit_exceeded_surfaces_as_api_error_naming_the_code(store):
    # the server's "now" is far ahead of ours, so our dates are beyond its 366-day horizon
    with new_emulator(today=TODAY + timedelta(days=400)) as vk:
        src = make_source(vk, store)
        with pytest.raises(ApiError) as info:
            list(src.pages("ad_plan_stats", None))
        err = info.value
        assert err.status == 400 and err.error_code == "ERR_LIMIT_EXCEEDED"
        assert "ERR_LIMIT_EXCEEDED" in str(err) and "366 days" in str(err)
        assert err.attempts == 1  # not retried
        assert not isinstance(err, AuthorizationError)


# ---------------------------------------------------------------------------------------------
# rate limits and transient faults
# ---------------------------------------------------------------------------------------------


def test_normal_run_adopts_the_reported_rps_and_makes_no_429(store):
    plans = {50000000 + i: f"Plan {i}" for i in range(6)}
    with new_emulator(vk_rows(plans, first=UNTIL - timedelta(days=5), days=6),
                      rate_limit_per_s=3) as vk:
        # configured far above the server's limit: the X-RateLimit headers slow it down
        src = make_source(vk, store, start_date=UNTIL - timedelta(days=5), chunk_days=2,
                          ids_per_request=2, rate_limit_per_s=100)
        records = [r for p in src.pages("ad_plan_stats", None) for r in p.records]
        assert len(records) == 36
        api_calls = [e for e in vk.request_log if e["path"] != TOKEN_PATH]
        assert len(api_calls) == 1 + 9  # ad plan list + 3 windows × 3 id batches
        assert [e["status"] for e in api_calls] == [200] * 10  # no 429
        assert src.client.limiter.rate_per_s == 3
        per_second: dict[int, int] = {}
        for e in api_calls:
            per_second[int(e["t"])] = per_second.get(int(e["t"]), 0) + 1
        assert max(per_second.values()) <= 3


def test_429_retry_after_5xx_and_drops_are_retried(vk, store):
    vk.faults.add("429", path_prefix=STATS_PATH, retry_after=1)
    vk.faults.add("5xx", path_prefix=STATS_PATH, status=503)
    vk.faults.add("drop", path_prefix=STATS_PATH)
    vk.faults.add("429", path_prefix=STATS_PATH)  # no Retry-After: backoff
    sleep = RecordingSleep()
    src = make_source(vk, store, sleep, max_retries=5)
    records = [r for p in src.pages("ad_plan_stats", None) for r in p.records]
    assert len(records) == 30
    assert 1.0 in sleep.calls  # Retry-After honoured (and the shared limiter paused)
    statuses = [e["status"] for e in vk.request_log if e["path"] == STATS_PATH]
    assert statuses[:5] == [429, 503, None, 429, 200]


# ---------------------------------------------------------------------------------------------
# landing: settling window and resume
# ---------------------------------------------------------------------------------------------


def test_settling_window_re_pull_lands_only_the_changed_recent_day(vk, store, wh):
    src = make_source(vk, store, settle_days=7)
    first = sync_entity(src, "ad_plan_stats", wh, run_id="run-1")
    assert first.inserted == 30 and first.cursor_after == UNTIL.isoformat()
    assert wh.get_cursor("vk_ads", ACCOUNT, "ad_plan_stats") == UNTIL.isoformat()
    plans = sync_entity(src, "ad_plans", wh, run_id="run-1")
    assert plans.inserted == 3 and plans.cursor_after is None

    recent = (UNTIL - timedelta(days=2)).isoformat()  # inside the 7-day settling window
    old = (UNTIL - timedelta(days=8)).isoformat()  # outside: already settled
    for r in vk.rows:
        if r["ad_plan_id"] == 20865519 and r["date"] in (recent, old):
            r["spent"] = Decimal("100.05")
    vk.request_log.clear()
    second = sync_entity(src, "ad_plan_stats", wh, run_id="run-2")

    calls = [e["query"] for e in stats_calls(vk)]
    first_day = (UNTIL - timedelta(days=6)).isoformat()  # cursor − (settle_days − 1)
    assert min(c["date_from"] for c in calls) == first_day
    assert max(c["date_to"] for c in calls) == UNTIL.isoformat()
    assert second.fetched == 7 * 3 and second.inserted == 1 and second.duplicates == 20
    assert wh.count_rows("raw.vk_ads__ad_plan_stats") == 31
    spent = wh.query_df("select payload from raw.vk_ads__ad_plan_stats "
                        f"where record_id = '{recent}|20865519'")["payload"]
    assert sorted(json.loads(p)["base"]["spent"] for p in spent) == ["100.05", "3527.40"]
    untouched = wh.query_df("select payload from raw.vk_ads__ad_plan_stats "
                            f"where record_id = '{old}|20865519'")["payload"]
    assert len(untouched) == 1  # a change outside the window is not re-pulled
    assert second.cursor_after == UNTIL.isoformat()


def test_resume_after_failed_chunk_keeps_cursor_and_no_duplicates(vk, store, wh):
    src = make_source(vk, store, chunk_days=4)
    seen: list[int] = []

    def break_after_first_chunk(records):
        seen.append(len(records))
        if len(seen) == 1:
            vk.faults.add("5xx", count=20, path_prefix=STATS_PATH, status=500)
        return records, []

    with pytest.raises(ApiError) as info:
        sync_entity(src, "ad_plan_stats", wh, run_id="r1", validate=break_after_first_chunk,
                    batch_records=1)
    assert info.value.status == 500 and info.value.error_code == "ERR_INTERNAL"
    assert wh.count_rows("raw.vk_ads__ad_plan_stats") == 12
    assert wh.get_cursor("vk_ads", ACCOUNT, "ad_plan_stats") is None

    vk.faults.clear()
    result = sync_entity(src, "ad_plan_stats", wh, run_id="r2")
    assert result.inserted == 18 and result.duplicates == 12
    assert wh.count_rows("raw.vk_ads__ad_plan_stats") == 30
    keys = wh.query_df("select record_id from raw.vk_ads__ad_plan_stats")["record_id"]
    assert keys.nunique() == 30
    assert wh.get_cursor("vk_ads", ACCOUNT, "ad_plan_stats") == UNTIL.isoformat()


def test_date_planning_defaults_to_yesterday_in_moscow(vk, store):
    src = VKAdsSource(vk.base_url, account=ACCOUNT, client_id=CLIENT_ID, client_secret=SECRET,
                      token_store=store, start_date=TODAY - timedelta(days=200))
    yesterday = TODAY - timedelta(days=1)
    assert src.date_range(None) == (TODAY - timedelta(days=200), yesterday)
    cursor = (TODAY - timedelta(days=10)).isoformat()
    assert src.date_range(cursor) == (TODAY - timedelta(days=16), yesterday)  # settle 7
    chunks = src.chunks(None)
    assert (chunks[0][1] - chunks[0][0]).days == 91 and chunks[-1][1] == yesterday
    assert src.chunks((yesterday + timedelta(days=10)).isoformat()) == []
    with pytest.raises(ValueError, match="ids_per_request"):
        VKAdsSource(vk.base_url, account=ACCOUNT, client_id=CLIENT_ID, client_secret=SECRET,
                    token_store=store, start_date=TODAY, ids_per_request=201)
