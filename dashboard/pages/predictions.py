"""Predictions page: how well the customer-value model fits and how alive the customers are.

Why this page: before a marketer spends a win-back budget on "p_alive falling" or seeds a
look-alike on predicted value, they should see that the model predicted the past well. The
page reads the two tables the predictions asset writes (the fit with its holdout check, one
row per calibration-frequency group, and one row per customer; names in
``predictions.customers``: they are not dbt models, so the dbt exposure cannot list them):

- predicted vs actual repeat purchases per group over the holdout window, titled with the
  window and the total holdout error against its bound;
- the p_alive distribution in ten bins, one-time buyers apart (p_alive is 1 for them by the
  BG/NBD model's design: they had no chance to drop out yet);
- the fitted parameters, log-likelihoods and status.

A model that did not fit (not converged, does not fit the business) shows its status message
instead of the charts; a warehouse without the tables (older, or the fit never ran) shows a
"no predictions yet" note. Nothing here reads the wall clock.
"""

from typing import Any

import numpy as np
import pandas as pd

from dashboard.data import jsonable
from dashboard.i18n import fmt_number
from dashboard.pages import PageSpec
from dashboard.pages._marketing import as_of, frame, texts
from predictions.customers import FIT_MODEL, GROUPS, PREDICTIONS_MODEL

PAGE = PageSpec("predictions", "Прогнозы", "Predictions")

BINS = 10
#: statuses with holdout figures worth a chart (the others have no fit at all)
FITTED = ("ok", "holdout_error_too_high")

STATUS = {
    "ok": ("Модель подходит к данным: прогнозы опубликованы",
           "The model fits the data: predictions are published"),
    "holdout_error_too_high": ("Ошибка прогноза на отложенном периоде выше допустимой: "
                               "прогнозы этой подгонки не опубликованы",
                               "The holdout error is above the bound: this fit's predictions "
                               "are not published"),
    "not_converged": ("Подгонка модели не сошлась: прогнозов нет",
                      "The model fit did not converge: no predictions"),
    "does_not_fit": ("Модель не подходит к этому бизнесу (мало повторных покупателей или "
                     "слишком длинные циклы): прогнозов нет",
                     "The model does not suit this business (too few repeat buyers or too "
                     "long cycles): no predictions"),
}

PARAMETERS = (  # (model, column, name shown)
    ("BG/NBD", "bgnbd_r", "r"), ("BG/NBD", "bgnbd_alpha", "α"), ("BG/NBD", "bgnbd_a", "a"),
    ("BG/NBD", "bgnbd_b", "b"), ("BG/NBD", "bgnbd_log_likelihood", "log L"),
    ("Gamma-Gamma", "gg_p", "p"), ("Gamma-Gamma", "gg_q", "q"), ("Gamma-Gamma", "gg_v", "v"),
    ("Gamma-Gamma", "gg_log_likelihood", "log L"),
)

