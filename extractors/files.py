"""Files source: orders and offline ad spend dropped as CSV or Parquet into a folder.

Layout: ``<folder>/orders/*.csv|*.parquet`` and ``<folder>/ad_spend/*.csv|*.parquet``. The
column contract is ``ORDER_COLUMNS`` / ``AD_SPEND_COLUMNS`` below (also in the README). Exports
from Russian accounting tools are common, so CSV may be comma-, semicolon- or tab-separated,
in any encoding `_decode` can place (BOM, UTF-8, else charset-normalizer among Cyrillic,
Western and UTF-16 code pages), and money may use a decimal comma.

Every file is read on every run (they are small); idempotent landing makes unchanged rows
no-ops and a corrected row a new version. Rows that break the contract are quarantined by
``validate_file_rows`` with the file, the line number, the field and the reason; a file that
cannot be read under the contract (a required column missing, an encoding that cannot be told)
is quarantined whole, by name, and the other files land; a header-only file lands nothing.

Real shop exports list one line per product: the rows of one file sharing an ``order_id`` are
one order (``merge_lines``: amounts summed), landed as one raw record keyed by the order id, so
a re-exported order replaces its earlier version instead of adding to it. Dates run from
1970-01-01 to the as-of date; every amount is in the one account currency (``VORONKA_CURRENCY``),
since marts add amounts up. The user-facing contract is docs/FILES.md.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
import re
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from zoneinfo import ZoneInfo

from extractors.http import Page
from warehouse.records import QuarantinedRecord, RawRecord

log = logging.getLogger("voronka.extractors")

SUFFIXES = (".csv", ".parquet")
FILE_KEY = "_file"
LINE_KEY = "_line"
LINES_KEY = "_lines"  # the rows of a line-item order, each with its own _line
FILE_ERROR_KEY = "_file_error"  # set on the one record that stands for a refused file
REFUSED_PREFIX = "file:"  # record_id of that record: "file:<name>"
DATE_FLOOR = date(1970, 1, 1)
REPORTING_TZ = ZoneInfo("Europe/Moscow")
DEFAULT_CURRENCY = "RUB"
RATES_ENV = "VORONKA_CURRENCY_RATES"
RATE_KEY = "_rate"  # account-currency units per unit of the row's currency, from the rates file
RATE_COLUMNS = ("date", "currency", "rate")


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # "text" | "key" | "date" | "money" | "number" | "int" | "currency"
    required: bool = False


ORDER_COLUMNS = (
    Column("order_id", "key", required=True),
    Column("order_date", "date", required=True),
    Column("amount", "money", required=True),
    Column("currency", "currency"),
    Column("customer_id", "key"),
    Column("customer_phone", "text"),
    Column("customer_email", "text"),
    Column("customer_name", "text"),
    Column("product", "text"),
    Column("quantity", "number"),
    Column("gross_margin", "money"),
    Column("utm_source", "text"),
    Column("utm_medium", "text"),
    Column("utm_campaign", "text"),
)
AD_SPEND_COLUMNS = (
    Column("date", "date", required=True),
    Column("platform", "text", required=True),
    Column("campaign_id", "key", required=True),
    Column("campaign_name", "text"),
    Column("spend", "money", required=True),
    Column("currency", "currency"),
    Column("impressions", "int"),
    Column("clicks", "int"),
    Column("vat_included", "text"),
)
CONTRACTS: dict[str, tuple[Column, ...]] = {"orders": ORDER_COLUMNS, "ad_spend": AD_SPEND_COLUMNS}
#: Order columns every line of a line-item order must agree on (when filled in).
SHARED_ORDER_COLUMNS = ("order_date", "currency", "customer_id")
#: Order columns added up over the lines (gross_margin only when every line has one).
SUMMED_ORDER_COLUMNS = ("amount", "gross_margin", "quantity")


class FileContractError(ValueError):
    """A file that cannot be read under the column contract at all."""


def _record_id(entity: str, row: dict[str, str]) -> str:
    if entity == "orders":
        return row.get("order_id", "")
    return "|".join(row.get(k, "") for k in ("date", "platform", "campaign_id"))


#: BOMs a text file may start with; UTF-32 before UTF-16 (its BOM starts with UTF-16's).
_BOMS = ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe\x00\x00", "utf-32"),
         (b"\x00\x00\xfe\xff", "utf-32"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"))
#: The encodings an export to us plausibly uses, most likely first: Russian accounting and
#: shop tools (Windows-1251, KOI8-R/U, DOS 866, Mac), then Western European Windows/Latin-1,
#: then UTF-16 without a BOM. A short text fits several code pages equally well; the first of
#: these among the equally good guesses wins. Anything else is refused rather than guessed.
PLACEABLE_ENCODINGS = ("cp1251", "koi8_r", "koi8_u", "cp866", "mac_cyrillic", "cp1252",
                       "latin_1", "iso8859_15", "utf_16_le", "utf_16_be")
ENCODING_ENV = "VORONKA_FILES_ENCODING"  # forces one encoding for every CSV (a Python codec)


def _detected_encoding(raw: bytes) -> str:
    """The placeable encoding charset-normalizer finds best for bytes that are not UTF-8;
    raises FileContractError when none fits (binary data, an exotic code page)."""
    from charset_normalizer import from_bytes

    matches = list(from_bytes(raw))
    if not matches:
        raise FileContractError("cannot tell its text encoding (not UTF-8, UTF-16 or a known "
                                f"code page); save it as UTF-8 or set {ENCODING_ENV}")
    best = (matches[0].chaos, matches[0].coherence)
    tied = [m for m in matches if (m.chaos, m.coherence) == best]
    for encoding in PLACEABLE_ENCODINGS:
        if any(encoding in m.could_be_from_charset for m in tied):
            return encoding
    raise FileContractError(f"cannot tell its text encoding (it looks like {matches[0].encoding}"
                            f", which is not one we read); save it as UTF-8 or set "
                            f"{ENCODING_ENV}")


def _decode(raw: bytes) -> str:
    """The file's text: a BOM decides, then strict UTF-8, then detection (charset-normalizer),
    so that KOI8-R or Latin-1 never lands as Windows-1251 nonsense. Raises FileContractError."""
    forced = os.environ.get(ENCODING_ENV, "").strip()
    encoding = forced or next((enc for bom, enc in _BOMS if raw.startswith(bom)), None)
    if encoding is None and b"\x00" not in raw[:4096]:  # NULs: UTF-16 without a BOM
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            pass
    encoding = encoding or _detected_encoding(raw)
    try:
        return raw.decode(encoding).removeprefix("\ufeff")  # a BOM kept by a forced codec
    except (UnicodeDecodeError, LookupError) as exc:
        raise FileContractError(f"cannot be read as {encoding} ({exc})") from None


def _sniff(text: str) -> type[csv.Dialect] | csv.Dialect:
    try:
        return csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        return csv.excel


def _cells(row: dict[str | None, str | list[str] | None]) -> dict[str, str]:
    extra = row.pop(None, None)  # more cells than headers
    cleaned = {(k or "").strip().lower(): str(v or "").strip() for k, v in row.items()}
    if extra:
        cleaned["__extra_cells"] = str(len(extra))
    return cleaned


def _read_csv(path: Path) -> tuple[set[str], list[tuple[int, dict[str, str]]]]:
    """The header's column names and (line number, row) for each data row (header: line 1)."""
    try:
        text = _decode(path.read_bytes())
    except FileContractError as exc:
        raise FileContractError(f"{path.name}: {exc}") from None
    reader = csv.DictReader(io.StringIO(text), dialect=_sniff(text))
    rows = []
    for row in reader:
        cleaned = _cells(row)
        if any(cleaned.values()):
            rows.append((reader.line_num, cleaned))
    header = {name.strip().lower() for name in reader.fieldnames or () if name.strip()}
    return header, rows


