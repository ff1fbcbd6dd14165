"""The fault suite: the real job under the faults real accounts produce.

One synthetic business is served by emulators that edit records between the pages a run reads,
send truncated and HTML bodies with status 200, and answer with long HTML 5xx pages for a
while. The run is the whole `daily_refresh` (extract, land, dbt build, checks, publish). It must
land every record the API holds, nothing twice, and publish the business's own true numbers
(its ground truth, which a clean run publishes too: test_pipeline_e2e).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest
from _support import assert_marts_match_truth_but_spend, month_labels

from emulators import AmoCRMEmulator, Bitrix24Emulator, YandexDirectEmulator
from synthetic import SyntheticBusiness, generate
from voronka.demo import (
    DEMO_AMOCRM,
    DEMO_BITRIX24_WEBHOOK_CODE,
    DEMO_DIRECT_TOKEN,
    crm_and_files_environment,
    demo_environment,
)
from voronka.runner import run_daily_refresh

SOURCE_PREFIXES = ("AMOCRM_", "YANDEX_", "VK_ADS_", "GOOGLE_", "META_", "BITRIX24_",
                   "VORONKA_", "DAGSTER_")
@pytest.fixture(scope="module")
def business() -> SyntheticBusiness:
    return generate(seed=23, scale=0.1)


def emulators(stack: ExitStack, business: SyntheticBusiness) -> tuple:
    amo = stack.enter_context(AmoCRMEmulator(
        business.amocrm, account_id=business.account_id, subdomain=business.subdomain,
        **DEMO_AMOCRM))
    b24 = stack.enter_context(Bitrix24Emulator(
        business.bitrix24, portal=business.bitrix24_account,
        webhook_code=DEMO_BITRIX24_WEBHOOK_CODE))
    direct = stack.enter_context(YandexDirectEmulator(
        business.yandex_direct, token=DEMO_DIRECT_TOKEN, client_login=business.subdomain,
        offline_polls=0))
    return amo, b24, direct


def inject_faults(amo: AmoCRMEmulator, b24: Bitrix24Emulator,
                  direct: YandexDirectEmulator) -> None:
    """Edits between pages, proxies' bad bodies, a gateway down for a while."""
    amo.edit_between_pages = {"leads", "contacts", "companies"}
    amo.faults.add("truncated_json", count=2, path_prefix="/api/v4/leads")
    amo.faults.add("html_200", count=1, path_prefix="/api/v4/contacts")
    amo.faults.add("html_5xx", count=3, path_prefix="/api/v4/events", status=502)
    b24.faults.add("truncated_json", count=1, path_prefix="/rest/")
    b24.faults.add("html_5xx", count=2, path_prefix="/rest/", status=503)
    direct.faults.add("html_5xx", count=2, path_prefix="/json/v5/reports", status=504)


def run_faulted_pipeline(business: SyntheticBusiness, folder: Path,
                         monkeypatch: pytest.MonkeyPatch) -> dict:
    """One whole run against faulty emulators; returns the ids they served, the edits they
    made between pages and the run's folder."""
    for name in [n for n in os.environ if n.startswith(SOURCE_PREFIXES)]:
        monkeypatch.delenv(name)
    with ExitStack() as stack:
        amo, b24, direct = emulators(stack, business)
        inject_faults(amo, b24, direct)
        env = {**demo_environment(business, amo.base_url, direct.base_url),
               **crm_and_files_environment(business, b24, folder / "files"),
               "VORONKA_DUCKDB_PATH": str(folder / "warehouse.duckdb"),
               "VORONKA_PUBLISHED_PATH": str(folder / "voronka.duckdb"),
               "VORONKA_STATE_DIR": str(folder / "state"),
               # no segments: audiences read the published marts this suite compares anyway
               "VORONKA_SEGMENTS_DIR": str(folder / "no_segments")}
        (folder / "no_segments").mkdir()
        business.write_order_files(folder / "files")
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        result = run_daily_refresh(instance=dg.DagsterInstance.ephemeral())
        served = {"leads": {str(x["id"]) for x in amo.data["leads"]
                            if not x.get("is_deleted")},
                  "contacts": {str(x["id"]) for x in amo.data["contacts"]},
                  "events": {str(x["id"]) for x in amo.data["events"]
                             if x["type"] == "lead_status_changed"}}
        edits = list(getattr(amo, "page_edits", []))
    assert result.success, [e.step_key for e in result.get_step_failure_events()]
    return {"served": served, "edits": edits, "folder": folder}


@pytest.fixture(scope="module")
def faulted(business: SyntheticBusiness, tmp_path_factory) -> Iterator[dict]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield run_faulted_pipeline(business, tmp_path_factory.mktemp("faulted"), monkeypatch)


def test_faulted_run_lands_every_record_once(faulted: dict) -> None:
    assert faulted["edits"], "the emulator edited nothing between pages: the fault did not fire"
    with duckdb.connect(str(faulted["folder"] / "warehouse.duckdb"), read_only=True) as con:
        for entity, ids in faulted["served"].items():
            landed = {r[0] for r in con.sql(
                f"select distinct record_id from raw.amocrm__{entity}").fetchall()}
            assert landed == ids, (entity, sorted(ids - landed)[:5], sorted(landed - ids)[:5])


def test_faulted_run_publishes_the_businesss_true_numbers(
    faulted: dict, business: SyntheticBusiness,
) -> None:
    """Customers, orders per source, cohorts and leads per CRM and channel as the business
    really had them, and Yandex Direct's spend (the only ad platform served here)."""
    with duckdb.connect(str(faulted["folder"] / "voronka.duckdb"), read_only=True) as con:
        def query(sql: str) -> pd.DataFrame:
            return con.sql(sql).df()

        assert_marts_match_truth_but_spend(query, business.ground_truth)
        got = query("select date_trunc('month', spend_date) as m, sum(spend) as spend "
                    "from marts.fct_ad_spend_daily where channel = 'yandex_direct' group by 1")
    truth = business.ground_truth.spend_by_channel_month
    truth = truth[truth.channel == "yandex_direct"]
    assert len(truth)
    assert sorted(zip(month_labels(got.m), got.spend.astype(float).round(2), strict=True)) == \
        sorted(zip(month_labels(truth.month), truth.spend.astype(float).round(2), strict=True))
