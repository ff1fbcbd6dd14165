"""The user's channel mapping: a CSV of (utm_source, utm_medium) -> channel rows, validated here
and loaded into `raw.channel_mapping`, which dbt reads (models/intermediate/int_channel_mapping).

Why Python: a dbt seed can only come from inside the package, and dbt cannot say which line of
a user's file is wrong. The rules of matching live in dbt (macros/identity.sql select_channel);
this module only makes sure every row means one thing. docs/CHANNELS.md is the user's manual.
"""

from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from expectations.marts import CHANNELS
from warehouse.base import Warehouse

ENV_VAR = "VORONKA_CHANNEL_MAPPING"
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PATH = REPO_ROOT / "dbt_project" / "seeds" / "channel_mapping.csv"
WILDCARD = "*"
REQUIRED_COLUMNS = ("utm_source", "utm_medium", "channel")
COLUMNS = (*REQUIRED_COLUMNS, "description")
TABLE_DDL = "utm_source varchar, utm_medium varchar, channel varchar, description varchar, " \
            "line integer, file varchar"
_TAG = re.compile(r"[^\s*]+")  # one UTM value: no spaces inside (trimmed), no '*' inside


class ChannelMappingError(ValueError):
    """A mapping file that cannot be used; the message names the file, line and field."""


@dataclass(frozen=True)
class MappingRow:
    """One rule. `utm_source` / `utm_medium`: a lower-cased value, '*' (any value, missing
    included) or None (the tag is missing)."""

    utm_source: str | None
    utm_medium: str | None
    channel: str
    description: str | None
    line: int


def mapping_path() -> Path:
    """VORONKA_CHANNEL_MAPPING, relative to the repository root like every voronka path;
    the shipped seed when unset."""
    value = os.environ.get(ENV_VAR, "").strip()
    if not value:
        return DEFAULT_PATH
    path = Path(value).expanduser()
    return path if path.is_absolute() else REPO_ROOT / path


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise ChannelMappingError(
            f"channel mapping {path}: file not found (set {ENV_VAR} to an existing CSV, or "
            "unset it for the shipped mapping)")
    try:
        return path.read_text(encoding="utf-8-sig")  # Excel writes a BOM
    except UnicodeDecodeError as exc:
        raise ChannelMappingError(
            f"channel mapping {path}: not UTF-8 text (byte {exc.start}); save it as CSV UTF-8"
        ) from None


def _delimiter(header_line: str) -> str:
    """Comma, or the semicolon a Russian-locale Excel writes."""
    return ";" if header_line.count(";") > header_line.count(",") else ","


def _check_header(path: Path, header: list[str]) -> list[str]:
    names = [h.strip().lower() for h in header]
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise ChannelMappingError(
            f"channel mapping {path}, line 1: missing column(s) {', '.join(missing)} "
            f"(the header must be {','.join(COLUMNS)}; description is optional)")
    unknown = [n for n in names if n not in COLUMNS]
    if unknown:
        raise ChannelMappingError(
            f"channel mapping {path}, line 1: unknown column {unknown[0]!r} "
            f"(allowed: {', '.join(COLUMNS)})")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ChannelMappingError(f"channel mapping {path}, line 1: column {repeated[0]!r} "
                                  "appears twice")
    return names


def _tag(path: Path, line: int, field: str, raw: str) -> str | None:
    """A source / medium cell: '' is a missing tag, '*' any value, else one tag value."""
    value = raw.strip().lower()
    if value in ("", WILDCARD):
        return value or None
    if not _TAG.fullmatch(value):
        what = ("'*' must be the whole cell (it matches any value)" if WILDCARD in value
                else "a UTM value has no spaces inside")
        raise ChannelMappingError(
            f"channel mapping {path}, line {line}, field {field}: {raw.strip()!r} is not "
            f"valid: {what}")
    return value


def _channel(path: Path, line: int, raw: str) -> str:
    value = raw.strip().lower()
    if value not in CHANNELS:
        shown = repr(raw.strip()) if raw.strip() else "empty"
        raise ChannelMappingError(
            f"channel mapping {path}, line {line}, field channel: {shown} is not a channel "
            f"the marts know (one of: {', '.join(CHANNELS)})")
    return value


def _row(path: Path, line: int, cells: dict[str, str]) -> MappingRow:
    description = (cells.get("description") or "").strip() or None
    return MappingRow(
        utm_source=_tag(path, line, "utm_source", cells["utm_source"]),
        utm_medium=_tag(path, line, "utm_medium", cells["utm_medium"]),
        channel=_channel(path, line, cells["channel"]),
        description=description,
        line=line,
    )


def _cells(path: Path, line: int, names: list[str], values: list[str]) -> dict[str, str]:
    """A row's cells by column; a row may leave out trailing optional cells (description)."""
    if len(values) > len(names):
        raise ChannelMappingError(
            f"channel mapping {path}, line {line}: {len(values)} fields, the header has "
            f"{len(names)} (quote a description that contains the delimiter)")
    absent = [n for n in names[len(values):] if n in REQUIRED_COLUMNS]
    if absent:
        raise ChannelMappingError(
            f"channel mapping {path}, line {line}, field {absent[0]}: missing (the row has "
            f"{len(values)} fields, the header {len(names)})")
    return dict(zip(names, values + [""] * (len(names) - len(values)), strict=True))


def _check_unique(path: Path, rows: list[MappingRow]) -> None:
    """Two rows for one (source, medium) pair would make the channel depend on row order."""
    seen: dict[tuple[str | None, str | None], int] = {}
    for row in rows:
        key = (row.utm_source, row.utm_medium)
        if key in seen:
            shown = ",".join(v or "" for v in key)
            raise ChannelMappingError(
                f"channel mapping {path}, line {row.line}, fields utm_source,utm_medium: "
                f"the pair {shown!r} is already mapped on line {seen[key]}")
        seen[key] = row.line


def read_mapping(path: Path | None = None) -> list[MappingRow]:
    """Parse and validate a mapping file; raise ChannelMappingError on the first problem."""
    path = path or mapping_path()
    text = _read_text(path)
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise ChannelMappingError(f"channel mapping {path}: empty file (expected the header "
                                  f"{','.join(COLUMNS)})")
    reader = csv.reader(io.StringIO(text), delimiter=_delimiter(lines[0]))
    names = _check_header(path, next(reader))
    rows = []
    for values in reader:
        if not any(v.strip() for v in values):
            continue  # blank line
        line = reader.line_num
        rows.append(_row(path, line, _cells(path, line, names, values)))
    if not rows:
        raise ChannelMappingError(f"channel mapping {path}: no rows after the header")
    _check_unique(path, rows)
    return rows


def mapping_frame(rows: list[MappingRow], path: Path) -> pd.DataFrame:
    """The rows in the column order of raw.channel_mapping (TABLE_DDL)."""
    return pd.DataFrame(
        [(r.utm_source, r.utm_medium, r.channel, r.description, r.line, str(path))
         for r in rows],
        columns=["utm_source", "utm_medium", "channel", "description", "line", "file"],
    )


def load_channel_mapping(wh: Warehouse, path: Path | None = None) -> list[MappingRow]:
    """Validate the file and replace raw.channel_mapping with it (nothing is written when the
    file is invalid, so the previous mapping stays)."""
    path = path or mapping_path()
    rows = read_mapping(path)
    wh.replace_table("raw", "channel_mapping", mapping_frame(rows, path), TABLE_DDL)
    return rows
