"""predictions.btyd against the published CDNOW fits (BG/NBD and Gamma-Gamma).

Data: tests/data/cdnow_summary.csv is the CDNOW sample of 2,357 customers (time in weeks,
spend in dollars) as shipped in the PyPI wheel Lifetimes 0.11.3 (MIT licence, Copyright (c)
2015 Cameron Davidson-Pilon), file lifetimes/datasets/cdnow_customers_summary_with_transactions.csv
(columns ID, x, t_x, T, zbar). Only the header was renamed (customer_id, frequency, recency,
T, monetary_value, as lifetimes' own loader names them) and the CRLF line ends made LF; the
values are the file's text unchanged. monetary_value (zbar) is the mean spend per repeat
transaction, 0 for customers with no repeat purchase.

Published values:
- BG/NBD: Fader, Hardie & Lee (2005), "Counting your customers the easy way": r = 0.243,
  alpha = 4.414, a = 0.793, b = 2.426, log-likelihood -9582.4 (to two decimals -9582.43);
- Gamma-Gamma: Fader, Hardie & Lee (2005), "RFM and CLV" / Fader & Hardie's Gamma-Gamma note:
  p = 6.25, q = 3.74, v = 15.44, fitted on the 946 repeat buyers (lifetimes' docs fit the same
  946 with the `monetary_value` column and print p 6.25, q 3.74, v 15.45);
- individual predictions printed in lifetimes' quickstart for its own CDNOW fits (conditional
  expected purchases, expected average profit, 12-"month" discounted CLV).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from predictions.btyd import (
    BGNBDParams,
    Fit,
    GammaGammaParams,
    ModelDoesNotFit,
    _stationary,
    check_fit_possible,
    expected_order_value,
    expected_purchases,
    fit_bgnbd,
    fit_gamma_gamma,
    p_alive,
    predicted_value,
    require_converged,
)

DATA = Path(__file__).parent / "data" / "cdnow_summary.csv"
HEADER = "customer_id,frequency,recency,T,monetary_value"

PUBLISHED_BGNBD = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
PUBLISHED_BGNBD_LOGLIK = -9582.43
PUBLISHED_GG = {"p": 6.25, "q": 3.74, "v": 15.44}


class Cdnow:
    def __init__(self) -> None:
        with DATA.open() as handle:
            assert handle.readline().strip() == HEADER
        table = np.loadtxt(DATA, delimiter=",", skiprows=1)
        self.ids = table[:, 0].astype(int)
        self.x, self.t_x, self.T, self.m = (table[:, i] for i in range(1, 5))

    def row(self, customer_id: int) -> int:
        return int(np.flatnonzero(self.ids == customer_id)[0])


@pytest.fixture(scope="module")
def cdnow() -> Cdnow:
    return Cdnow()


@pytest.fixture(scope="module")
def bg_fit(cdnow: Cdnow) -> Fit:
    started = time.perf_counter()
    fit = fit_bgnbd(cdnow.x, cdnow.t_x, cdnow.T)
    print(f"BG/NBD fit on CDNOW: {time.perf_counter() - started:.3f} s, {fit.iterations} it")
    return fit


@pytest.fixture(scope="module")
def gg_fit(cdnow: Cdnow) -> Fit:
    repeat = cdnow.x > 0
    started = time.perf_counter()
    fit = fit_gamma_gamma(cdnow.x[repeat], cdnow.m[repeat])
    print(f"Gamma-Gamma fit on CDNOW: {time.perf_counter() - started:.3f} s, {fit.iterations} it")
    return fit


def test_the_shipped_sample_is_the_published_one(cdnow: Cdnow) -> None:
    assert cdnow.ids.tolist() == list(range(1, 2358))
    assert int(np.sum(cdnow.x > 0)) == 946  # the Gamma-Gamma sample
    assert np.all(cdnow.x == np.round(cdnow.x))  # counts, read as floats
    assert np.all(cdnow.m[cdnow.x == 0] == 0)
    assert np.all(cdnow.m[cdnow.x > 0] > 0)
    assert np.all((cdnow.t_x >= 0) & (cdnow.t_x <= cdnow.T))


# -- fits against the papers --------------------------------------------------------------
def test_bgnbd_reproduces_the_published_cdnow_fit(bg_fit: Fit) -> None:
    assert bg_fit.converged, bg_fit.message
    assert isinstance(bg_fit.params, BGNBDParams)
    for name, published in PUBLISHED_BGNBD.items():
        assert getattr(bg_fit.params, name) == pytest.approx(published, rel=0.01), name
    assert bg_fit.log_likelihood == pytest.approx(PUBLISHED_BGNBD_LOGLIK, rel=1e-4)


def test_gamma_gamma_reproduces_the_published_cdnow_fit(gg_fit: Fit) -> None:
    assert gg_fit.converged, gg_fit.message
    assert isinstance(gg_fit.params, GammaGammaParams)
    for name, published in PUBLISHED_GG.items():
        assert getattr(gg_fit.params, name) == pytest.approx(published, rel=0.01), name


def test_the_fit_does_not_depend_on_the_time_unit(cdnow: Cdnow, bg_fit: Fit) -> None:
    """Days instead of weeks: alpha scales by 7, r/a/b stay, and the log-likelihood moves by
    the Jacobian of t_x's density (-ln 7 per repeat purchase), as the likelihood says."""
    in_days = fit_bgnbd(cdnow.x, cdnow.t_x * 7, cdnow.T * 7)
    weeks, days = bg_fit.params, in_days.params
    assert isinstance(weeks, BGNBDParams) and isinstance(days, BGNBDParams)
    assert days.alpha == pytest.approx(weeks.alpha * 7, rel=1e-4)
    for name in ("r", "a", "b"):
        assert getattr(days, name) == pytest.approx(getattr(weeks, name), rel=1e-4), name
    shift = -cdnow.x.sum() * np.log(7)
    assert in_days.log_likelihood == pytest.approx(bg_fit.log_likelihood + shift, rel=1e-7)


