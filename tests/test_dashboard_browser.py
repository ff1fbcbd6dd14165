"""The static dashboard in a real browser (headless Debian chromium through playwright).

The python tests (test_dashboard_build.py) check the payloads; only a browser shows whether
the pages actually render: the scripts run without errors, nothing is fetched from the
network, the figures a reader sees are the marts' figures and the filters do something.
One browser serves the whole module (pages opened in turn) to keep the suite budget.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from _support import MartsBuild

pytestmark = pytest.mark.browser
@pytest.fixture(scope="module")
def marts(marts_alt: MartsBuild) -> MartsBuild:
    """The dashboard reads the second business (`marts_alt`, DuckDB): its own xdist group,
    so these tests do not lengthen the worker that runs the main DuckDB build's tests."""
    return marts_alt

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts" / "dashboard"
#: README screenshots, rewritten only on request (they are tracked files)
README_IMG = ROOT / "docs" / "img"
README_PAGES = ("overview", "acquisition")
SLUGS = ("overview", "acquisition", "cohorts", "retention", "sales_formula", "funnel",
         "managers", "customers")
#: month-like columns of the marts (the edge case empties one month in all of them)
MONTH_COLUMNS = ("month", "cohort_month", "created_month", "order_month")
#: figures that divide by spend: undefined for a channel that spent nothing
SPEND_DERIVED = ("cpl", "cpl_all_leads", "cac", "romi", "romi_gross", "ltv_cac",
                 "cac_payback_months")
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:")
RENDER_TIMEOUT_MS = 45_000  # generous: a loaded 2-core CI box parses plotly.js slowly

# -- what the page shows: plotted points and text, read in the browser --------------------------
RENDERED_JS = """() => {
  const content = document.querySelector('#content');
  if (!window.Voronka || !content || content.children.length === 0) return false;
  const plots = [...document.querySelectorAll('.js-plotly-plot')];
  return plots.every(gd => gd._fullLayout && gd.querySelector('.main-svg'));
}"""

SHOWN_JS = """() => {
  const arr = a => (a == null ? [] : Array.from(a));
  const points = [];
  for (const gd of document.querySelectorAll('.js-plotly-plot')) {
    for (const tr of (gd.data || [])) {
      const name = tr.name == null ? '' : String(tr.name);
      if (tr.z != null) {
        const xs = arr(tr.x), ys = arr(tr.y);
        arr(tr.z).forEach((row, r) => arr(row).forEach((v, c) =>
          points.push({labels: [name, String(ys[r] ?? r), String(xs[c] ?? c)], value: v})));
      } else if (tr.values != null) {
        const ls = arr(tr.labels);
        arr(tr.values).forEach((v, i) =>
          points.push({labels: [name, String(ls[i] ?? i)], value: v}));
      } else {
        const xs = arr(tr.x), ys = arr(tr.y);
        const texts = Array.isArray(tr.text) ? tr.text : [];
        const n = Math.max(xs.length, ys.length);
        for (let i = 0; i < n; i++) {
          const text = texts[i] == null ? '' : String(texts[i]);
          points.push({labels: [name, String(xs[i])], value: ys[i], text: text});
          points.push({labels: [name, String(ys[i])], value: xs[i], text: text});
        }
      }
    }
  }
  const content = document.querySelector('#content');
  return {points: points.filter(p => typeof p.value === 'number'),
          text: content ? content.innerText : ''};
}"""

SIGNATURE_JS = """() => JSON.stringify({
  plots: [...document.querySelectorAll('.js-plotly-plot')].map(gd => (gd.data || []).map(
    t => [t.name, t.x, t.y, t.z, t.values, t.labels])),
  text: (document.querySelector('#content') || {}).innerText || ''
})"""


@dataclass
class Visit:
    """One opened page and what it did while loading."""

    page: Any
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def shown(self) -> dict:
        """Plotted numeric points ({labels, value}) and the visible text of #content."""
        return self.page.evaluate(SHOWN_JS)

    def problems(self) -> list[str]:
        """Errors while loading, non-local requests, and a payload the build could not make
        (site.py writes `_missing`/`_error` instead of failing the whole build)."""
        out = list(self.errors)
        out += [f"network request: {u}" for u in self.requests if not _local(u)]
        flags = self.page.evaluate(
            "() => { const d = window.Voronka && window.Voronka.data;"
            " return d && typeof d === 'object' ? [d._missing || null, d._error || null]"
            " : null; }")
        if flags is None:
            out.append("no Voronka.data")
        else:
            out += [f"payload {k}: {v}" for k, v in zip(("_missing", "_error"), flags,
                                                          strict=True) if v]
        return out

    def signature(self) -> str:
        """Everything shown, as one string: two states differ iff the view changed."""
        return self.page.evaluate(SIGNATURE_JS)