def _read_parquet(path: Path) -> tuple[set[str], list[tuple[int, dict[str, str]]]]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    rows = [(index, {
        str(k).strip().lower(): "" if v is None else (
            v.isoformat() if isinstance(v, date | datetime) else str(v)
        )
        for k, v in row.items()
    }) for index, row in enumerate(table.to_pylist(), start=1)]
    return {str(n).strip().lower() for n in table.column_names}, rows


def read_table(path: Path) -> tuple[set[str], list[tuple[int, dict[str, str]]]]:
    """(column names, rows) of a CSV or Parquet file; raises FileContractError (or pyarrow's
    ValueError / OSError) when the file cannot be read as a table at all."""
    try:
        if path.suffix.lower() == ".parquet":
            return _read_parquet(path)
        return _read_csv(path)
    except csv.Error as exc:  # e.g. a field larger than the csv module's limit
        raise FileContractError(f"{path.name}: not a readable CSV table ({exc})") from None


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    return iter(read_table(path)[1])


def check_header(entity: str, path: Path, columns: set[str]) -> None:
    missing = [c.name for c in CONTRACTS[entity] if c.required and c.name not in columns]
    if missing:
        raise FileContractError(
            f"{path.name}: required column(s) {', '.join(repr(m) for m in missing)} missing; "
            f"the {entity} contract needs {[c.name for c in CONTRACTS[entity] if c.required]}"
        )


