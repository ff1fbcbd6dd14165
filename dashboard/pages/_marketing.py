"""Payload helpers shared by the acquisition, cohorts and retention pages.

The payload is JSON embedded in a static page: values go through dashboard.data.jsonable,
so the page never depends on the driver's types (Decimal, date, numpy, NaN).
"""

from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from dashboard.data import jsonable
from expectations.marts import BLENDED_CHANNEL, CHANNELS

#: Channel order on every page; `all` is the blended row.
CHANNEL_ORDER = CHANNELS
BLENDED = BLENDED_CHANNEL

#: key -> (unit, title_ru, title_en, definition_ru, definition_en)
MetricDef = tuple[str, str, str, str, str]


def records(frame: pd.DataFrame, columns: Iterable[str], sort: list[str]) -> list[dict]:
    """The columns of a mart as a list of JSON records, in a stable order."""
    cols = list(columns)
    if frame is None or frame.empty:
        return []
    ordered = frame.sort_values(sort, kind="stable", na_position="first")
    return [{c: jsonable(v) for c, v in zip(cols, row, strict=True)}
            for row in ordered[cols].itertuples(index=False, name=None)]


def months_of(rows: list[dict], key: str = "month", complete_key: str = "month_complete"
              ) -> list[dict]:
    """Distinct months of the rows with their completeness, oldest first: the page's x axis
    and the filter's range (a month is incomplete when any of its rows says so)."""
    seen: dict[str, bool] = {}
    for row in rows:
        month = row.get(key)
        if month is None:
            continue
        complete = bool(row.get(complete_key, True))
        seen[month] = seen.get(month, True) and complete
    return [{"month": m, "complete": seen[m]} for m in sorted(seen)]


def channels_of(rows: list[dict], key: str = "channel") -> list[str]:
    """The channels present (blended `all` excluded), in the catalogue's order."""
    present = {r.get(key) for r in rows} - {None, BLENDED}
    known = [c for c in CHANNEL_ORDER if c in present]
    return known + sorted(present - set(CHANNEL_ORDER))


def metric_texts(defs: Mapping[str, MetricDef], lang: str) -> dict[str, dict[str, str]]:
    """Titles, units and hover definitions in the page's language (ru unless "en")."""
    en = lang == "en"
    return {key: {"unit": unit, "title": title_en if en else title_ru,
                  "definition": def_en if en else def_ru}
            for key, (unit, title_ru, title_en, def_ru, def_en) in defs.items()}


def texts(labels: Mapping[str, tuple[str, str]], lang: str) -> dict[str, str]:
    """Other labels (section names, notes) in the page's language."""
    return {key: (en if lang == "en" else ru) for key, (ru, en) in labels.items()}


def frame(marts: Mapping[str, pd.DataFrame], name: str) -> pd.DataFrame:
    """A mart by name; an empty frame when the marts lack it (the page then renders empty)."""
    try:
        found = marts[name]
    except KeyError:
        return pd.DataFrame()
    return found if found is not None else pd.DataFrame()


def as_of(marts: Any) -> str | None:
    """The marts' as-of date (never the wall clock), for the page's notes."""
    return jsonable(getattr(marts, "as_of_date", None))
