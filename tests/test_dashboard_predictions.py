"""The dashboard's predictions page (issue 16): built from a scratch warehouse holding the two
tables the predictions asset writes, the charts get the tables' figures (predicted vs actual
per calibration group, p_alive bins that add up to the customers), a model that did not fit
shows its message instead of charts, and an older warehouse without the tables still renders
with a "no predictions yet" note; in a real browser the charts render without JS errors."""

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest
from test_customer_predictions import AS_OF, simulate

from dashboard.data import read_marts
from dashboard.pages import load_pages
from dashboard.pages import predictions as page
from dashboard.site import build_dashboard
from predictions.customers import (
    FIT_DDL,
    FIT_MODEL,
    PREDICTIONS_DDL,
    PREDICTIONS_MODEL,
    ModelFit,
    Settings,
    customer_predictions,
    fit_models,
    fit_table,
)
from warehouse.duckdb_backend import DuckDBWarehouse

CHROMIUM = "/usr/bin/chromium"
NOT_CONVERGED = ("the Gamma-Gamma fit did not converge after 38 iterations (degenerate fit: p "
                 "ran to the edge of the search range)")


@pytest.fixture(scope="module")
def fitted() -> tuple[pd.DataFrame, pd.DataFrame]:
    """A real fit on a simulated history: (fit table, predictions), as the asset writes them."""
    orders = simulate(800, seed=7)
    settings = Settings()
    fit = fit_models(orders, AS_OF, settings)
    assert fit.status == "ok", fit.message
    return fit_table(fit, settings), customer_predictions(orders, fit, settings)


def _warehouse(root: Path, fit: pd.DataFrame | None,
               predictions: pd.DataFrame | None) -> DuckDBWarehouse:
    """A scratch DuckDB warehouse with the given prediction tables in `marts` (None: absent),
    and the dbt marts absent (the site renders them as "no data")."""
    root.mkdir(parents=True, exist_ok=True)
    wh = DuckDBWarehouse(root / "warehouse.duckdb", root / "voronka.duckdb")
    if fit is not None:
        wh.replace_table("marts", FIT_MODEL, fit, FIT_DDL)
    if predictions is not None:
        wh.replace_table("marts", PREDICTIONS_MODEL, predictions, PREDICTIONS_DDL)
    if fit is None and predictions is None:
        wh.replace_table("marts", "unrelated", pd.DataFrame({"x": [1]}), "x integer")
    return wh


def _site(wh: DuckDBWarehouse, out: Path, lang: str) -> Path:
    """The site built over one read-only connection (as `voronka dashboard` reads the
    published file), not a connection per query."""
    con = duckdb.connect(str(wh.path), read_only=True)
    try:
        build_dashboard(out, lambda sql: con.sql(sql).df(), lang=lang)
    finally:
        con.close()
    return out


def payload(site: Path) -> dict[str, Any]:
    """The JSON the predictions page carries inline."""
    text = (site / "predictions.html").read_text(encoding="utf-8")
    match = re.search(r'<script type="application/json" id="voronka-data">(.*?)</script>',
                      text, re.S)
    assert match
    return json.loads(match.group(1))


def _no_fit_table(status: str, message: str) -> pd.DataFrame:
    """The fit table of a fit that did not happen (what fit_models returns for it)."""
    return fit_table(ModelFit(AS_OF, status, message), Settings())


@pytest.fixture(scope="module")
def ok_site(fitted, tmp_path_factory) -> tuple[DuckDBWarehouse, Path]:
    root = tmp_path_factory.mktemp("predictions_ok")
    wh = _warehouse(root / "wh", *fitted)
    return wh, _site(wh, root / "site", "en")


def test_the_page_is_in_the_navigation(ok_site) -> None:
    _, site = ok_site
    assert "predictions" in [p.spec.slug for p in load_pages()]
    nav = re.findall(r'<nav class="vk-nav">(.*?)</nav>', (site / "index.html").read_text(), re.S)
    assert '<a href="predictions.html">Predictions</a>' in nav[0]
    assert (site / "assets" / "pages" / "predictions.js").read_text().startswith("/*")