def _first_filled(lines: list[dict[str, str]], column: str) -> str:
    return next((row[column] for row in lines if row.get(column)), "")


def _sum_text(values: list[str]) -> str:
    """The sum of money cells as text ('' unless every cell is a number: a line the contract
    refuses, or a margin some lines lack, must not give a partial total)."""
    try:
        return str(sum(parse_money(v) for v in values)) if all(values) else ""
    except (ArithmeticError, ValueError):
        return ""


def merge_lines(file_name: str, lines: list[tuple[int, dict[str, str]]]) -> dict[str, str | list]:
    """One order payload from its line rows: the order's fields from the first line that fills
    them, amount / gross_margin / quantity summed, the lines kept as received under `_lines`."""
    rows = [row for _, row in lines]
    merged: dict[str, str | list] = dict(rows[0])
    for column in {c for row in rows for c in row}:
        if column in SUMMED_ORDER_COLUMNS:
            merged[column] = _sum_text([row.get(column, "") for row in rows])
        elif not column.startswith("__"):
            merged[column] = _first_filled(rows, column)
    merged[FILE_KEY], merged[LINE_KEY] = file_name, lines[0][0]
    merged[LINES_KEY] = [{**row, LINE_KEY: line} for line, row in lines]
    return merged


def file_payloads(
    entity: str, file_name: str, rows: list[tuple[int, dict[str, str]]]
) -> Iterator[dict]:
    """The raw payloads of one file: a row each, except that the rows of an orders file sharing
    an order_id become one order (`merge_lines`); an order of one line keeps the plain row."""
    if entity != "orders":
        for line, row in rows:
            yield {**row, FILE_KEY: file_name, LINE_KEY: line}
        return
    groups: dict[str, list[tuple[int, dict[str, str]]]] = {}
    for line, row in rows:
        groups.setdefault(row.get("order_id") or f"\0{line}", []).append((line, row))
    for lines in groups.values():
        if len(lines) == 1:
            line, row = lines[0]
            yield {**row, FILE_KEY: file_name, LINE_KEY: line}
        else:
            yield merge_lines(file_name, lines)


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
        """One page per file; the cursor is unused (every file is re-read, landing dedups).
        A header-only file gives an empty page (nothing to land is a normal export); a file
        that cannot be read under the contract gives one refusal record (`refused_file`),
        which the contract quarantines whole, so that the other files still land."""
        if entity not in CONTRACTS:
            raise ValueError(f"files source has no entity {entity!r}; known: {self.ENTITIES}")
        rates = Rates.from_env()
        for path in self.files(entity):
            try:
                header, rows = read_table(path)
                check_header(entity, path, header)
            except (ValueError, OSError) as exc:  # FileContractError, unreadable Parquet
                log.warning("files %s %s: the whole file is refused: %s", entity, path.name,
                            _without_name(path, exc))
                yield Page(records=[self.refused_file(entity, path, exc)], cursor_after=None,
                           meta={"file": path.name})
                continue
            records = [
                RawRecord(
                    source=self.name, account=self.account, entity=entity,
                    record_id=_record_id(entity, payload) or f"{path.name}:{payload[LINE_KEY]}",
                    payload=attach_rate(entity, payload, rates),
                )
                for payload in file_payloads(entity, path.name, rows)
            ]
            log.info("files %s %s: %d rows, %d records", entity, path.name, len(rows),
                     len(records))
            yield Page(records=records, cursor_after=None, meta={"file": path.name})

    def refused_file(self, entity: str, path: Path, exc: Exception) -> RawRecord:
        """The record that stands for a whole unreadable file in raw._quarantine: its name,
        size and content hash (the file itself stays in the folder and is re-read each run,
        so fixing it lands its rows) and why it was refused (FILE_ERROR_KEY)."""
        data = path.read_bytes() if path.is_file() else b""
        return RawRecord(
            source=self.name, account=self.account, entity=entity,
            record_id=f"{REFUSED_PREFIX}{path.name}",
            payload={FILE_KEY: path.name, LINE_KEY: None, "_bytes": len(data),
                     "_sha256": hashlib.sha256(data).hexdigest(),
                     FILE_ERROR_KEY: _without_name(path, exc)},
        )

    def check_connection(self) -> str:
        """For `voronka doctor`: the folder and every file's header against the contract,
        without landing anything; raises ``FileContractError`` naming each problem."""
        problems = self.contract_problems()
        if problems:
            raise FileContractError("; ".join(problems))
        return ", ".join(f"{len(self.files(e))} {e} file(s)" for e in self.ENTITIES)

    def contract_problems(self) -> list[str]:
        """One sentence per problem: no folder, no entity subfolder, or a file that cannot
        be read or lacks a required column (the header alone is read)."""
        if not self.folder.is_dir():
            return [f"the folder {self.folder} does not exist"]
        if not any((self.folder / entity).is_dir() for entity in self.ENTITIES):
            return [f"{self.folder} has no {' or '.join(e + '/' for e in self.ENTITIES)} "
                    "subfolder"]
        problems = []
        for entity in self.ENTITIES:
            for path in self.files(entity):
                try:
                    check_header(entity, path, self.header(path))
                except (ValueError, OSError) as exc:  # FileContractError, unreadable Parquet
                    reason = str(exc).removeprefix(f"{path.name}: ")
                    problems.append(f"{entity}/{path.name}: {reason}")
        return problems

    @staticmethod
    def header(path: Path) -> set[str]:
        """The file's column names as the reader normalises them (stripped, lower case)."""
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            return {str(n).strip().lower() for n in pq.read_schema(path).names}
        try:
            text = _decode(path.read_bytes())
        except FileContractError as exc:
            raise FileContractError(f"{path.name}: {exc}") from None
        first = next(csv.reader(io.StringIO(text), dialect=_sniff(text)), [])
        return {cell.strip().lower() for cell in first if cell.strip()}


