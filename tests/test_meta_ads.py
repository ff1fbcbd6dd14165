"""Meta Ads Insights: the emulator, and MetaAdsSource against it on loopback."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest
import requests
from _support import RecordingSleep, daily_campaign_rows

from emulators.meta_ads import MetaAdsEmulator
from extractors.http import ApiError, AuthorizationError, HttpOptions
from extractors.meta_ads import FIELDS, MetaAdsSource, usage_of
from extractors.sync import sync_entity
from warehouse.duckdb_backend import DuckDBWarehouse

TOKEN = "EAAB-meta-system-user-token-secret-4242"
ACCOUNT = "act_1234567890"
START = date(2026, 1, 1)
DAYS = 10
CAMPAIGNS = {"120210000000001": "Prospecting RU", "120210000000002": "Ретаргетинг"}
TIMEOUT = 5


def meta_rows(days: int = DAYS) -> list[dict]:
    return daily_campaign_rows(START, days, CAMPAIGNS, impressions=36000, clicks=600,
                               money_key="spend", money=Decimal("3520.40"))


@pytest.fixture
def meta() -> Iterator[MetaAdsEmulator]:
    emulator = MetaAdsEmulator(meta_rows(), access_token=TOKEN, page_size=25).start()
    yield emulator
    emulator.stop()


@pytest.fixture
def wh(tmp_path: Path) -> DuckDBWarehouse:
    return DuckDBWarehouse(tmp_path / "w.duckdb")


def make_source(meta: MetaAdsEmulator, sleep: RecordingSleep | None = None,
                max_retries: int = 3, **kwargs) -> MetaAdsSource:
    options = HttpOptions(timeout=(2.0, 2.0), max_retries=max_retries, backoff_base=0.01,
                          backoff_max=0.05, sleep=sleep or RecordingSleep())
    params = {"ad_account_id": ACCOUNT, "access_token": TOKEN, "start_date": START,
              "until_date": START + timedelta(days=DAYS - 1), "chunk_days": 4,
              "page_limit": 5, **kwargs}
    return MetaAdsSource(meta.base_url, http_options=options, **params)


def graph_get(meta: MetaAdsEmulator, path: str, token: str | None = TOKEN,
              **params) -> requests.Response:
    if token is not None:
        params["access_token"] = token
    return requests.get(f"{meta.base_url}/v25.0{path}", params=params, timeout=TIMEOUT)


def insights_params(since: str = "2026-01-01", until: str = "2026-01-10", **extra) -> dict:
    return {"level": "campaign", "time_increment": "1",
            "time_range": json.dumps({"since": since, "until": until}),
            "fields": ",".join(FIELDS), **extra}


def calls(meta: MetaAdsEmulator) -> list[tuple[str, str, int | None]]:
    return [(e["method"], e["path"], e["status"]) for e in meta.request_log]


# ---------------------------------------------------------------------------------------------
# the emulator
# ---------------------------------------------------------------------------------------------


def test_emulator_sync_cursor_paging_strings_and_usage_header(meta):
    r = graph_get(meta, f"/{ACCOUNT}/insights", **insights_params(limit="8"))
    assert r.status_code == 200
    body = r.json()
    assert len(body["data"]) == 8
    assert body["data"][0] == {
        "campaign_id": "120210000000001", "campaign_name": "Prospecting RU",
        "account_currency": "RUB", "impressions": "36000", "clicks": "600",
        "spend": "3520.40", "date_start": "2026-01-01", "date_stop": "2026-01-01"}
    cursors = body["paging"]["cursors"]
    assert set(cursors) == {"before", "after"}
    nxt = body["paging"]["next"]
    assert nxt.startswith(f"{meta.base_url}/v25.0/{ACCOUNT}/insights?")
    next_query = parse_qs(urlsplit(nxt).query)
    assert next_query["after"] == [cursors["after"]]
    assert next_query["access_token"] == [TOKEN]  # Graph repeats the token in paging links
    seen = list(body["data"])
    while "next" in body.get("paging", {}):
        body = requests.get(body["paging"]["next"], timeout=TIMEOUT).json()
        seen.extend(body["data"])
    assert len(seen) == DAYS * len(CAMPAIGNS)
    assert len({(row["date_start"], row["campaign_id"]) for row in seen}) == len(seen)
    # the same via the Bearer header; X-Business-Use-Case-Usage on every response
    meta.usage.update(call_count=42, total_cputime=7, total_time=9)
    r = requests.get(f"{meta.base_url}/v25.0/{ACCOUNT}/insights", params=insights_params(),
                     headers={"Authorization": f"Bearer {TOKEN}"}, timeout=TIMEOUT)
    assert r.status_code == 200 and len(r.json()["data"]) == 20  # page_size 25
    assert "next" not in r.json()["paging"]
    buc = json.loads(r.headers["X-Business-Use-Case-Usage"])
    assert buc == {"1234567890": [{"type": "ads_insights", "call_count": 42, "total_cputime": 7,
                                   "total_time": 9, "estimated_time_to_regain_access": 0}]}
    assert usage_of(r.headers) == (42.0, 0.0)


def test_emulator_async_run_states_and_failed_run(meta):
    r = requests.post(f"{meta.base_url}/v25.0/{ACCOUNT}/insights",
                      params={**insights_params(), "access_token": TOKEN}, timeout=TIMEOUT)
    run_id = r.json()["report_run_id"]
    early = graph_get(meta, f"/{run_id}/insights")
    assert early.status_code == 400 and early.json()["error"]["code"] == 100
    states = [graph_get(meta, f"/{run_id}").json() for _ in range(3)]
    assert [(s["async_status"], s["async_percent_completion"]) for s in states] == [
        ("Job Not Started", 0), ("Job Running", 50), ("Job Completed", 100)]
    rows = graph_get(meta, f"/{run_id}/insights").json()["data"]
    assert len(rows) == 20 and rows[-1]["spend"] == "3530.40"

    meta.fail_jobs()
    run_id = requests.post(f"{meta.base_url}/v25.0/{ACCOUNT}/insights",
                           data={**insights_params(), "access_token": TOKEN},  # form body
                           timeout=TIMEOUT).json()["report_run_id"]
    states = [graph_get(meta, f"/{run_id}").json() for _ in range(3)]
    assert states[-1]["async_status"] == "Job Failed"
    assert (states[-1]["error_code"], states[-1]["error_subcode"]) == (-2, 2490547)
    assert {"error_message", "error_user_title", "error_user_msg"} <= set(states[-1])


def test_emulator_errors_are_graph_bodies(meta):
    def error_of(r: requests.Response) -> tuple[int, int, int | None]:
        err = r.json()["error"]
        assert err["fbtrace_id"] and err["type"]
        return r.status_code, err["code"], err.get("error_subcode")

    assert error_of(graph_get(meta, f"/{ACCOUNT}/insights", token="wrong",
                              **insights_params())) == (400, 190, None)
    assert error_of(graph_get(meta, f"/{ACCOUNT}/insights", token=None,
                              **insights_params())) == (400, 104, None)
    assert error_of(graph_get(meta, "/act_999/insights", **insights_params())) == (400, 100, 33)
    assert error_of(graph_get(meta, f"/{ACCOUNT}/insights",
                              **insights_params(fields="spend,reach_bogus")))[1] == 100
    future = (datetime.now(ZoneInfo("UTC")).date() + timedelta(days=2)).isoformat()
    r = graph_get(meta, f"/{ACCOUNT}/insights", **insights_params(until=future))
    assert r.status_code == 400 and "end cannot be in the future" in r.json()["error"]["message"]
    assert error_of(graph_get(meta, "/123456/insights")) == (400, 100, 33)

    meta.faults.add("429", code=613, subcode=1487742, regain_minutes=3)
    meta.faults.add("429")
    meta.faults.add("5xx", status=503)
    meta.faults.add("expired_token")
    r = graph_get(meta, f"/{ACCOUNT}/insights", **insights_params())
    assert error_of(r) == (400, 613, 1487742)
    assert usage_of(r.headers)[1] == 3.0
    assert error_of(graph_get(meta, f"/{ACCOUNT}/insights", **insights_params())) == (
        400, 17, 2446079)
    assert error_of(graph_get(meta, f"/{ACCOUNT}/insights", **insights_params()))[:2] == (503, 2)
    assert error_of(graph_get(meta, f"/{ACCOUNT}/insights", **insights_params()))[:2] == (
        400, 190)
    assert [e["fault"] for e in meta.request_log[-4:]] == ["429", "429", "5xx", "expired_token"]


def test_emulator_buc_call_limit_answers_80000():
    with MetaAdsEmulator(meta_rows(), access_token=TOKEN, buc_call_limit=2) as emu:
        first = graph_get(emu, f"/{ACCOUNT}/insights", **insights_params())
        assert usage_of(first.headers)[0] == 50.0
        assert graph_get(emu, f"/{ACCOUNT}/insights", **insights_params()).status_code == 200
        r = graph_get(emu, f"/{ACCOUNT}/insights", **insights_params())
        assert r.status_code == 400 and r.json()["error"]["code"] == 80000
        assert usage_of(r.headers)[0] == 100.0


# ---------------------------------------------------------------------------------------------
# the source
# ---------------------------------------------------------------------------------------------


def test_sync_path_follows_cursor_pages_without_token_in_urls(meta, caplog):
    caplog.set_level(logging.DEBUG)
    sleep = RecordingSleep()
    src = make_source(meta, sleep, use_async=False)
    pages = list(src.pages("campaign_insights", None))

    assert [(p.meta["date_from"], p.meta["date_to"]) for p in pages] == [
        ("2026-01-01", "2026-01-04"), ("2026-01-05", "2026-01-08"), ("2026-01-09", "2026-01-10")]
    assert [p.cursor_after for p in pages] == ["2026-01-04", "2026-01-08", "2026-01-10"]
    assert [p.meta["api_pages"] for p in pages] == [2, 2, 1]  # 8, 8, 4 rows at limit=5
    assert all(m == "GET" and p == f"/v25.0/{ACCOUNT}/insights" for m, p, _ in calls(meta))
    queries = [e["query"] for e in meta.request_log]
    assert [q.get("after") is not None for q in queries] == [False, True] * 2 + [False]
    follow = queries[1]  # the followed next link keeps every original parameter
    assert {k: follow[k] for k in ("level", "time_increment", "time_range", "fields")} == {
        "level": "campaign", "time_increment": "1", "fields": ",".join(FIELDS),
        "time_range": '{"since":"2026-01-01","until":"2026-01-04"}'}
    assert follow["limit"] == "5"
    # the token rides in the Bearer header only; the access_token Graph repeats in its next
    # links is stripped before following them
    assert all("access_token" not in q for q in queries)
    assert TOKEN not in caplog.text
    # and should a URL with the token ever be shown, the shared Redactor masks it
    raw_next = graph_get(meta, f"/{ACCOUNT}/insights", **insights_params(limit="5")).json()
    shown = src.client.safe_url(raw_next["paging"]["next"])
    assert TOKEN not in shown and "access_token=***" in shown
    records = [r for p in pages for r in p.records]
    assert len(records) == DAYS * len(CAMPAIGNS)
    assert len({r.record_id for r in records}) == len(records)
    assert sleep.calls == []


def test_async_flow_polls_with_backoff_until_completed(meta):
    sleep = RecordingSleep()
    src = make_source(meta, sleep, poll_interval=2.0)
    pages = list(src.pages("campaign_insights", None))
    assert [p.meta["polls"] for p in pages] == [3, 3, 3]
    assert len(meta.report_runs) == 3
    run_id = pages[0].meta["report_run_id"]
    assert calls(meta)[:6] == [
        ("POST", f"/v25.0/{ACCOUNT}/insights", 200),
        ("GET", f"/v25.0/{run_id}", 200),  # Job Not Started
        ("GET", f"/v25.0/{run_id}", 200),  # Job Running
        ("GET", f"/v25.0/{run_id}", 200),  # Job Completed
        ("GET", f"/v25.0/{run_id}/insights", 200),
        ("GET", f"/v25.0/{run_id}/insights", 200),  # second page via paging.next
    ]
    assert sleep.calls == [2.0, 4.0] * 3  # exponential backoff between polls
    spec = meta.report_runs[run_id]["spec"]
    assert (spec["since"], spec["until"]) == ("2026-01-01", "2026-01-04")
    assert sum(len(p.records) for p in pages) == DAYS * len(CAMPAIGNS)


def test_string_values_are_landed_exactly_as_received(meta):
    meta.rows[0]["actions"] = [{"action_type": "purchase", "value": 9},
                               {"action_type": "link_click", "value": 540}]
    src = make_source(meta, until_date=START)
    (page,) = list(src.pages("campaign_insights", None))
    first, second = page.records
    assert first.source == "meta_ads" and first.account == ACCOUNT
    assert first.entity == "campaign_insights" and first.updated_at is None
    assert first.record_id == "2026-01-01|120210000000001"
    assert first.payload == {
        "campaign_id": "120210000000001", "campaign_name": "Prospecting RU",
        "account_currency": "RUB", "impressions": "36000", "clicks": "600", "spend": "3520.40",
        "actions": [{"action_type": "purchase", "value": "9"},
                    {"action_type": "link_click", "value": "540"}],
        "date_start": "2026-01-01", "date_stop": "2026-01-01"}
    assert second.payload["campaign_name"] == "Ретаргетинг"
    assert second.payload["spend"] == "3521.40" and "actions" not in second.payload


def test_job_failed_is_a_clear_api_error(meta):
    meta.fail_jobs()
    src = make_source(meta)
    with pytest.raises(ApiError) as info:
        list(src.pages("campaign_insights", None))
    text = str(info.value)
    assert "Job Failed" in text and "2026-01-01..2026-01-04" in text
    assert "code=-2" in text and "subcode=2490547" in text and "retry later" in text
    assert info.value.error_code == "-2"
    assert not isinstance(info.value, AuthorizationError)


def test_async_run_never_completing_is_bounded_by_max_polls():
    with MetaAdsEmulator(meta_rows(), access_token=TOKEN, async_polls=50) as slow:
        sleep = RecordingSleep()
        src = make_source(slow, sleep, max_polls=4, poll_interval=1.0, max_poll_interval=3.0)
        with pytest.raises(ApiError, match=r"still 'Job Running' \(6%\) after 4 polls"):
            list(src.pages("campaign_insights", None))
        assert sleep.calls == [1.0, 2.0, 3.0]


@pytest.mark.parametrize(("code", "subcode", "regain"), [
    (4, 1504022, 0), (17, 2446079, 2), (613, 1487742, 1), (80000, 2446079, 5)])
def test_throttling_codes_are_honoured_then_succeed(meta, caplog, code, subcode, regain):
    caplog.set_level(logging.DEBUG)
    meta.faults.add("429", path_prefix="/v25.0/", code=code, subcode=subcode,
                    regain_minutes=regain)
    meta.faults.add("429", count=2, path_prefix="/v25.0/", code=code, subcode=subcode)
    sleep = RecordingSleep()
    src = make_source(meta, sleep, use_async=False)
    records = [r for p in src.pages("campaign_insights", None) for r in p.records]
    assert len(records) == DAYS * len(CAMPAIGNS)
    assert [s for _, _, s in calls(meta)][:4] == [400, 400, 400, 200]
    if regain:
        assert sleep.calls[0] == regain * 60.0  # estimated_time_to_regain_access, minutes
    else:
        assert 0 < sleep.calls[0] <= 0.05  # exponential backoff with jitter
    assert len(sleep.calls) == 3 and all(0 < s <= 0.05 for s in sleep.calls[1:])
    assert f"code {code}/{subcode}" in caplog.text
    assert TOKEN not in caplog.text


def test_throttling_beyond_budget_or_wait_limit_fails(meta):
    meta.faults.add("429", count=10, code=17)
    src = make_source(meta, max_retries=2)
    with pytest.raises(ApiError, match="still throttled after 3 attempts") as info:
        list(src.pages("campaign_insights", None))
    assert info.value.error_code == "17" and "User request limit reached" in str(info.value)
    meta.faults.clear()
    meta.faults.add("429", code=80000, regain_minutes=30)
    options = HttpOptions(max_retry_after=600.0, sleep=RecordingSleep())
    src = MetaAdsSource(meta.base_url, ad_account_id=ACCOUNT, access_token=TOKEN,
                        start_date=START, until_date=START, http_options=options)
    with pytest.raises(ApiError, match="asked to wait 1800s, more than max_retry_after=600s"):
        list(src.pages("campaign_insights", None))


def test_high_usage_slows_down_before_the_limit(meta):
    meta.usage.update(call_count=60, total_cputime=40, total_time=50)  # below 75%: no pause
    sleep = RecordingSleep()
    list(make_source(meta, sleep, use_async=False).pages("campaign_insights", None))
    assert sleep.calls == []

    meta.usage.update(call_count=70, total_cputime=90, total_time=80)  # highest one counts
    sleep = RecordingSleep()
    src = make_source(meta, sleep, use_async=False, until_date=date(2026, 1, 4))
    pages = list(src.pages("campaign_insights", None))
    assert sum(len(p.records) for p in pages) == 8
    # 2 calls; the pause is planned after each response and taken before the next call:
    # 60 s * (90 - 75) / (100 - 75) = 36 s
    assert sleep.calls == [36.0]

    meta.usage["call_count"] = 99
    meta.regain_minutes = 2  # estimated_time_to_regain_access on a success: wait it out
    sleep = RecordingSleep()
    list(make_source(meta, sleep, use_async=False, until_date=date(2026, 1, 4))
         .pages("campaign_insights", None))
    assert sleep.calls == [120.0]


def test_invalid_token_190_asks_to_renew_and_never_leaks(meta, caplog):
    caplog.set_level(logging.DEBUG)
    bad = "EAAB-revoked-token-ZZZZ-secret-9876"
    src = MetaAdsSource(meta.base_url, ad_account_id="1234567890", access_token=bad,
                        start_date=START, until_date=START,
                        http_options=HttpOptions(sleep=RecordingSleep()))
    assert src.account == ACCOUNT  # the act_ prefix is added when missing
    with pytest.raises(AuthorizationError) as info:
        list(src.pages("campaign_insights", None))
    err = info.value
    assert err.status == 400 and err.error_code == "190"
    assert "Invalid OAuth access token" in str(err) and "renew it" in str(err)
    assert bad not in str(err) and bad not in repr(err.__reduce__()) and bad not in caplog.text

    meta.faults.add("expired_token", path_prefix=f"/v25.0/{ACCOUNT}")
    with pytest.raises(AuthorizationError, match="Session has expired"):
        list(make_source(meta).pages("campaign_insights", None))
    assert TOKEN not in caplog.text


def test_other_graph_errors_are_not_retried(meta, caplog):
    caplog.set_level(logging.DEBUG)
    today = datetime.now(ZoneInfo("UTC")).date()
    src = make_source(meta, start_date=today - timedelta(days=1),
                      until_date=today + timedelta(days=2), use_async=False)
    with pytest.raises(ApiError) as info:
        list(src.pages("campaign_insights", None))
    assert info.value.error_code == "100" and "end cannot be in the future" in str(info.value)
    assert len(meta.request_log) == 1
    assert TOKEN not in str(info.value) and TOKEN not in caplog.text


def test_server_errors_and_drops_are_retried(meta):
    meta.faults.add("5xx", status=500)
    meta.faults.add("drop")
    meta.faults.add("5xx", status=503)
    records = [r for p in make_source(meta, max_retries=4).pages("campaign_insights", None)
               for r in p.records]
    assert len(records) == DAYS * len(CAMPAIGNS)
    assert [e["fault"] for e in meta.request_log[:4]] == ["5xx", "drop", "5xx", None]


def test_date_planning_defaults_to_yesterday_in_moscow(meta):
    src = MetaAdsSource(meta.base_url, ad_account_id=ACCOUNT, access_token=TOKEN,
                        start_date=date(2025, 1, 1))
    yesterday = datetime.now(ZoneInfo("Europe/Moscow")).date() - timedelta(days=1)
    assert src.date_range(None) == (date(2025, 1, 1), yesterday)
    assert src.date_range("2025-06-30") == (date(2025, 6, 3), yesterday)  # 28 settling days
    chunks = src.chunks(None)
    assert chunks[0] == (date(2025, 1, 1), date(2025, 1, 30))  # 30 days
    assert chunks[-1][1] == yesterday
    # the settling window reaches back from any cursor; one far in the future pulls nothing
    assert src.chunks((yesterday + timedelta(days=3)).isoformat()) == [
        (yesterday - timedelta(days=24), yesterday)]
    assert src.chunks((yesterday + timedelta(days=40)).isoformat()) == []
    with pytest.raises(ValueError, match="unknown Meta Ads entity"):
        list(src.pages("ads", None))


def test_settling_window_repull_lands_only_the_changed_day(wh):
    days = 40
    with MetaAdsEmulator(meta_rows(days), access_token=TOKEN, async_polls=1) as emu:
        src = make_source(emu, until_date=START + timedelta(days=days - 1), chunk_days=30,
                          page_limit=500)
        first = sync_entity(src, "campaign_insights", wh, run_id="run-1")
        assert first.inserted == 80 and first.cursor_after == "2026-02-09"
        assert wh.get_cursor("meta_ads", ACCOUNT, "campaign_insights") == "2026-02-09"

        # Meta restates a recent day (late conversions) and one day older than the window
        for day, cid, spend in (("2026-02-05", "120210000000002", "10.00"),
                                ("2026-01-05", "120210000000001", "1.00")):
            row = next(r for r in emu.rows if r["date"] == day and r["campaign_id"] == cid)
            row["spend"] = Decimal(spend)
        emu.report_runs.clear()
        second = sync_entity(src, "campaign_insights", wh, run_id="run-2")

    specs = sorted((s["spec"]["since"], s["spec"]["until"]) for s in emu.report_runs.values())
    assert specs == [("2026-01-13", "2026-02-09")]  # 28 days ending at the cursor
    assert second.fetched == 28 * 2
    assert second.inserted == 1 and second.duplicates == 55
    assert second.cursor_after == "2026-02-09"
    assert wh.count_rows("raw.meta_ads__campaign_insights") == 81
    spends = wh.query_df("select payload from raw.meta_ads__campaign_insights "
                         "where record_id = '2026-02-05|120210000000002'")["payload"]
    assert sorted(json.loads(p)["spend"] for p in spends) == ["10.00", "3556.40"]


def test_resume_after_failed_chunk_keeps_cursor_and_no_duplicates(meta, wh):
    src = make_source(meta)
    batches: list[int] = []

    def break_after_first_chunk(records):
        batches.append(len(records))
        if len(batches) == 1:
            meta.faults.add("5xx", count=20, status=500)
        return records, []

    with pytest.raises(ApiError):
        sync_entity(src, "campaign_insights", wh, run_id="r1",
                    validate=break_after_first_chunk, batch_records=1)
    assert wh.count_rows("raw.meta_ads__campaign_insights") == 8
    assert wh.get_cursor("meta_ads", ACCOUNT, "campaign_insights") is None

    meta.faults.clear()
    result = sync_entity(src, "campaign_insights", wh, run_id="r2")
    assert result.inserted == 12 and result.duplicates == 8
    assert wh.count_rows("raw.meta_ads__campaign_insights") == 20
    assert wh.get_cursor("meta_ads", ACCOUNT, "campaign_insights") == "2026-01-10"
