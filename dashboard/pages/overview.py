"""Overview: the seven headline metrics for the last complete month, against the month before
and the same month a year earlier, each with a sparkline of its monthly series.

Revenue, orders and AOV come from fct_customer_value_monthly; new customers, blended CAC and
ROMI from fct_acquisition_monthly's `all` row; CRR from fct_crr_monthly. "Last complete month"
is the newest month the marts flag complete (month_complete), never the wall clock."""

import datetime as dt
from typing import Any

import pandas as pd

from dashboard.data import Marts, jsonable, month_str
from dashboard.pages import PageSpec

PAGE = PageSpec("overview", "Обзор", "Overview")

BLENDED = "all"

#: key -> (mart, column, unit, scale to the unit, title ru, title en, definition ru, en).
#: ROMI and CRR are stored in percent points; the page's "percent" unit takes a share, hence
#: the 0.01 scale (the payload keeps the mart's own figure).
KPIS: tuple[tuple[str, str, str, str, float, str, str, str, str], ...] = (
    ("revenue", "fct_customer_value_monthly", "revenue", "money", 1.0,
     "Выручка", "Revenue",
     "Сумма заказов, датированных месяцем (все источники заказов).",
     "Sum of the amounts of the orders dated in the month (every order source)."),
    ("orders", "fct_customer_value_monthly", "orders", "count", 1.0,
     "Заказы", "Orders",
     "Число заказов, датированных месяцем.",
     "Orders dated in the month."),
    ("new_customers", "fct_acquisition_monthly", "new_customers", "count", 1.0,
     "Новые клиенты", "New customers",
     "Клиенты, чей первый заказ пришёлся на месяц (все каналы).",
     "Customers whose first order falls in the month (every channel)."),
    ("aov", "fct_customer_value_monthly", "aov", "money", 1.0,
     "Средний чек (AOV)", "Average order value (AOV)",
     "Выручка месяца / число заказов месяца; пусто без заказов.",
     "The month's revenue / its orders; empty without orders."),
    ("cac", "fct_acquisition_monthly", "cac", "money", 1.0,
     "CAC, смешанный", "Blended CAC",
     "Все рекламные расходы месяца / все новые клиенты месяца (включая органику); пусто, "
     "если расходы месяца известны не полностью.",
     "All ad spend of the month / all new customers of the month (organic included); empty "
     "when the month's spend is not fully known."),
    ("romi", "fct_acquisition_monthly", "romi", "percent", 0.01,
     "ROMI", "ROMI",
     "(Выручка от клиентов, привлечённых в месяце, − расходы) / расходы × 100%; пусто без "
     "расходов.",
     "(Revenue attributed to the month's acquisitions − spend) / spend × 100%; empty without "
     "spend."),
    ("crr", "fct_crr_monthly", "crr", "percent", 0.01,
     "CRR, удержание", "CRR, customer retention rate",
     "(E − N) / S × 100%: S — активные клиенты на начало месяца, E — на конец, N — новые "
     "клиенты месяца (активен — заказ за последние 180 дней).",
     "(E − N) / S × 100%: S = customers active at the month's start, E = at its end, N = the "
     "month's new customers (active = an order in the last 180 days)."),
)


def _monthly(marts: Marts, mart: str) -> pd.DataFrame:
    """A monthly mart keyed by "YYYY-MM-DD" month strings (the blended row for acquisition)."""
    frame = marts[mart]
    if mart == "fct_acquisition_monthly" and not frame.empty:
        frame = frame[frame["channel"] == BLENDED]
    frame = frame.copy()
    frame["month"] = [month_str(m) for m in frame["month"]]
    return frame.sort_values("month").reset_index(drop=True)


def _complete(row: pd.Series) -> bool:
    """A month counts as complete when the mart says so and (CRR) it is past the warm-up."""
    done, warm = row.get("month_complete", True), row.get("is_warm_up", False)
    return (not pd.isna(done) and bool(done)) and not (not pd.isna(warm) and bool(warm))


def last_complete_month(marts: Marts) -> str | None:
    """The newest month fct_customer_value_monthly flags complete."""
    frame = _monthly(marts, "fct_customer_value_monthly")
    done = frame[frame["month_complete"].astype(bool)] if not frame.empty else frame
    return None if done.empty else str(done["month"].iloc[-1])


def _shift(month: str, months: int) -> str:
    day = dt.date.fromisoformat(month)
    index = day.year * 12 + day.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1).isoformat()


def _kpi(frames: dict[str, pd.DataFrame], spec: tuple, month: str | None,
         lang: str) -> dict[str, Any]:
    key, mart, column, unit, scale, title_ru, title_en, def_ru, def_en = spec
    frame = frames[mart]
    by_month = {row["month"]: row for _, row in frame.iterrows()}

    def value(at: str | None) -> Any:
        row = by_month.get(at) if at else None
        return None if row is None else jsonable(row[column])

    series = [{"month": row["month"], "value": jsonable(row[column]),
               "complete": _complete(row)} for _, row in frame.iterrows()]
    return {
        "key": key, "mart": mart, "column": column, "unit": unit, "scale": scale,
        "title": title_ru if lang == "ru" else title_en,
        "definition": def_ru if lang == "ru" else def_en,
        "current": value(month),
        "previous": value(_shift(month, -1)) if month else None,
        "year_ago": value(_shift(month, -12)) if month else None,
        "series": series,
    }


def build(marts: Marts, lang: str) -> dict[str, Any]:
    """The headline figures: payload values are the marts' own (see KPIS for the scale)."""
    month = last_complete_month(marts)
    frames = {mart: _monthly(marts, mart) for mart in {spec[1] for spec in KPIS}}
    kpis = [_kpi(frames, spec, month, lang) for spec in KPIS]
    months = sorted({point["month"] for kpi in kpis for point in kpi["series"]})
    return {
        "last_complete_month": month,
        "previous_month": _shift(month, -1) if month else None,
        "year_ago_month": _shift(month, -12) if month else None,
        "months": months,
        "kpis": kpis,
    }