def _without_name(path: Path, exc: Exception) -> str:
    """The reason of a file error without the file name it may start with."""
    return str(exc).removeprefix(f"{path.name}: ")


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


@dataclass(frozen=True)
class Rates:
    """The user's daily exchange rates (VORONKA_CURRENCY_RATES: a CSV or Parquet file of
    date, currency, rate = account-currency units per unit). A day's rate is the latest one on
    or before it, so weekends and holidays take the last published rate."""

    file_name: str
    by_currency: dict[str, list[tuple[date, Decimal]]]

    @classmethod
    def from_env(cls) -> Rates | None:
        path = os.environ.get(RATES_ENV, "").strip()
        return cls.load(Path(path).expanduser()) if path else None

    @classmethod
    def load(cls, path: Path) -> Rates:
        """Read and check the whole file: a wrong rate would skew every converted amount, so
        any bad row fails the run with the file, line and field rather than being skipped."""
        if not path.is_file():
            raise FileContractError(f"{RATES_ENV}={path}: no such file")
        rows = list(read_rows(path))
        missing = [c for c in RATE_COLUMNS if not rows or c not in rows[0][1]]
        if missing:
            raise FileContractError(f"{path.name}: required column(s) {missing} missing; the "
                                    f"rates file needs {list(RATE_COLUMNS)}")
        by_currency: dict[str, list[tuple[date, Decimal]]] = {}
        for line, row in rows:
            currency, rate = row["currency"].upper(), _rate_value(path.name, line, row["rate"])
            if not _CURRENCY.match(currency):
                raise FileContractError(f"{path.name} line {line}: field 'currency' expected an "
                                        f"ISO 4217 code, got {row['currency']!r}")
            by_currency.setdefault(currency, []).append((_rate_day(path.name, line, row), rate))
        return cls(path.name, {c: sorted(v) for c, v in by_currency.items()})

    def rate(self, currency: str, day: date) -> Decimal | None:
        """The rate of `currency` on `day`: the latest on or before it; None before the first."""
        series = self.by_currency.get(currency, [])
        at = bisect_right(series, (day, Decimal("Infinity")))
        return series[at - 1][1] if at else None


