"""`voronka audiences ...`: list, preview, export (files) and sync (platform APIs) segments.

voronka/cli.py wires it in with::

    from audiences import cli as audiences_cli
    audiences_cli.add_parser(sub)        # sub = parser.add_subparsers(...)

The preview shows only non-identifying columns (never phones or e-mails) and always the
number of matching customers excluded for consent (withdrawn consent or do-not-contact).
`export` writes the whole segment as hashed platform files plus a manifest (for uploading by
hand); `sync` sends the additions and removals since the last successful sync to each
platform's API (or, with --file-only, writes them as files), recording the state in the
warehouse's `audiences` schema.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from audiences.destinations import DESTINATIONS, FILE_DESTINATIONS, get_destination
from audiences.export import AudienceTooSmall, export_segment_file, members_identifier_frame
from audiences.segments import (
    PREVIEW_COLUMNS,
    PredictionsUnavailable,
    SegmentError,
    get_segment,
    scan_segments,
    segment_frame,
    segment_members,
)
from audiences.sync import (
    PLATFORMS_VAR,
    SyncResult,
    configured_platforms,
    segment_platforms,
    sync_to_platforms,
)

OUT_DIR_VAR = "VORONKA_AUDIENCES_DIR"
DEFAULT_OUT_DIR = "data/audiences"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add `audiences` (with `list` and `preview`) to voronka's subcommands."""
    aud = subparsers.add_parser("audiences", help="marketing audiences: list, preview, export "
                                                  "and sync segments")
    aud.add_argument("--segments-dir", default=None,
                     help="directory of segment YAML files (default: $VORONKA_SEGMENTS_DIR, "
                          "else the shipped examples)")
    actions = aud.add_subparsers(dest="audiences_command", required=True)
    lst = actions.add_parser("list", help="every segment with its member and excluded counts")
    lst.set_defaults(func=run)
    preview = actions.add_parser("preview", help="counts and a sample of one segment "
                                                 "(non-identifying columns only)")
    preview.add_argument("name")
    preview.add_argument("--limit", type=int, default=10, help="sample rows (default 10)")
    preview.set_defaults(func=run)
    export = actions.add_parser("export", help="the whole segment as hashed files for one "
                                               "platform, plus a manifest (upload by hand)")
    export.add_argument("name")
    export.add_argument("--platform", required=True, choices=sorted(FILE_DESTINATIONS))
    _output_options(export)
    export.set_defaults(func=run)
    sync = actions.add_parser("sync", help="send the additions and removals since the last "
                                           "successful sync to the platforms' APIs (ad "
                                           "platforms, CRM tags and tasks, e-mail lists)")
    sync.add_argument("name")
    sync.add_argument("--platform", action="append", choices=sorted(DESTINATIONS),
                      help=f"repeat for several (default: ${PLATFORMS_VAR}, comma-separated)")
    sync.add_argument("--file-only", action="store_true",
                      help="write the changes as hashed files instead of calling the APIs "
                           "(ad platforms only)")
    sync.add_argument("--dry-run", action="store_true",
                      help="show what would be added, removed and created (tasks, deals) "
                           "without writing anything anywhere")
    _output_options(sync)
    sync.set_defaults(func=run)
    aud.set_defaults(func=run)
    return aud


def _segments_dir(args: argparse.Namespace) -> str | None:
    """--segments-dir, else VORONKA_SEGMENTS_DIR (the Dagster assets read it too), else the
    shipped examples."""
    return getattr(args, "segments_dir", None) or os.environ.get("VORONKA_SEGMENTS_DIR") or None


def _output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=None,
                        help=f"directory for files and manifests (default: ${OUT_DIR_VAR} "
                             f"or {DEFAULT_OUT_DIR})")
    parser.add_argument("--allow-small", action="store_true",
                        help="go ahead below the platform's minimum size (marked in the "
                             "manifest)")


def out_dir(arg: str | None) -> Path:
    return Path(arg or os.environ.get(OUT_DIR_VAR) or DEFAULT_OUT_DIR)


def open_warehouse() -> Any:
    """The configured warehouse (VORONKA_WAREHOUSE...), as the pipeline writes it: the
    segments read marts.dim_customers, marts.fct_orders and intermediate.int_as_of_date."""
    from voronka import settings

    return settings.WarehouseSettings.from_env().open()


def run(args: argparse.Namespace, wh: Any = None) -> int:
    """Run `voronka audiences <list|preview>`; `wh` defaults to the configured warehouse."""
    command = getattr(args, "audiences_command", None)
    try:
        if command == "list":
            return cmd_list(wh, _segments_dir(args))
        if command == "preview":
            return cmd_preview(wh, args.name, args.limit, _segments_dir(args))
        if command == "export":
            return cmd_export(wh, args.name, args.platform, out_dir(args.out),
                              args.allow_small, _segments_dir(args))
        if command == "sync":
            return cmd_sync(wh, args.name, args.platform, out_dir(args.out), args.file_only,
                            args.allow_small, _segments_dir(args),
                            dry_run=getattr(args, "dry_run", False))
    except (SegmentError, AudienceTooSmall, ValueError) as exc:
        print(f"voronka audiences: {exc}", file=sys.stderr)
        return 2
    print(f"voronka audiences: unknown command {command!r}; use list, preview, export or sync",
          file=sys.stderr)
    return 2


def _warehouse(wh: Any) -> Any:
    if wh is not None:
        return wh
    wh = open_warehouse()
    path = getattr(wh, "path", None)
    if path is not None and not path.exists():
        raise SegmentError(f"no warehouse at {path}; run `voronka demo` (or the pipeline) first")
    return wh