# -- P(alive) and expected purchases -------------------------------------------------------
def test_p_alive_falls_with_time_since_the_last_purchase() -> None:
    params = BGNBDParams(**PUBLISHED_BGNBD)
    recent, lapsed, never_repeated = p_alive(params, [3, 3, 0], [37.0, 5.0, 0.0], [38.86] * 3)
    assert 0 < lapsed < recent < 1
    assert never_repeated == 1.0
    # more purchases long ago make the silence since more telling
    assert p_alive(params, 10, 5.0, 38.86) < lapsed


def test_expected_purchases_of_customer_1_over_39_weeks() -> None:
    """x = 2, t_x = 30.43, T = 38.86: 1.226 purchases in the next 39 weeks."""
    value = expected_purchases(BGNBDParams(**PUBLISHED_BGNBD), 39, 2, 30.43, 38.86)
    assert float(value) == pytest.approx(1.226, abs=5e-4)


def test_expected_purchases_match_the_lifetimes_quickstart(cdnow: Cdnow, bg_fit: Fit) -> None:
    """The five highest next-week predictions lifetimes prints for its CDNOW fit."""
    printed = {509: 0.424877, 841: 0.474738, 1981: 0.486526, 157: 0.662396, 1516: 0.710623}
    rows = [cdnow.row(customer) for customer in printed]
    params = bg_fit.params
    assert isinstance(params, BGNBDParams)
    ours = expected_purchases(params, 1, cdnow.x[rows], cdnow.t_x[rows], cdnow.T[rows])
    np.testing.assert_allclose(ours, list(printed.values()), rtol=1e-4)
    everyone = expected_purchases(params, 1, cdnow.x, cdnow.t_x, cdnow.T)
    assert sorted(np.argsort(everyone)[-5:] + 1) == sorted(printed)


