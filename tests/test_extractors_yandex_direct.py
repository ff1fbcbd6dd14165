"""YandexDirectSource against the real Yandex Direct Reports emulator on loopback."""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from _support import RecordingSleep, daily_campaign_rows

from emulators import YandexDirectEmulator
from extractors.http import ApiError, AuthorizationError, HttpOptions
from extractors.sync import sync_entity
from extractors.yandex_direct import FIELD_NAMES, YandexDirectSource
from warehouse.duckdb_backend import DuckDBWarehouse

TOKEN = "y0_direct-token-AQAAAA-secret-77"
LOGIN = "voronka-demo"
START = date(2026, 1, 1)
DAYS = 10
CAMPAIGNS = {70012345: "Brand_Search", 70012346: "Ретаргетинг РСЯ", 70012347: "Generic"}


def direct_rows(days: int = DAYS) -> list[dict]:
    return daily_campaign_rows(START, days, CAMPAIGNS)


@pytest.fixture
def direct() -> Iterator[YandexDirectEmulator]:
    emulator = YandexDirectEmulator(direct_rows(), token=TOKEN, client_login=LOGIN,
                                    offline_polls=2, retry_in_s=1).start()
    yield emulator
    emulator.stop()


@pytest.fixture
def wh(tmp_path: Path) -> DuckDBWarehouse:
    return DuckDBWarehouse(tmp_path / "wh.duckdb")


def make_source(direct: YandexDirectEmulator, sleep: RecordingSleep | None = None,
                max_retries: int = 3, **kwargs) -> YandexDirectSource:
    options = HttpOptions(timeout=(2.0, 2.0), max_retries=max_retries, backoff_base=0.01,
                          backoff_max=0.05, sleep=sleep or RecordingSleep())
    params = {"token": TOKEN, "client_login": LOGIN, "start_date": START,
              "until_date": START + timedelta(days=DAYS - 1), "chunk_days": 4, **kwargs}
    return YandexDirectSource(direct.base_url, http_options=options, **params)


def requested_ranges(direct: YandexDirectEmulator) -> list[tuple[str, str]]:
    specs = [json.loads(s["spec"]) for s in direct.reports.values()]
    return sorted((s["SelectionCriteria"]["DateFrom"], s["SelectionCriteria"]["DateTo"])
                  for s in specs)


# ---------------------------------------------------------------------------------------------


def test_offline_flow_201_202_200_with_retry_in_and_micros(direct):
    sleep = RecordingSleep()
    src = make_source(direct, sleep)
    pages = list(src.pages("campaign_stats", None))

    assert [(p.meta["date_from"], p.meta["date_to"]) for p in pages] == [
        ("2026-01-01", "2026-01-04"), ("2026-01-05", "2026-01-08"), ("2026-01-09", "2026-01-10")]
    assert [p.cursor_after for p in pages] == ["2026-01-04", "2026-01-08", "2026-01-10"]
    assert [p.meta["polls"] for p in pages] == [2, 2, 2]
    # each chunk: 201 (queued), 202 (building), 200 (ready); retryIn=1 honoured between polls
    assert [r["status"] for r in direct.request_log] == [201, 202, 200] * 3
    assert sleep.calls == [1.0] * 6

    records = [r for p in pages for r in p.records]
    assert len(records) == DAYS * len(CAMPAIGNS)
    first = records[0]
    assert first.source == "yandex_direct" and first.account == LOGIN
    assert first.entity == "campaign_stats" and first.updated_at is None
    assert first.record_id == "2026-01-01|70012345"
    assert first.payload == {
        "Date": "2026-01-01", "CampaignId": "70012345", "CampaignName": "Brand_Search",
        "Impressions": "1000", "Clicks": "50", "Cost": "4312500000",  # micros
        "_currency": "RUB", "_include_vat": "NO", "_money_in_micros": True,
    }
    cyrillic = next(r for r in records if r.record_id == "2026-01-10|70012346")
    assert cyrillic.payload["CampaignName"] == "Ретаргетинг РСЯ"  # decoded as UTF-8
    assert cyrillic.payload["Cost"] == str(int((Decimal("4312.50") + 9 + 1) * 1_000_000))

    spec = json.loads(next(iter(direct.reports.values()))["spec"])
    assert spec["FieldNames"] == list(FIELD_NAMES)
    assert spec["IncludeVAT"] == "NO" and spec["Format"] == "TSV"
    assert spec["ReportType"] == "CAMPAIGN_PERFORMANCE_REPORT"
    assert len(direct.reports) == 3  # one deterministic name per chunk, reused while polling


