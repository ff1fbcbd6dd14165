"""Google Ads: the emulator on its own, and GoogleAdsSource against it on loopback."""

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
from _support import RecordingSleep, daily_campaign_rows

from emulators.google_ads import GoogleAdsEmulator
from extractors.google_ads import (
    GoogleAdsSource,
    normalise_customer_id,
    parse_duration,
    parse_google_error,
)
from extractors.http import ApiError, AuthorizationError, HttpOptions
from extractors.sync import sync_entity
from warehouse.duckdb_backend import DuckDBWarehouse

CID = "1234567890"
MCC = "9876543210"
CLIENT_ID = "1029384756-voronka.apps.googleusercontent.com"
CLIENT_SECRET = "GOCSPX-client-secret-XYZ-777"
REFRESH = "1//0refresh-token-AbCdEf-secret-42"
DEV_TOKEN = "devtoken-ABCDEFGHIJ-0123456"
START = date(2026, 1, 1)
DAYS = 20
CAMPAIGNS = {21001: "Brand Search", 21002: "Ретаргетинг", 21003: "PMax"}
STREAM = f"/v26/customers/{CID}/googleAds:searchStream"
TIMEOUT = 5


def ads_rows(days: int = DAYS) -> list[dict]:
    return daily_campaign_rows(START, days, CAMPAIGNS)


def emulator(**kwargs) -> GoogleAdsEmulator:
    params = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "refresh_token": REFRESH,
              "developer_token": DEV_TOKEN, **kwargs}
    return GoogleAdsEmulator(ads_rows(), **params)


@pytest.fixture
def ads() -> Iterator[GoogleAdsEmulator]:
    with emulator(batch_rows=4) as emu:
        yield emu


@pytest.fixture
def wh(tmp_path: Path) -> DuckDBWarehouse:
    return DuckDBWarehouse(tmp_path / "w.duckdb")


def make_source(emu: GoogleAdsEmulator, sleep: RecordingSleep | None = None,
                max_retries: int = 3, **kwargs) -> GoogleAdsSource:
    options = HttpOptions(timeout=(2.0, 2.0), max_retries=max_retries, backoff_base=0.01,
                          backoff_max=0.05, max_retry_after=60.0, sleep=sleep or RecordingSleep())
    params = {"customer_id": "123-456-7890", "client_id": CLIENT_ID,
              "client_secret": CLIENT_SECRET, "refresh_token": REFRESH,
              "developer_token": DEV_TOKEN, "start_date": START,
              "until_date": START + timedelta(days=DAYS - 1), "chunk_days": 7, **kwargs}
    return GoogleAdsSource(emu.base_url, emu.base_url + "/token", http_options=options,
                           **params)


def token(emu: GoogleAdsEmulator) -> str:
    r = requests.post(emu.base_url + "/token", timeout=TIMEOUT, data={
        "grant_type": "refresh_token", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
        "refresh_token": REFRESH})
    assert r.status_code == 200
    return r.json()["access_token"]


def stream(emu: GoogleAdsEmulator, query: str, *, path: str = STREAM,
           access: str | None = None, **headers: str) -> requests.Response:
    hdrs = {"Authorization": f"Bearer {access or token(emu)}", **headers}
    return requests.post(emu.base_url + path, json={"query": query}, headers=hdrs,
                         timeout=TIMEOUT)


DAILY = ("SELECT segments.date, campaign.id, campaign.name, metrics.impressions, "
         "metrics.clicks, metrics.cost_micros, customer.currency_code FROM campaign "
         "WHERE segments.date BETWEEN '{a}' AND '{b}'")


def failure_of(resp: requests.Response) -> dict:
    err = resp.json()["error"]
    assert err["code"] == resp.status_code
    (detail,) = err["details"]
    assert detail["@type"] == ("type.googleapis.com/google.ads.googleads.v26.errors."
                               "GoogleAdsFailure")
    assert detail["requestId"] == resp.headers["request-id"]
    return {"status": err["status"], **detail["errors"][0]}


# ---------------------------------------------------------------------------------------------
# emulator
# ---------------------------------------------------------------------------------------------


