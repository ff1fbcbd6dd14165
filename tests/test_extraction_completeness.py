"""Issue 12 item 1: extraction is complete while records are edited between page requests.

amoCRM lists ordered by ``updated_at`` shift under edits: paging them by ``page=N`` skipped one
record per edit. The emulators' ``edit_between_pages`` switch edits a record the client has just
read after every page; every run must still land every record. Bitrix24 lists go in ID order
(edits do not move it); its cursor must not pass the scan's start, or a long run loses the
versions of rows edited after they were read.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from _support import RecordingSleep

from emulators import AmoCRMEmulator, Bitrix24Emulator
from extractors.amocrm import AmoCRMSource
from extractors.bitrix24 import Bitrix24Source
from extractors.http import HttpOptions
from extractors.state import TokenStore
from extractors.sync import sync_entity
from warehouse.duckdb_backend import DuckDBWarehouse

BASE_TS = 1767225600  # 2026-01-01T00:00:00Z
ACCOUNT_ID = 31990211
SECRET = "demo-secret-A1x"
REFRESH = "demo-refresh-A1x"
MOVING = ("leads", "contacts", "companies", "customers", "transactions")
PAGE = 20


def _item(entity: str, i: int, ts: int) -> dict[str, Any]:
    """A minimal stored record of ``entity``; ``ts`` is its created/updated second."""
    base = {"id": 10_000 * (MOVING.index(entity) + 1) + i, "name": f"{entity} {i}",
            "created_at": ts, "updated_at": ts, "created_by": 0, "updated_by": 0,
            "is_deleted": False, "account_id": ACCOUNT_ID, "custom_fields_values": None}
    if entity == "leads":
        base.update(price=100 * i, status_id=142, pipeline_id=1,
                    _embedded={"tags": [], "contacts": []})
    if entity == "customers":
        base.update(status_id=1, _embedded={"contacts": []})
    if entity == "transactions":
        base.update(price=10 * i, customer_id=40_000, completed_at=ts)
    return base


def amo_data(n: int = 95, same_second: int = 0) -> dict[str, list[dict]]:
    """``n`` records per moving entity, one second apart; the first ``same_second`` of them
    share one second (a bulk edit), more than a page of them when ``same_second > PAGE``."""
    return {e: [_item(e, i, BASE_TS + max(i - same_second + 1, 0) * 10) for i in range(n)]
            for e in MOVING}


def amo_source(emu: AmoCRMEmulator, tmp: Path, **kw: Any) -> AmoCRMSource:
    options = HttpOptions(timeout=(2.0, 10.0), max_retries=3, backoff_base=0.01,
                          backoff_max=0.05, sleep=RecordingSleep())
    return AmoCRMSource(emu.base_url, account="acc", client_id="demo-client",
                        client_secret=SECRET, redirect_uri="http://127.0.0.1/callback",
                        token_store=TokenStore(tmp / "tokens.json"),
                        initial_refresh_token=REFRESH, http_options=options,
                        rate_limit_per_s=1000.0, page_limit=PAGE, **kw)


@pytest.fixture
def wh(tmp_path: Path) -> DuckDBWarehouse:
    return DuckDBWarehouse(tmp_path / "wh.duckdb")


def landed_ids(wh: DuckDBWarehouse, source: str, entity: str) -> set[str]:
    return {str(r) for r in wh.query_df(f"select record_id from raw.{source}__{entity}")
            ["record_id"]}


def amo_emulator(data: dict[str, list[dict]]) -> Iterator[AmoCRMEmulator]:
    emu = AmoCRMEmulator(data, client_secret=SECRET, refresh_token=REFRESH,
                         rate_limit_per_s=1000.0, edit_between_pages=MOVING).start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def amo() -> Iterator[AmoCRMEmulator]:
    yield from amo_emulator(amo_data())


@pytest.fixture
def amo_bulk() -> Iterator[AmoCRMEmulator]:
    yield from amo_emulator(amo_data(n=50, same_second=2 * PAGE + 5))


def _stored_ids(emu: AmoCRMEmulator, entity: str) -> set[str]:
    return {str(i["id"]) for i in emu.data[entity]}


def _latest_versions(wh: DuckDBWarehouse, entity: str) -> dict[str, int]:
    rows = wh.query_df(f"select record_id, payload from raw.amocrm__{entity}")
    best: dict[str, int] = {}
    for rid, payload in zip(rows["record_id"], rows["payload"], strict=True):
        ts = int(json.loads(payload)["updated_at"])
        best[str(rid)] = max(best.get(str(rid), 0), ts)
    return best


@pytest.mark.parametrize("entity", MOVING)
def test_amocrm_first_run_lands_every_record_while_records_are_edited_between_pages(
        amo, wh, tmp_path, entity):
    source = amo_source(amo, tmp_path)
    result = sync_entity(source, entity, wh, run_id="r1")
    edited = [i for e, i in amo.page_edits if e == entity]
    assert len(edited) >= 4, "the fault must fire between pages"
    assert landed_ids(wh, "amocrm", entity) == _stored_ids(amo, entity)
    assert result.quarantined == 0


def test_amocrm_more_than_a_page_in_one_second_is_complete_under_edits(amo_bulk, wh, tmp_path):
    """A bulk edit puts more records in one second than a page holds: keyset on updated_at
    alone cannot move past that second; the id-ordered sub-scan of it stays complete."""
    source = amo_source(amo_bulk, tmp_path)
    sync_entity(source, "leads", wh, run_id="r1")
    assert len([i for e, i in amo_bulk.page_edits if e == "leads"]) >= 10
    assert landed_ids(wh, "amocrm", "leads") == _stored_ids(amo_bulk, "leads")


def test_amocrm_second_run_after_edits_holds_every_latest_version(amo, wh, tmp_path):
    """Edits made during (and after) the first run reach the warehouse by the next run."""
    source = amo_source(amo, tmp_path, overlap_s=0)
    sync_entity(source, "leads", wh, run_id="r1")
    amo.edit_between_pages = set()
    sync_entity(source, "leads", wh, run_id="r2")
    stored = {str(i["id"]): int(i["updated_at"]) for i in amo.data["leads"]}
    assert _latest_versions(wh, "leads") == stored


# -- Bitrix24 ---------------------------------------------------------------------------------

B24_ENTITIES = ("leads", "deals", "contacts")
MSK = timezone(timedelta(hours=3))


def b24_data(n: int = 180) -> dict[str, list[dict]]:
    """``n`` rows per CRM list, one minute apart (Moscow offset, as a portal answers)."""
    t0 = datetime(2026, 1, 5, 9, 0, tzinfo=MSK)

    def row(entity: str, i: int) -> dict[str, Any]:
        stamp = (t0 + timedelta(minutes=i)).isoformat()
        return {"ID": 1000 * (B24_ENTITIES.index(entity) + 1) + i, "TITLE": f"{entity} {i}",
                "DATE_CREATE": stamp, "DATE_MODIFY": stamp}

    return {e: [row(e, i) for i in range(n)] for e in B24_ENTITIES}


@pytest.fixture
def b24() -> Iterator[Bitrix24Emulator]:
    emu = Bitrix24Emulator(b24_data(), bucket_size=10_000, drain_per_s=10_000.0,
                           edit_between_pages=B24_ENTITIES).start()
    try:
        yield emu
    finally:
        emu.stop()


def b24_source(emu: Bitrix24Emulator, **kw: Any) -> Bitrix24Source:
    options = HttpOptions(timeout=(2.0, 10.0), max_retries=3, backoff_base=0.01,
                          backoff_max=0.05, sleep=RecordingSleep())
    return Bitrix24Source(emu.base_url, account="portal", webhook_url=emu.webhook_url,
                          http_options=options, **kw)


def _b24_latest(wh: DuckDBWarehouse, entity: str) -> dict[str, str]:
    rows = wh.query_df(f"select record_id, payload from raw.bitrix24__{entity}")
    best: dict[str, str] = {}
    for rid, payload in zip(rows["record_id"], rows["payload"], strict=True):
        stamp = str(json.loads(payload)["DATE_MODIFY"])
        if rid not in best or datetime.fromisoformat(stamp) > datetime.fromisoformat(best[rid]):
            best[str(rid)] = stamp
    return best


@pytest.mark.parametrize("entity", B24_ENTITIES)
def test_bitrix24_runs_land_every_record_and_version_while_rows_are_edited_between_pages(
        b24, wh, entity):
    """Bitrix24 lists are paged in ``ID`` order (fast export on the first run, ``>ID`` windows
    after), which an edit does not move: every row lands, every edit by the next run."""
    source = b24_source(b24, batch_pages=1)
    sync_entity(source, entity, wh, run_id="r1")
    assert len([i for e, i in b24.page_edits if e == entity]) >= 3
    stored = {str(r["ID"]) for r in b24.data[entity]}
    assert landed_ids(wh, "bitrix24", entity) == stored
    b24.update(entity, b24.data[entity][5]["ID"], TITLE="edited in between runs")
    sync_entity(source, entity, wh, run_id="r2")  # still editing between pages
    b24.edit_between_pages = set()
    sync_entity(source, entity, wh, run_id="r3")
    assert _b24_latest(wh, entity) == {str(r["ID"]): r["DATE_MODIFY"] for r in b24.data[entity]}


def test_bitrix24_cursor_never_passes_the_scan_start_so_early_edits_are_not_lost(b24, wh):
    """A first run longer than the overlap: a row read early is edited (stamp E), a row read
    late was edited hours later (stamp L, simulated ahead of now). A cursor at L with a short
    overlap skipped E's version for good; the cursor stops at the scan's server start time."""
    b24.edit_between_pages = {"deals"}
    last = b24.data["deals"][-1]["ID"]

    def late_edit_after_first_page(records: list) -> tuple[list, list]:
        if b24.data["deals"][-1]["TITLE"] != "late edit":  # once, after the first page
            later = (datetime.now(MSK) + timedelta(hours=2)).isoformat(timespec="seconds")
            b24.update("deals", last, TITLE="late edit", DATE_MODIFY=later)
        return records, []

    source = b24_source(b24, batch_pages=1, overlap_s=60)
    sync_entity(source, "deals", wh, run_id="r1", validate=late_edit_after_first_page,
                batch_records=1)
    b24.edit_between_pages = set()
    sync_entity(source, "deals", wh, run_id="r2")
    assert _b24_latest(wh, "deals") == {str(r["ID"]): r["DATE_MODIFY"] for r in b24.data["deals"]}


def test_a_repull_of_unchanged_records_is_neither_validated_nor_landed_again(
        amo, wh, tmp_path):
    """A full re-pull (no cursor) of 95 leads, one of them edited since: the 94 unchanged
    count as duplicates without reaching the validator (they passed when they landed); the
    edited one is validated and lands as a new version."""
    amo.edit_between_pages = set()
    seen: list[list[str]] = []

    def recording(records: list) -> tuple[list, list]:
        seen.append([r.record_id for r in records])
        return records, []

    source = amo_source(amo, tmp_path)
    first = sync_entity(source, "leads", wh, run_id="r1", validate=recording)
    assert (first.inserted, sum(len(batch) for batch in seen)) == (95, 95)
    edited = amo.data["leads"][7]["id"]
    amo.update_lead(edited, name="renamed")
    wh.set_cursor(source.name, source.account, "leads", None)
    seen.clear()
    second = sync_entity(source, "leads", wh, run_id="r2", validate=recording)
    assert (second.fetched, second.duplicates, second.inserted) == (95, 94, 1)
    assert seen == [[str(edited)]]
    assert wh.count_rows("raw.amocrm__leads") == 96
