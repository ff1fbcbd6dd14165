"""BG/NBD and Gamma-Gamma ("buy till you die") models, fitted by maximum likelihood.

Why this module exists: the marts' LTV is a formula over past revenue; these models predict
each customer's future purchases, whether they are still a customer at all ("alive") and their
spend per purchase, from three numbers per customer (the RFM summary):

- ``frequency`` (x): the number of repeat purchases (purchases after the first one);
- ``recency`` (t_x): the time from the first purchase to the last one (0 when x == 0);
- ``T``: the time from the first purchase to the end of the observation window;

in any time unit, as long as all three (and ``t``/``horizon`` below) use the same one.

The log-likelihoods are the closed forms of Fader, Hardie & Lee (2005), "Counting your
customers the easy way: an alternative to the Pareto/NBD model" (BG/NBD), and Fader, Hardie &
Lee (2005), "RFM and CLV: using iso-value curves for customer base analysis" with Fader &
Hardie's note "The Gamma-Gamma model of monetary value" (spend). They are maximised with
scipy's L-BFGS-B on the logarithms of the parameters (which keeps them positive), on data
rescaled to unit size (so the start and the tolerances do not depend on weeks vs days or
roubles vs kopecks), with analytic gradients. numpy and scipy only: no autograd, no PyMC.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize
from scipy.special import betaln, digamma, expit, gammaln, hyp2f1

__all__ = [
    "BGNBDParams",
    "Fit",
    "GammaGammaParams",
    "ModelDoesNotFit",
    "check_fit_possible",
    "expected_order_value",
    "expected_purchases",
    "fit_bgnbd",
    "fit_gamma_gamma",
    "p_alive",
    "predicted_value",
    "require_converged",
]

FloatArray = NDArray[np.float64]

# Bounds on the log-parameters of the rescaled problem: a parameter that ends on one is a
# degenerate fit (e.g. no heterogeneity at all), reported as not converged.
_LOG_BOUND = 30.0
_DRIFT_LOG = float(np.log(1e4))  # a parameter (in the search's units) beyond 1e4 or 1e-4
_FLAT_GRADIENT = 1e-6  # of the mean log-likelihood per customer, per log-parameter


@dataclass(frozen=True)
class BGNBDParams:
    """BG/NBD: purchase rate ~ Gamma(shape r, rate alpha); drop-out probability ~ Beta(a, b).

    ``alpha`` is in the time unit of the data it was fitted on; r, a and b have no unit.
    """

    r: float
    alpha: float
    a: float
    b: float


@dataclass(frozen=True)
class GammaGammaParams:
    """Gamma-Gamma: spend per purchase ~ Gamma(p, nu); nu ~ Gamma(shape q, rate v).

    ``v`` is in the currency of the data it was fitted on; p and q have no unit.
    """

    p: float
    q: float
    v: float


@dataclass(frozen=True)
class Fit:
    """What a fit says about itself: the estimates and whether the optimiser is to be trusted."""

    params: BGNBDParams | GammaGammaParams
    log_likelihood: float
    converged: bool
    iterations: int
    message: str


class ModelDoesNotFit(ValueError):
    """The data cannot support the model: too few customers or repeat buyers, or no convergence.

    A ValueError, so callers that treat bad input alike need not know it; the message says
    which condition failed and the counts behind it.
    """


# -- input checks ---------------------------------------------------------------------------
def _as_float(name: str, values: ArrayLike) -> FloatArray:
    array = np.asarray(values, dtype=float)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} has missing or infinite values")
    return array


def _frequency(values: ArrayLike) -> FloatArray:
    x = _as_float("frequency", values)
    if np.any(x < 0) or np.any(x != np.round(x)):
        raise ValueError("frequency must be whole numbers >= 0 (repeat purchases)")
    return x


def _rfm(
    frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Checked, broadcast (x, t_x, T): a wrongly built summary is refused, not modelled."""
    x = _frequency(frequency)
    t_x = _as_float("recency", recency)
    big_t = _as_float("T", T)
    try:
        x, t_x, big_t = np.broadcast_arrays(x, t_x, big_t)
    except ValueError as error:
        raise ValueError(
            f"frequency, recency and T differ in shape: {x.shape}, {t_x.shape}, {big_t.shape}"
        ) from error
    if np.any(big_t <= 0):
        raise ValueError("T (time since the first purchase) must be > 0")
    if np.any(t_x < 0) or np.any(t_x > big_t):
        raise ValueError("recency must lie between 0 and T")
    if np.any((x == 0) & (t_x != 0)):
        raise ValueError("recency must be 0 where frequency is 0 (it is first to last purchase)")
    return x, t_x, big_t


