"""Read the published marts into DataFrames, and turn frames into JSON-able records.

The dashboard shows what the marts say: every figure comes from schema `marts`, and the as-of
date comes from `marts.dim_report_dates`, never from the wall clock."""

import datetime as dt
import logging
import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from expectations.contract import mart_columns
from predictions.tables import (
    FIT_DDL,
    FIT_MODEL,
    PREDICTIONS_DDL,
    PREDICTIONS_MODEL,
    ddl_columns,
)

Query = Callable[[str], pd.DataFrame]
log = logging.getLogger(__name__)


#: Marts that a Dagster asset writes, not dbt (so not in the dbt mart contract): an
#: older warehouse, or one whose fit never ran, lacks them and the page says so.
OPTIONAL_MARTS: dict[str, tuple[str, ...]] = {
    FIT_MODEL: ddl_columns(FIT_DDL),
    PREDICTIONS_MODEL: ddl_columns(PREDICTIONS_DDL),
}


class Marts(dict):
    """Mart name -> DataFrame (a dict, so pages index it like `marts["fct_orders"]`).

    A mart is read whole from schema `marts` by ``query`` when a page first asks for it: the
    pages read 14 of the 21 marts, and the ones they skip are the largest (one row per lead
    and stage: at scale 10 reading every mart took 430 MB at its peak, the pages' 110 MB).
    A mart missing from the build, or read with no query set, is an empty frame with the
    contract's columns, so a page renders "no data" instead of failing on an older or
    partial warehouse."""

    def __init__(self, query: Query | None = None) -> None:
        super().__init__()
        self.query = query  # None: no more reads (the connection is closed)
        self._unreadable: set[str] = set()

    def __missing__(self, name: str) -> pd.DataFrame:
        if self._read(name):
            return self[name]
        columns = mart_columns().get(name) or OPTIONAL_MARTS.get(name, ())
        return pd.DataFrame(columns=list(columns))

    def get(self, name: str, default: Any = None) -> Any:
        if name not in self:
            self._read(name)
        return super().get(name, default)

    def _read(self, name: str) -> bool:
        """Read a mart of the contract (or an optional one) into the mapping; False when
        there is no query or the read failed (logged once)."""
        known = name in mart_columns() or name in OPTIONAL_MARTS
        if self.query is None or not known or name in self._unreadable:
            return False
        try:
            self[name] = normalise(self.query(f"select * from marts.{name}"))
        except Exception as exc:  # a mart this build does not have: its pages show "no data"
            self._unreadable.add(name)
            reason = (str(exc).splitlines() or [""])[0]
            level = logging.INFO if name in OPTIONAL_MARTS else logging.WARNING
            log.log(level, "dashboard: mart %s not read (%s)", name, reason)
            return False
        return True

    @property
    def report_dates(self) -> pd.DataFrame:
        """The dim_report_dates frame: one row per source with its data range."""
        return self["dim_report_dates"]

    @property
    def as_of_date(self) -> dt.date | None:
        """The marts' as-of date (the same on every dim_report_dates row)."""
        frame = self.report_dates
        if frame.empty or frame["as_of_date"].isna().all():
            return None
        return to_date(frame["as_of_date"].dropna().iloc[0])


def read_marts(query: Query, names: Iterable[str] = ()) -> Marts:
    """The marts of schema `marts` through ``query``: ``names`` now, any other when a page
    first asks for it (a failed read leaves that mart empty).

    The pages' marts are small (monthly aggregates, one row per customer at most), so reading
    them whole keeps each page's build a pandas operation and the queries trivial."""
    marts = Marts(query)
    for name in names:
        marts.get(name)
    return marts


def normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """The same dtypes whichever backend answered: DB-API rows bring Decimal and date objects
    (PostgreSQL, DuckDB cursors), DuckDB's .df() floats and datetime64; pages see floats and
    datetime64 either way."""
    frame = frame.copy()
    for column in frame.columns:
        if frame[column].dtype != object:
            continue
        values = frame[column].dropna()
        if values.empty:
            continue
        if all(isinstance(v, Decimal) for v in values):
            frame[column] = frame[column].astype(float)
        elif all(isinstance(v, dt.date) for v in values):
            frame[column] = pd.to_datetime(frame[column])
    return frame


def to_date(value: Any) -> dt.date | None:
    """A date from whatever the backend returned (date, Timestamp, datetime, ISO string)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        return value.date()
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def jsonable(value: Any) -> Any:
    """One cell as JSON: dates "YYYY-MM-DD", timestamps ISO, numbers float/int, null for NaN."""
    if value is None or value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating | Decimal):
        number = float(value)
        return None if math.isnan(number) or math.isinf(number) else number
    if isinstance(value, pd.Timestamp | dt.datetime):
        if value.hour == value.minute == value.second == 0 and not value.microsecond:
            return value.strftime("%Y-%m-%d")
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, list | tuple | np.ndarray):
        return [jsonable(item) for item in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return str(value)


def records(frame: pd.DataFrame, columns: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """A frame as a list of JSON-able records (the payload shape every page returns)."""
    cols = list(columns) if columns is not None else list(frame.columns)
    return [{col: jsonable(row[col]) for col in cols} for row in frame[cols].to_dict("records")]


def month_str(value: Any) -> str | None:
    """A month (first day) as "YYYY-MM-DD", or None."""
    day = to_date(value)
    return day.isoformat() if day else None


@contextmanager
def published_query(conf: Any = None) -> Iterator[Query]:
    """A query function over the PUBLISHED marts: the DuckDB file opened read-only (safe while
    a run writes the working warehouse), or the PostgreSQL warehouse's `marts` schema."""
    from voronka import settings

    conf = conf or settings.WarehouseSettings.from_env()
    if conf.kind == "duckdb":
        import duckdb

        if not conf.published_path.exists():
            raise FileNotFoundError(f"no published marts at {conf.published_path}; run "
                                    "`voronka demo` or `voronka run` first")
        con = duckdb.connect(str(conf.published_path), read_only=True)
        try:
            yield lambda sql: con.sql(sql).df()
        finally:
            con.close()
    else:
        yield conf.open().query_df


@contextmanager
def working_query(conf: Any = None) -> Iterator[Query | None]:
    """A query function over the WORKING warehouse, for state publication does not copy (the
    audiences' segment sizes and syncs); None when it cannot be opened (missing, or a run
    holds the DuckDB file): the page then says that state is not available."""
    from voronka import settings

    conf = conf or settings.WarehouseSettings.from_env()
    if conf.kind != "duckdb":
        yield conf.open().query_df
        return
    import duckdb

    try:
        con = duckdb.connect(str(conf.duckdb_path), read_only=True)
    except (duckdb.Error, OSError):
        yield None
        return
    try:
        yield lambda sql: con.sql(sql).df()
    finally:
        con.close()