# -- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Debian chromium for the module (never a downloaded browser)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def site(marts, tmp_path_factory) -> Path:
    """The dashboard built from the shared marts (Russian, the default)."""
    from dashboard.site import build_dashboard

    index = build_dashboard(tmp_path_factory.mktemp("dashboard") / "site", marts.wh.query_df)
    return Path(index).parent


@pytest.fixture(scope="module")
def chosen_month(marts) -> str:
    """Three months before the last complete one ("YYYY-MM-01"): the month whose figures the
    tests compare; not the pages' default month, so the month filter must do the work."""
    df = marts.df("select max(month) as m from marts.fct_acquisition_monthly "
                  "where month_complete")
    return _month(pd.Timestamp(df["m"].iloc[0]) - pd.DateOffset(months=3))


def _month(value: Any) -> str:
    return pd.Timestamp(value).strftime("%Y-%m-01")


def page_path(root: Path, slug: str) -> Path:
    """The overview is index.html, every other page <slug>.html."""
    return root / ("index.html" if slug == "overview" else f"{slug}.html")


def _local(url: str) -> bool:
    return url.startswith(LOCAL_SCHEMES)


def _start(browser: Any, path: Path) -> Visit:
    """Start loading `path` in a fresh context, recording console errors, page errors and
    every request (a non-local request is recorded and refused, so a CDN link fails fast)."""
    assert path.exists(), f"{path.name} was not written"
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    visit = Visit(page)
    page.on("console", lambda m: visit.errors.append(f"console: {m.text}")
            if m.type == "error" else None)
    page.on("pageerror", lambda e: visit.errors.append(f"pageerror: {e}"))
    page.on("requestfailed", lambda r: visit.errors.append(f"request failed: {r.url}"))
    page.on("request", lambda r: visit.requests.append(r.url))
    page.route("**/*", lambda route: route.continue_() if _local(route.request.url)
               else route.abort())
    page.goto(path.as_uri(), wait_until="commit")
    return visit


def _finish(visit: Visit) -> Visit:
    """Wait until the page has loaded and every chart is drawn."""
    try:
        visit.page.wait_for_load_state("load", timeout=RENDER_TIMEOUT_MS)
        visit.page.wait_for_function(RENDERED_JS, timeout=RENDER_TIMEOUT_MS)
    except Exception as exc:  # the assertion names it beside the page's own errors
        visit.errors.append(f"not rendered in {RENDER_TIMEOUT_MS} ms: {exc!r:.200}")
    return visit


def open_pages(browser: Any, root: Path) -> dict[str, Visit]:
    """Every page of the site at `root`, loading side by side (plotly.js parsing dominates a
    page's load; the renderers overlap it), each then waited for."""
    started = {slug: _start(browser, page_path(root, slug)) for slug in SLUGS}
    return {slug: _finish(visit) for slug, visit in started.items()}


@pytest.fixture(scope="module")
def visits(browser, site) -> Iterator[dict[str, Visit]]:
    """Each page opened once and shared by the tests that look at it."""
    opened = open_pages(browser, site)
    yield opened
    for visit in opened.values():
        visit.page.context.close()


# -- every page: renders, offline, screenshot -----------------------------------------------------
@pytest.mark.parametrize("slug", SLUGS)
def test_page_renders_offline(visits, slug: str) -> None:
    """Every page loads with no console error and fetches nothing but local files."""
    visit = visits[slug]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / f"{slug}.png"
    visit.page.screenshot(path=str(shot), full_page=True)
    if slug in README_PAGES and os.environ.get("VORONKA_README_SCREENSHOTS") == "1":
        README_IMG.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, README_IMG / f"dashboard_{slug}.png")
    assert not visit.problems(), visit.problems()
    shown = visit.shown()
    assert shown["points"] or shown["text"].strip(), f"{slug} shows nothing"


@pytest.fixture(scope="module")
def marts_frames(marts) -> Any:
    """The marts as the dashboard reads them (read once for the payload comparisons)."""
    from dashboard.data import read_marts

    return read_marts(marts.wh.query_df)


