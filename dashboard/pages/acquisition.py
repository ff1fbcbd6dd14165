"""Acquisition page: spend, leads, CPL, Cv, new customers, CAC and ROMI by channel and month,
the campaigns sortable by CAC/ROMI, LTV/CAC and payback by channel.

Figures are the marts' own (fct_acquisition_monthly, fct_campaign_performance_monthly): the
page never recomputes a mart's ratio, except the campaign table's totals over a month range,
which the script sums from the monthly rows.
"""

from typing import Any

from dashboard.pages import PageSpec
from dashboard.pages._marketing import (
    MetricDef,
    as_of,
    channels_of,
    frame,
    metric_texts,
    months_of,
    records,
    texts,
)

PAGE = PageSpec("acquisition", "Привлечение", "Acquisition")

ACQ_COLUMNS = ("month", "channel", "spend", "acquisition_leads", "repeat_leads", "all_leads",
               "new_customers", "cpl", "cv", "cac", "romi", "attributed_revenue",
               "ltv_horizon", "ltv_cac", "cac_payback_months", "month_complete",
               "cv_immature", "cac_undefined", "spend_covered")
CAMPAIGN_COLUMNS = ("month", "channel", "platform", "campaign_id", "campaign_name", "spend",
                    "clicks", "acquisition_leads", "new_customers", "attributed_revenue", "cpl",
                    "cv", "cac", "romi", "month_complete", "cac_undefined", "spend_covered")

METRICS: dict[str, MetricDef] = {
    "spend": ("money", "Расходы на рекламу", "Ad spend",
              "Расходы на рекламу за месяц в валюте кабинета, без НДС.",
              "Ad spend in the month, account currency, without VAT."),
    "acquisition_leads": ("count", "Лиды (привлечение)", "Leads (acquisition)",
                          "Лиды на привлечение, созданные в месяце (без повторных лидов "
                          "существующих клиентов), по их собственному каналу.",
                          "Acquisition leads created in the month (repeat leads of existing "
                          "customers excluded), by the lead's own channel."),
    "cpl": ("money", "CPL, стоимость лида", "CPL, cost per lead",
            "Расходы / лиды на привлечение. Пусто, если лидов нет или расходы за месяц "
            "загружены не полностью.",
            "Spend / acquisition leads. Empty without leads or when the month's spend is not "
            "fully covered."),
    "cv": ("percent", "Cv, конверсия лида в клиента", "Cv, lead-to-customer conversion",
           "Новые клиенты, чей первый лид на привлечение создан в месяце / лиды на привлечение. "
           "Полый маркер: больше 10% лидов месяца ещё открыты, Cv ещё вырастет.",
           "New customers whose first (acquisition) lead was created in the month / "
           "acquisition leads. Open marker: over 10% of the month's leads are still open, "
           "Cv will still grow."),
    "new_customers": ("count", "Новые клиенты", "New customers",
                      "Клиенты, чей первый заказ в месяце, по каналу первого касания.",
                      "Customers whose first order is in the month, by first-touch channel."),
    "cac": ("money", "CAC, стоимость привлечения клиента", "CAC, customer acquisition cost",
            "Расходы / новые клиенты. Пусто, если новых клиентов нет (при расходах) или "
            "расходы загружены не полностью; у органики 0.",
            "Spend / new customers. Empty when spend bought no new customer or the spend is "
            "not fully covered; 0 for channels without spend."),
    "romi": ("percent", "ROMI", "ROMI",
             "(Выручка клиентов канала в месяце − расходы) / расходы × 100%. Выручка — все "
             "заказы месяца клиентов с этим каналом первого касания. Пусто без расходов.",
             "(Revenue of the channel's customers in the month − spend) / spend × 100%. "
             "Revenue = all orders of the month by customers with this first-touch channel. "
             "Empty without spend."),
    "ltv_cac": ("ratio", "LTV/CAC", "LTV/CAC",
                "LTV когорты месяца за 12 месяцев (накопленная выручка / новые клиенты) / CAC. "
                "Пусто, пока 12-й месяц когорты не завершён.",
                "The month's cohort 12-month LTV (cumulative revenue / new customers) / CAC. "
                "Empty until the cohort's 12th month is complete."),
    "cac_payback_months": ("months", "Окупаемость CAC", "CAC payback",
                           "Первый месяц от когорты (0 = месяц первого заказа), в котором "
                           "накопленная валовая маржа на клиента достигает CAC. Пусто, если "
                           "ещё не окупилось.",
                           "The first month offset (0 = the first-order month) at which the "
                           "cohort's cumulative gross margin per customer reaches CAC. Empty "
                           "when not paid back yet."),
    "campaigns": ("money", "Кампании", "Campaigns",
                  "Кампании за выбранные месяцы: суммы месячных строк; CAC = расходы / новые "
                  "клиенты, ROMI = (выручка − расходы) / расходы. Пусто, если хоть один месяц "
                  "без полных расходов. Строка без id — лиды канала без известной кампании. "
                  "Диапазон, включающий месяц даты отчёта, содержит неполный месяц.",
                  "Campaigns over the chosen months: monthly rows summed; CAC = spend / new "
                  "customers, ROMI = (revenue − spend) / spend. Empty when any month's spend is "
                  "not fully covered. A row without id: the channel's leads naming no known "
                  "campaign. A range that ends in the as-of month includes a partial month."),
}

LABELS = {
    "unmatched": ("(без кампании)", "(no campaign)"),
    "campaign": ("Кампания", "Campaign"),
    "channel": ("Канал", "Channel"),
    "revenue": ("Выручка", "Revenue"),
    "spend": ("Расходы", "Spend"),
    "leads": ("Лиды", "Leads"),
    "new_customers": ("Новые клиенты", "New customers"),
    "cohort_month": ("Месяц когорты", "Cohort month"),
    "immature": ("Cv ещё растёт", "Cv still growing"),
    "not_covered": ("расходы не полные", "spend not fully covered"),
}


def build(marts: Any, lang: str) -> dict:
    """The acquisition page's payload: monthly channel rows and campaign rows, as in the marts."""
    rows = records(frame(marts, "fct_acquisition_monthly"), ACQ_COLUMNS, ["month", "channel"])
    campaigns = records(frame(marts, "fct_campaign_performance_monthly"), CAMPAIGN_COLUMNS,
                        ["month", "channel", "campaign_id"])
    return {
        "slug": PAGE.slug,
        "as_of_date": as_of(marts),
        "months": months_of(rows),
        "channels": channels_of(rows),
        "rows": rows,
        "campaigns": campaigns,
        "metrics": metric_texts(METRICS, lang),
        "labels": texts(LABELS, lang),
    }
