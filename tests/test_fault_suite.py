"""The fault suite: the real job under the faults real accounts produce, against a clean run.

One synthetic business is served twice: once by well-behaved emulators, once by emulators that
edit records between the pages a run reads, send truncated and HTML bodies with status 200, and
answer with long HTML 5xx pages for a while. Each run is the whole `daily_refresh` (extract,
land, dbt build, checks, publish) on its own warehouse. The faulted run must land every record
the API holds, nothing twice, and publish the same numbers as the clean run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import dagster as dg
import duckdb
import pytest

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
# What BI reads, reduced to numbers that must not move: per-entity counts and sums that any
# lost, duplicated or half-read record would change.
MART_FIGURES = {
    "orders": "select order_source, count(*), count(distinct order_id), sum(amount) "
              "from marts.fct_orders group by 1 order by 1",
    "leads": "select crm, channel, stage_name, is_won, count(*), count(distinct lead_id), "
             "sum(amount) from marts.fct_leads group by all order by all",
    "customers": "select count(*), sum(orders_count), sum(revenue) from marts.dim_customers",
    "spend": "select spend_date, channel, sum(spend), sum(clicks) from marts.fct_ad_spend_daily "
             "group by all order by all",
    "acquisition": "select month, channel, spend, all_leads, new_customers, cac "
                   "from marts.fct_acquisition_monthly order by all",
    "stages": "select crm, pipeline_id, status_id, leads_reached, leads_dropped_off from "
              "marts.fct_funnel_stage_conversion order by all",
}


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


def run_pipeline(business: SyntheticBusiness, folder: Path, faulted: bool,
                 monkeypatch: pytest.MonkeyPatch) -> dict:
    """One whole run on its own warehouse; returns the emulators' ids and the warehouse path."""
    for name in [n for n in os.environ if n.startswith(SOURCE_PREFIXES)]:
        monkeypatch.delenv(name)
    with ExitStack() as stack:
        amo, b24, direct = emulators(stack, business)
        if faulted:
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
                  "contacts": {str(x["id"]) for x in amo.data["contacts"]}}
        edits = list(getattr(amo, "page_edits", []))
    assert result.success, [e.step_key for e in result.get_step_failure_events()]
    return {"served": served, "edits": edits, "folder": folder}


def mart_figures(published: Path) -> dict[str, list[tuple]]:
    with duckdb.connect(str(published), read_only=True) as con:
        return {name: con.sql(sql).fetchall() for name, sql in MART_FIGURES.items()}


@pytest.fixture(scope="module")
def runs(business: SyntheticBusiness, tmp_path_factory) -> Iterator[dict]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        clean = run_pipeline(business, tmp_path_factory.mktemp("clean"), False, monkeypatch)
        faulted = run_pipeline(business, tmp_path_factory.mktemp("faulted"), True, monkeypatch)
        yield {"clean": clean, "faulted": faulted}


def test_faulted_run_lands_every_record_once(runs: dict) -> None:
    faulted = runs["faulted"]
    assert faulted["edits"], "the emulator edited nothing between pages: the fault did not fire"
    with duckdb.connect(str(faulted["folder"] / "warehouse.duckdb"), read_only=True) as con:
        for entity, ids in faulted["served"].items():
            landed = {r[0] for r in con.sql(
                f"select distinct record_id from raw.amocrm__{entity}").fetchall()}
            assert landed == ids, (entity, sorted(ids - landed)[:5], sorted(landed - ids)[:5])


def test_faulted_run_publishes_the_clean_runs_numbers(runs: dict) -> None:
    clean = mart_figures(runs["clean"]["folder"] / "voronka.duckdb")
    faulted = mart_figures(runs["faulted"]["folder"] / "voronka.duckdb")
    assert clean["orders"] and clean["spend"] and clean["leads"]
    for name in MART_FIGURES:
        assert faulted[name] == clean[name], name