def test_token_endpoint_refresh_grant_without_rotation(ads):
    url = ads.base_url + "/token"
    form = {"grant_type": "refresh_token", "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET, "refresh_token": REFRESH}
    first = requests.post(url, data=form, timeout=TIMEOUT)
    assert first.status_code == 200
    body = first.json()
    assert body["expires_in"] == 3599 and body["token_type"] == "Bearer"
    assert body["scope"] == "https://www.googleapis.com/auth/adwords"
    assert "refresh_token" not in body  # Google does not rotate refresh tokens
    # the same refresh token keeps working
    second = requests.post(url, data=form, timeout=TIMEOUT).json()["access_token"]
    assert second != body["access_token"] and ads.token_refreshes == 2

    bad = requests.post(url, data={**form, "client_secret": "nope"}, timeout=TIMEOUT)
    assert (bad.status_code, bad.json()["error"]) == (401, "invalid_client")
    bad = requests.post(url, data={**form, "refresh_token": "1//other"}, timeout=TIMEOUT)
    assert (bad.status_code, bad.json()["error"]) == (400, "invalid_grant")
    bad = requests.post(url, data={**form, "grant_type": "password"}, timeout=TIMEOUT)
    assert (bad.status_code, bad.json()["error"]) == (400, "unsupported_grant_type")

    # an expired access token answers 401 UNAUTHENTICATED / OAUTH_TOKEN_EXPIRED
    ads.expire_access_tokens()
    r = stream(ads, DAILY.format(a="2026-01-01", b="2026-01-01"), access=second)
    assert r.status_code == 401
    assert failure_of(r)["status"] == "UNAUTHENTICATED"
    assert failure_of(r)["errorCode"] == {"authenticationError": "OAUTH_TOKEN_EXPIRED"}


def test_search_stream_batches_camel_case_int64_strings(ads):
    r = stream(ads, DAILY.format(a="2026-01-01", b="2026-01-03"))
    assert r.status_code == 200 and r.headers["request-id"]
    batches = r.json()
    assert isinstance(batches, list)
    assert [len(b["results"]) for b in batches] == [4, 4, 1]  # batch_rows=4, 9 rows
    assert {b["requestId"] for b in batches} == {r.headers["request-id"]}
    assert [("queryResourceConsumption" in b) for b in batches] == [False, False, True]
    assert batches[0]["fieldMask"] == ("segments.date,campaign.id,campaign.name,"
                                       "metrics.impressions,metrics.clicks,metrics.costMicros,"
                                       "customer.currencyCode")
    assert batches[0]["results"][0] == {
        "customer": {"resourceName": f"customers/{CID}", "currencyCode": "RUB"},
        "campaign": {"resourceName": f"customers/{CID}/campaigns/21001", "id": "21001",
                     "name": "Brand Search"},
        "metrics": {"impressions": "1000", "clicks": "50", "costMicros": "4312500000"},
        "segments": {"date": "2026-01-01"},
    }
    # an empty range is one batch without results (proto3 JSON omits empty lists)
    empty = stream(ads, DAILY.format(a="2025-01-01", b="2025-01-02")).json()
    assert len(empty) == 1 and "results" not in empty[0] and empty[0]["fieldMask"]
    # all-zero rows are omitted when segmenting by date
    ads.rows.append({**ads.rows[0], "date": "2025-06-01", "impressions": 0, "clicks": 0,
                     "cost": Decimal(0)})
    assert "results" not in stream(ads, DAILY.format(a="2025-06-01", b="2025-06-01")).json()[0]


@pytest.mark.parametrize(("query", "code"), [
    ("SELECT campaign.id FROM ad_group_ad WHERE segments.date BETWEEN '2026-01-01' AND "
     "'2026-01-02'", "BAD_RESOURCE_TYPE_IN_FROM_CLAUSE"),
    ("SELECT segments.date, campaign.id, metrics.costMicros FROM campaign WHERE segments.date "
     "BETWEEN '2026-01-01' AND '2026-01-02'", "UNRECOGNIZED_FIELD"),
    ("SELECT segments.date, campaign.id FROM campaign", "EXPECTED_FILTERS_ON_DATE_RANGE"),
    ("SELECT segments.date, campaign.id FROM campaign WHERE segments.date BETWEEN '2026-1-1' "
     "AND '2026-01-02'", "INVALID_DATE_FORMAT"),
    ("SELECT segments.date, campaign.id FROM campaign WHERE segments.date DURING LAST_7_DAYS",
     "UNEXPECTED_INPUT"),
    ("FROM campaign SELECT campaign.id", "EXPECTED_SELECT"),
])
def test_gaql_other_shapes_are_rejected_with_query_errors(ads, query, code):
    r = stream(ads, query)
    assert r.status_code == 400
    failure = failure_of(r)
    assert failure["status"] == "INVALID_ARGUMENT"
    assert failure["errorCode"] == {"queryError": code} and failure["message"]


def test_paths_customer_ids_and_login_customer_id(ads):
    q = DAILY.format(a="2026-01-01", b="2026-01-01")
    # the documented path is customers/{cid}/googleAds:searchStream; other shapes are 404
    assert stream(ads, q, path=f"/v26/customers/{CID}:googleAds:searchStream").status_code == 404
    assert stream(ads, q, path=f"/v19/customers/{CID}/googleAds:searchStream").status_code == 404
    r = stream(ads, q, path="/v26/customers/123-456-7890/googleAds:searchStream")
    assert (r.status_code, failure_of(r)["errorCode"]) == (
        400, {"requestError": "INVALID_CUSTOMER_ID"})
    r = stream(ads, q, path="/v26/customers/5555555555/googleAds:searchStream")
    assert (r.status_code, failure_of(r)["errorCode"]) == (
        403, {"authorizationError": "USER_PERMISSION_DENIED"})
    assert stream(ads, q, **{"login-customer-id": "1111111111"}).status_code == 403

    with emulator(login_customer_id=MCC) as managed:
        r = stream(managed, q)
        assert r.status_code == 403 and failure_of(r)["status"] == "PERMISSION_DENIED"
        assert "login-customer-id" in failure_of(r)["message"]
        assert stream(managed, q, **{"login-customer-id": MCC}).status_code == 200


# ---------------------------------------------------------------------------------------------
# extractor
# ---------------------------------------------------------------------------------------------


def test_pages_land_results_as_received_with_one_cached_token(ads):
    src = make_source(ads)
    assert src.customer_id == CID and src.account == CID
    pages = list(src.pages("campaign_stats", None))
    assert [(p.meta["date_from"], p.meta["date_to"]) for p in pages] == [
        ("2026-01-01", "2026-01-07"), ("2026-01-08", "2026-01-14"), ("2026-01-15", "2026-01-20")]
    assert [p.cursor_after for p in pages] == ["2026-01-07", "2026-01-14", "2026-01-20"]
    assert [p.meta["batches"] for p in pages] == [6, 6, 5]  # 21, 21, 18 rows in batches of 4
    assert ads.token_refreshes == 1  # cached across chunks
    assert [e["path"] for e in ads.request_log] == ["/token"] + [STREAM] * 3
    assert all(e["developer_token_sent"] for e in ads.request_log[1:])
    assert "BETWEEN '2026-01-01' AND '2026-01-07'" in ads.queries[0]

    records = [r for p in pages for r in p.records]
    assert len(records) == DAYS * len(CAMPAIGNS)
    assert len({r.record_id for r in records}) == len(records)
    first = records[0]
    assert (first.source, first.account, first.entity) == ("google_ads", CID, "campaign_stats")
    assert first.record_id == "2026-01-01|21001" and first.updated_at is None
    assert first.payload == {
        "customer": {"resourceName": f"customers/{CID}", "currencyCode": "RUB",
                     "timeZone": "Europe/Moscow"},
        "campaign": {"resourceName": f"customers/{CID}/campaigns/21001", "id": "21001",
                     "name": "Brand Search", "status": "ENABLED"},
        "metrics": {"impressions": "1000", "clicks": "50", "costMicros": "4312500000"},
        "segments": {"date": "2026-01-01"},
    }
    last = next(r for r in records if r.record_id == "2026-01-20|21002")
    assert last.payload["campaign"]["name"] == "Ретаргетинг"
    assert last.payload["metrics"]["costMicros"] == str(int((Decimal("4312.50") + 20) * 10**6))
    assert all(isinstance(v, str) for r in records for v in r.payload["metrics"].values())


def test_access_token_refreshed_on_401(ads):
    src = make_source(ads, until_date=START + timedelta(days=13))
    pages = src.pages("campaign_stats", None)
    next(pages)
    ads.expire_access_tokens()
    assert len(next(pages).records) == 21
    assert ads.token_refreshes == 2
    assert [(e["path"], e["status"]) for e in ads.request_log] == [
        ("/token", 200), (STREAM, 200), (STREAM, 401), ("/token", 200), (STREAM, 200)]


def test_login_customer_id_required_and_normalised():
    with emulator(login_customer_id=MCC) as managed:
        with pytest.raises(ApiError) as info:
            list(make_source(managed).pages("campaign_stats", None))
        err = info.value
        assert err.status == 403 and err.error_code == "USER_PERMISSION_DENIED"
        assert "PERMISSION_DENIED" in str(err) and "login_customer_id" in str(err)
        assert [e["status"] for e in managed.request_log] == [200, 403]  # not retried

        src = make_source(managed, login_customer_id="987-654-3210")
        assert len([r for p in src.pages("campaign_stats", None) for r in p.records]) == 60
        assert {e["login_customer_id"] for e in managed.request_log[3:]} == {MCC}
    assert normalise_customer_id(" 123-456-7890 ") == CID
    with pytest.raises(ValueError, match="10 digits"):
        normalise_customer_id("123-456")


def test_resource_temporarily_exhausted_waits_retry_delay(ads):
    ads.faults.add("429", path_prefix="/v26/", retry_delay=1.5)
    sleep = RecordingSleep()
    src = make_source(ads, sleep, until_date=START)
    (page,) = list(src.pages("campaign_stats", None))
    assert len(page.records) == 3 and page.meta["quota_retries"] == 1
    assert sleep.calls == [1.5]  # the server's retryDelay "1.5s", not our backoff
    assert [e["status"] for e in ads.request_log if e["path"] == STREAM] == [429, 200]


def test_daily_quota_and_too_long_retry_delay_are_not_retried(ads):
    ads.faults.add("429", path_prefix="/v26/", quota="daily")
    sleep = RecordingSleep()
    with pytest.raises(ApiError) as info:
        list(make_source(ads, sleep, until_date=START).pages("campaign_stats", None))
    assert info.value.status == 429 and info.value.error_code == "RESOURCE_EXHAUSTED"
    assert sleep.calls == []

    ads.faults.add("429", path_prefix="/v26/", retry_delay=3600)
    with pytest.raises(ApiError, match="server asked to wait 3600s"):
        list(make_source(ads, sleep, until_date=START).pages("campaign_stats", None))
    assert sleep.calls == []


def test_5xx_and_dropped_connections_are_retried(ads):
    ads.faults.add("5xx", path_prefix="/v26/", status=503)
    ads.faults.add("drop", path_prefix="/v26/")
    ads.faults.add("5xx", path_prefix="/v26/", status=500)
    ads.faults.add("5xx", path_prefix="/token", status=500)
    sleep = RecordingSleep()
    src = make_source(ads, sleep, max_retries=4, until_date=START + timedelta(days=6))
    (page,) = list(src.pages("campaign_stats", None))
    assert len(page.records) == 21
    assert [e["status"] for e in ads.request_log] == [500, 200, 503, None, 500, 200]
    assert len(sleep.calls) == 4

    ads.faults.add("5xx", count=10, path_prefix="/v26/", status=500)
    with pytest.raises(ApiError) as info:
        list(make_source(ads, sleep, max_retries=2, until_date=START).pages("campaign_stats",
                                                                            None))
    assert info.value.status == 500 and info.value.attempts == 3
    assert info.value.error_code == "INTERNAL_ERROR" and "INTERNAL" in str(info.value)


def test_settling_window_repull_lands_only_changed_recent_day(ads, wh):
    first = sync_entity(make_source(ads), "campaign_stats", wh, run_id="run-1")
    assert first.inserted == 60 and first.cursor_after == "2026-01-20"
    assert wh.get_cursor("google_ads", CID, "campaign_stats") == "2026-01-20"

    def row(day: str, cid: int) -> dict:
        return next(r for r in ads.rows if r["date"] == day and r["campaign_id"] == cid)

    row("2026-01-15", 21001)["cost"] = Decimal("99.99")  # late cost inside the window
    row("2026-01-02", 21001)["cost"] = Decimal("1.00")  # outside the window: not re-pulled
    for cid, name in CAMPAIGNS.items():
        ads.rows.append({"date": "2026-01-21", "campaign_id": cid, "campaign_name": name,
                         "impressions": 5, "clicks": 1, "cost": Decimal("7.00")})
    ads.queries.clear()
    second = sync_entity(make_source(ads, until_date=date(2026, 1, 21)), "campaign_stats", wh,
                         run_id="run-2")
    # settle_days=14 ending at the cursor: 2026-01-07 .. 2026-01-21 in 7-day chunks
    assert [q.split("BETWEEN ")[1].split(" ORDER")[0] for q in ads.queries] == [
        "'2026-01-07' AND '2026-01-13'", "'2026-01-14' AND '2026-01-20'",
        "'2026-01-21' AND '2026-01-21'"]
    assert second.cursor_before == "2026-01-20" and second.cursor_after == "2026-01-21"
    assert second.fetched == 15 * 3
    assert second.inserted == 1 + 3 and second.duplicates == 45 - 4
    assert wh.count_rows("raw.google_ads__campaign_stats") == 64
    costs = wh.query_df("select payload from raw.google_ads__campaign_stats "
                        "where record_id = '2026-01-15|21001'")["payload"]
    assert sorted(json.loads(p)["metrics"]["costMicros"] for p in costs) == [
        "4326500000", "99990000"]
    assert wh.query_df("select count(*) as n from raw.google_ads__campaign_stats "
                       "where record_id = '2026-01-02|21001'")["n"][0] == 1


def test_resume_after_failed_chunk_keeps_cursor_and_no_duplicates(ads, wh):
    src = make_source(ads)
    batches: list[int] = []

    def break_after_first_chunk(records):
        batches.append(len(records))
        if len(batches) == 1:
            ads.faults.add("5xx", count=20, path_prefix="/v26/", status=500)
        return records, []

    with pytest.raises(ApiError):
        sync_entity(src, "campaign_stats", wh, run_id="r1", validate=break_after_first_chunk,
                    batch_records=1)
    assert wh.count_rows("raw.google_ads__campaign_stats") == 21
    assert wh.get_cursor("google_ads", CID, "campaign_stats") is None

    ads.faults.clear()
    result = sync_entity(src, "campaign_stats", wh, run_id="r2")
    assert result.inserted == 39 and result.duplicates == 21
    assert wh.count_rows("raw.google_ads__campaign_stats") == 60
    assert wh.get_cursor("google_ads", CID, "campaign_stats") == "2026-01-20"


def test_secrets_never_reach_exceptions_or_logs(ads, caplog):
    caplog.set_level(logging.DEBUG)
    errors: list[Exception] = []
    # a 403 and an exhausted 5xx after a successful token refresh
    src = make_source(ads, until_date=START, customer_id="5555555555", max_retries=1)
    with pytest.raises(ApiError) as info:
        list(src.pages("campaign_stats", None))
    errors.append(info.value)
    access = src._access
    assert access and access.startswith("ya29.")
    src = make_source(ads, until_date=START, max_retries=1)
    ads.faults.add("5xx", count=5, path_prefix="/v26/", status=500)
    with pytest.raises(ApiError) as info:
        list(src.pages("campaign_stats", None))
    errors.append(info.value)
    # a refused refresh: wrong client secret, then a revoked refresh token
    wrong = "GOCSPX-wrong-secret-000"
    with pytest.raises(AuthorizationError) as info:
        list(make_source(ads, client_secret=wrong).pages("campaign_stats", None))
    assert info.value.error_code == "invalid_client" and "consent flow" in str(info.value)
    errors.append(info.value)
    ads.revoke_refresh_token()
    with pytest.raises(AuthorizationError) as info:
        list(make_source(ads).pages("campaign_stats", None))
    assert info.value.status == 400 and info.value.error_code == "invalid_grant"
    errors.append(info.value)

    texts = [str(e) for e in errors] + [e.body_excerpt for e in errors] + [caplog.text,
                                                                          repr(src)]
    for secret in (CLIENT_SECRET, REFRESH, DEV_TOKEN, access, src._access, wrong):
        assert secret
        for text in texts:
            assert secret not in text


def test_date_planning_defaults_to_yesterday_in_moscow(ads):
    src = make_source(ads, until_date=None, start_date=date(2025, 1, 1))
    yesterday = datetime.now(ZoneInfo("Europe/Moscow")).date() - timedelta(days=1)
    assert src.date_range(None) == (date(2025, 1, 1), yesterday)
    assert src.date_range("2025-06-20") == (date(2025, 6, 7), yesterday)  # 14 settling days
    chunks = GoogleAdsSource(ads.base_url, ads.base_url + "/token", customer_id=CID,
                             client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                             refresh_token=REFRESH, start_date=date(2025, 1, 1)).chunks(None)
    assert chunks[0] == (date(2025, 1, 1), date(2025, 3, 31))  # 90 days
    assert chunks[-1][1] == yesterday
    assert src.chunks((yesterday + timedelta(days=20)).isoformat()) == []
    with pytest.raises(ValueError, match="unknown Google Ads entity"):
        list(src.pages("ad_groups", None))


def test_error_parsing_helpers(ads):
    assert parse_duration("30s") == 30.0 and parse_duration("0.250s") == 0.25
    assert parse_duration("soon") is None
    full = json.dumps({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "details": [
        {"@type": "type.googleapis.com/google.ads.googleads.v26.errors.GoogleAdsFailure",
         "errors": [{"errorCode": {"quotaError": "RESOURCE_TEMPORARILY_EXHAUSTED"},
                     "message": "Too many requests. Retry in 30 seconds.",
                     "details": {"quotaErrorDetails": {"retryDelay": "30s"}}}],
         "requestId": "Xy12"}]}})
    code, text, delay = parse_google_error(full)
    assert (code, delay) == ("RESOURCE_TEMPORARILY_EXHAUSTED", 30.0)
    assert text.startswith("RESOURCE_EXHAUSTED quotaError=RESOURCE_TEMPORARILY_EXHAUSTED")
    assert "(requestId=Xy12)" in text
    # a truncated excerpt still yields the code and the delay
    code, _, delay = parse_google_error(full[:-25])
    assert (code, delay) == ("RESOURCE_TEMPORARILY_EXHAUSTED", 30.0)
    # an error element at the end of a stream fails the chunk
    src = make_source(ads)
    mid = json.dumps([{"results": [], "fieldMask": "x"}, json.loads(full)])
    with pytest.raises(ApiError) as info:
        src.parse_stream(mid, "url")
    assert info.value.error_code == "RESOURCE_TEMPORARILY_EXHAUSTED"
    with pytest.raises(ApiError, match="not a JSON array"):
        src.parse_stream('{"results": []}', "url")


def test_emulator_rate_limit_answers_temporarily_exhausted_with_retry_delay():
    with emulator(rate_limit=1, rate_window_s=30.0, retry_delay_s=7) as limited:
        q = DAILY.format(a="2026-01-01", b="2026-01-01")
        access = token(limited)
        assert stream(limited, q, access=access).status_code == 200
        r = stream(limited, q, access=access)
        assert r.status_code == 429
        failure = failure_of(r)
        assert failure["status"] == "RESOURCE_EXHAUSTED"
        assert failure["errorCode"] == {"quotaError": "RESOURCE_TEMPORARILY_EXHAUSTED"}
        assert failure["details"]["quotaErrorDetails"]["retryDelay"] == "7s"
        assert parse_google_error(r.text)[2] == 7.0
