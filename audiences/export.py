"""File-only export of a segment for one platform: hashed file(s) plus a manifest JSON.

For users who upload by hand, and the record every sync keeps. The files hold only the
platform's hashes (``audiences.destinations``); the manifest holds counts, the hash algorithm, the
time (passed in by the caller) and the files with their SHA-256 checksums, never an identifier.
Platform minimum sizes are enforced (``AudienceTooSmall``) unless the caller passes
``allow_small=True``, which still writes the files and records ``below_minimum: true``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from audiences.destinations import (
    AudienceTooSmall,
    Destination,
    PlatformFile,
    get_destination,
)
from audiences.platforms import platform_files

__all__ = ["AudienceTooSmall", "ExportResult", "build_manifest", "export_segment_file",
           "members_identifier_frame"]

MANIFEST_VERSION = 1
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class ExportResult:
    """What ``export_segment_file`` wrote."""

    segment: str
    platform: str
    files: tuple[Path, ...]
    manifest_path: Path
    manifest: dict[str, Any]

    @property
    def rows(self) -> int:
        return int(self.manifest["counts"]["rows"])

    @property
    def below_minimum(self) -> bool:
        return bool(self.manifest["below_minimum"])


def check_minimum(platform: Destination,
                  files: Sequence[PlatformFile]) -> list[AudienceTooSmall]:
    """The minimum-size violations of ``files`` (VK: per users list, in lines); an export
    with no usable row at all is a violation too."""
    return platform.files_too_small(files)


def check_maximum(platform: Destination, files: Sequence[PlatformFile]) -> None:
    """Refuse a list above the platform's maximum (VK: 5,000,000 lines)."""
    for f in files:
        if platform.max_rows is not None and f.rows > platform.max_rows:
            raise ValueError(f"{platform.name} accepts at most {platform.max_rows} rows per "
                             f"list; {f.suffix} has {f.rows}")


def build_manifest(*, segment: str, platform: Destination, files: Sequence[PlatformFile],
                   customers: int, members: int, excluded: int, added: int, removed: int,
                   created_at: datetime, below_minimum: bool,
                   file_names: Sequence[str]) -> dict[str, Any]:
    """The manifest of an export (pure: the time is an argument)."""
    return {
        "manifest_version": MANIFEST_VERSION,
        "segment": segment,
        "platform": platform.name,
        "hash_algorithm": platform.hash_algorithm,
        "hash_encoding": "hex",
        "created_at": created_at.isoformat(),
        "counts": {
            "rows": sum(f.rows for f in files),
            "customers": customers,
            "members": members,
            "without_identifier": members - customers,
            "added": added,
            "removed": removed,
            "excluded": excluded,
        },
        "minimum_rows": platform.min_rows,
        "below_minimum": below_minimum,
        "files": [
            {"name": name, "rows": f.rows, "list_type": f.list_type,
             "sha256": hashlib.sha256(f.content.encode("utf-8")).hexdigest()}
            for name, f in zip(file_names, files, strict=True)
        ],
    }


def _write_owner_only(path: Path, text: str) -> None:
    """Audience files carry (hashed) contacts: created 0600, and a file an older version left
    world-readable is tightened before it is rewritten."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)


def export_segment_file(
    members_frame: pd.DataFrame, platform: str, out_dir: str | Path, segment_name: str,
    excluded_count: int, value_column: str | None = None, *, created_at: datetime | None = None,
    allow_small: bool = False, added: int | None = None, removed: int = 0,
    members: int | None = None,
) -> ExportResult:
    """Write ``segment_name``'s export for ``platform`` into ``out_dir``: the hashed file(s)
    ``<segment>__<platform file>`` and ``<segment>__<platform>.manifest.json``.

    ``members_frame``: customer_id, kind, value (+ ``value_column`` for a Meta value-based
    seed). ``excluded_count``: uncontactable customers left out by the segment. ``added`` /
    ``removed``: the sync's diff counts (a full export: every exported customer is added).
    ``created_at``: the export time (UTC now when not given). ``members``: the segment's
    contactable members (default: the customers in ``members_frame``; a member without any
    phone or e-mail has no row there). Raises ``AudienceTooSmall``
    before writing anything when below the platform minimum, unless ``allow_small``."""
    p = get_destination(platform)
    if not p.file_export:
        raise ValueError(f"{p.name} has no file export (raw identifiers or CRM ids never go to "
                         f"files); sync it through its API")
    if not _SAFE_NAME.match(segment_name):
        raise ValueError(f"segment name {segment_name!r} is not a safe file name "
                         "(letters, digits, '_', '.', '-')")
    if excluded_count < 0:
        raise ValueError("excluded_count must be non-negative")
    files, customers = platform_files(p, members_frame, value_column)
    check_maximum(p, files)
    too_small = check_minimum(p, files)
    if too_small and not allow_small:
        raise too_small[0]
    if members is None:
        members = int(members_frame["customer_id"].nunique()) if len(members_frame) else 0
    when = created_at or datetime.now(UTC)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = [f"{segment_name}__{f.suffix}" for f in files]
    manifest = build_manifest(
        segment=segment_name, platform=p, files=files, customers=customers, members=members,
        excluded=excluded_count, added=customers if added is None else added, removed=removed,
        created_at=when, below_minimum=bool(too_small), file_names=names)
    paths = []
    for name, f in zip(names, files, strict=True):
        path = out / name
        _write_owner_only(path, f.content)
        paths.append(path)
    manifest_path = out / f"{segment_name}__{p.name}.manifest.json"
    _write_owner_only(manifest_path, json.dumps(manifest, indent=2) + "\n")
    return ExportResult(segment_name, p.name, tuple(paths), manifest_path, manifest)


def members_identifier_frame(wh: Any, members: Any) -> pd.DataFrame:
    """A segment's contactable members (``segments.Members``) as the frame
    ``export_segment_file`` takes: customer_id, kind, value, plus ``lookalike_value`` when the
    segment has a value column (a customer without one gets 0)."""
    from audiences.identifiers import customer_identifiers

    frame = customer_identifiers(wh, members.customer_ids)
    if members.values is not None:
        by_customer = dict(zip(members.customer_ids, members.values, strict=True))
        frame["lookalike_value"] = frame["customer_id"].map(by_customer).fillna(0)
    return frame