def _rate_value(file_name: str, line: int, value: str) -> Decimal:
    try:
        rate = parse_money(value)
    except (ArithmeticError, ValueError):
        rate = Decimal(0)
    if not rate.is_finite() or rate <= 0:
        raise FileContractError(f"{file_name} line {line}: field 'rate' expected a positive "
                                f"number, got {value!r}")
    return rate


def _rate_day(file_name: str, line: int, row: dict[str, str]) -> date:
    try:
        return parse_date(row["date"])
    except ValueError:
        raise FileContractError(f"{file_name} line {line}: field 'date' expected a date "
                                f"(YYYY-MM-DD or DD.MM.YYYY), got {row['date']!r}") from None


def attach_rate(entity: str, payload: dict, rates: Rates | None) -> dict:
    """The payload with the rate of its day (RATE_KEY) when it is in a foreign currency the
    rates file covers; unchanged otherwise (the contract then refuses the foreign currency).
    The rate is part of the payload, so a corrected rate lands the row as a new version."""
    currency = str(payload.get("currency") or "")
    if rates is None or not currency or currency == account_currency():
        return payload
    try:
        day = parse_date(str(payload.get("order_date" if entity == "orders" else "date") or ""))
    except ValueError:
        return payload  # the contract reports the date
    rate = rates.rate(currency, day)
    return payload if rate is None else {**payload, RATE_KEY: str(rate)}


def latest_allowed_date() -> date:
    """The as-of date (VORONKA_AS_OF_DATE, else today in Moscow): no file row may be later,
    since a future order or spend day would count in no report yet and skew the last one."""
    from voronka.settings import as_of_date

    return as_of_date() or datetime.now(REPORTING_TZ).date()


def account_currency() -> str:
    """The one currency every file amount is in (VORONKA_CURRENCY, default RUB)."""
    value = os.environ.get("VORONKA_CURRENCY", "").strip().upper() or DEFAULT_CURRENCY
    if not _CURRENCY.match(value):
        raise ValueError(f"VORONKA_CURRENCY must be an ISO 4217 code like RUB, got {value!r}")
    return value


