"""Customer predictions from the order history: BG/NBD + Gamma-Gamma (``predictions.btyd``)
fitted on ``marts.fct_orders`` up to the as-of date, with a holdout check of the fit.

Time is in weeks (the models' published unit); purchases are order *days* (two orders of one
customer on one day are one purchase, as the models assume), valued at the day's amount. The
holdout fits on the history up to as-of minus the calibration window (default 26 weeks),
predicts each calibration customer's repeat purchases in the window and compares them with
what happened, per group of calibration frequency (0, 1, ... 6+) and in total.

Everything is a function of the data and the as-of date: no wall clock.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd

from predictions.btyd import (
    BGNBDParams,
    GammaGammaParams,
    ModelDoesNotFit,
    check_fit_possible,
    expected_order_value,
    expected_purchases,
    fit_bgnbd,
    fit_gamma_gamma,
    p_alive,
    predicted_value,
    require_converged,
)
from predictions.tables import (  # noqa: F401 (re-exported: the asset writes them)
    FIT_DDL,
    FIT_MODEL,
    PREDICTIONS_DDL,
    PREDICTIONS_MODEL,
)

MODEL_VERSION = "bgnbd-gg-mle-1"
WEEKS_PER_YEAR = 365.25 / 7
HOLDOUT_WEEKS_VAR = "VORONKA_CLV_HOLDOUT_WEEKS"
MAX_ERROR_VAR = "VORONKA_CLV_MAX_HOLDOUT_ERROR"
DISCOUNT_VAR = "VORONKA_CLV_ANNUAL_DISCOUNT_RATE"
GROUPS = ("0", "1", "2", "3", "4", "5", "6+")


@dataclass(frozen=True)
class Settings:
    """What a fit is configured with (environment, with defaults)."""

    holdout_weeks: int = 26
    max_holdout_error: float = 0.25  # |predicted - actual| / actual repeat purchases, in total
    annual_discount_rate: float = 0.10

    @classmethod
    def from_env(cls) -> Settings:
        def number(name: str, default: float) -> float:
            raw = os.environ.get(name, "").strip()
            if not raw:
                return default
            try:
                value = float(raw)
            except ValueError:
                raise ValueError(f"{name}={raw!r} is not a number") from None
            if value < 0:
                raise ValueError(f"{name}={raw!r} must not be negative")
            return value

        return cls(int(number(HOLDOUT_WEEKS_VAR, 26)), number(MAX_ERROR_VAR, 0.25),
                   number(DISCOUNT_VAR, 0.10))


def order_days(orders: pd.DataFrame) -> pd.DataFrame:
    """customer_id, order_date, amount: one row per customer and day with an order."""
    frame = orders[["customer_id", "order_date", "amount"]].dropna(
        subset=["customer_id", "order_date"])
    frame = frame.assign(customer_id=frame["customer_id"].astype(str),
                         order_date=pd.to_datetime(frame["order_date"]).dt.date,
                         amount=pd.to_numeric(frame["amount"]).fillna(0.0).astype(float))
    return frame.groupby(["customer_id", "order_date"], as_index=False)["amount"].sum()


def summarise(days: pd.DataFrame, end: date) -> pd.DataFrame:
    """Per customer whose first order is before ``end``: frequency (repeat purchase days),
    recency and T in weeks, and the mean value of the repeat purchases. A customer whose
    first order is on ``end`` itself has no observation time yet (T = 0): left out."""
    upto = days[days["order_date"] <= end]
    if upto.empty:
        return pd.DataFrame(columns=["customer_id", "frequency", "recency", "T",
                                     "monetary_value"])
    grouped = upto.sort_values(["customer_id", "order_date"]).groupby("customer_id")
    first = grouped["order_date"].min()
    last = grouped["order_date"].max()
    count = grouped.size()
    total = grouped["amount"].sum()
    first_amount = grouped["amount"].first()
    frequency = (count - 1).astype(float)
    repeat_mean = ((total - first_amount) / frequency.where(frequency > 0)).astype(float)
    out = pd.DataFrame({
        "customer_id": first.index.astype(str),
        "frequency": frequency.to_numpy(),
        "recency": [(b - a).days / 7 for a, b in zip(first, last, strict=True)],
        "T": [(end - a).days / 7 for a in first],
        "monetary_value": repeat_mean.to_numpy(),
    })
    return out[out["T"] > 0].reset_index(drop=True)


@dataclass
class ModelFit:
    """A fitted pair of models (or why there is none) and its holdout check."""

    as_of: date
    # ok | holdout_error_too_high | not_converged | does_not_fit | invalid_predictions (the
    # asset's Great Expectations suite refused them)
    status: str
    message: str
    bgnbd: BGNBDParams | None = None
    gamma_gamma: GammaGammaParams | None = None
    bgnbd_log_likelihood: float | None = None
    gg_log_likelihood: float | None = None
    holdout: pd.DataFrame | None = None  # per group: customers, predicted, actual, error
    holdout_error: float | None = None

    @property
    def usable(self) -> bool:
        return self.status == "ok"


def _fit_pair(summary: pd.DataFrame) -> tuple[Any, Any]:
    """Both fits on one summary, refused (ModelDoesNotFit) when impossible or unconverged."""
    freq = summary["frequency"].to_numpy(float)
    check_fit_possible(freq)
    bg = require_converged(fit_bgnbd(freq, summary["recency"].to_numpy(float),
                                     summary["T"].to_numpy(float)), freq)
    repeat = summary[summary["frequency"] > 0]
    gg = require_converged(fit_gamma_gamma(repeat["frequency"].to_numpy(float),
                                           repeat["monetary_value"].to_numpy(float)), freq)
    return bg, gg


def holdout_table(days: pd.DataFrame, calibration_end: date, as_of: date,
                  bg: BGNBDParams) -> pd.DataFrame:
    """Per calibration-frequency group and in total: customers, predicted and actual repeat
    purchases in (calibration_end, as_of], and the relative error."""
    calib = summarise(days, calibration_end)
    window = (as_of - calibration_end).days / 7
    predicted = expected_purchases(bg, window, calib["frequency"].to_numpy(float),
                                   calib["recency"].to_numpy(float), calib["T"].to_numpy(float))
    inside = days[(days["order_date"] > calibration_end) & (days["order_date"] <= as_of)]
    actual = inside.groupby("customer_id").size()
    frame = calib.assign(predicted=predicted,
                         actual=calib["customer_id"].map(actual).fillna(0).astype(float),
                         group=[GROUPS[min(int(f), 6)] for f in calib["frequency"]])
    rows = [("total", frame)] + [(g, frame[frame["group"] == g]) for g in GROUPS]
    out = pd.DataFrame([{"group_name": g, "customers": len(f),
                         "predicted_repeat_purchases": float(f["predicted"].sum()),
                         "actual_repeat_purchases": float(f["actual"].sum())}
                        for g, f in rows])
    out["relative_error"] = ((out["predicted_repeat_purchases"] - out["actual_repeat_purchases"])
                             / out["actual_repeat_purchases"].where(
                                 out["actual_repeat_purchases"] > 0))
    return out


def fit_models(orders: pd.DataFrame, as_of: date, settings: Settings) -> ModelFit:
    """Fit on the whole history up to ``as_of`` and check a refit on the history up to as-of
    minus the holdout window against the window. Never raises for data that does not suit
    the models: the status says why."""
    days = order_days(orders)
    summary = summarise(days, as_of)
    calibration_end = as_of - timedelta(weeks=settings.holdout_weeks)
    try:
        bg, gg = _fit_pair(summary)
        calib_bg, _ = _fit_pair(summarise(days, calibration_end))
    except ModelDoesNotFit as exc:
        status = "not_converged" if "converge" in str(exc) or "degenerate" in str(exc) \
            else "does_not_fit"
        return ModelFit(as_of, status, str(exc))
    holdout = holdout_table(days, calibration_end, as_of, calib_bg.params)
    total = holdout[holdout["group_name"] == "total"].iloc[0]
    error = abs(float(total["relative_error"])) if pd.notna(total["relative_error"]) else None
    fit = ModelFit(as_of, "ok", "", bg.params, gg.params, bg.log_likelihood, gg.log_likelihood,
                   holdout, error)
    if error is None or error > settings.max_holdout_error:
        fit.status = "holdout_error_too_high"
        fit.message = (f"holdout error {'n/a' if error is None else f'{error:.1%}'} over the "
                       f"last {settings.holdout_weeks} weeks exceeds the bound "
                       f"{settings.max_holdout_error:.0%} ({MAX_ERROR_VAR})")
    else:
        fit.message = (f"holdout error {error:.1%} over the last {settings.holdout_weeks} "
                       f"weeks (bound {settings.max_holdout_error:.0%})")
    return fit


def customer_predictions(orders: pd.DataFrame, fit: ModelFit,
                         settings: Settings) -> pd.DataFrame:
    """One row per customer: the model inputs in weeks, p_alive, expected purchases in 30, 90
    and 365 days, expected order value and the discounted 12-month value."""
    if fit.bgnbd is None or fit.gamma_gamma is None:
        raise ValueError(f"no usable fit: {fit.message}")
    summary = summarise(order_days(orders), fit.as_of)
    x, tx, t = (summary[c].to_numpy(float) for c in ("frequency", "recency", "T"))
    money = summary["monetary_value"].to_numpy(float)
    out = summary.rename(columns={"recency": "recency_weeks", "T": "t_weeks"}).drop(
        columns=["monetary_value"])
    out["p_alive"] = p_alive(fit.bgnbd, x, tx, t)
    out["p_alive_30d_ago"] = _p_alive_days_ago(orders, fit, out["customer_id"], 30)
    out["p_alive_change_30d"] = out["p_alive"] - out["p_alive_30d_ago"]
    for days in (30, 90, 365):
        out[f"expected_purchases_{days}d"] = expected_purchases(fit.bgnbd, days / 7, x, tx, t)
    out["expected_order_value"] = expected_order_value(fit.gamma_gamma, x, money)
    out["predicted_value_12m"] = predicted_value(
        fit.bgnbd, fit.gamma_gamma, x, tx, t, money, horizon=WEEKS_PER_YEAR,
        periods_per_year=WEEKS_PER_YEAR, annual_discount_rate=settings.annual_discount_rate)
    out["model_version"] = MODEL_VERSION
    out["fit_date"] = fit.as_of
    return out.sort_values("customer_id").reset_index(drop=True)


def _p_alive_days_ago(orders: pd.DataFrame, fit: ModelFit, customer_ids: pd.Series,
                     days: int) -> pd.Series:
    """p_alive on the history up to ``days`` before the as-of date, with the same fitted
    parameters: the trend a marketer asks about ("p_alive falling"). Null for customers who
    had not bought by then."""
    earlier = summarise(order_days(orders), fit.as_of - timedelta(days=days))
    values = pd.Series(p_alive(fit.bgnbd, *(earlier[c].to_numpy(float)
                                            for c in ("frequency", "recency", "T"))),
                       index=earlier["customer_id"])
    return customer_ids.map(values).astype(float)


def fit_table(fit: ModelFit, settings: Settings) -> pd.DataFrame:
    """``marts.fct_clv_model_fit``: one row per holdout group (and one for the total), each
    with the fit's status, parameters and log-likelihoods."""
    holdout = fit.holdout if fit.holdout is not None else pd.DataFrame(
        [{"group_name": "total", "customers": 0, "predicted_repeat_purchases": np.nan,
          "actual_repeat_purchases": np.nan, "relative_error": np.nan}])
    bg, gg = fit.bgnbd, fit.gamma_gamma
    common = {
        "model_version": MODEL_VERSION, "fit_date": fit.as_of, "status": fit.status,
        "message": fit.message, "holdout_weeks": settings.holdout_weeks,
        "max_holdout_error": settings.max_holdout_error,
        "holdout_error": fit.holdout_error,
        "bgnbd_r": bg.r if bg else None, "bgnbd_alpha": bg.alpha if bg else None,
        "bgnbd_a": bg.a if bg else None, "bgnbd_b": bg.b if bg else None,
        "gg_p": gg.p if gg else None, "gg_q": gg.q if gg else None,
        "gg_v": gg.v if gg else None,
        "bgnbd_log_likelihood": fit.bgnbd_log_likelihood,
        "gg_log_likelihood": fit.gg_log_likelihood,
    }
    return holdout.assign(**common)