@pytest.mark.parametrize("slug", SLUGS)
def test_page_data_is_the_marts_payload(visits, marts_frames, slug: str) -> None:
    """The JSON the browser parsed is the page's payload built from the marts (a NaN or a
    `</script>` in the data would break it here, not in python)."""
    import importlib

    module = importlib.import_module(f"dashboard.pages.{slug}")
    expected = json.loads(json.dumps(module.build(marts_frames, "ru"), default=str))
    got = json.loads(visits[slug].page.evaluate("() => JSON.stringify(window.Voronka.data)"))
    assert got == expected


# -- figures for a chosen month equal the marts ---------------------------------------------------
def _num(x: Any) -> float | None:
    if x is None or (isinstance(x, float) and math.isnan(x)) or x is pd.NA:
        return None
    return float(x)


Figure = tuple[str | None, float | None, str]  # (month label or None, value, unit)


def _acq(marts: Any, m: str, channel: str = "all") -> Any:
    return marts.df(f"select * from marts.fct_acquisition_monthly "
                    f"where month = date '{m}' and channel = '{channel}'").iloc[0]


def expected_figures(marts: Any, slug: str, month: str) -> tuple[str | None, list[Figure]]:
    """The month to filter `slug` to (None: the page has no month filter) and the figures a
    reader must then find on it, read from the marts. A label is the month the figure is
    plotted at; None when the page plots it by another key (manager, status)."""
    m = month
    if slug == "overview":
        val = marts.df(f"select revenue, orders, aov from marts.fct_customer_value_monthly "
                       f"where month = date '{m}'").iloc[0]
        acq = _acq(marts, m)
        return m, [(m, _num(val.revenue), "money"), (m, _num(val.orders), "count"),
                   (m, _num(val.aov), "money"), (m, _num(acq.new_customers), "count"),
                   (m, _num(acq.cac), "money")]
    if slug == "acquisition":
        df = marts.df(f"select * from marts.fct_acquisition_monthly "
                      f"where month = date '{m}' and channel <> 'all'")
        return m, ([(m, _num(r.spend), "money") for r in df.itertuples() if r.spend] +
                   [(m, _num(r.new_customers), "count") for r in df.itertuples()
                    if r.new_customers] +
                   [(m, _num(_acq(marts, m).cac), "money")])
    if slug == "cohorts":
        cohort = (pd.Timestamp(m) - pd.DateOffset(months=6)).strftime("%Y-%m-01")
        df = marts.df(f"select retention_rate from marts.fct_cohort_retention "
                      f"where cohort_month = date '{cohort}' and is_observable")
        return cohort, [(cohort, _num(r.retention_rate), "percent") for r in df.itertuples()]
    if slug == "retention":
        # the mart stores CRR in percent points; a percent unit shows a share 0..1
        df = marts.df(f"select crr from marts.fct_crr_monthly where month = date '{m}'")
        return m, [(m, _num(r.crr) / 100, "percent") for r in df.itertuples()
                   if _num(r.crr) is not None]
    if slug == "sales_formula":
        r = marts.df(f"select * from marts.fct_sales_formula_monthly "
                     f"where month = date '{m}'").iloc[0]
        return m, [(m, _num(r.value), "money"), (m, _num(r.leads), "count"),
                   (m, _num(r.cv), "percent"), (m, _num(r.aov), "money")]
    if slug == "funnel":
        df = marts.df(f"select leads_reached from marts.fct_funnel_stage_slices "
                      f"where by_month and not by_channel and not by_manager "
                      f"and created_month = date '{m}' and leads_reached > 0")
        return m, [(None, _num(r.leads_reached), "count") for r in df.itertuples()]
    if slug == "managers":
        df = marts.df(f"select manager_name, sum(leads_assigned) as leads, sum(revenue) as rev "
                      f"from marts.fct_manager_performance_monthly where month = date '{m}' "
                      f"group by manager_name")
        return m, ([(None, _num(r.leads), "count") for r in df.itertuples()] +
                   [(None, _num(r.rev), "money") for r in df.itertuples() if r.rev])
    if slug == "customers":
        df = marts.df("select count(*) as n from marts.dim_customers "
                      "where repurchase_status in ('due', 'overdue', 'lapsed') "
                      "group by repurchase_status")
        return None, [(None, _num(r.n), "count") for r in df.itertuples()]
    return None, []


