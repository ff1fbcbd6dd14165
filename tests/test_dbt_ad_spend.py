"""Known-answer tests of the unified ad-spend model: every ad platform and offline files.

Raw records come from the real extractors run against their emulators (Google Ads, VK Ads,
Meta Ads) and from the files source reading CSVs written here, so the payloads are shaped
exactly as in production. They are landed twice: a first version, then a second extract in
which some days changed (a restated cost, a corrected file row, the same day written in the
other date format); the newest version must win. A small synthetic business is landed beside
them so the rest of the project builds, then `dbt build` runs and fct_ad_spend_daily must
equal the inputs per platform and day, and fct_acquisition_monthly must carry the spend of
every channel. The PostgreSQL variant runs only with VORONKA_TEST_POSTGRES=1.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
from _support import failed_nodes, run_dbt, scratch_warehouse

import synthetic
from emulators.google_ads import GoogleAdsEmulator
from emulators.meta_ads import MetaAdsEmulator
from emulators.vk_ads import VKAdsEmulator
from extractors.files import FilesSource, validate_file_rows
from extractors.google_ads import GoogleAdsSource
from extractors.http import HttpOptions
from extractors.meta_ads import MetaAdsSource
from extractors.state import TokenStore
from extractors.vk_ads import VKAdsSource
from synthetic.landing import land_business
from warehouse.base import Warehouse
from warehouse.records import RawRecord

FIRST, LAST = date(2026, 3, 2), date(2026, 3, 4)
MONTH = date(2026, 3, 1)
GOOGLE_CID = "5550001112"
META_ACCOUNT = "act_555000111"
META_TOKEN = "test-meta-token"
VK_ACCOUNT = "vk-test-cabinet"
FILES_ACCOUNT = "files-test"
NO_SLEEP = HttpOptions(timeout=(2.0, 5.0), max_retries=2, backoff_base=0.01,
                       sleep=lambda _s: None)

# -- the inputs (v1 = first extract; v2 = what changed by the second extract) -----------------
GOOGLE_V1 = [
    {"date": "2026-03-02", "campaign_id": 9001, "campaign_name": "G Search", "impressions": 1200,
     "clicks": 40, "cost": "1234.56"},
    {"date": "2026-03-02", "campaign_id": 9002, "campaign_name": "G PMax", "impressions": 800,
     "clicks": 11, "cost": "300.01"},
    {"date": "2026-03-03", "campaign_id": 9001, "campaign_name": "G Search", "impressions": 900,
     "clicks": 30, "cost": "999.99"},
    {"date": "2026-03-04", "campaign_id": 9001, "campaign_name": "G Search", "impressions": 950,
     "clicks": 35, "cost": "1000.00"},
]
GOOGLE_V2 = {("2026-03-04", 9001): {"clicks": 36, "cost": "1111.11"}}  # cost settled late

VK_V1 = [
    {"date": "2026-03-02", "ad_plan_id": 501, "ad_plan_name": "VK Leads", "shows": 5000,
     "clicks": 70, "spent": "2500.50"},
    {"date": "2026-03-03", "ad_plan_id": 501, "ad_plan_name": "VK Leads", "shows": 4000,
     "clicks": 60, "spent": "2000.25"},
    {"date": "2026-03-03", "ad_plan_id": 502, "ad_plan_name": "VK Retarget", "shows": 1000,
     "clicks": 9, "spent": "450.00"},
    {"date": "2026-03-04", "ad_plan_id": 502, "ad_plan_name": "VK Retarget", "shows": 1100,
     "clicks": 12, "spent": "480.75"},
]
VK_V2 = {("2026-03-03", 501): {"spent": "2100.00", "clicks": 61}}

META_V1 = [
    {"date": "2026-03-02", "campaign_id": "120200000001", "campaign_name": "Meta Leads",
     "impressions": 7000, "clicks": 90, "spend": "3100.10"},
    {"date": "2026-03-03", "campaign_id": "120200000001", "campaign_name": "Meta Leads",
     "impressions": 6500, "clicks": 80, "spend": "2999.90"},
    {"date": "2026-03-04", "campaign_id": "120200000002", "campaign_name": "Meta Reels",
     "impressions": 3000, "clicks": 20, "spend": "700.00"},
]
META_V2 = {("2026-03-02", "120200000001"): {"spend": "3150.00", "impressions": 7100}}

FILES_HEADER = "date;platform;campaign_id;campaign_name;spend;currency;impressions;clicks;" \
    "vat_included"
FILES_V1 = [
    "2026-03-02;Telegram Ads;tg-1;TG channel post;15 000,50;RUB;20000;150;да",
    "03.03.2026;vk;vk-offline;VK blogger;1 000,00;RUB;;;нет",
    "2026-03-04;Yandex Direct;ya-offline;Yandex agency;100.25;RUB;10;1;false",
]
# the corrected export writes the VK row's date in ISO and fixes its spend
FILES_V2 = [FILES_V1[0], "2026-03-03;vk;vk-offline;VK blogger;1 234,5;RUB;;;нет", FILES_V1[2]]

# expected fct_ad_spend_daily: (platform, account, spend_date, campaign_id) ->
# (spend, impressions, clicks, channel, vat_included)
EXPECTED: dict[tuple[str, str, str, str], tuple[Decimal, int | None, int | None, str,
                                                bool | None]] = {}


def _merge(rows: list[dict], changes: dict, key: tuple[str, str]) -> list[dict]:
    return [{**r, **changes.get((r[key[0]], r[key[1]]), {})} for r in rows]


def _expected() -> dict:
    out: dict = {}
    for r in _merge(GOOGLE_V1, GOOGLE_V2, ("date", "campaign_id")):
        out[("google_ads", GOOGLE_CID, r["date"], str(r["campaign_id"]))] = (
            Decimal(r["cost"]), r["impressions"], r["clicks"], "google_ads", False)
    for r in _merge(VK_V1, VK_V2, ("date", "ad_plan_id")):
        out[("vk_ads", VK_ACCOUNT, r["date"], str(r["ad_plan_id"]))] = (
            Decimal(r["spent"]), r["shows"], r["clicks"], "vk_ads", None)
    for r in _merge(META_V1, META_V2, ("date", "campaign_id")):
        out[("meta_ads", META_ACCOUNT, r["date"], r["campaign_id"])] = (
            Decimal(r["spend"]), r["impressions"], r["clicks"], "meta_ads", False)
    out[("telegram_ads", FILES_ACCOUNT, "2026-03-02", "tg-1")] = (
        Decimal("15000.50"), 20000, 150, "other", True)
    out[("vk", FILES_ACCOUNT, "2026-03-03", "vk-offline")] = (
        Decimal("1234.50"), None, None, "vk_ads", False)
    out[("yandex_direct", FILES_ACCOUNT, "2026-03-04", "ya-offline")] = (
        Decimal("100.25"), 10, 1, "yandex_direct", False)
    return out


EXPECTED.update(_expected())
TEST_ACCOUNTS = (GOOGLE_CID, VK_ACCOUNT, META_ACCOUNT, FILES_ACCOUNT)


# -- extracting through the real extractors -------------------------------------------------
def _apply(emulator_rows: list[dict], changes: dict, key: tuple[str, str]) -> None:
    """Edit the emulator's rows in place (the platform restating a day)."""
    for row in emulator_rows:
        change = changes.get((str(row[key[0]]), row[key[1]]))
        if change:
            row.update(change)


