"""`voronka audiences ...`: list the segments and preview one, with counts.

voronka/cli.py wires it in with::

    from audiences import cli as audiences_cli
    audiences_cli.add_parser(sub)        # sub = parser.add_subparsers(...)

The preview shows only non-identifying columns (never phones or e-mails) and always the
number of matching customers excluded for consent (withdrawn consent or do-not-contact).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from audiences.segments import (
    PREVIEW_COLUMNS,
    SegmentError,
    get_segment,
    load_segments,
    segment_frame,
)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add `audiences` (with `list` and `preview`) to voronka's subcommands."""
    aud = subparsers.add_parser("audiences", help="marketing audiences: list and preview segments")
    aud.add_argument("--segments-dir", default=None,
                     help="directory of segment YAML files (default: the shipped examples)")
    actions = aud.add_subparsers(dest="audiences_command", required=True)
    lst = actions.add_parser("list", help="every segment with its member and excluded counts")
    lst.set_defaults(func=run)
    preview = actions.add_parser("preview", help="counts and a sample of one segment "
                                                 "(non-identifying columns only)")
    preview.add_argument("name")
    preview.add_argument("--limit", type=int, default=10, help="sample rows (default 10)")
    preview.set_defaults(func=run)
    aud.set_defaults(func=run)
    return aud


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
            return cmd_list(wh, getattr(args, "segments_dir", None))
        if command == "preview":
            return cmd_preview(wh, args.name, args.limit, getattr(args, "segments_dir", None))
    except SegmentError as exc:
        print(f"voronka audiences: {exc}", file=sys.stderr)
        return 2
    print(f"voronka audiences: unknown command {command!r}; use list or preview",
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
    segments = load_segments(segments_dir)
    wh = _warehouse(wh)
    rows = []
    for seg in segments:
        frame = segment_frame(wh, seg)
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
    return 0


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