@dataclass(frozen=True)
class Limits:
    """What a valid value depends on beyond its column: the date range and the currency."""

    latest: date
    currency: str
    rates_file: str | None = None  # named when a foreign currency has no rate

    @classmethod
    def now(cls) -> Limits:
        rates = os.environ.get(RATES_ENV, "").strip()
        return cls(latest_allowed_date(), account_currency(), Path(rates).name or None)


def _date_problem(value: str, limits: Limits | None) -> str | None:
    day = parse_date(value)
    if day < DATE_FLOOR:
        return f"is before {DATE_FLOOR}, got {value!r}"
    if limits is not None and day > limits.latest:
        return (f"is after the as-of date {limits.latest} (VORONKA_AS_OF_DATE, else today in "
                f"Moscow), got {value!r}")
    return None


def _currency_problem(value: str, limits: Limits | None) -> str | None:
    if not _CURRENCY.match(value):
        return f"expected an ISO 4217 code like RUB, got {value!r}"
    if limits is None or value == limits.currency:
        return None
    if limits.rates_file:
        return (f"is {value}, not the account currency {limits.currency} (VORONKA_CURRENCY), "
                f"and {limits.rates_file} ({RATES_ENV}) has no {value} rate on or before the "
                f"row's date")
    return (f"is {value}, not the account currency {limits.currency} (VORONKA_CURRENCY): "
            f"amounts in two currencies cannot be added up; convert the file's amounts to "
            f"{limits.currency}, or give daily rates in {RATES_ENV}")


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_SIGNED_NUMBER = re.compile(r"^[+-][0-9][0-9 .,]*$")


def _is_formula(value: str) -> bool:
    """A key a spreadsheet would run: keys join tables, so staging cannot prefix them the way
    it neutralises names (macros/safe_text.sql); the contract refuses them. "-15" is a key."""
    return value.startswith(_FORMULA_START) and not _SIGNED_NUMBER.match(value)


def field_problem(column: Column, value: str, limits: Limits | None = None) -> str | None:
    """Why a value breaks the contract, or None when it is fine (`limits`: also check the
    as-of date and the account currency)."""
    if not value:
        return "is required but empty" if column.required else None
    try:
        if column.kind == "date":
            return _date_problem(value, limits)
        if column.kind in ("money", "number"):
            if parse_money(value) < 0:
                return f"must not be negative, got {value!r}"
        elif column.kind == "int":
            if int(value) < 0:
                return f"must not be negative, got {value!r}"
        elif column.kind == "currency":
            return _currency_problem(value, limits)
        elif column.kind == "key" and _is_formula(value):
            return ("looks like a spreadsheet formula (starts with = + - @, a tab or CR), "
                    f"got {value!r}")
    except (ValueError, InvalidOperation):
        expected = {"date": "a date (YYYY-MM-DD or DD.MM.YYYY)", "money": "a number",
                    "number": "a number", "int": "a whole number"}[column.kind]
        return f"expected {expected}, got {value!r}"
    return None


Problem = tuple[str, str, str]  # (where: "<file> line <n>", field, why)


def _row_problems(entity: str, row: dict, where: str, limits: Limits) -> list[Problem]:
    problems = [
        (where, column.name, problem) for column in CONTRACTS[entity]
        if (problem := field_problem(column, str(row.get(column.name, "")), limits)) is not None
    ]
    if row.get("__extra_cells"):
        problems.append((where, "*", f"has {row['__extra_cells']} more cell(s) than the header"))
    if entity == "orders" and not problems:
        problems += _margin_problems(row, where)
    return problems


def _margin_problems(row: dict, where: str) -> list[Problem]:
    """A gross margin above the row's amount is a wrong export (margin and amount swapped, a
    margin in another unit): refused here, with the line, rather than by a mart check later."""
    margin, amount = str(row.get("gross_margin") or ""), str(row.get("amount") or "")
    if margin and amount and parse_money(margin) > parse_money(amount):
        return [(where, "gross_margin",
                 f"is above the amount: gross_margin {margin!r} > amount {amount!r}")]
    return []