LABELS = {
    "no_predictions": ("Прогнозов пока нет: модель ценности клиентов ещё не подгонялась на "
                       "этом хранилище (запустите конвейер с ассетом прогнозов).",
                       "No predictions yet: the customer-value model has not been fitted on "
                       "this warehouse (run the pipeline with the predictions asset)."),
    "holdout_def": ("Модель BG/NBD подогнана на истории до начала отложенного периода и "
                    "предсказывает повторные покупки каждого клиента в нём; столбцы — сумма "
                    "прогноза и факта по группам клиентов с одинаковым числом повторных "
                    "покупок до периода (0, 1, … 6+). Ошибка = |прогноз − факт| / факт по "
                    "всем клиентам; выше границы — прогнозы не публикуются. Покупка — день с "
                    "заказом.",
                    "The BG/NBD model fitted on the history up to the start of the holdout "
                    "window predicts each customer's repeat purchases in it; the bars sum the "
                    "prediction and what happened per group of customers with the same number "
                    "of repeat purchases before the window (0, 1, … 6+). Error = |predicted − "
                    "actual| / actual over all customers; above the bound the predictions are "
                    "not published. A purchase is a day with an order."),
    "predicted": ("Прогноз", "Predicted"),
    "actual": ("Факт", "Actual"),
    "group_axis": ("Повторных покупок до отложенного периода",
                   "Repeat purchases before the holdout window"),
    "purchases_axis": ("Повторные покупки в периоде", "Repeat purchases in the window"),
    "customers": ("Клиенты", "Customers"),
    "relative_error": ("Отклонение", "Relative error"),
    "group": ("Группа", "Group"),
    "total": ("Все клиенты", "All customers"),
    "holdout_table": ("Прогноз и факт по группам", "Predicted and actual per group"),
    "p_alive_title": ("Распределение p_alive: вероятность, что клиент ещё активен",
                      "p_alive distribution: the probability a customer is still active"),
    "p_alive_def": ("Число клиентов по вероятности оставаться активным покупателем (BG/NBD) "
                    "на дату отчёта, интервалы по 0,1.",
                    "Customers by the probability that they are still active buyers (BG/NBD) "
                    "at the as-of date, in steps of 0.1."),
    "p_alive_axis": ("p_alive", "p_alive"),
    "repeat_buyers": ("С повторными покупками", "Repeat buyers"),
    "one_time_buyers": ("Купили один раз", "One-time buyers"),
    "one_time_note": ("У клиентов с одной покупкой p_alive = 1 по устройству модели BG/NBD: "
                      "клиент может «уйти» только после покупки, а повторной ещё не было. "
                      "Поэтому они все в последнем интервале; судить об их активности по "
                      "p_alive нельзя.",
                      "Customers with a single purchase have p_alive = 1 by the BG/NBD "
                      "model's design: a customer can only drop out after a purchase, and "
                      "they have not bought again yet. So they all sit in the last bin; "
                      "p_alive says nothing about them."),
    "params_title": ("Параметры модели и статус", "Model parameters and status"),
    "params_def": ("Оценки максимального правдоподобия: BG/NBD (r, α — темп покупок в "
                   "неделю; a, b — вероятность уйти после покупки) и Gamma-Gamma (p, q, v — "
                   "средний чек), логарифм правдоподобия каждой модели.",
                   "Maximum-likelihood estimates: BG/NBD (r, α: purchase rate per week; a, "
                   "b: chance of dropping out after a purchase) and Gamma-Gamma (p, q, v: "
                   "spend per purchase), and each model's log-likelihood."),
    "model": ("Модель", "Model"),
    "parameter": ("Параметр", "Parameter"),
    "value": ("Значение", "Value"),
    "status": ("Статус", "Status"),
    "fit_date": ("Дата подгонки", "Fit date"),
    "model_version": ("Версия модели", "Model version"),
    "holdout_weeks": ("Отложенный период, недель", "Holdout window, weeks"),
    "holdout_error": ("Ошибка на отложенном периоде", "Holdout error"),
    "max_holdout_error": ("Допустимая ошибка", "Error bound"),
    "message": ("Сообщение модели", "Model message"),
    "stale_predictions": ("Опубликованы прогнозы прежней подгонки от {date}: их используют "
                          "сегменты, пока новая подгонка не пройдёт проверку.",
                          "The published predictions are from the earlier fit of {date}: "
                          "segments use them until a new fit passes its check."),
}


def _num(value: Any) -> float | None:
    return jsonable(value) if value is not None and pd.notna(value) else None


def latest_fit(marts: Any) -> pd.DataFrame:
    """The fit table's rows of its latest fit date (the asset replaces it whole; this only
    guards against a table holding more than one fit)."""
    fit = frame(marts, FIT_MODEL)
    if fit.empty or "group_name" not in fit:
        return pd.DataFrame()
    dates = pd.to_datetime(fit["fit_date"], errors="coerce")
    if dates.notna().any():
        fit = fit[dates == dates.max()]
    return fit.reset_index(drop=True)


def fit_summary(fit: pd.DataFrame, lang: str) -> dict[str, Any] | None:
    """Status, message and holdout facts of the fit (its 'total' row), None without a fit."""
    total = fit[fit["group_name"].astype(str) == "total"] if not fit.empty else fit
    if total.empty:
        return None
    row = total.iloc[0]
    status = str(row["status"]) if pd.notna(row["status"]) else "does_not_fit"
    ru, en = STATUS.get(status, (status, status))
    return {
        "status": status,
        "status_text": en if lang == "en" else ru,
        "message": str(row["message"]) if pd.notna(row["message"]) else "",
        "fit_date": jsonable(row["fit_date"]),
        "model_version": jsonable(row["model_version"]),
        "holdout_weeks": _num(row["holdout_weeks"]),
        "holdout_error": _num(row["holdout_error"]),
        "max_holdout_error": _num(row["max_holdout_error"]),
        "customers": _num(row["customers"]),
        "predicted": _num(row["predicted_repeat_purchases"]),
        "actual": _num(row["actual_repeat_purchases"]),
        "relative_error": _num(row["relative_error"]),
    }


def holdout_groups(fit: pd.DataFrame) -> list[dict[str, Any]]:
    """Predicted and actual repeat purchases per calibration group, in group order (0 … 6+);
    groups without figures are left out."""
    if fit.empty:
        return []
    by_name = {str(r["group_name"]): r for r in fit.to_dict("records")}
    rows = []
    for group in GROUPS:
        row = by_name.get(group)
        if row is None or _num(row["predicted_repeat_purchases"]) is None:
            continue
        rows.append({"group": group, "customers": _num(row["customers"]),
                     "predicted": _num(row["predicted_repeat_purchases"]),
                     "actual": _num(row["actual_repeat_purchases"]),
                     "relative_error": _num(row["relative_error"])})
    return rows