def test_report_name_is_deterministic_per_spec(direct):
    a, b = make_source(direct), make_source(direct)
    d1, d2 = date(2026, 1, 1), date(2026, 1, 4)
    assert a.report_spec(d1, d2) == b.report_spec(d1, d2)
    assert (a.report_spec(d1, d2)["params"]["ReportName"]
            != a.report_spec(d1, d1)["params"]["ReportName"])
    vat = make_source(direct, include_vat=True)
    assert vat.report_spec(d1, d2)["params"]["IncludeVAT"] == "YES"
    assert (vat.report_spec(d1, d2)["params"]["ReportName"]
            != a.report_spec(d1, d2)["params"]["ReportName"])


def test_incremental_resettles_last_days_and_lands_only_changes(direct, wh):
    src = make_source(direct)
    first = sync_entity(src, "campaign_stats", wh, run_id="run-1")
    assert first.inserted == 30 and first.cursor_after == "2026-01-10"
    assert wh.get_cursor("yandex_direct", LOGIN, "campaign_stats") == "2026-01-10"

    # a late correction of 2026-01-09 and two new days
    row = next(r for r in direct.rows if r["date"] == "2026-01-09" and r["campaign_id"] == 70012345)
    row["cost"] = Decimal("100.00")
    for d in (10, 11):
        for cid, name in CAMPAIGNS.items():
            direct.rows.append({"date": (START + timedelta(days=d)).isoformat(),
                                "campaign_id": cid, "campaign_name": name, "impressions": 1,
                                "clicks": 1, "cost": Decimal("1.00")})
    direct.reports.clear()
    later = make_source(direct, until_date=date(2026, 1, 12))
    second = sync_entity(later, "campaign_stats", wh, run_id="run-2")

    # re-pulls settle_days=3 days ending at the cursor: 2026-01-08 .. 2026-01-12
    assert requested_ranges(direct) == [("2026-01-08", "2026-01-11"),
                                        ("2026-01-12", "2026-01-12")]
    assert second.cursor_before == "2026-01-10" and second.cursor_after == "2026-01-12"
    assert second.fetched == 5 * 3
    assert second.inserted == 1 + 6  # the corrected row + two new days
    assert second.duplicates == 15 - 7
    assert wh.count_rows("raw.yandex_direct__campaign_stats") == 30 + 7
    costs = wh.query_df("select payload from raw.yandex_direct__campaign_stats "
                        "where record_id = '2026-01-09|70012345'")["payload"]
    assert sorted(json.loads(p)["Cost"] for p in costs) == ["100000000", "4320500000"]


def test_date_planning_defaults_to_yesterday_in_moscow(direct):
    src = YandexDirectSource(direct.base_url, token=TOKEN, client_login=LOGIN,
                             start_date=date(2025, 1, 1))
    yesterday = datetime.now(ZoneInfo("Europe/Moscow")).date() - timedelta(days=1)
    assert src.date_range(None) == (date(2025, 1, 1), yesterday)
    assert src.date_range("2025-06-10") == (date(2025, 6, 8), yesterday)
    chunks = src.chunks(None)
    assert chunks[0] == (date(2025, 1, 1), date(2025, 4, 2))  # 92 days
    assert all((b - a).days == 91 for a, b in chunks[:-1])
    assert chunks[-1][1] == yesterday
    assert all(nxt[0] - prev[1] == timedelta(days=1) for prev, nxt in itertools.pairwise(chunks))
    # a cursor at the start never reaches before start_date; a future cursor pulls nothing
    assert src.date_range("2025-01-01")[0] == date(2025, 1, 1)
    assert src.chunks((yesterday + timedelta(days=5)).isoformat()) == []