def _same(column: str, a: str, b: str) -> bool:
    if column == "order_date":
        try:
            return parse_date(a) == parse_date(b)
        except ValueError:
            return True  # the line's own date problem is reported instead
    return a == b


def _line_problems(payload: dict, limits: Limits) -> list[Problem]:
    """Every line of a line-item order against the contract, and the lines against each other
    on the columns one order has once (SHARED_ORDER_COLUMNS)."""
    file_name = payload.get(FILE_KEY)
    problems: list[Problem] = []
    first: dict[str, tuple[int, str]] = {}
    for row in payload[LINES_KEY]:
        where = f"{file_name} line {row.get(LINE_KEY)}"
        problems += _row_problems("orders", row, where, limits)
        for column in SHARED_ORDER_COLUMNS:
            value = str(row.get(column) or "")
            if not value:
                continue
            line, seen = first.setdefault(column, (row.get(LINE_KEY), value))
            if not _same(column, seen, value):
                problems.append((where, column, f"is {value!r} but line {line} of order "
                                 f"{payload.get('order_id')!r} says {seen!r}"))
    return problems


def _warn_currencies(bad: list[QuarantinedRecord], limits: Limits) -> None:
    """One log line per file and foreign currency: the rows are quarantined, and this says why."""
    counts: dict[tuple[str, str], int] = {}
    for q in bad:
        if "currency" in q.failed_fields:
            lines = q.record.payload.get(LINES_KEY) or [q.record.payload]
            currencies = {str(r.get("currency") or "") for r in lines}
            for currency in {c for c in currencies if _CURRENCY.match(c)} - {limits.currency}:
                key = (str(q.record.payload.get(FILE_KEY)), currency)
                counts[key] = counts.get(key, 0) + 1
    for (file_name, currency), n in sorted(counts.items()):
        log.warning("files: %s has %d record(s) in %s, quarantined: the account currency is %s "
                    "(VORONKA_CURRENCY)", file_name, n, currency, limits.currency)


def validate_file_rows(
    records: list[RawRecord], limits: Limits | None = None,
) -> tuple[list[RawRecord], list[QuarantinedRecord]]:
    """Split rows into contract-conforming ones and quarantined ones (file, line, field, why).
    A line-item order is checked line by line and quarantined whole if any line fails."""
    limits = limits or Limits.now()
    good: list[RawRecord] = []
    bad: list[QuarantinedRecord] = []
    seen: dict[str, str] = {}
    for record in records:
        row = record.payload
        if FILE_ERROR_KEY in row:  # a whole file the source could not read (FilesSource.pages)
            bad.append(QuarantinedRecord(record, f"{row.get(FILE_KEY)}: the whole file is "
                                         f"refused: {row[FILE_ERROR_KEY]}", ("file",)))
            continue
        where = f"{row.get(FILE_KEY)} line {row.get(LINE_KEY)}"
        # a row converted by the rates file may be in its own currency
        own = replace(limits, currency=str(row["currency"])) if RATE_KEY in row else limits
        if LINES_KEY in row:
            problems = _line_problems(row, own)
        else:
            problems = _row_problems(record.entity, row, where, own)
        key = record.record_id
        if key in seen and not problems:
            problems.append((
                where, "order_id" if record.entity == "orders" else "date,platform,campaign_id",
                f"repeats the key of {seen[key]}",
            ))
        if problems:
            reason = "; ".join(f"{at}: field '{name}' {why}" for at, name, why in problems)
            bad.append(QuarantinedRecord(record, reason, tuple(dict.fromkeys(
                n for _, n, _ in problems))))
        else:
            seen[key] = where
            good.append(record)
    _warn_currencies(bad, limits)
    return good, bad