def parameters(fit: pd.DataFrame) -> list[dict[str, Any]]:
    """The fitted parameters and log-likelihoods (from the 'total' row), when there are any."""
    total = fit[fit["group_name"].astype(str) == "total"] if not fit.empty else fit
    if total.empty:
        return []
    row = total.iloc[0]
    out = [{"model": model, "parameter": name, "value": _num(row[column])}
           for model, column, name in PARAMETERS]
    return out if any(p["value"] is not None for p in out) else []


def _edge(k: int, lang: str) -> str:
    """Bin edge k/10 as the language writes it: 0, 0,1 … 0,9, 1 (ru) or 0.1 (en)."""
    if k in (0, BINS):
        return str(k // BINS)
    return f"0{',' if lang == 'ru' else '.'}{k}"


def _bin_label(i: int, lang: str) -> str:
    return f"{_edge(i, lang)}–{_edge(i + 1, lang)}"


def p_alive_bins(predictions: pd.DataFrame, lang: str) -> dict[str, Any] | None:
    """Customers per p_alive bin [0, 0.1), … [0.9, 1.0] (1.0 in the last), split into repeat
    and one-time buyers; None without predictions."""
    if predictions.empty or "p_alive" not in predictions:
        return None
    values = pd.to_numeric(predictions["p_alive"], errors="coerce")
    known = predictions[values.notna()]
    p = values[values.notna()].to_numpy(float)
    index = np.clip(np.floor(p * BINS).astype(int), 0, BINS - 1)
    frequency = pd.to_numeric(known["frequency"], errors="coerce").fillna(0).to_numpy(float)
    one_time = frequency == 0
    bins = [{"lo": i / BINS, "hi": (i + 1) / BINS, "label": _bin_label(i, lang),
             "customers": int((index == i).sum()),
             "one_time": int(((index == i) & one_time).sum()),
             "repeat": int(((index == i) & ~one_time).sum())} for i in range(BINS)]
    dates = pd.to_datetime(predictions["fit_date"], errors="coerce").dropna()
    return {"bins": bins, "customers": len(known), "one_time_buyers": int(one_time.sum()),
            "without_p_alive": int(values.isna().sum()),
            "fit_date": jsonable(dates.max()) if len(dates) else None}


def holdout_title(summary: dict[str, Any], lang: str) -> str:
    """'Predicted vs actual repeat purchases, last 26 weeks: error 3.9% (bound 25.0%)'."""
    weeks = fmt_number(summary.get("holdout_weeks"), lang, "count")
    error = fmt_number(summary.get("holdout_error"), lang, "percent")
    bound = fmt_number(summary.get("max_holdout_error"), lang, "percent")
    if lang == "en":
        return (f"Predicted vs actual repeat purchases, last {weeks} weeks: holdout error "
                f"{error} (bound {bound})")
    return (f"Прогноз и факт повторных покупок за последние {weeks} нед.: ошибка {error} "
            f"(допустимо до {bound})")


def _stale_note(summary: dict[str, Any] | None, p_alive: dict[str, Any] | None,
                labels: dict[str, str], lang: str) -> str | None:
    """Say so when the published predictions come from another fit than the one shown."""
    if summary is None or p_alive is None or not p_alive["fit_date"]:
        return None
    if summary["status"] == "ok" and p_alive["fit_date"] == summary["fit_date"]:
        return None
    day = pd.Timestamp(p_alive["fit_date"])
    shown = day.strftime("%d.%m.%Y") if lang == "ru" else day.date().isoformat()
    return labels["stale_predictions"].format(date=shown)


def build(marts: Any, lang: str) -> dict[str, Any]:
    """The page payload: the fit's status, holdout per group, parameters and the p_alive bins,
    with what to show (`show`) decided here so a test can read it."""
    labels = texts(LABELS, lang)
    fit = latest_fit(marts)
    summary = fit_summary(fit, lang)
    p_alive = p_alive_bins(frame(marts, PREDICTIONS_MODEL), lang)
    groups = holdout_groups(fit)
    fitted = summary is not None and summary["status"] in FITTED
    show = {
        "holdout": fitted and bool(groups),
        "p_alive": p_alive is not None and (summary is None or summary["status"] == "ok"),
        "parameters": fitted,
    }
    if summary is None:
        state = "missing" if p_alive is None else "no_fit"
    else:
        state = summary["status"] if fitted else "not_fitted"
    return {
        "lang": lang,
        "as_of_date": as_of(marts),
        "state": state,
        "show": show,
        "fit": summary,
        "holdout_title": holdout_title(summary, lang) if summary else None,
        "holdout": groups,
        "parameters": parameters(fit),
        "p_alive": p_alive,
        "stale_note": _stale_note(summary, p_alive, labels, lang),
        "labels": labels,
    }
