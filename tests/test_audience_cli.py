"""`voronka audiences export | sync` and the Dagster audience assets, as a marketer and a data
engineer run them: on a copy of the shared marts build (DuckDB), against the audience
emulators, with credentials from the environment.

DuckDB only: each test works on a copy of the built warehouse file, so the shared build stays
untouched (a PostgreSQL database cannot be copied as cheaply); the sync logic itself runs on
both backends in test_audience_sync.py.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from _support import MartsBuild

from audiences import cli as audiences_cli
from audiences.segments import get_segment, segment_members
from emulators.audiences import MetaAudiencesEmulator, YandexAudiencesEmulator
from orchestration.assets.audiences import build_audience_asset
from orchestration.resources import WarehouseResource
from warehouse.duckdb_backend import DuckDBWarehouse

META_TOKEN, YANDEX_TOKEN = "cli-meta-secret-8841", "cli-yandex-secret-3390"
SEGMENT = "one_time_buyers"
pytestmark = pytest.mark.parametrize("marts", ["duckdb"], indirect=True)


@pytest.fixture
def shop(marts: MartsBuild, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
         ) -> DuckDBWarehouse:
    """A private copy of the DuckDB marts build, configured as the working warehouse."""
    path = tmp_path / "warehouse.duckdb"
    shutil.copy(marts.env["VORONKA_DUCKDB_PATH"], path)
    monkeypatch.setenv("VORONKA_WAREHOUSE", "duckdb")
    monkeypatch.setenv("VORONKA_DUCKDB_PATH", str(path))
    monkeypatch.setenv("VORONKA_AUDIENCES_DIR", str(tmp_path / "audiences"))
    for name in ("VORONKA_AUDIENCE_PLATFORMS", "META_AUDIENCES_ACCESS_TOKEN",
                 "META_ADS_ACCESS_TOKEN", "GOOGLE_DATA_MANAGER_ACCESS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return DuckDBWarehouse(path, tmp_path / "voronka.duckdb")


@pytest.fixture
def platforms(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[MetaAudiencesEmulator,
                                                                 YandexAudiencesEmulator]]:
    """Meta and Yandex audience emulators, their settings in the environment."""
    meta = MetaAudiencesEmulator(access_token=META_TOKEN, ad_account_id="act_42")
    yandex = YandexAudiencesEmulator(oauth_token=YANDEX_TOKEN)
    with meta, yandex:
        monkeypatch.setenv("META_AUDIENCES_BASE_URL", meta.base_url)
        monkeypatch.setenv("META_AUDIENCES_ACCESS_TOKEN", META_TOKEN)
        monkeypatch.setenv("META_ADS_ACCOUNT_ID", "act_42")
        monkeypatch.setenv("YANDEX_AUDIENCE_BASE_URL", yandex.base_url)
        monkeypatch.setenv("YANDEX_AUDIENCE_TOKEN", YANDEX_TOKEN)
        yield meta, yandex


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="voronka")
    audiences_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    return audiences_cli.run(parser.parse_args(["audiences", *argv]))


def raw_identifiers(wh: DuckDBWarehouse) -> list[str]:
    frame = wh.query_df("select value_normalized from intermediate.int_customer_identifiers")
    return list(frame["value_normalized"])


def withdraw_consent(wh: DuckDBWarehouse, customer_id: str) -> None:
    with wh.connect() as conn:
        conn.cursor().execute("update marts.dim_customers set is_contactable = false "
                              "where customer_id = ?", [customer_id])


def test_export_writes_hashed_files_and_a_manifest(shop, tmp_path, capsys) -> None:
    members = segment_members(shop, get_segment(SEGMENT))
    out = tmp_path / "files"
    assert run_cli("export", SEGMENT, "--platform", "yandex", "--out", str(out)) == 0
    printed = capsys.readouterr().out
    assert f"members:   {len(members)}" in printed
    assert f"excluded:  {members.excluded_count} (withdrawn consent" in printed
    manifest = json.loads((out / f"{SEGMENT}__yandex.manifest.json").read_text())
    assert manifest["segment"] == SEGMENT and manifest["hash_algorithm"] == "SHA256"
    assert manifest["counts"]["members"] == len(members)
    assert manifest["counts"]["excluded"] == members.excluded_count
    text = (out / f"{SEGMENT}__yandex.csv").read_text()
    assert text.splitlines()[0] == "phone,email"  # the API upload's and the diffs' shape too
    assert len(text.splitlines()) - 1 == manifest["counts"]["rows"] >= 100
    assert all(re.fullmatch(r"([0-9a-f]{64})?,([0-9a-f]{64})?", line)
               for line in text.splitlines()[1:])
    assert not [v for v in raw_identifiers(shop) if v in text or v in printed]


def test_export_below_the_platform_minimum_is_refused_clearly(shop, tmp_path, capsys) -> None:
    out = tmp_path / "files"
    assert run_cli("export", SEGMENT, "--platform", "vk", "--out", str(out)) == 2
    assert "vk needs at least 2000 lines per users list" in capsys.readouterr().err
    assert not out.exists()


def test_sync_adds_then_removes_a_customer_who_withdraws_consent(shop, platforms,
                                                                 capsys) -> None:
    meta, yandex = platforms
    members = segment_members(shop, get_segment(SEGMENT))
    assert run_cli("sync", SEGMENT, "--platform", "meta", "--platform", "yandex") == 0
    first = capsys.readouterr().out
    [meta_id] = meta.audiences
    [yandex_id] = yandex.segments
    reachable = len(meta.members(meta_id))
    assert len(yandex.members(yandex_id)) == reachable
    assert 100 <= reachable <= len(members)
    assert re.search(rf"meta +success +\+{reachable} -0 excluded {members.excluded_count}",
                     first)
    assert re.search(rf"yandex +success +\+{reachable} -0", first)

    leaving = members.customer_ids[0]
    withdraw_consent(shop, leaving)
    assert run_cli("sync", SEGMENT, "--platform", "meta", "--platform", "yandex") == 0
    second = capsys.readouterr().out
    assert re.search(r"meta +success +\+0 -1", second), second
    assert re.search(r"yandex +success +\+0 -1", second), second
    assert len(meta.members(meta_id)) == reachable - 1
    assert len(yandex.members(yandex_id)) == reachable - 1
    assert [b["method"] for b in meta.batches][-1] == "DELETE"
    assert META_TOKEN not in first + second and YANDEX_TOKEN not in first + second


def test_sync_names_what_is_missing(shop, capsys) -> None:
    assert run_cli("sync", SEGMENT) == 2
    assert "VORONKA_AUDIENCE_PLATFORMS" in capsys.readouterr().err
    assert run_cli("sync", SEGMENT, "--platform", "google") == 1
    printed = capsys.readouterr().out
    assert re.search(r"google +failed", printed) and "GOOGLE_DATA_MANAGER_ACCESS_TOKEN" in printed


def test_dagster_asset_syncs_the_segment_with_counts_only_in_metadata(
        shop, platforms, monkeypatch) -> None:
    meta, _ = platforms
    monkeypatch.setenv("VORONKA_AUDIENCE_PLATFORMS", "meta")
    seg = get_segment(SEGMENT)
    members = segment_members(shop, seg)
    asset = build_audience_asset(seg)
    assert asset.key == dg.AssetKey(["audiences", SEGMENT])
    assert dg.AssetKey(["published", "marts"]) in asset.asset_deps[asset.key]
    result = dg.materialize([asset], resources={"warehouse": WarehouseResource()})
    assert result.success
    [event] = result.get_asset_materialization_events()
    metadata = {k: v.value for k, v in event.materialization.metadata.items()}
    assert metadata["members"] == len(members)
    assert metadata["excluded_for_consent"] == members.excluded_count
    assert metadata["meta_status"] == "success"
    assert metadata["meta_added"] == len(meta.members(next(iter(meta.audiences))))
    shown = json.dumps(metadata, default=str)
    assert "@" not in shown and not re.search(r"[0-9a-f]{32}", shown) and META_TOKEN not in shown

    withdraw_consent(shop, members.customer_ids[0])
    again = dg.materialize([asset], resources={"warehouse": WarehouseResource()})
    metadata = {k: v.value for k, v in
                again.get_asset_materialization_events()[0].materialization.metadata.items()}
    assert (metadata["left"], metadata["meta_removed"], metadata["meta_added"]) == (1, 1, 0)


def test_dagster_asset_fails_when_an_upload_fails(shop, platforms, monkeypatch) -> None:
    monkeypatch.setenv("VORONKA_AUDIENCE_PLATFORMS", "meta,google")  # google: no credentials
    asset = build_audience_asset(get_segment(SEGMENT))
    result = dg.materialize([asset], resources={"warehouse": WarehouseResource()},
                            raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = str(failure.event_specific_data.error)
    assert "google" in message and "GOOGLE_DATA_MANAGER_ACCESS_TOKEN" in message
    assert META_TOKEN not in message