def _shown_at(visit: Visit, shown: dict, label: str | None, value: float, unit: str) -> bool:
    """`value` is plotted, or is the hover text of a plotted point, as Voronka.fmt formats it
    (at a point labelled with `label`'s month, if given), or is written in the page's text."""
    text = visit.page.evaluate("([v, u]) => Voronka.fmt(v, u)", [value, unit])
    for p in shown["points"]:
        at = label is None or any(lab.startswith(label[:7]) for lab in p["labels"])
        if at and (math.isclose(p["value"], value, rel_tol=1e-9, abs_tol=1e-9)
                   or _contains(p.get("text", ""), text)):
            return True
    return _contains(shown["text"], text)


def _contains(haystack: str, text: str) -> bool:
    """`text` (a formatted figure) occurs in `haystack` as a whole number, not inside one."""
    return bool(text) and re.search(
        rf"(?<![\d.,\u2009\u00a0]){re.escape(text)}(?!\d|[.,]\d)", haystack) is not None


def set_month(visit: Visit, month: str) -> None:
    """Narrow the month filter to `month` (from first, so `to` never precedes it)."""
    page = visit.page
    for sel in ("#filter-from", "#filter-to"):
        page.select_option(sel, month)
    page.wait_for_function(RENDERED_JS, timeout=RENDER_TIMEOUT_MS)


@pytest.mark.parametrize("slug", SLUGS)
def test_figures_for_a_month_equal_the_marts(visits, marts, chosen_month, slug: str) -> None:
    """With the month filter on the chosen month, each figure the marts hold for it is shown."""
    visit = visits[slug]
    month, expected = expected_figures(marts, slug, chosen_month)
    assert expected, f"the marts have no figures for {chosen_month}"
    if month is not None:
        set_month(visit, month)
    shown = visit.shown()
    missing = [(label, value, unit) for label, value, unit in expected
               if value is not None and not _shown_at(visit, shown, label, value, unit)]
    assert not missing, f"{slug}: not shown for {month}: {missing}"
    assert not visit.errors, visit.errors


def test_overview_tiles_name_their_month(browser, site) -> None:
    """The overview's tiles compare complete months: with the range ending on the latest
    (incomplete) month they show the last complete one, and each tile names it."""
    visit = _finish(_start(browser, page_path(site, "overview")))
    to, rendered, default, label, names = visit.page.evaluate(
        "() => { const g = document.querySelector('#overview-kpis');"
        " const m = g.getAttribute('data-month');"
        " return [document.querySelector('#filter-to').value, m,"
        " Voronka.data.last_complete_month, Voronka.fmtMonth(m),"
        " [...g.querySelectorAll('.vk-kpi-month')].map(n => n.textContent)]; }")
    visit.page.context.close()
    assert rendered == default and rendered <= to, (to, rendered, default)
    assert names and all(n.startswith(label) for n in names), (label, names)


# -- a filter changes what is shown ---------------------------------------------------------------
def _try_filters(visit: Visit) -> list[str]:
    """Set each filter select in turn to another value; the selects that changed the view."""
    page = visit.page
    changed = []
    selects = page.locator("#filters select")
    for i in range(selects.count()):
        select = selects.nth(i)
        values = select.evaluate("s => [...s.options].map(o => o.value)")
        current = select.input_value()
        others = [v for v in values if v != current]
        if not others:
            continue
        before = visit.signature()
        select.select_option(others[-1] if i == 0 else others[0])
        page.wait_for_function(RENDERED_JS, timeout=RENDER_TIMEOUT_MS)
        if visit.signature() != before:
            changed.append(select.evaluate("s => s.name || s.id || s.outerHTML.slice(0, 60)"))
        select.select_option(current)
    return changed


@pytest.mark.parametrize("slug", SLUGS)
def test_a_filter_changes_the_view(visits, slug: str) -> None:
    """At least one filter control changes the charts or tables, without errors."""
    visit = visits[slug]
    n_errors = len(visit.errors)
    changed = _try_filters(visit)
    assert changed, f"{slug}: no filter in #filters changed what is shown"
    assert visit.errors[n_errors:] == [], visit.errors[n_errors:]