def _pull(source, entity: str) -> list[RawRecord]:
    try:
        return [r for page in source.pages(entity, None) for r in page.records]
    finally:
        source.close()


def _google(rows: list[dict]) -> list[RawRecord]:
    emu = GoogleAdsEmulator(rows, customer_id=GOOGLE_CID).start()
    try:
        source = GoogleAdsSource(
            emu.base_url, emu.base_url + "/token", customer_id=GOOGLE_CID,
            client_id=emu.client_id, client_secret=emu.client_secret,
            refresh_token=emu.refresh_token, start_date=FIRST, until_date=LAST,
            http_options=NO_SLEEP,
        )
        return _pull(source, "campaign_stats")
    finally:
        emu.stop()


def _vk(rows: list[dict], state: Path) -> list[RawRecord]:
    today = date(2026, 3, 10)
    emu = VKAdsEmulator(rows, today=today).start()
    try:
        def source() -> VKAdsSource:
            return VKAdsSource(
                emu.base_url, account=VK_ACCOUNT, client_id=emu.client_id,
                client_secret=emu.client_secret, token_store=TokenStore(state),
                start_date=FIRST, until_date=LAST, today=today, http_options=NO_SLEEP,
            )
        return _pull(source(), "ad_plans") + _pull(source(), "ad_plan_stats")
    finally:
        emu.stop()


def _meta(rows: list[dict]) -> list[RawRecord]:
    emu = MetaAdsEmulator(rows, ad_account_id=META_ACCOUNT, access_token=META_TOKEN).start()
    try:
        source = MetaAdsSource(
            emu.base_url, ad_account_id=META_ACCOUNT, access_token=META_TOKEN,
            start_date=FIRST, until_date=LAST, poll_interval=0.0, http_options=NO_SLEEP,
        )
        return _pull(source, "campaign_insights")
    finally:
        emu.stop()