def test_expected_purchases_stay_finite_for_heavy_buyers() -> None:
    """Against arbitrary-precision values of FHL's eq. 10 (mpmath, 40 digits, untransformed
    2F1): the textbook float form overflows to nan at x = 1000, ours must not."""
    params = BGNBDParams(r=0.242593, alpha=4.413532, a=0.792886, b=2.425752)
    cases = [
        ((260, 29, 38, 38.86), 69.01485039387859),
        ((520, 200, 300, 310), 61.24798243860047),
        ((5200, 1000, 1500, 1560), 2.220740906760073e-11),
    ]
    for (t, x, t_x, big_t), exact in cases:
        value = float(expected_purchases(params, t, x, t_x, big_t))
        assert value == pytest.approx(exact, rel=1e-9), (t, x)


def test_expected_purchases_grow_with_the_horizon(cdnow: Cdnow) -> None:
    params = BGNBDParams(**PUBLISHED_BGNBD)
    horizons = np.array([0.0, 1.0, 13.0, 52.0, 520.0])[:, None]
    values = expected_purchases(params, horizons, cdnow.x, cdnow.t_x, cdnow.T)
    assert values.shape == (5, cdnow.x.size)
    assert np.all(np.isfinite(values))
    assert np.all(values[0] == 0)
    assert np.all(np.diff(values, axis=0) > 0)


# -- spend and value -----------------------------------------------------------------------
def test_expected_order_value_matches_the_lifetimes_quickstart(cdnow: Cdnow, gg_fit: Fit) -> None:
    """Customers 1-10 as printed; customers 3, 4, 5, 8, 10 never repeated and get the
    population mean p v / (q - 1)."""
    printed = [
        24.658619,
        18.911489,
        35.170981,
        35.170981,
        35.170981,
        71.462843,
        18.911489,
        35.170981,
        27.282408,
        35.170981,
    ]
    params = gg_fit.params
    assert isinstance(params, GammaGammaParams)
    ours = expected_order_value(params, cdnow.x[:10], cdnow.m[:10])
    np.testing.assert_allclose(ours, printed, rtol=1e-4)
    assert ours[2] == pytest.approx(params.p * params.v / (params.q - 1), rel=1e-12)


def test_expected_order_value_moves_toward_own_spend_with_more_purchases() -> None:
    params = GammaGammaParams(**PUBLISHED_GG)
    population = params.p * params.v / (params.q - 1)
    own = 80.0
    values = expected_order_value(params, [1, 5, 50], [own] * 3)
    assert population < values[0] < values[1] < values[2] < own
    # a one-time buyer's spend column may be empty (NaN) or anything: it is not used
    no_repeat = expected_order_value(params, [0, 0], [np.nan, 1e6])
    np.testing.assert_allclose(no_repeat, [population, population], rtol=1e-12)


def test_predicted_value_matches_the_lifetimes_quickstart_clv(
    cdnow: Cdnow, bg_fit: Fit, gg_fit: Fit
) -> None:
    """lifetimes' customer_lifetime_value(time=12, discount_rate=0.01, freq='D') on the
    weekly CDNOW data: 12 steps of 30 time units each, discounted 1 % per step; i.e. a
    360-unit horizon, 360 units a year and an annual rate of 1.01^12 - 1."""
    printed = [
        140.096211,
        18.943467,
        38.180574,
        38.180574,
        38.180574,
        1003.868107,
        28.109683,
        38.180574,
        167.418216,
        38.180574,
    ]
    bg, gg = bg_fit.params, gg_fit.params
    assert isinstance(bg, BGNBDParams) and isinstance(gg, GammaGammaParams)
    ours = predicted_value(
        bg,
        gg,
        cdnow.x[:10],
        cdnow.t_x[:10],
        cdnow.T[:10],
        cdnow.m[:10],
        horizon=360,
        periods_per_year=360,
        annual_discount_rate=1.01**12 - 1,
        steps=12,
    )
    np.testing.assert_allclose(ours, printed, rtol=1e-4)