def cmd_list(wh: Any = None, segments_dir: str | None = None) -> int:
    """The good segments with their counts; each bad segment file on stderr with its file,
    line and problem (exit status 1 when there is one)."""
    scan = scan_segments(segments_dir)
    for bad in scan.bad:
        print(f"voronka audiences: {bad.message}", file=sys.stderr)
    segments = scan.segments
    wh = _warehouse(wh)
    rows, unavailable = [], 0
    for seg in segments:
        try:
            frame = segment_frame(wh, seg)
        except PredictionsUnavailable as exc:
            print(f"voronka audiences: {exc}", file=sys.stderr)
            rows.append((seg.name, seg.kind, "-", "-", seg.description))
            unavailable += 1
            continue
        members = int(frame["is_contactable"].sum())
        rows.append((seg.name, seg.kind, str(members), str(len(frame) - members),
                     seg.description))
    header = ("name", "kind", "members", "excluded", "description")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        print("  ".join([row[0].ljust(widths[0]), row[1].ljust(widths[1]),
                         row[2].rjust(widths[2]), row[3].rjust(widths[3]), row[4]]).rstrip())
    print(f"\n{len(rows)} segments; 'excluded' = customers matching the conditions who "
          "withdrew consent or are do-not-contact (never exported).")
    if scan.bad:
        print(f"{len(scan.bad)} segment file(s) cannot be used; see above", file=sys.stderr)
    if unavailable:
        print(f"{unavailable} segment(s) need customer predictions, which are not published; "
              "see above", file=sys.stderr)
    return 1 if scan.bad or unavailable else 0


def cmd_preview(wh: Any, name: str, limit: int = 10, segments_dir: str | None = None) -> int:
    seg = get_segment(name, segments_dir)
    wh = _warehouse(wh)
    frame = segment_frame(wh, seg, PREVIEW_COLUMNS)
    members = frame[frame["is_contactable"]]
    excluded = len(frame) - len(members)
    print(f"segment:     {seg.name} ({seg.kind})")
    print(f"description: {seg.description}")
    print(f"file:        {seg.file}")
    if seg.value:
        print(f"value:       {seg.value} (value-based look-alike)")
    print(f"members:     {len(members)}")
    print(f"excluded:    {excluded} (withdrawn consent or do-not-contact)")
    sample = members.loc[:, list(PREVIEW_COLUMNS)].head(max(limit, 0))
    if sample.empty:
        print("\n(no members)")
    else:
        print(f"\nsample ({len(sample)} of {len(members)}):")
        print(sample.to_string(index=False))
    return 0


def cmd_export(wh: Any, name: str, platform: str, directory: Path, allow_small: bool = False,
               segments_dir: str | None = None) -> int:
    """Write the whole segment for one platform: hashed file(s) and a manifest."""
    seg = get_segment(name, segments_dir)
    wh = _warehouse(wh)
    members = segment_members(wh, seg)
    frame = members_identifier_frame(wh, members)
    value_based = bool(seg.value) and get_destination(platform).value_based_seeds
    value_column = "lookalike_value" if value_based else None
    result = export_segment_file(frame, platform, directory, seg.name, members.excluded_count,
                                 value_column, allow_small=allow_small, members=len(members))
    counts = result.manifest["counts"]
    print(f"segment:   {seg.name} ({seg.kind}) -> {platform}")
    print(f"members:   {counts['members']} ({counts['without_identifier']} without a usable "
          f"identifier for {platform})")
    print(f"excluded:  {counts['excluded']} (withdrawn consent or do-not-contact)")
    print(f"rows:      {counts['rows']} ({result.manifest['hash_algorithm']} hashes only)")
    if result.below_minimum:
        print(f"warning:   below {platform}'s minimum of {result.manifest['minimum_rows']} "
              "rows (--allow-small)")
    for path in result.files:
        print(f"file:      {path}")
    print(f"manifest:  {result.manifest_path}")
    return 0


def cmd_sync(wh: Any, name: str, platforms: list[str] | None, directory: Path,
             file_only: bool = False, allow_small: bool = False,
             segments_dir: str | None = None, *, dry_run: bool = False) -> int:
    """Sync one segment to the platforms (``dry_run``: only say what a sync would do); exit 1
    when any platform failed."""
    seg = get_segment(name, segments_dir)
    chosen = platforms or segment_platforms(seg, configured_platforms(os.environ))
    if not chosen:
        raise ValueError(f"name a platform (--platform meta) or set {PLATFORMS_VAR} (the "
                         f"segment's destinations: {', '.join(seg.destinations) or 'any'})")
    wh = _warehouse(wh)
    results = sync_to_platforms(wh, seg, chosen, now=datetime.now(UTC), out_dir=directory,
                                file_only=file_only, allow_small=allow_small,
                                dry_run=dry_run)
    print(f"segment: {seg.name} ({seg.kind})" + ("  [dry run: nothing written]" if dry_run
                                                  else ""))
    for result in results:
        print(format_result(result))
    return 1 if any(r.status == "failed" for r in results) else 0


def format_result(result: SyncResult) -> str:
    """One readable line per platform: status, counts, audience and message."""
    line = (f"  {result.platform:<9} {result.status:<8} +{result.added} -{result.removed} "
            f"excluded {result.excluded} pending {result.pending}")
    if result.audience_id:
        line += f"  audience {result.audience_id}"
    if result.message:
        line += f"\n            {result.message}"
    if result.actions is not None and result.actions.summary():
        line += f"\n            actions: {result.actions.summary()}"
    if result.manifest_path:
        line += f"\n            manifest {result.manifest_path}"
    return line