def _files(folder: Path, lines: list[str]) -> list[RawRecord]:
    (folder / "ad_spend").mkdir(parents=True, exist_ok=True)
    (folder / "ad_spend" / "spend.csv").write_text(
        "\n".join([FILES_HEADER, *lines]) + "\n", encoding="utf-8")
    source = FilesSource(folder, account=FILES_ACCOUNT)
    records = [r for page in source.pages("ad_spend", None) for r in page.records]
    good, bad = validate_file_rows(records)
    assert not bad, [q.reason for q in bad]
    return good


@dataclass
class Extracts:
    first: list[RawRecord]
    second: list[RawRecord]


@pytest.fixture(scope="module")
def extracts(tmp_path_factory) -> Extracts:
    """Two extracts of every platform; the second after the platforms restated some days."""
    tmp = tmp_path_factory.mktemp("ad_spend_extracts")
    google = [dict(r) for r in GOOGLE_V1]
    vk = [dict(r) for r in VK_V1]
    meta = [dict(r) for r in META_V1]
    first = (_google(google) + _vk(vk, tmp / "vk1.json") + _meta(meta)
             + _files(tmp / "files", FILES_V1))
    _apply(google, GOOGLE_V2, ("date", "campaign_id"))
    _apply(vk, VK_V2, ("date", "ad_plan_id"))
    _apply(meta, META_V2, ("date", "campaign_id"))
    second = (_google(google) + _vk(vk, tmp / "vk2.json") + _meta(meta)
              + _files(tmp / "files", FILES_V2))
    return Extracts(first, second)


# -- building -------------------------------------------------------------------------------
@dataclass
class Built:
    wh: Warehouse
    run_results: dict
    returncode: int
    output: str

    def df(self, sql: str) -> pd.DataFrame:
        return self.wh.query_df(sql)


def _land_and_build(wh: Warehouse, extracts: Extracts, workdir: Path,
                    env: dict[str, str]) -> Built:
    land_business(synthetic.generate(seed=3, scale=0.1), wh)
    assert wh.land(extracts.first, "ad-spend-v1").inserted == len(extracts.first)
    changed = wh.land(extracts.second, "ad-spend-v2").inserted
    # only the restated days (and the corrected file row) are new versions
    assert changed == len(GOOGLE_V2) + len(VK_V2) + len(META_V2) + 1
    # the spend mart, the acquisition mart and what they need (cautious: only the tests whose
    # every parent is built), not the whole project
    code, out, results = run_dbt(workdir, env, "build", "--select",
                                 "+fct_ad_spend_daily +fct_acquisition_monthly",
                                 "--indirect-selection", "cautious")
    return Built(wh, results, code, out)


@pytest.fixture(scope="module", params=["duckdb", pytest.param("postgres",
                                                                marks=pytest.mark.postgres)])
def built(request, tmp_path_factory, extracts: Extracts) -> Iterator[Built]:
    workdir = tmp_path_factory.mktemp(f"ad_spend_{request.param}")
    with scratch_warehouse(request.param, workdir, "ad_spend") as (wh, env):
        yield _land_and_build(wh, extracts, workdir, env)


def _iso(value) -> str:
    return pd.Timestamp(value).date().isoformat()


def _int_or_none(value) -> int | None:
    return None if pd.isna(value) else int(value)


def _bool_or_none(value) -> bool | None:
    return None if pd.isna(value) else bool(value)


def _fct_rows(built: Built) -> dict:
    accounts = ", ".join(f"'{a}'" for a in TEST_ACCOUNTS)
    frame = built.df(
        "select platform, account, spend_date, campaign_id, spend, impressions, clicks, "
        f"channel, vat_included from marts.fct_ad_spend_daily where account in ({accounts})"
    )
    return {
        (r.platform, r.account, _iso(r.spend_date), str(r.campaign_id)): (
            Decimal(str(r.spend)).quantize(Decimal("0.01")), _int_or_none(r.impressions),
            _int_or_none(r.clicks), r.channel, _bool_or_none(r.vat_included))
        for r in frame.itertuples(index=False)
    }


# -- the tests ------------------------------------------------------------------------------
def test_extracts_are_shaped_as_the_extractors_land_them(extracts: Extracts) -> None:
    by_table: dict[str, list[RawRecord]] = {}
    for record in extracts.first:
        by_table.setdefault(record.table, []).append(record)
    assert set(by_table) == {"google_ads__campaign_stats", "vk_ads__ad_plans",
                             "vk_ads__ad_plan_stats", "meta_ads__campaign_insights",
                             "files__ad_spend"}
    google = by_table["google_ads__campaign_stats"][0].payload
    assert google["metrics"]["costMicros"].isdigit() and "currencyCode" in google["customer"]
    vk = by_table["vk_ads__ad_plan_stats"][0].payload
    assert isinstance(vk["base"]["spent"], str) and vk["_currency"] == "RUB"
    meta = by_table["meta_ads__campaign_insights"][0].payload
    assert isinstance(meta["spend"], str) and meta["account_currency"] == "RUB"
    assert by_table["files__ad_spend"][0].payload["spend"] == "15 000,50"


