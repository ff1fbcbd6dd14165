"""Audiences: one asset per dynamic segment, synced to the ad platforms after every refresh.

Each asset recomputes its segment from the marts (consent exclusions always applied), records
who entered and left in the warehouse's ``audiences`` schema, and sends the additions and
removals since the last successful sync to every platform in VORONKA_AUDIENCE_PLATFORMS
(``audiences.sync``). With no platform configured it writes the changes as hashed files into
VORONKA_AUDIENCES_DIR for uploading by hand. It runs after the marts are published, so only
data whose blocking checks passed reaches an ad platform. Static segments are frozen at
creation and are synced on demand (``voronka audiences sync NAME``), not on the schedule.

A bad segment file (``audiences.segments.scan_segments``: invalid YAML, a name outside
``[a-z0-9_]``, an alias bomb, a NUL byte...) never stops the definitions from loading: it is
logged as a warning when they load and becomes an asset ``audiences/<name>`` (the name the file
seems to define) that fails every run with the file, line and problem; the other segments'
assets are built and run as usual.

VORONKA_AUDIENCE_PLATFORMS may name the CRMs (amocrm, bitrix24: a tag / contact field per
segment, and the segment's ``actions:`` tasks and deals on entry) and UniSender (an e-mail and
SMS list per segment); they have no file mode, so with no platform configured only the ad
platforms' files are written.

Metadata carries counts and statuses only: never an identifier, a hash or a token.
"""

import logging
import os
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from audiences.destinations import FILE_DESTINATIONS
from audiences.segments import (
    BadSegmentFile,
    PredictionsUnavailable,
    Segment,
    SegmentScan,
    scan_segments,
)
from audiences.sync import (
    PLATFORMS_VAR,
    SyncResult,
    configured_platforms,
    refresh_membership,
    segment_platforms,
    sync_to_platforms,
)
from orchestration.executor import CONCURRENT_TAG
from orchestration.resources import WarehouseResource

SEGMENTS_DIR_VAR = "VORONKA_SEGMENTS_DIR"
OUT_DIR_VAR = "VORONKA_AUDIENCES_DIR"
DEFAULT_OUT_DIR = "data/audiences"
GROUP = "audiences"
PUBLISHED = dg.AssetKey(["published", "marts"])

log = logging.getLogger(__name__)


def segment_scan() -> SegmentScan:
    """The segment files of VORONKA_SEGMENTS_DIR (default: the shipped examples), each read on
    its own: a bad one is reported, never raised."""
    return scan_segments(os.environ.get(SEGMENTS_DIR_VAR) or None)


def dynamic_segments() -> list[Segment]:
    """The good dynamic segments of VORONKA_SEGMENTS_DIR."""
    return [s for s in segment_scan().segments if s.kind == "dynamic"]


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
        if r.actions is not None:
            for kind in ("task", "deal"):
                metadata[f"{r.platform}_{kind}s_created"] = dg.MetadataValue.int(
                    r.actions.created.get(kind, 0))
            metadata[f"{r.platform}_actions_failed"] = dg.MetadataValue.int(r.actions.failed)
    return metadata


def _failure(r: SyncResult) -> str:
    """Why one platform's sync fails the asset: its error, or its actions' errors."""
    parts = [r.message] if r.status == "failed" else []
    if r.actions is not None and r.actions.failed:
        parts.append(f"actions: {r.actions.summary()}")
    return f"{r.platform}: {'; '.join(parts)}"


