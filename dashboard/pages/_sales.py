"""Payload helpers shared by the sales formula, funnel and managers pages.

Labels travel in the payload as {key: {ru, en}} (the script registers them with
`Voronka.labels`), so a metric's name and its definition (docs metrics.md) live in one place
beside the code that reads the mart column.
"""

import datetime as dt
from collections.abc import Mapping
from typing import Any

import pandas as pd

from dashboard.data import Marts, month_str, to_date

#: key -> (unit, title_ru, title_en, definition_ru, definition_en)
MetricDef = tuple[str, str, str, str, str]

CRM_NAMES = {"amocrm": "amoCRM", "bitrix24": "Bitrix24"}


def labels(metrics: Mapping[str, MetricDef],
           extra: Mapping[str, tuple[str, str]] | None = None) -> dict[str, dict[str, str]]:
    """{key: {ru, en}} for every metric title, `<key>__def` for its definition, and extras."""
    out: dict[str, dict[str, str]] = {}
    for key, (_unit, title_ru, title_en, def_ru, def_en) in metrics.items():
        out[key] = {"ru": title_ru, "en": title_en}
        out[f"{key}__def"] = {"ru": def_ru, "en": def_en}
    for key, (ru, en) in (extra or {}).items():
        out[key] = {"ru": ru, "en": en}
    return out


def units(metrics: Mapping[str, MetricDef]) -> dict[str, str]:
    """{metric key: unit} so the script formats each figure by its unit."""
    return {key: spec[0] for key, spec in metrics.items()}


def as_of(marts: Marts) -> dt.date | None:
    """The marts' as-of date (dim_report_dates), never the wall clock."""
    return marts.as_of_date


def month_complete(month: Any, as_of_date: dt.date | None) -> bool:
    """metrics.md "Periods": complete when the as-of date is after the month's last day."""
    first = to_date(month)
    if first is None or as_of_date is None:
        return False
    last = (pd.Timestamp(first) + pd.offsets.MonthEnd(0)).date()
    return as_of_date > last


def ident(value: Any) -> str:
    """An id as text, the same whichever type the driver gave (an integer id in a column
    with nulls comes back from pandas as a float: 8812057.0 must still read "8812057")."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def pipeline_key(crm: Any, account: Any, pipeline_id: Any) -> str:
    """One pipeline across CRMs and accounts (ids repeat between them)."""
    return f"{crm}:{account}:{ident(pipeline_id)}"


def manager_key(crm: Any, account: Any, user_id: Any) -> str | None:
    """One manager across CRMs and accounts; None for the "all managers" slice."""
    if user_id is None or user_id is pd.NA or (isinstance(user_id, float) and pd.isna(user_id)):
        return None
    return f"{crm}:{account}:{ident(user_id)}"


def managers_of(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Distinct managers of a frame with a display label unique across CRMs.

    A name shared by two CRM users gets its CRM (and id if still ambiguous), so the filter
    never merges two people."""
    if frame.empty:
        return []
    rows = (frame.dropna(subset=["responsible_user_id"])
            .drop_duplicates(["crm", "account", "responsible_user_id"]))
    out = []
    for r in rows.itertuples(index=False):
        name = r.manager_name if isinstance(r.manager_name, str) and r.manager_name else None
        user = ident(r.responsible_user_id)
        out.append({"key": manager_key(r.crm, r.account, r.responsible_user_id),
                    "crm": str(r.crm), "account": str(r.account),
                    "responsible_user_id": user,
                    "manager_name": name, "label": name or f"#{user}"})
    counts = pd.Series([m["label"] for m in out]).value_counts()
    for m in out:
        if counts[m["label"]] > 1:
            m["label"] = f"{m['label']} ({CRM_NAMES.get(m['crm'], m['crm'])} "\
                         f"#{m['responsible_user_id']})"
    return sorted(out, key=lambda m: m["label"])


def months_list(values: pd.Series, as_of_date: dt.date | None) -> list[dict[str, Any]]:
    """Sorted distinct months as [{month, month_complete}]."""
    months = sorted({m for m in (month_str(v) for v in values) if m})
    return [{"month": m, "month_complete": month_complete(m, as_of_date)} for m in months]