def test_build_succeeds_with_all_tests_passing(built: Built) -> None:
    assert built.returncode == 0, built.output[-4000:]
    statuses = {r["unique_id"]: r["status"] for r in built.run_results["results"]}
    failed = failed_nodes(built.run_results)
    assert not failed, failed
    for model in ("stg_google_ads__campaign_stats", "stg_vk_ads__ad_plan_stats",
                  "stg_meta_ads__campaign_insights", "stg_files__ad_spend",
                  "int_ad_spend__unioned"):
        assert f"model.voronka.{model}" in statuses, model


def test_ad_spend_daily_equals_the_inputs(built: Built) -> None:
    """Per row: micros converted, decimal comma parsed, newest version wins, names joined."""
    got = _fct_rows(built)
    # VK Ads answers a row for every day of the range (zeros when nothing was spent)
    zeros = {k: v for k, v in got.items() if k not in EXPECTED}
    assert all(v[0] == 0 and k[0] == "vk_ads" for k, v in zeros.items()), zeros
    assert {k: v for k, v in got.items() if k in EXPECTED} == EXPECTED


def test_ad_spend_per_platform_and_day(built: Built) -> None:
    accounts = ", ".join(f"'{a}'" for a in TEST_ACCOUNTS)
    frame = built.df(
        "select platform, spend_date, sum(spend) as spend from marts.fct_ad_spend_daily "
        f"where account in ({accounts}) group by platform, spend_date"
    )
    got = {(r.platform, _iso(r.spend_date)): Decimal(str(r.spend)).quantize(Decimal("0.01"))
           for r in frame.itertuples(index=False) if r.spend}
    expected: dict[tuple[str, str], Decimal] = {}
    for (platform, _account, day, _campaign), value in EXPECTED.items():
        expected[(platform, day)] = expected.get((platform, day), Decimal(0)) + value[0]
    assert got == expected
    assert got[("google_ads", "2026-03-02")] == Decimal("1534.57")  # micros / 1e6
    assert got[("google_ads", "2026-03-04")] == Decimal("1111.11")  # the settled cost
    assert got[("vk", "2026-03-03")] == Decimal("1234.50")  # '1 234,5', ISO date re-export


def test_campaign_names_and_currency(built: Built) -> None:
    frame = built.df(
        "select platform, campaign_id, campaign_name, currency from marts.fct_ad_spend_daily "
        f"where account in ('{GOOGLE_CID}', '{VK_ACCOUNT}', '{META_ACCOUNT}')"
    )
    names = {(r.platform, str(r.campaign_id)): r.campaign_name
             for r in frame.itertuples(index=False)}
    assert names[("vk_ads", "501")] == "VK Leads"  # joined from raw.vk_ads__ad_plans
    assert names[("vk_ads", "502")] == "VK Retarget"
    assert names[("google_ads", "9002")] == "G PMax"
    assert names[("meta_ads", "120200000002")] == "Meta Reels"
    assert set(frame.currency) == {"RUB"}


def test_acquisition_monthly_has_spend_for_every_channel(built: Built) -> None:
    acq = built.df("select month, channel, spend from marts.fct_acquisition_monthly")
    acq = acq[acq.month.map(_iso) == MONTH.isoformat()]
    spend = {r.channel: Decimal(str(r.spend)) for r in acq.itertuples(index=False)}
    daily = built.df(
        "select channel, account, sum(spend) as spend from marts.fct_ad_spend_daily "
        f"where spend_date between '{MONTH.isoformat()}' and '2026-03-31' "
        "group by channel, account"
    )
    # spend of accounts other than the test ones (the synthetic business) is carried too
    others: dict[str, Decimal] = {}
    for r in daily.itertuples(index=False):
        if r.account not in TEST_ACCOUNTS:
            others[r.channel] = others.get(r.channel, Decimal(0)) + Decimal(str(r.spend))
    mine: dict[str, Decimal] = {}
    for value in EXPECTED.values():
        mine[value[3]] = mine.get(value[3], Decimal(0)) + value[0]
    for channel in ("vk_ads", "google_ads", "meta_ads", "yandex_direct", "other"):
        expected = mine[channel] + others.get(channel, Decimal(0))
        assert spend[channel] == pytest.approx(expected, abs=Decimal("0.005")), channel
    assert mine["vk_ads"] == Decimal("6765.75")  # VK API + the offline 'vk' row
    assert spend["all"] == pytest.approx(sum(v for k, v in spend.items() if k != "all"),
                                         abs=Decimal("0.01"))
