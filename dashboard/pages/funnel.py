"""Funnel page: per pipeline, stage conversion, drop-off by stage with loss reasons, median and
p90 time in stage, and the sales cycle, filtered by channel, manager and lead month.

The figures are the marts' slices (fct_funnel_stage_slices, fct_sales_cycle: GROUPING SETS
over channel × manager × lead month; fct_funnel_loss_reasons: additive rows). The script
picks the slice the filters name; over a range of several lead months it sums the additive
counts of the month slices, and shows medians and p90 only where a single slice holds them
(all months or one month), because percentiles do not add up.
"""

from typing import Any

import pandas as pd

from dashboard.data import Marts, jsonable, month_str
from dashboard.pages import PageSpec
from dashboard.pages._sales import (
    CRM_NAMES,
    MetricDef,
    as_of,
    ident,
    labels,
    manager_key,
    managers_of,
    months_list,
    pipeline_key,
    units,
)

PAGE = PageSpec("funnel", "Воронка", "Funnel")

SLICES = "fct_funnel_stage_slices"
LOSS = "fct_funnel_loss_reasons"
CYCLE = "fct_sales_cycle"

METRICS: dict[str, MetricDef] = {
    "leads_reached": ("count", "Лиды, дошедшие до этапа", "Leads reached by stage",
                      "Лид дошёл до этапа, если в его истории есть этот этап или любой более "
                      "поздний открытый, или он выигран (лиды перескакивают этапы).",
                      "A lead reached a stage when its history holds it or any later open "
                      "stage, or it was won (leads skip stages)."),
    "conversion_to_next": ("percent", "Конверсия в следующий этап", "Conversion to next stage",
                           "Дошли до следующего этапа / дошли до этапа.",
                           "Reached the next stage / reached this stage."),
    "win_rate": ("percent", "Доля выигранных", "Win rate",
                 "Выиграно / дошли до первого этапа воронки.",
                 "Won / reached the pipeline's first stage."),
    "leads_dropped_off": ("count", "Отвал по этапам и причинам", "Drop-off by stage and reason",
                          "Проигранные лиды, чей последний открытый этап — этот, по причине "
                          "отказа из CRM (Bitrix24: стадия провала или поле причины).",
                          "Lost leads whose last open stage was this one, by the CRM's loss "
                          "reason (Bitrix24: the failure stage or the reason field)."),
    "hours_in_stage": ("hours", "Время на этапе: медиана и p90", "Time in stage: median and p90",
                       "От входа в этап до выхода из него, в часах; только закрытые (выигранные "
                       "или проигранные) лиды, открытые не учитываются.",
                       "From entering the stage to leaving it, in hours; leads closed (won or "
                       "lost) only, open leads excluded."),
    "sales_cycle": ("days", "Цикл сделки", "Sales cycle",
                    "От создания лида до выигрыша, в днях, по выигранным лидам: медиана, p90 и "
                    "среднее.",
                    "Lead created to won, in days, over the won leads: median, p90 and mean."),
    "leads_in_pipeline": ("count", "Лиды в воронке", "Leads in pipeline",
                          "Лиды среза, попавшие в воронку (= дошли до первого этапа).",
                          "Leads of the slice in the pipeline (= reached the first stage)."),
    "leads_won": ("count", "Выиграно", "Won", "Лиды среза, выигранные в воронке.",
                  "Leads of the slice won in the pipeline."),
}

EXTRA = {
    "median": ("Медиана", "Median"),
    "cycle_median": ("Цикл: медиана", "Cycle: median"),
    "cycle_p90": ("Цикл: p90", "Cycle: p90"),
    "cycle_mean": ("Цикл: среднее", "Cycle: mean"),
    "p90": ("p90", "p90"),
    "mean": ("Среднее", "Mean"),
    "pipeline": ("Воронка", "Pipeline"),
    "stage": ("Этап", "Stage"),
    "no_reason": ("без причины", "no reason"),
    "median_range_note": ("Медиана и p90 не складываются по месяцам: выберите один месяц или "
                          "весь период.",
                          "Medians and p90 do not add up over months: pick one month or the "
                          "whole period."),
    "incomplete_note": ("В выборке неполный месяц: часть его лидов ещё открыта.",
                        "The selection includes an incomplete month: some of its leads are "
                        "still open."),
    "no_leads": ("Нет лидов в этом срезе.", "No leads in this slice."),
    "win_rate_by_month": ("Доля выигранных по месяцу лида", "Win rate by lead month"),
    "win_rate_by_month__def": ("Выиграно / лиды в воронке, по месяцу создания лида; свежие "
                               "месяцы ещё дозревают.",
                               "Won / leads in the pipeline, by lead creation month; recent "
                               "months are still maturing."),
}


def _str(value: Any) -> str | None:
    """A dimension value as a string, None for null."""
    value = jsonable(value)
    return None if value is None else str(value)