def test_holdout_chart_gets_predicted_and_actual_per_group(ok_site) -> None:
    wh, site = ok_site
    data = payload(site)
    assert data["state"] == "ok" and data["show"] == {"holdout": True, "p_alive": True,
                                                      "parameters": True}
    table = wh.query_df(f"select * from marts.{FIT_MODEL}")
    groups = table[table["group_name"] != "total"].set_index("group_name")
    assert [g["group"] for g in data["holdout"]] == ["0", "1", "2", "3", "4", "5", "6+"]
    for row in data["holdout"]:
        expected = groups.loc[row["group"]]
        assert row["predicted"] == pytest.approx(expected["predicted_repeat_purchases"])
        assert row["actual"] == pytest.approx(expected["actual_repeat_purchases"])
        assert row["customers"] == expected["customers"]
    total = table[table["group_name"] == "total"].iloc[0]
    fit = data["fit"]
    assert fit["predicted"] == pytest.approx(total["predicted_repeat_purchases"])
    assert fit["actual"] == pytest.approx(sum(r["actual"] for r in data["holdout"]))
    assert fit["holdout_error"] == pytest.approx(total["holdout_error"])
    error = f"{100 * total['holdout_error']:.1f}%"
    assert data["holdout_title"] == (f"Predicted vs actual repeat purchases, last 26 weeks: "
                                     f"holdout error {error} (bound 25.0%)")
    params = {(p["model"], p["parameter"]): p["value"] for p in data["parameters"]}
    assert params[("BG/NBD", "r")] == pytest.approx(total["bgnbd_r"])
    assert params[("BG/NBD", "α")] == pytest.approx(total["bgnbd_alpha"])
    assert params[("Gamma-Gamma", "v")] == pytest.approx(total["gg_v"])
    assert params[("Gamma-Gamma", "log L")] == pytest.approx(total["gg_log_likelihood"])
    assert data["stale_note"] is None


def test_p_alive_bins_add_up_to_the_customers(ok_site) -> None:
    wh, site = ok_site
    pa = payload(site)["p_alive"]
    n, one_time = wh.query_df(
        f"select count(*) as n, count(*) filter (where frequency = 0) as one "
        f"from marts.{PREDICTIONS_MODEL}").iloc[0]
    assert pa["customers"] == n == sum(b["customers"] for b in pa["bins"])
    assert [b["label"] for b in pa["bins"]][:2] == ["0–0.1", "0.1–0.2"]
    assert pa["bins"][-1]["label"] == "0.9–1"
    per_bin = wh.query_df(
        f"select least(floor(p_alive * 10), 9)::int as b, count(*) as n "
        f"from marts.{PREDICTIONS_MODEL} group by 1")
    assert {i: b["customers"] for i, b in enumerate(pa["bins"]) if b["customers"]} == \
        dict(zip(per_bin["b"], per_bin["n"], strict=True))
    # one-time buyers have p_alive 1 by design: all in the last bin, counted apart
    assert pa["one_time_buyers"] == one_time > 0
    assert pa["bins"][-1]["one_time"] == one_time
    assert all(b["one_time"] + b["repeat"] == b["customers"] for b in pa["bins"])
    assert sum(b["repeat"] for b in pa["bins"][:-1]) > 0  # the model spreads repeat buyers


def test_russian_page_says_it_in_russian(fitted, tmp_path) -> None:
    wh = _warehouse(tmp_path / "wh", *fitted)
    data = payload(_site(wh, tmp_path / "site", "ru"))
    assert data["holdout_title"].startswith("Прогноз и факт повторных покупок за последние 26 нед.")
    assert "(допустимо до 25,0%)" in data["holdout_title"]
    assert data["p_alive"]["bins"][3]["label"] == "0,3–0,4"
    assert data["labels"]["one_time_note"].startswith("У клиентов с одной покупкой p_alive = 1")
    assert data["fit"]["status_text"].startswith("Модель подходит")


@pytest.mark.parametrize(("status", "message"), [
    ("not_converged", NOT_CONVERGED),
    ("does_not_fit", "too few repeat buyers to fit: 12 of 40 customers bought again"),
])
def test_a_model_that_did_not_fit_shows_its_message_not_charts(tmp_path, status: str,
                                                               message: str) -> None:
    empty = pd.DataFrame(columns=[c.split()[0] for c in PREDICTIONS_DDL.split(",")])
    wh = _warehouse(tmp_path / "wh", _no_fit_table(status, message), empty)
    data = payload(_site(wh, tmp_path / "site", "en"))
    assert data["state"] == "not_fitted"
    assert data["show"] == {"holdout": False, "p_alive": False, "parameters": False}
    assert data["fit"]["status"] == status and data["fit"]["message"] == message
    assert data["fit"]["status_text"] == page.STATUS[status][1]
    assert data["parameters"] == [] and data["holdout"] == [] and data["p_alive"] is None


def test_the_earlier_fits_predictions_are_named_not_charted(fitted, tmp_path) -> None:
    """The holdout check failed: its chart explains why, the older published predictions
    are not drawn as if they were this fit's, and the page says which fit they come from."""
    table, predictions = fitted
    failed = table.assign(status="holdout_error_too_high", max_holdout_error=0.001,
                          message="holdout error 3.9% over the last 26 weeks exceeds the bound",
                          fit_date=AS_OF + timedelta(days=7))
    wh = _warehouse(tmp_path / "wh", failed, predictions)
    data = payload(_site(wh, tmp_path / "site", "en"))
    assert data["state"] == "holdout_error_too_high"
    assert data["show"] == {"holdout": True, "p_alive": False, "parameters": True}
    assert data["holdout_title"].endswith("(bound 0.1%)")
    assert data["stale_note"] == page.LABELS["stale_predictions"][1].format(
        date=AS_OF.isoformat())


