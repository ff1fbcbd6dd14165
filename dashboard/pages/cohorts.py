"""Cohorts page: the retention heatmap (cohort x month offset) and the LTV curves by cohort
and by channel, from fct_cohort_retention and fct_cohort_ltv_by_channel.

Cells whose calendar month is not complete (is_observable false) are sent as they are and
marked on the page: they hold a partial month and read low.
"""

from typing import Any

from dashboard.pages import PageSpec
from dashboard.pages._marketing import (
    MetricDef,
    as_of,
    channels_of,
    frame,
    metric_texts,
    records,
    texts,
)

PAGE = PageSpec("cohorts", "Когорты", "Cohorts")

RETENTION_COLUMNS = ("cohort_month", "month_offset", "cohort_size", "active_customers",
                     "retention_rate", "cumulative_revenue", "ltv", "is_observable")
LTV_COLUMNS = ("cohort_month", "channel", "month_offset", "cohort_size", "cumulative_revenue",
               "ltv", "is_observable")

METRICS: dict[str, MetricDef] = {
    "retention_rate": ("percent", "Удержание когорт", "Cohort retention",
                       "Доля клиентов когорты (месяц первого заказа) с заказом в календарном "
                       "месяце когорта + k. Серые ячейки — незавершённый месяц, значение ещё "
                       "вырастет.",
                       "Share of the cohort's customers (month of first order) with an order "
                       "in calendar month cohort + k. Grey cells: the month is not complete "
                       "yet and reads low."),
    "ltv_cohort": ("money", "LTV по когортам", "LTV by cohort",
                   "Историческое LTV: накопленная выручка когорты с первого заказа по месяц k / "
                   "размер когорты. Полые маркеры — незавершённый месяц.",
                   "Historical LTV: the cohort's cumulative revenue from the first order "
                   "through month k / cohort size. Open markers: the month is not complete."),
    "ltv_channel": ("money", "LTV по каналам", "LTV by channel",
                    "Накопленная выручка / размер когорт канала первого касания, по когортам "
                    "выбранных месяцев, у которых месяц k завершён (взвешено по размеру "
                    "когорт). Точки по менее чем трём когортам не показаны.",
                    "Cumulative revenue / cohort size of the first-touch channel's cohorts "
                    "in the chosen months whose month k is complete (weighted by cohort "
                    "size). Points resting on fewer than three cohorts are not drawn."),
}

LABELS = {
    "month_offset": ("Месяц от первого заказа", "Months since first order"),
    "cohort_month": ("Когорта", "Cohort"),
    "cohort_size": ("Размер когорты", "Cohort size"),
    "cohorts": ("Когорт", "Cohorts"),
    "incomplete": ("незавершённый период", "incomplete period"),
    "no_channel": ("Удержание считается по всем каналам", "Retention covers every channel"),
}


def build(marts: Any, lang: str) -> dict:
    """The cohorts page's payload: retention cells and per-channel LTV cells, as in the marts."""
    retention = records(frame(marts, "fct_cohort_retention"), RETENTION_COLUMNS,
                        ["cohort_month", "month_offset"])
    ltv = records(frame(marts, "fct_cohort_ltv_by_channel"), LTV_COLUMNS,
                  ["cohort_month", "channel", "month_offset"])
    cohorts = sorted({r["cohort_month"] for r in retention} | {r["cohort_month"] for r in ltv})
    return {
        "slug": PAGE.slug,
        "as_of_date": as_of(marts),
        "months": [{"month": m, "complete": True} for m in cohorts],
        "channels": channels_of(ltv),
        "retention": retention,
        "ltv": ltv,
        "metrics": metric_texts(METRICS, lang),
        "labels": texts(LABELS, lang),
    }