def pipelines_of(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Pipelines in a stable order, labelled with their CRM (names repeat between CRMs)."""
    if frame.empty:
        return []
    rows = frame.drop_duplicates(["crm", "account", "pipeline_id"]).sort_values(
        ["crm", "account", "pipeline_id"])
    out = []
    for r in rows.itertuples(index=False):
        name = r.pipeline_name if isinstance(r.pipeline_name, str) else str(r.pipeline_id)
        out.append({"key": pipeline_key(r.crm, r.account, r.pipeline_id), "crm": str(r.crm),
                    "account": str(r.account), "pipeline_id": ident(r.pipeline_id),
                    "pipeline_name": name,
                    "label": f"{name} · {CRM_NAMES.get(str(r.crm), r.crm)}"})
    labels_seen = pd.Series([p["label"] for p in out]).value_counts()
    for p in out:
        if labels_seen[p["label"]] > 1:
            p["label"] = f"{p['label']} ({p['account']})"
    return out


def stages_of(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Each pipeline's steps in funnel order (from the whole-pipeline slice)."""
    if frame.empty:
        return []
    rows = frame.drop_duplicates(["crm", "account", "pipeline_id", "status_id"]).sort_values(
        ["crm", "account", "pipeline_id", "stage_order"])
    return [{"pipeline": pipeline_key(r.crm, r.account, r.pipeline_id),
             "status_id": ident(r.status_id), "stage_name": _str(r.stage_name),
             "stage_order": int(r.stage_order), "is_won_step": jsonable(r.next_status_id) is None}
            for r in rows.itertuples(index=False)]


def _dims(r: Any) -> dict[str, Any]:
    """The slice dimensions of a sliced row: flags and values (None = all)."""
    return {"pipeline": pipeline_key(r.crm, r.account, r.pipeline_id),
            "by_channel": bool(r.by_channel), "by_manager": bool(r.by_manager),
            "by_month": bool(r.by_month), "channel": _str(r.channel) if r.by_channel else None,
            "manager": manager_key(r.crm, r.account, r.responsible_user_id)
            if r.by_manager else None,
            "month": month_str(r.created_month) if r.by_month else None}


def stage_slices(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """fct_funnel_stage_slices rows: dimensions, additive counts and the percentiles."""
    return [{**_dims(r), "status_id": ident(r.status_id),
             "leads_in_pipeline": jsonable(r.leads_in_pipeline),
             "leads_reached": jsonable(r.leads_reached),
             "leads_reached_next": jsonable(r.leads_reached_next),
             "leads_won": jsonable(r.leads_won),
             "leads_dropped_off": jsonable(r.leads_dropped_off),
             "median_hours_in_stage": jsonable(r.median_hours_in_stage),
             "p90_hours_in_stage": jsonable(r.p90_hours_in_stage)}
            for r in frame.itertuples(index=False)]


def loss_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """fct_funnel_loss_reasons rows (additive: the script sums whatever the filters keep)."""
    return [{"pipeline": pipeline_key(r.crm, r.account, r.pipeline_id),
             "status_id": ident(r.last_open_status_id),
             "stage_order": jsonable(r.last_open_stage_order),
             "loss_reason_name": _str(r.loss_reason_name), "channel": _str(r.channel),
             "manager": manager_key(r.crm, r.account, r.responsible_user_id),
             "month": month_str(r.created_month), "leads_lost": jsonable(r.leads_lost)}
            for r in frame.itertuples(index=False)]


def cycle_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """fct_sales_cycle rows: slice dimensions, leads won, mean / median / p90 days."""
    return [{**_dims(r), "leads_won": jsonable(r.leads_won),
             "mean_sales_cycle_days": jsonable(r.mean_sales_cycle_days),
             "median_sales_cycle_days": jsonable(r.median_sales_cycle_days),
             "p90_sales_cycle_days": jsonable(r.p90_sales_cycle_days)}
            for r in frame.itertuples(index=False)]


def columnar(rows: list[dict[str, Any]], pipelines: list[dict[str, Any]],
             managers: list[dict[str, Any]]) -> dict[str, Any]:
    """Rows as {columns, rows: [[...]]} with pipeline and manager as indexes into their lists.

    The sliced marts hold every channel × manager × month combination (thousands of rows):
    positional rows keep the page a fraction of the size of repeated keys; the script expands
    them back into records (`Voronka`-side helper `expand` in funnel.js)."""
    if not rows:
        return {"columns": [], "rows": []}
    p_index = {p["key"]: i for i, p in enumerate(pipelines)}
    m_index = {m["key"]: i for i, m in enumerate(managers)}
    columns = list(rows[0])
    out = []
    for row in rows:
        values = dict(row, pipeline=p_index.get(row["pipeline"]))
        if "manager" in values:
            values["manager"] = m_index.get(row["manager"]) if row["manager"] else None
        out.append([values[c] for c in columns])
    return {"columns": columns, "rows": out}


def build(marts: Marts, lang: str) -> dict[str, Any]:
    """The page payload: pipelines, their steps, the sliced rows of the three marts."""
    slices, loss, cycle = marts[SLICES], marts[LOSS], marts[CYCLE]
    as_of_date = as_of(marts)
    people = pd.concat([f[["crm", "account", "responsible_user_id", "manager_name"]]
                        for f in (slices, loss) if not f.empty] or [pd.DataFrame(
                            columns=["crm", "account", "responsible_user_id", "manager_name"])])
    channels = sorted({c for c in slices.loc[slices["by_channel"].astype(bool), "channel"]
                       .map(_str) if c} | {c for c in loss["channel"].map(_str) if c}) \
        if not slices.empty else []
    pipelines, managers = pipelines_of(slices), managers_of(people)
    return {
        "lang": lang,
        "as_of_date": jsonable(as_of_date),
        "units": units(METRICS),
        "labels": labels(METRICS, EXTRA),
        "pipelines": pipelines,
        "stages": stages_of(slices),
        "channels": channels,
        "managers": managers,
        "months": months_list(slices["created_month"], as_of_date),
        "slices": columnar(stage_slices(slices), pipelines, managers),
        "loss": columnar(loss_rows(loss), pipelines, managers),
        "cycle": columnar(cycle_rows(cycle), pipelines, managers),
    }