def build_audience_asset(seg: Segment) -> dg.AssetsDefinition:
    @dg.asset(
        key=audience_asset_key(seg.name),
        deps=[PUBLISHED],
        group_name=GROUP,
        kinds={"python"},
        op_tags={CONCURRENT_TAG: "sync"},  # waits on the platforms' limits: beside the others
        description=f"{seg.description} (segment file {Path(seg.file).name}; dynamic: "
                    "recomputed and diff-synced every run)",
    )
    def _audience(context: dg.AssetExecutionContext,
                  warehouse: WarehouseResource) -> dg.MaterializeResult:
        wh = warehouse.open()
        now = datetime.now(UTC)
        platforms = configured_platforms(os.environ)
        out_dir = Path(os.environ.get(OUT_DIR_VAR) or DEFAULT_OUT_DIR)
        try:
            membership = refresh_membership(wh, seg, now=now)
        except PredictionsUnavailable as exc:
            # a business the CLV model does not fit: say so, keep the platforms' audiences
            # as they are, and let every other segment run
            context.log.warning("%s not synced: %s", seg.name, exc)
            return dg.MaterializeResult(metadata={
                "skipped": dg.MetadataValue.text(f"not synced: {exc}")})
        chosen = segment_platforms(seg, platforms or list(FILE_DESTINATIONS))
        results = sync_to_platforms(wh, seg, chosen, now=now, out_dir=out_dir,
                                    file_only=not platforms, membership=membership)
        for r in results:
            context.log.info("%s -> %s: %s (+%d -%d, pending %d) %s", seg.name, r.platform,
                             r.status, r.added, r.removed, r.pending, r.message)
        for r in results:
            if r.actions is not None and r.actions.summary():
                context.log.info("%s -> %s actions: %s", seg.name, r.platform,
                                 r.actions.summary())
        failed = [r for r in results if r.status == "failed"
                  or (r.actions is not None and r.actions.failed)]
        if failed:
            raise dg.Failure(
                description="; ".join(_failure(r) for r in failed),
                metadata=result_metadata(results))
        return dg.MaterializeResult(metadata={
            "members": dg.MetadataValue.int(len(membership.customer_ids)),
            "excluded_for_consent": dg.MetadataValue.int(membership.excluded),
            "entered": dg.MetadataValue.int(len(membership.entered)),
            "left": dg.MetadataValue.int(len(membership.left)),
            "platforms": dg.MetadataValue.text(
                ", ".join(chosen) if platforms else f"files only (set {PLATFORMS_VAR})"),
            **result_metadata(results),
        })

    return _audience


def build_bad_segment_asset(name: str, bad: list[BadSegmentFile]) -> dg.AssetsDefinition:
    """A flag in the graph where the segment would be: it fails every run, naming the file(s),
    line and problem, so a broken file is seen without blocking anything else."""
    message = "\n".join(b.message for b in bad)
    files = ", ".join(Path(b.file).name for b in bad)

    @dg.asset(
        key=audience_asset_key(name),
        deps=[PUBLISHED],
        group_name=GROUP,
        kinds={"python"},
        description=f"Segment file {files} cannot be used (not synced): {message}",
    )
    def _bad_segment(context: dg.AssetExecutionContext) -> None:
        raise dg.Failure(
            description=f"segment not synced; fix the segment file:\n{message}",
            metadata={"files": dg.MetadataValue.text(files),
                      "errors": dg.MetadataValue.text(message)})

    return _bad_segment


def _bad_by_key(scan: SegmentScan) -> dict[str, list[BadSegmentFile]]:
    """Bad files grouped by the asset name they take: the segment name they seem to define,
    suffixed when a good segment already has it."""
    good = {s.name for s in scan.segments}
    grouped: dict[str, list[BadSegmentFile]] = defaultdict(list)
    for b in scan.bad:
        grouped[b.name if b.name not in good else f"{b.name}_invalid"].append(b)
    return dict(grouped)


def build_audience_assets() -> list[dg.AssetsDefinition]:
    """One asset per good dynamic segment, and one failing flag asset per bad segment file."""
    scan = segment_scan()
    assets = [build_audience_asset(seg) for seg in scan.segments if seg.kind == "dynamic"]
    for name, bad in sorted(_bad_by_key(scan).items()):
        for b in bad:
            log.warning("audience segment not loaded: %s", b.message)
        assets.append(build_bad_segment_asset(name, bad))
    return assets