def test_server_errors_429_and_drops_are_retried(direct):
    direct.faults.add("5xx", status=502)
    direct.faults.add("429", retry_after=2)
    direct.faults.add("drop")
    direct.faults.add("5xx", status=500)
    sleep = RecordingSleep()
    src = make_source(direct, sleep, max_retries=4)
    records = [r for p in src.pages("campaign_stats", None) for r in p.records]
    assert len(records) == 30
    assert 2.0 in sleep.calls  # Retry-After honoured
    statuses = [r["status"] for r in sorted(direct.request_log, key=lambda r: r["t"])]
    assert statuses[:5] == [502, 429, None, 500, 201]


def test_error_body_becomes_api_error_naming_the_error_code(direct, caplog):
    caplog.set_level(logging.DEBUG)
    bad_token = "y0_revoked-token-BBBBBB-secret"
    src = YandexDirectSource(direct.base_url, token=bad_token, client_login=LOGIN,
                             start_date=START, until_date=START,
                             http_options=HttpOptions(sleep=RecordingSleep()))
    with pytest.raises(AuthorizationError) as info:
        list(src.pages("campaign_stats", None))
    err = info.value
    assert err.status == 403 and err.error_code == "53"
    assert "error_code=53" in str(err) and "Invalid OAuth token" in str(err)
    assert "new OAuth token" in str(err)
    assert bad_token not in str(err) and bad_token not in caplog.text

    other = make_source(direct, client_login="someone-else")
    with pytest.raises(ApiError) as info:
        list(other.pages("campaign_stats", None))
    assert info.value.error_code == "54" and "error_code=54" in str(info.value)
    assert "request_id=" in str(info.value)
    assert TOKEN not in str(info.value) and TOKEN not in caplog.text


def test_report_never_ready_is_bounded_by_max_polls(tmp_path):
    with YandexDirectEmulator(direct_rows(), token=TOKEN, client_login=LOGIN,
                              offline_polls=50, retry_in_s=3) as slow:
        sleep = RecordingSleep()
        src = make_source(slow, sleep, max_polls=3)
        with pytest.raises(ApiError, match="still not ready after 3 polls"):
            list(src.pages("campaign_stats", None))
        assert len(slow.request_log) == 4
        assert sleep.calls == [3.0, 3.0, 3.0]


def test_resume_after_failed_chunk_keeps_cursor_and_no_duplicates(direct, wh):
    src = make_source(direct)
    chunks_seen: list[int] = []

    def break_after_first_chunk(records):
        chunks_seen.append(len(records))
        if len(chunks_seen) == 1:
            direct.faults.add("5xx", count=20, status=500)
        return records, []

    with pytest.raises(ApiError):
        sync_entity(src, "campaign_stats", wh, run_id="r1", validate=break_after_first_chunk,
                    batch_records=1)  # land chunk by chunk
    assert wh.count_rows("raw.yandex_direct__campaign_stats") == 12
    assert wh.get_cursor("yandex_direct", LOGIN, "campaign_stats") is None

    direct.faults.clear()
    result = sync_entity(src, "campaign_stats", wh, run_id="r2")
    assert result.inserted == 18 and result.duplicates == 12
    assert wh.count_rows("raw.yandex_direct__campaign_stats") == 30
    assert wh.get_cursor("yandex_direct", LOGIN, "campaign_stats") == "2026-01-10"


def test_tsv_parser_tolerates_title_and_summary_and_rejects_unknown_columns():
    header = "\t".join(FIELD_NAMES)
    text = f"report (2026-01-01 - 2026-01-01)\n{header}\n2026-01-01\t1\tA\t10\t1\t20000\n" \
           "Total rows: 1\n"
    assert YandexDirectSource.parse_tsv(text) == [
        {"Date": "2026-01-01", "CampaignId": "1", "CampaignName": "A", "Impressions": "10",
         "Clicks": "1", "Cost": "20000"}]
    assert YandexDirectSource.parse_tsv(f"{header}\n") == []
    assert YandexDirectSource.parse_tsv("") == []
    with pytest.raises(ApiError, match="unexpected report columns"):
        YandexDirectSource.parse_tsv("Date\tCampaignId\tCost\n2026-01-01\t1\t5\n")
    with pytest.raises(ApiError, match="has 2 fields"):
        YandexDirectSource.parse_tsv(f"{header}\n2026-01-01\t1\n")