def _spend(frequency: ArrayLike, monetary_value: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Checked (x, m); m only has to be a positive amount where x > 0."""
    x = _frequency(frequency)
    m = np.asarray(monetary_value, dtype=float)
    try:
        x, m = np.broadcast_arrays(x, m)
    except ValueError as error:
        raise ValueError(
            f"frequency and monetary_value differ in shape: {x.shape}, {m.shape}"
        ) from error
    repeat = x > 0
    bad = repeat & ~(np.isfinite(m) & (m > 0))
    if np.any(bad):
        raise ValueError(
            f"monetary_value must be a positive amount for repeat buyers; "
            f"{int(bad.sum())} of {int(repeat.sum())} are not"
        )
    return x, m


# -- log-likelihoods and their gradients ----------------------------------------------------
def _bgnbd_loglik(
    r: float, alpha: float, a: float, b: float, x: FloatArray, t_x: FloatArray, T: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Per-customer log-likelihood and its gradient in (r, alpha, a, b), shape (4, n).

    L = B(a, b+x)/B(a, b) Γ(r+x) α^r / (Γ(r) (α+T)^(r+x))
        + [x > 0] B(a+1, b+x-1)/B(a, b) Γ(r+x) α^r / (Γ(r) (α+t_x)^(r+x)),
    summed in log space (log-sum-exp) so neither term underflows for heavy buyers.
    """
    repeat = x > 0
    b_x1 = np.where(repeat, b + x - 1.0, 1.0)  # keeps the unused x == 0 branch finite
    common = gammaln(r + x) - gammaln(r) + r * np.log(alpha) - betaln(a, b)
    log_alpha_t = np.log(alpha + T)
    log_alpha_tx = np.log(alpha + t_x)
    term_1 = betaln(a, b + x) - (r + x) * log_alpha_t
    term_2 = np.where(repeat, betaln(a + 1.0, b_x1) - (r + x) * log_alpha_tx, -np.inf)
    mix = np.logaddexp(term_1, term_2)
    w_1 = np.exp(term_1 - mix)
    w_2 = np.exp(term_2 - mix)  # 0 where x == 0

    psi_abx = digamma(a + b + x)
    d_r = digamma(r + x) - digamma(r) + np.log(alpha) - w_1 * log_alpha_t - w_2 * log_alpha_tx
    d_alpha = r / alpha - (r + x) * (w_1 / (alpha + T) + w_2 / (alpha + t_x))
    d_a = (
        -(digamma(a) - digamma(a + b))
        + w_1 * (digamma(a) - psi_abx)
        + w_2 * (digamma(a + 1.0) - psi_abx)
    )
    d_b = (
        -(digamma(b) - digamma(a + b))
        + w_1 * (digamma(b + x) - psi_abx)
        + w_2 * (digamma(b_x1) - psi_abx)
    )
    return common + mix, np.stack([d_r, d_alpha, d_a, d_b])


def _gamma_gamma_loglik(
    p: float, q: float, v: float, x: FloatArray, m: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Per-customer log-density of the mean spend m over x purchases, and its gradient.

    f(m | x) = Γ(px+q) / (Γ(px) Γ(q)) · v^q m^(px-1) x^(px) / (v + x m)^(px+q).
    """
    px = p * x
    log_vxm = np.log(v + x * m)
    loglik = (
        gammaln(px + q)
        - gammaln(px)
        - gammaln(q)
        + q * np.log(v)
        + (px - 1.0) * np.log(m)
        + px * np.log(x)
        - (px + q) * log_vxm
    )
    psi_pxq = digamma(px + q)
    d_p = x * (psi_pxq - digamma(px) + np.log(m) + np.log(x) - log_vxm)
    d_q = psi_pxq - digamma(q) + np.log(v) - log_vxm
    d_v = q / v - (px + q) / (v + x * m)
    return loglik, np.stack([d_p, d_q, d_v])


# -- fitting ----------------------------------------------------------------------------------
def _stationary(theta: FloatArray, gradient: FloatArray, names: tuple[str, ...],
                message: str) -> tuple[bool, str]:
    """Whether a search the optimiser did not call a success still stopped at a maximum:
    the gradient is flat and no parameter is drifting off to infinity (a flat likelihood
    along a ridge, e.g. a and b growing together when drop-out hardly varies)."""
    drifting = [n for n, t in zip(names, theta, strict=True) if abs(t) > _DRIFT_LOG]
    if drifting:
        return False, (f"{', '.join(drifting)} kept drifting towards "
                       f"{'infinity' if theta[names.index(drifting[0])] > 0 else 'zero'} "
                       f"(the data cannot pin {'them' if len(drifting) > 1 else 'it'} down); "
                       f"optimiser: {message}")
    if float(np.max(np.abs(gradient))) > _FLAT_GRADIENT:
        return False, message
    return True, f"stationary point (gradient below {_FLAT_GRADIENT:g}); optimiser: {message}"


def _maximise(
    loglik: Callable[..., tuple[FloatArray, FloatArray]],
    data: tuple[FloatArray, ...],
    weights: FloatArray,
    start: FloatArray,
    names: tuple[str, ...],
) -> tuple[FloatArray, bool, int, str]:
    """Maximise the weighted mean log-likelihood over log-parameters.

    The mean (not the sum) keeps the objective O(1) whatever the sample size, so L-BFGS-B's
    tolerances mean the same thing on 300 customers and on 300,000.
    """
    total = weights.sum()

    def objective(theta: FloatArray) -> tuple[float, FloatArray]:
        params = np.exp(theta)
        with np.errstate(all="ignore"):
            values, grad = loglik(*params, *data)
        value = float(weights @ values) / total
        if not np.isfinite(value):
            return np.inf, np.zeros_like(theta)
        # chain rule for theta = log(param): d/dtheta = param * d/dparam
        return -value, -(grad @ weights) / total * params

    result = minimize(
        objective,
        np.log(start),
        jac=True,
        method="L-BFGS-B",
        bounds=[(-_LOG_BOUND, _LOG_BOUND)] * len(start),
        options={"maxiter": 2000, "ftol": 1e-14, "gtol": 1e-9},
    )
    iterations = int(result.nit)
    if not result.success:
        # L-BFGS-B's line search can stop ABNORMAL at the optimum itself (the tolerances are
        # tight): restart once from there, then judge by the gradient
        result = minimize(objective, result.x, jac=True, method="L-BFGS-B",
                          bounds=[(-_LOG_BOUND, _LOG_BOUND)] * len(start),
                          options={"maxiter": 2000, "ftol": 1e-14, "gtol": 1e-9})
        iterations += int(result.nit)
    params = np.exp(result.x)
    message = str(result.message)
    converged = bool(result.success) and bool(np.all(np.isfinite(params)))
    if not converged and np.all(np.isfinite(params)):
        converged, message = _stationary(result.x, objective(result.x)[1], names, message)
    at_bound = [n for n, t in zip(names, result.x, strict=True) if abs(t) >= _LOG_BOUND - 1e-6]
    if at_bound:
        converged = False
        message = (
            f"degenerate fit: {', '.join(at_bound)} ran to the edge of the search range "
            f"(the data show no heterogeneity or no drop-out there); optimiser: {message}"
        )
    return params, converged, iterations, message


def fit_bgnbd(frequency: ArrayLike, recency: ArrayLike, T: ArrayLike) -> Fit:
    """Fit BG/NBD by maximum likelihood on every customer's (x, t_x, T).

    Customers with the same summary are pooled (weighted), which makes cohort data with
    whole-period recencies cheap. Time is rescaled so the longest T is 1 for the search;
    ``alpha`` and the log-likelihood are reported in the caller's time unit.
    """
    x, t_x, big_t = (np.ravel(a) for a in _rfm(frequency, recency, T))
    repeat = int(np.sum(x > 0))
    if repeat == 0:
        # with no repeat purchase the likelihood has no maximum (r -> 0, alpha -> infinity)
        # and a, b do not enter it at all: refuse instead of returning arbitrary numbers
        raise ModelDoesNotFit(
            f"BG/NBD needs repeat buyers to fit [customers={x.size}, repeat_buyers=0]"
        )
    scale = float(big_t.max())
    rows, counts = np.unique(
        np.column_stack([x, t_x / scale, big_t / scale]), axis=0, return_counts=True
    )
    data = (rows[:, 0], rows[:, 1], rows[:, 2])
    weights = counts.astype(float)
    # start: r = 1 and alpha so that r/alpha (purchases per unit time) matches the mean rate
    rate = max(float(np.mean(x / (big_t / scale))), 1e-3)
    start = np.array([1.0, 1.0 / rate, 1.0, 1.0])
    params, converged, iterations, message = _maximise(
        _bgnbd_loglik,
        data,
        weights,
        start,
        ("r", "alpha", "a", "b"),
    )
    fitted = BGNBDParams(
        r=float(params[0]),
        alpha=float(params[1] * scale),
        a=float(params[2]),
        b=float(params[3]),
    )
    with np.errstate(all="ignore"):
        loglik = float(
            np.sum(_bgnbd_loglik(fitted.r, fitted.alpha, fitted.a, fitted.b, x, t_x, big_t)[0])
        )
    return Fit(fitted, loglik, bool(converged and np.isfinite(loglik)), iterations, message)


def fit_gamma_gamma(frequency: ArrayLike, monetary_value: ArrayLike) -> Fit:
    """Fit Gamma-Gamma on repeat buyers: frequency > 0 and their mean spend per purchase.

    Only repeat buyers carry the model's information the way the published fits use it, and
    a one-purchase customer's spend is usually also what made them a customer; so customers
    with frequency 0 are refused rather than silently dropped. Money is rescaled so the mean
    spend is 1 for the search; ``v`` is reported in the caller's currency.
    """
    x, m = (np.ravel(a) for a in _spend(frequency, monetary_value))
    if x.size == 0:
        raise ModelDoesNotFit("Gamma-Gamma needs repeat buyers; got no customers")
    one_time = int(np.sum(x == 0))
    if one_time:
        raise ValueError(
            f"Gamma-Gamma is fitted on repeat buyers only (frequency > 0); {one_time} of "
            f"{x.size} customers have frequency 0: pass frequency[frequency > 0]"
        )
    scale = float(np.mean(m))
    rows, counts = np.unique(np.column_stack([x, m / scale]), axis=0, return_counts=True)
    # start: p = q = 2, v so that the population mean p v / (q - 1) is the mean spend (1)
    start = np.array([2.0, 2.0, 1.0])
    params, converged, iterations, message = _maximise(
        _gamma_gamma_loglik,
        (rows[:, 0], rows[:, 1]),
        counts.astype(float),
        start,
        ("p", "q", "v"),
    )
    fitted = GammaGammaParams(p=float(params[0]), q=float(params[1]), v=float(params[2] * scale))
    with np.errstate(all="ignore"):
        loglik = float(np.sum(_gamma_gamma_loglik(fitted.p, fitted.q, fitted.v, x, m)[0]))
    return Fit(fitted, loglik, bool(converged and np.isfinite(loglik)), iterations, message)


def check_fit_possible(
    frequency: ArrayLike, *, min_customers: int = 200, min_repeat_buyers: int = 50
) -> None:
    """Refuse samples too small for the heterogeneity parameters to mean anything.

    Both models estimate distributions *across* customers, and Gamma-Gamma (like BG/NBD's
    drop-out part) learns only from repeat buyers, so both counts are checked.
    """
    x = np.ravel(_frequency(frequency))
    customers = int(x.size)
    repeat = int(np.sum(x > 0))
    problems = []
    if customers < min_customers:
        problems.append(f"{customers} customers (need at least {min_customers})")
    if repeat < min_repeat_buyers:
        problems.append(f"{repeat} repeat buyers (need at least {min_repeat_buyers})")
    if problems:
        raise ModelDoesNotFit(
            "too few data to fit the CLV models: "
            + "; ".join(problems)
            + f" [customers={customers}, repeat_buyers={repeat}]"
        )


def require_converged(fit: Fit, frequency: ArrayLike) -> Fit:
    """Return ``fit`` if it converged, else raise ModelDoesNotFit with the sample's counts."""
    if fit.converged:
        return fit
    x = np.ravel(_frequency(frequency))
    model = "BG/NBD" if isinstance(fit.params, BGNBDParams) else "Gamma-Gamma"
    raise ModelDoesNotFit(
        f"the {model} fit did not converge after {fit.iterations} iterations "
        f"({fit.message}) [customers={x.size}, repeat_buyers={int(np.sum(x > 0))}]"
    )


# -- predictions ----------------------------------------------------------------------------
def _log_odds_dead(
    params: BGNBDParams, x: FloatArray, t_x: FloatArray, T: FloatArray
) -> FloatArray:
    """log of a/(b+x-1) ((α+T)/(α+t_x))^(r+x): the odds of having dropped out; -inf for x = 0."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    repeat = x > 0
    b_x1 = np.where(repeat, b + x - 1.0, 1.0)
    log_odds = np.log(a) - np.log(b_x1) + (r + x) * (np.log(alpha + T) - np.log(alpha + t_x))
    return np.where(repeat, log_odds, -np.inf)


def p_alive(
    params: BGNBDParams, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
) -> FloatArray:
    """P(still a customer at T | x, t_x, T); exactly 1 for x == 0 (BG/NBD's drop-out happens
    only right after a purchase, so a customer who never repeated cannot have left yet)."""
    x, t_x, big_t = _rfm(frequency, recency, T)
    return expit(-_log_odds_dead(params, x, t_x, big_t))


def expected_purchases(
    params: BGNBDParams, t: ArrayLike, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
) -> FloatArray:
    """E[purchases in (T, T + t] | x, t_x, T] (FHL 2005, eq. 10).

    The Gaussian hypergeometric 2F1(r+x, b+x; a+b+x-1; z) there grows without bound for
    heavy buyers (its c - a - b = a - 1 - r - x); Euler's transformation turns the product
    ((α+T)/(α+T+t))^(r+x) · 2F1 into (1-z)^(a-1) · 2F1(a+b-1-r, a-1; a+b+x-1; z), whose
    parameters do not grow with x, so it stays finite at any frequency.
    """
    x, t_x, big_t = _rfm(frequency, recency, T)
    horizon = _as_float("t", t)
    if np.any(horizon < 0):
        raise ValueError("t (the horizon) must be >= 0")
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    z = horizon / (alpha + big_t + horizon)
    hyp = hyp2f1(a + b - 1.0 - r, a - 1.0, a + b + x - 1.0, z)
    # 1 - (1-z)^(a-1) 2F1 without cancellation when a is near 1
    growth = -np.expm1((a - 1.0) * np.log1p(-z) + np.log(hyp))
    unconditional = (a + b + x - 1.0) / (a - 1.0) * growth
    return unconditional * expit(-_log_odds_dead(params, x, t_x, big_t))


def expected_order_value(
    params: GammaGammaParams, frequency: ArrayLike, monetary_value: ArrayLike
) -> FloatArray:
    """E[spend per purchase | x, mean spend m]: a weighted mean of the population mean
    p v / (q - 1) and the customer's own m, the weight on m growing with x; the population
    mean where x == 0 (monetary_value is then ignored)."""
    x, m = _spend(frequency, monetary_value)
    p, q, v = params.p, params.q, params.v
    denominator = p * x + q - 1.0
    if np.any(denominator <= 0):
        raise ValueError(
            f"the expected spend is infinite for these parameters (q = {q:.4g} <= 1 with "
            f"p = {p:.4g}): the fitted spend distribution has no mean"
        )
    m_used = np.where(x > 0, m, 0.0)
    return p * (v + x * m_used) / denominator


def predicted_value(
    bg: BGNBDParams,
    gg: GammaGammaParams,
    frequency: ArrayLike,
    recency: ArrayLike,
    T: ArrayLike,
    monetary_value: ArrayLike,
    *,
    horizon: float,
    periods_per_year: float,
    annual_discount_rate: float,
    steps: int = 12,
) -> FloatArray:
    """Discounted expected spend over the next ``horizon`` time units (the data's unit).

    The horizon is cut into ``steps`` equal sub-periods; each one's incremental expected
    purchases times the expected order value is discounted by (1 + d)^(years to its end),
    with years = time / ``periods_per_year`` (52 for weeks, 365 for days).
    """
    if not np.isfinite(horizon) or horizon < 0:
        raise ValueError("horizon must be a finite number >= 0")
    if not np.isfinite(periods_per_year) or periods_per_year <= 0:
        raise ValueError("periods_per_year must be > 0")
    if not np.isfinite(annual_discount_rate) or annual_discount_rate <= -1:
        raise ValueError("annual_discount_rate must be > -1")
    if steps < 1:
        raise ValueError("steps must be >= 1")
    x, t_x, big_t = _rfm(frequency, recency, T)
    order_value = expected_order_value(gg, x, np.broadcast_to(monetary_value, x.shape))
    ends = horizon * np.arange(steps + 1) / steps
    cumulative = expected_purchases(bg, ends.reshape((-1,) + (1,) * x.ndim), x, t_x, big_t)
    incremental = np.diff(cumulative, axis=0)
    discount = (1.0 + annual_discount_rate) ** (ends[1:] / periods_per_year)
    per_step = incremental / discount.reshape((-1,) + (1,) * x.ndim)
    return order_value * per_step.sum(axis=0)
