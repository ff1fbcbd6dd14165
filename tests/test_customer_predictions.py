"""Customer predictions from an order history (issue 16, the part that is built): order days,
the per-customer summary in weeks, the fit with its holdout check, and the prediction columns,
on order histories simulated from known BG/NBD + Gamma-Gamma parameters."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from predictions.btyd import p_alive
from predictions.customers import (
    Settings,
    customer_predictions,
    fit_models,
    fit_table,
    order_days,
    summarise,
)

AS_OF = date(2026, 10, 31)
START = AS_OF - timedelta(weeks=104)


def simulate(n: int, seed: int, *, r: float = 0.5, alpha: float = 8.0, a: float = 0.8,
             b: float = 2.5, homogeneous: bool = False) -> pd.DataFrame:
    """Orders of ``n`` customers acquired uniformly over two years: each buys at a gamma-
    distributed weekly rate and, after each purchase, drops out with a beta-distributed
    probability (one fixed probability when ``homogeneous``); amounts are gamma-distributed."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        first = START + timedelta(days=int(rng.integers(0, 600)))
        rate = rng.gamma(r, 1 / alpha)
        drop = a / (a + b) if homogeneous else rng.beta(a, b)
        spend = rng.gamma(6.0, 15.0 / rng.gamma(3.7, 1.0))
        day = first
        while day <= AS_OF:
            rows.append((f"c{i:05d}", day, round(float(rng.gamma(6.0, spend / 6.0)), 2)))
            if rng.random() < drop or rate <= 0:
                break
            gap = rng.exponential(1 / rate) * 7
            if gap > (AS_OF - day).days:
                break
            day += timedelta(days=max(1, round(gap)))
    return pd.DataFrame(rows, columns=["customer_id", "order_date", "amount"])


def test_summary_counts_repeat_days_in_weeks_and_leaves_out_a_first_order_on_the_end_date():
    orders = pd.DataFrame({
        "customer_id": ["a", "a", "a", "b", "c"],
        "order_date": [date(2026, 1, 1), date(2026, 1, 1), date(2026, 1, 15), date(2026, 1, 8),
                       date(2026, 1, 29)],
        "amount": [100.0, 50.0, 30.0, 10.0, 5.0]})
    days = order_days(orders)
    assert len(days) == 4  # two orders of one day are one purchase, worth their sum
    summary = summarise(days, date(2026, 1, 29)).set_index("customer_id")
    assert list(summary.index) == ["a", "b"]  # c first bought on the end date: T = 0
    assert summary.loc["a"].tolist() == [1.0, 2.0, 4.0, 30.0]
    assert summary.loc["b", "frequency"] == 0 and np.isnan(summary.loc["b", "monetary_value"])


def test_a_heterogeneous_history_fits_passes_the_holdout_and_predicts_sensibly():
    orders = simulate(3000, seed=5)
    settings = Settings()
    fit = fit_models(orders, AS_OF, settings)
    assert fit.status == "ok", fit.message
    assert fit.holdout_error is not None and fit.holdout_error <= settings.max_holdout_error
    assert 0.5 < fit.bgnbd.a / (fit.bgnbd.a + fit.bgnbd.b) / (0.8 / 3.3) < 2
    table = fit_table(fit, settings)
    assert list(table["group_name"]) == ["total", "0", "1", "2", "3", "4", "5", "6+"]
    assert set(table["status"]) == {"ok"} and table["bgnbd_r"].notna().all()
    predictions = customer_predictions(orders, fit, settings)
    assert predictions["p_alive"].between(0, 1).all()
    assert (predictions["expected_purchases_365d"] >= predictions["expected_purchases_90d"]).all()
    assert (predictions["expected_purchases_90d"] >= predictions["expected_purchases_30d"]).all()
    assert (predictions["predicted_value_12m"] >= 0).all()
    # with the fitted parameters: of two customers with 3 repeat purchases in 100 weeks, the
    # one whose last purchase was 90 weeks ago is less likely alive than one who just bought
    silent, recent = p_alive(fit.bgnbd, [3, 3], [10, 99], [100, 100])
    assert silent < 0.5 * recent


