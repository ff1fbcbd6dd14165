"""Audiences: one asset per dynamic segment, synced to the ad platforms after every refresh.

Each asset recomputes its segment from the marts (consent exclusions always applied), records
who entered and left in the warehouse's ``audiences`` schema, and sends the additions and
removals since the last successful sync to every platform in VORONKA_AUDIENCE_PLATFORMS
(``audiences.sync``). With no platform configured it writes the changes as hashed files into
VORONKA_AUDIENCES_DIR for uploading by hand. It runs after the marts are published, so only
data whose blocking checks passed reaches an ad platform. Static segments are frozen at
creation and are synced on demand (``voronka audiences sync NAME``), not on the schedule.

Metadata carries counts and statuses only: never an identifier, a hash or a token.
"""

import os
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from audiences.segments import Segment, load_segments
from audiences.sync import (
    PLATFORMS_VAR,
    SyncResult,
    configured_platforms,
    refresh_membership,
    sync_to_platforms,
)
from orchestration.resources import WarehouseResource

SEGMENTS_DIR_VAR = "VORONKA_SEGMENTS_DIR"
OUT_DIR_VAR = "VORONKA_AUDIENCES_DIR"
DEFAULT_OUT_DIR = "data/audiences"
GROUP = "audiences"


def dynamic_segments() -> list[Segment]:
    """The dynamic segments of VORONKA_SEGMENTS_DIR (default: the shipped examples)."""
    return [s for s in load_segments(os.environ.get(SEGMENTS_DIR_VAR) or None)
            if s.kind == "dynamic"]


def audience_asset_key(segment: str) -> dg.AssetKey:
    return dg.AssetKey(["audiences", segment])


def result_metadata(results: list[SyncResult]) -> dict[str, dg.MetadataValue]:
    """Per platform: status, customers added / removed / pending, and the message."""
    metadata: dict[str, dg.MetadataValue] = {}
    for r in results:
        metadata[f"{r.platform}_status"] = dg.MetadataValue.text(r.status)
        metadata[f"{r.platform}_added"] = dg.MetadataValue.int(r.added)
        metadata[f"{r.platform}_removed"] = dg.MetadataValue.int(r.removed)
        metadata[f"{r.platform}_pending"] = dg.MetadataValue.int(r.pending)
        if r.message:
            metadata[f"{r.platform}_message"] = dg.MetadataValue.text(r.message)
    return metadata


def build_audience_asset(seg: Segment) -> dg.AssetsDefinition:
    @dg.asset(
        key=audience_asset_key(seg.name),
        deps=[dg.AssetKey(["published", "marts"])],
        group_name=GROUP,
        kinds={"python"},
        description=f"{seg.description} (segment file {Path(seg.file).name}; dynamic: "
                    "recomputed and diff-synced every run)",
    )
    def _audience(context: dg.AssetExecutionContext,
                  warehouse: WarehouseResource) -> dg.MaterializeResult:
        wh = warehouse.open()
        now = datetime.now(UTC)
        platforms = configured_platforms(os.environ)
        out_dir = Path(os.environ.get(OUT_DIR_VAR) or DEFAULT_OUT_DIR)
        membership = refresh_membership(wh, seg, now=now)
        results = sync_to_platforms(wh, seg, platforms or ["meta", "google", "yandex", "vk"],
                                    now=now, out_dir=out_dir, file_only=not platforms)
        for r in results:
            context.log.info("%s -> %s: %s (+%d -%d, pending %d) %s", seg.name, r.platform,
                             r.status, r.added, r.removed, r.pending, r.message)
        failed = [r for r in results if r.status == "failed"]
        if failed:
            raise dg.Failure(
                description="; ".join(f"{r.platform}: {r.message}" for r in failed),
                metadata=result_metadata(results))
        return dg.MaterializeResult(metadata={
            "members": dg.MetadataValue.int(len(membership.customer_ids)),
            "excluded_for_consent": dg.MetadataValue.int(membership.excluded),
            "entered": dg.MetadataValue.int(len(membership.entered)),
            "left": dg.MetadataValue.int(len(membership.left)),
            "platforms": dg.MetadataValue.text(", ".join(platforms) or
                                               f"files only (set {PLATFORMS_VAR})"),
            **result_metadata(results),
        })

    return _audience


def build_audience_assets() -> list[dg.AssetsDefinition]:
    return [build_audience_asset(seg) for seg in dynamic_segments()]