def test_predicted_value_is_spend_times_purchases_discounted(cdnow: Cdnow) -> None:
    bg, gg = BGNBDParams(**PUBLISHED_BGNBD), GammaGammaParams(**PUBLISHED_GG)
    x, t_x, big_t, m = cdnow.x[:50], cdnow.t_x[:50], cdnow.T[:50], cdnow.m[:50]
    spend = expected_order_value(gg, x, m)
    purchases = expected_purchases(bg, 52, x, t_x, big_t)
    undiscounted = predicted_value(
        bg, gg, x, t_x, big_t, m, horizon=52, periods_per_year=52, annual_discount_rate=0.0, steps=7
    )
    np.testing.assert_allclose(undiscounted, spend * purchases, rtol=1e-12)
    one_step = predicted_value(
        bg, gg, x, t_x, big_t, m, horizon=52, periods_per_year=52, annual_discount_rate=0.2, steps=1
    )
    np.testing.assert_allclose(one_step, spend * purchases / 1.2, rtol=1e-12)
    monthly = predicted_value(
        bg, gg, x, t_x, big_t, m, horizon=52, periods_per_year=52, annual_discount_rate=0.2
    )
    assert np.all((one_step < monthly) & (monthly < undiscounted))


# -- refusing what cannot be fitted ---------------------------------------------------------
def test_check_fit_possible_passes_cdnow_and_refuses_small_samples(cdnow: Cdnow) -> None:
    check_fit_possible(cdnow.x)
    with pytest.raises(ModelDoesNotFit, match=r"120 customers .*need at least 200"):
        check_fit_possible(cdnow.x[:120])
    with pytest.raises(ModelDoesNotFit, match=r"0 repeat buyers .*need at least 50"):
        check_fit_possible(np.zeros(500))
    with pytest.raises(ModelDoesNotFit) as refused:
        check_fit_possible([0, 1, 2])
    assert "3 customers" in str(refused.value) and "2 repeat buyers" in str(refused.value)


def test_fits_refuse_samples_without_repeat_buyers() -> None:
    with pytest.raises(ModelDoesNotFit, match="repeat_buyers=0"):
        fit_bgnbd(np.zeros(300), np.zeros(300), np.full(300, 20.0))
    with pytest.raises(ValueError, match="2 of 3 customers have frequency 0"):
        fit_gamma_gamma([0, 3, 0], [0.0, 10.0, 0.0])
    with pytest.raises(ValueError, match="positive amount"):
        fit_gamma_gamma([1, 3], [10.0, 0.0])


def test_a_degenerate_fit_is_reported_and_refused() -> None:
    """Everyone spending exactly the same: no spread to estimate, p and q run off to
    infinity, and the fit must say it did not converge rather than hand back numbers."""
    fit = fit_gamma_gamma(np.full(100, 2), np.full(100, 10.0))
    assert not fit.converged
    assert fit.message
    with pytest.raises(
        ModelDoesNotFit, match=r"did not converge.*customers=100, repeat_buyers=100"
    ):
        require_converged(fit, np.full(100, 2))


def test_a_wrongly_built_summary_is_refused() -> None:
    params = BGNBDParams(**PUBLISHED_BGNBD)
    with pytest.raises(ValueError, match="between 0 and T"):
        p_alive(params, 2, 40.0, 38.0)
    with pytest.raises(ValueError, match="recency must be 0 where frequency is 0"):
        fit_bgnbd([0, 1], [3.0, 2.0], [10.0, 10.0])
    with pytest.raises(ValueError, match="whole numbers"):
        expected_purchases(params, 10, 1.5, 2.0, 10.0)


def test_a_search_that_stops_short_is_judged_by_its_gradient_and_drift():
    """L-BFGS-B may stop ABNORMAL at the optimum (accepted when the gradient is flat) or on a
    ridge where parameters run off together (refused, naming them)."""
    names = ("r", "alpha", "a", "b")
    flat = np.array([1e-8, -1e-8, 1e-9, 0.0])
    ok, message = _stationary(np.array([-1.0, -2.7, 0.6, 1.6]), flat, names, "ABNORMAL: ")
    assert ok and "stationary point" in message
    ok, message = _stationary(np.array([-1.0, -2.4, 12.3, 13.6]), flat, names, "ABNORMAL: ")
    assert not ok and message.startswith("a, b kept drifting towards infinity")
    steep = np.array([1e-3, 0.0, 0.0, 0.0])
    ok, message = _stationary(np.array([-1.0, -2.7, 0.6, 1.6]), steep, names, "ABNORMAL: ")
    assert not ok and message == "ABNORMAL: "