def test_a_warehouse_without_the_tables_says_no_predictions_yet(tmp_path, caplog) -> None:
    wh = _warehouse(tmp_path / "wh", None, None)
    with caplog.at_level("INFO", logger="dashboard"):
        site = _site(wh, tmp_path / "site", "ru")
    data = payload(site)
    assert data["state"] == "missing" and data["fit"] is None and data["p_alive"] is None
    assert not any(data["show"].values())
    assert data["labels"]["no_predictions"].startswith("Прогнозов пока нет")
    # an optional mart missing is not a warning (the dbt marts missing here are)
    warned = {r.getMessage() for r in caplog.records if r.levelname == "WARNING"}
    assert not [w for w in warned if FIT_MODEL in w or PREDICTIONS_MODEL in w]
    assert read_marts(wh.query_df, [FIT_MODEL])[FIT_MODEL].empty
    assert list(read_marts(wh.query_df, [])[PREDICTIONS_MODEL].columns)[:2] == \
        ["customer_id", "frequency"]


# -- in a browser ---------------------------------------------------------------------------------
SHOWN_JS = """() => ({
  plots: Object.fromEntries([...document.querySelectorAll('.js-plotly-plot')].map(gd =>
    [gd.closest('.vk-block').id, (gd.data || []).map(t => ({name: t.name,
      x: Array.from(t.x || []), y: Array.from(t.y || [])}))])),
  notices: [...document.querySelectorAll('.vk-notice')].map(n => n.textContent),
  notes: [...document.querySelectorAll('.vk-note')].map(n => n.textContent),
  tables: [...document.querySelectorAll('.vk-block table')].map(t => t.closest('.vk-block').id)
})"""
RENDERED_JS = """() => window.Voronka && document.querySelector('#content').children.length > 0
  && [...document.querySelectorAll('.js-plotly-plot')].every(gd => gd._fullLayout
  && gd.querySelector('.main-svg'))"""


@pytest.mark.browser
def test_the_charts_render_in_a_browser(ok_site, tmp_path) -> None:
    """The fitted page draws both charts and the tables from its payload, the not-fitted and
    the missing pages show their notes; no page logs a JS error or fetches from the network."""
    from playwright.sync_api import sync_playwright

    _, ok = ok_site
    not_fitted = _site(_warehouse(tmp_path / "nf", _no_fit_table("not_converged", NOT_CONVERGED),
                                  None), tmp_path / "nf_site", "ru")
    missing = _site(_warehouse(tmp_path / "none", None, None), tmp_path / "none_site", "en")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            opened = {name: _open(browser, site) for name, site in
                      (("ok", ok), ("not_fitted", not_fitted), ("missing", missing))}
            seen = {name: _finish(*visit) for name, visit in opened.items()}
        finally:
            browser.close()
    for name, (errors, _) in seen.items():
        assert not errors, (name, errors)

    shown, data = seen["ok"][1], payload(ok)
    holdout = shown["plots"]["pred-holdout"]
    assert [t["name"] for t in holdout] == ["Predicted", "Actual"]
    assert holdout[0]["x"] == ["0", "1", "2", "3", "4", "5", "6+"]
    assert holdout[0]["y"] == [r["predicted"] for r in data["holdout"]]
    assert holdout[1]["y"] == [r["actual"] for r in data["holdout"]]
    bars = shown["plots"]["pred-p-alive"]
    assert sum(sum(t["y"]) for t in bars) == data["p_alive"]["customers"]
    assert shown["notes"] == [data["labels"]["one_time_note"]]
    assert {"pred-holdout-table", "pred-params"} <= set(shown["tables"])

    nf = seen["not_fitted"][1]
    assert nf["plots"] == {} and nf["tables"] == []
    assert any(page.STATUS["not_converged"][0] in n and NOT_CONVERGED in n
               for n in nf["notices"]), nf["notices"]
    gone = seen["missing"][1]
    assert gone["plots"] == {} and gone["notices"] == [page.LABELS["no_predictions"][1]]


def _open(browser: Any, site: Path) -> tuple[Any, list[str]]:
    """Start loading the predictions page, recording errors and refusing non-local requests."""
    browser_page = browser.new_context().new_page()
    errors: list[str] = []
    browser_page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    browser_page.on("pageerror", lambda e: errors.append(str(e)))
    browser_page.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file:")
                       else (errors.append(f"network: {r.request.url}"), r.abort()))
    browser_page.goto((site / "predictions.html").as_uri(), wait_until="commit")
    return browser_page, errors


def _finish(browser_page: Any, errors: list[str]) -> tuple[list[str], dict]:
    browser_page.wait_for_load_state("load", timeout=45_000)
    browser_page.wait_for_function(RENDERED_JS, timeout=45_000)
    return errors, browser_page.evaluate(SHOWN_JS)