def test_a_fit_that_does_not_converge_is_reported_not_predicted():
    """One price for every purchase (a fixed-price subscription) leaves Gamma-Gamma nothing to
    learn about spend heterogeneity: its parameters run off to infinity. The fit says it did
    not converge, with the sample's counts, and no prediction is made from it."""
    # seed 8: both BG/NBD fits (whole history and calibration window) are well identified;
    # seed 5's calibration window lies on the a, b ridge, where the optimiser stops (and so
    # which model is named) differed between Intel and AMD machines
    orders = simulate(1500, seed=8).assign(amount=990.0)
    fit = fit_models(orders, AS_OF, Settings())
    assert fit.status == "not_converged" and not fit.usable
    assert "Gamma-Gamma" in fit.message and "repeat_buyers=" in fit.message
    with pytest.raises(ValueError, match="no usable fit"):
        customer_predictions(orders, fit, Settings())
    table = fit_table(fit, Settings())
    assert table["status"].tolist() == ["not_converged"] and table["bgnbd_r"].isna().all()


def test_too_few_repeat_buyers_is_a_clear_no():
    """A B2B seller with long cycles: most customers bought once in the window. No fit is
    attempted; the message says what is missing."""
    orders = simulate(400, seed=3, r=0.05, alpha=40.0)
    fit = fit_models(orders, AS_OF, Settings())
    assert fit.status == "does_not_fit" and not fit.usable
    assert "too few data" in fit.message and "repeat buyers (need at least 50)" in fit.message


@pytest.fixture(scope="module")
def demo_orders() -> tuple[pd.DataFrame, date]:
    """The demo business's orders (``voronka demo``: seed 42, scale 1) as marts.fct_orders
    holds them (the simulator's own order list with the marts' keys), and its as-of date."""
    import synthetic

    business = synthetic.generate(seed=42, scale=1.0)
    orders = business.ground_truth.table("cust_orders").rename(
        columns={"person_idx": "customer_id"})
    return orders[["customer_id", "order_date", "amount"]], business.end


def test_the_demo_business_fits_within_the_holdout_bound(demo_orders):
    orders, as_of = demo_orders
    settings = Settings()
    fit = fit_models(orders, as_of, settings)
    assert fit.status == "ok", fit.message
    assert fit.holdout_error <= settings.max_holdout_error
    total = fit.holdout.set_index("group_name").loc["total"]
    assert total["actual_repeat_purchases"] > 100  # a real test of the window, not a handful


def test_on_the_demo_business_p_alive_orders_customers_sensibly(demo_orders):
    """Among demo customers with the same number of repeat purchases and about the same age,
    one whose silence far exceeds their own rhythm has a lower p_alive than one who just
    bought; and p_alive at the calibration end ranks who did buy again in the holdout window
    above who did not."""
    orders, as_of = demo_orders
    settings = Settings()
    fit = fit_models(orders, as_of, settings)
    table = customer_predictions(orders, fit, settings)
    repeat = table[table["frequency"] >= 2].assign(
        rhythm=lambda t: t["recency_weeks"] / t["frequency"],
        silence=lambda t: t["t_weeks"] - t["recency_weeks"])
    silent = repeat[repeat["silence"] > 3 * repeat["rhythm"]]
    recent = repeat[repeat["silence"] < 2]
    pairs = silent.merge(recent, on="frequency", suffixes=("_silent", "_recent"))
    pairs = pairs[(pairs["t_weeks_silent"] - pairs["t_weeks_recent"]).abs() <= 8]
    assert len(pairs) >= 20, "the demo business has too few comparable customers"
    assert (pairs["p_alive_silent"] < pairs["p_alive_recent"]).all()

    calibration_end = as_of - timedelta(weeks=settings.holdout_weeks)
    calib = summarise(order_days(orders), calibration_end)
    alive = p_alive(fit.bgnbd, calib["frequency"], calib["recency"], calib["T"])
    later = order_days(orders).query("order_date > @calibration_end")["customer_id"]
    bought = calib["customer_id"].isin(set(later)).to_numpy()
    repeaters = calib["frequency"].to_numpy() > 0  # p_alive is 1 until a first repeat
    assert alive[bought & repeaters].mean() > alive[~bought & repeaters].mean() + 0.1