# -- edge case: an empty month and a paid channel without spend ---------------------------------
def edge_query(query: Callable[[str], pd.DataFrame], empty_month: str,
               idle_channel: str) -> Callable[[str], pd.DataFrame]:
    """`query` over marts where `empty_month` has no row in any monthly mart and
    `idle_channel` spent nothing (no spend rows; spend 0, spend-based ratios undefined)."""
    def edged(sql: str) -> pd.DataFrame:
        df = query(sql).copy()
        for col in MONTH_COLUMNS:
            if col in df.columns and len(df):
                months = pd.to_datetime(df[col], errors="coerce").dt.strftime("%Y-%m-01")
                df = df[months != empty_month]
        if "channel" in df.columns and len(df):
            idle = df["channel"] == idle_channel
            if "spend_date" in df.columns or "campaign_id" in df.columns:
                df = df[~idle]
            elif "spend" in df.columns:
                df = df.astype({c: object for c in ("spend", *SPEND_DERIVED) if c in df})
                df.loc[idle, "spend"] = 0.0
                for col in SPEND_DERIVED:
                    if col in df.columns:
                        df.loc[idle, col] = None
                if "spend_covered" in df.columns:
                    df.loc[idle, "spend_covered"] = False
        return df.reset_index(drop=True)
    return edged


IDLE_CHANNEL = "vk_ads"

#: months named anywhere in the page payload (records' month keys, at any depth)
PAYLOAD_MONTHS_JS = """(keys) => {
  const out = new Set();
  const walk = (node) => {
    if (Array.isArray(node)) { node.forEach(walk); return; }
    if (!node || typeof node !== 'object') return;
    for (const [k, v] of Object.entries(node)) {
      if (keys.includes(k) && typeof v === 'string') out.add(v.slice(0, 10));
      else if (v && typeof v === 'object') walk(v);
    }
  };
  walk(window.Voronka.data);
  return [...out];
}"""


@pytest.fixture(scope="module")
def edge_month(marts, chosen_month) -> str:
    """The month the edge case empties: the middle one (not the chosen month)."""
    months = sorted(_month(m) for m in marts.df(
        "select distinct month from marts.fct_acquisition_monthly")["month"])
    empty = months[len(months) // 2]
    assert empty != chosen_month
    return empty


@pytest.fixture(scope="module")
def edge_site(marts, tmp_path_factory, edge_month) -> Path:
    """The dashboard built from marts with an empty month and a paid channel without spend."""
    from dashboard.site import build_dashboard

    query = edge_query(marts.wh.query_df, edge_month, IDLE_CHANNEL)
    index = build_dashboard(tmp_path_factory.mktemp("dashboard_edge") / "site", query)
    return Path(index).parent


def test_edge_case_pages_render(browser, edge_site, edge_month) -> None:
    """With a month with nothing and a channel with no spend every page still renders,
    without errors or network requests (and the pages really got the edged marts)."""
    failures, months_seen = {}, set()
    for slug, visit in open_pages(browser, edge_site).items():
        problems = visit.problems()
        if problems:
            failures[slug] = problems
        months = set(visit.page.evaluate(PAYLOAD_MONTHS_JS, list(MONTH_COLUMNS)))
        if edge_month in months:
            failures.setdefault(slug, []).append(f"payload still has {edge_month}")
        months_seen |= months
        visit.page.context.close()
    assert not failures, failures
    assert months_seen, "no page payload names a month: the edge case checked nothing"


def test_edge_query_really_edges(marts, edge_month) -> None:
    """The edge case is not vacuous: the month is gone and the channel's spend is zero."""
    query = edge_query(marts.wh.query_df, edge_month, IDLE_CHANNEL)
    acq = query("select * from marts.fct_acquisition_monthly")
    assert edge_month not in set(acq["month"].map(_month))
    idle = acq[acq["channel"] == IDLE_CHANNEL]
    assert len(idle) and (idle["spend"].astype(float) == 0).all() and idle["cac"].isna().all()
    spend = query("select * from marts.fct_ad_spend_daily")
    assert IDLE_CHANNEL not in set(spend["channel"])


def test_english_pages_render(browser, marts, tmp_path_factory) -> None:
    """The English build (the README pages) renders without errors, formatted the English way."""
    from dashboard.site import build_dashboard

    root = build_dashboard(tmp_path_factory.mktemp("dashboard_en") / "site", marts.wh.query_df,
                           lang="en").parent
    for slug in README_PAGES:
        visit = _finish(_start(browser, page_path(root, slug)))
        assert not visit.problems(), (slug, visit.problems())
        lang, money = visit.page.evaluate("() => [Voronka.lang, Voronka.fmt(1234.5, 'money')]")
        assert lang == "en" and money.startswith("1,23") and "RUB" in money, (lang, money)
        visit.page.context.close()
