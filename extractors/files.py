"""Files source: orders and offline ad spend dropped as CSV or Parquet into a folder.

Layout: ``<folder>/orders/*.csv|*.parquet`` and ``<folder>/ad_spend/*.csv|*.parquet``. The
column contract is ``ORDER_COLUMNS`` / ``AD_SPEND_COLUMNS`` below (also in the README). Exports
from Russian accounting tools are common, so CSV may be comma-, semicolon- or tab-separated,
UTF-8 (with or without BOM) or Windows-1251, and money may use a decimal comma.

Every file is read on every run (they are small); idempotent landing makes unchanged rows
no-ops and a corrected row a new version. Rows that break the contract are quarantined by
``validate_file_rows`` with the file, the line number, the field and the reason; a file that
lacks a required column fails with an error naming the file and the column.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

from extractors.http import Page
from warehouse.records import QuarantinedRecord, RawRecord

log = logging.getLogger("voronka.extractors")

SUFFIXES = (".csv", ".parquet")
FILE_KEY = "_file"
LINE_KEY = "_line"


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # "text" | "date" | "money" | "int" | "currency"
    required: bool = False


ORDER_COLUMNS = (
    Column("order_id", "text", required=True),
    Column("order_date", "date", required=True),
    Column("amount", "money", required=True),
    Column("currency", "currency"),
    Column("customer_phone", "text"),
    Column("customer_email", "text"),
    Column("customer_name", "text"),
    Column("product", "text"),
    Column("gross_margin", "money"),
    Column("utm_source", "text"),
    Column("utm_medium", "text"),
    Column("utm_campaign", "text"),
)
AD_SPEND_COLUMNS = (
    Column("date", "date", required=True),
    Column("platform", "text", required=True),
    Column("campaign_id", "text", required=True),
    Column("campaign_name", "text"),
    Column("spend", "money", required=True),
    Column("currency", "currency"),
    Column("impressions", "int"),
    Column("clicks", "int"),
    Column("vat_included", "text"),
)
CONTRACTS: dict[str, tuple[Column, ...]] = {"orders": ORDER_COLUMNS, "ad_spend": AD_SPEND_COLUMNS}


class FileContractError(ValueError):
    """A file that cannot be read under the column contract at all."""


def _record_id(entity: str, row: dict[str, str]) -> str:
    if entity == "orders":
        return row.get("order_id", "")
    return "|".join(row.get(k, "") for k in ("date", "platform", "campaign_id"))


def _decode(raw: bytes) -> str:
    for encoding in ("utf-8-sig", "cp1251"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise FileContractError("not UTF-8 or Windows-1251 text")


def _read_csv(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) for each data row; the header is line 1."""
    text = _decode(path.read_bytes())
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.DictReader(io.StringIO(text), dialect=dialect)
    for row in reader:
        extra = row.pop(None, None)  # more cells than headers
        cleaned = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
        if extra:
            cleaned["__extra_cells"] = str(len(extra))
        if any(cleaned.values()):
            yield reader.line_num, cleaned


def _read_parquet(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    for index, row in enumerate(table.to_pylist(), start=1):
        yield index, {
            str(k).strip().lower(): "" if v is None else (
                v.isoformat() if isinstance(v, date | datetime) else str(v)
            )
            for k, v in row.items()
        }


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    return _read_parquet(path) if path.suffix.lower() == ".parquet" else _read_csv(path)


def check_header(entity: str, path: Path, columns: set[str]) -> None:
    missing = [c.name for c in CONTRACTS[entity] if c.required and c.name not in columns]
    if missing:
        raise FileContractError(
            f"{path.name}: required column(s) {', '.join(repr(m) for m in missing)} missing; "
            f"the {entity} contract needs {[c.name for c in CONTRACTS[entity] if c.required]}"
        )


class FilesSource:
    """Orders and offline ad spend from a folder of CSV/Parquet files."""

    name = "files"
    ENTITIES = ("orders", "ad_spend")

    def __init__(self, folder: str | Path, *, account: str = "files") -> None:
        self.folder = Path(folder)
        self.account = account

    def files(self, entity: str) -> list[Path]:
        folder = self.folder / entity
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES)

    def pages(self, entity: str, cursor: str | None) -> Iterator[Page]:
        """One page per file; the cursor is unused (every file is re-read, landing dedups)."""
        if entity not in CONTRACTS:
            raise ValueError(f"files source has no entity {entity!r}; known: {self.ENTITIES}")
        for path in self.files(entity):
            rows = list(read_rows(path))
            check_header(entity, path, set(rows[0][1]) if rows else set())
            records = [
                RawRecord(
                    source=self.name, account=self.account, entity=entity,
                    record_id=_record_id(entity, row) or f"{path.name}:{line}",
                    payload={**row, FILE_KEY: path.name, LINE_KEY: line},
                )
                for line, row in rows
            ]
            log.info("files %s %s: %d rows", entity, path.name, len(records))
            yield Page(records=records, cursor_after=None, meta={"file": path.name})


_DATE_FORMATS = ("%Y-%m-%d", "%d.%m.%Y", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S")
_CURRENCY = re.compile(r"^[A-Z]{3}$")


def parse_money(value: str) -> Decimal:
    """'45000', '45 000,50', '45000.50' → Decimal; a decimal comma is accepted."""
    text = value.replace("\u00a0", "").replace(" ", "")
    if text.count(",") == 1 and "." not in text:
        text = text.replace(",", ".")
    return Decimal(text)


def parse_date(value: str) -> date:
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(value[:19], fmt).date()
        except ValueError:
            continue
    raise ValueError(value)


def field_problem(column: Column, value: str) -> str | None:
    """Why a value breaks the contract, or None when it is fine."""
    if not value:
        return "is required but empty" if column.required else None
    try:
        if column.kind == "date":
            parse_date(value)
        elif column.kind == "money":
            if parse_money(value) < 0:
                return f"must not be negative, got {value!r}"
        elif column.kind == "int":
            if int(value) < 0:
                return f"must not be negative, got {value!r}"
        elif column.kind == "currency" and not _CURRENCY.match(value):
            return f"expected an ISO 4217 code like RUB, got {value!r}"
    except (ValueError, InvalidOperation):
        expected = {"date": "a date (YYYY-MM-DD or DD.MM.YYYY)", "money": "a number",
                    "int": "a whole number"}[column.kind]
        return f"expected {expected}, got {value!r}"
    return None


def validate_file_rows(
    records: list[RawRecord],
) -> tuple[list[RawRecord], list[QuarantinedRecord]]:
    """Split rows into contract-conforming ones and quarantined ones (file, line, field, why)."""
    good: list[RawRecord] = []
    bad: list[QuarantinedRecord] = []
    seen: dict[str, str] = {}
    for record in records:
        row = record.payload
        where = f"{row.get(FILE_KEY)} line {row.get(LINE_KEY)}"
        problems = [
            (column.name, problem) for column in CONTRACTS[record.entity]
            if (problem := field_problem(column, str(row.get(column.name, "")))) is not None
        ]
        if row.get("__extra_cells"):
            problems.append(("*", f"has {row['__extra_cells']} more cell(s) than the header"))
        key = record.record_id
        if key in seen and not problems:
            problems.append((
                "order_id" if record.entity == "orders" else "date,platform,campaign_id",
                f"repeats the key of {seen[key]}",
            ))
        if problems:
            reason = "; ".join(f"{where}: field '{name}' {why}" for name, why in problems)
            bad.append(QuarantinedRecord(record, reason, tuple(n for n, _ in problems)))
        else:
            seen[key] = where
            good.append(record)
    return good, bad
