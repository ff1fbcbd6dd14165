"""The dashboard build (issue 14), at the Python level: `build_dashboard` over the shared marts
writes every page and its local assets, nothing points to the network, the overview's figures
are the marts' own, `voronka dashboard` builds from the published file, and the exposure names
what the pages read. The browser side (rendering, console, requests) is
tests/test_dashboard_browser.py."""

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from _support import DBT_PROJECT, MartsBuild

from dashboard.data import read_marts
from dashboard.i18n import fmt_number
from dashboard.pages import SLUGS, load_pages
from dashboard.site import build_dashboard

#: Overview metric -> (mart, column, blended-row filter); the test's own reading of the issue,
#: independent of dashboard/pages/overview.py.
OVERVIEW = {
    "revenue": ("fct_customer_value_monthly", "revenue", ""),
    "orders": ("fct_customer_value_monthly", "orders", ""),
    "aov": ("fct_customer_value_monthly", "aov", ""),
    "new_customers": ("fct_acquisition_monthly", "new_customers", "and channel = 'all'"),
    "cac": ("fct_acquisition_monthly", "cac", "and channel = 'all'"),
    "romi": ("fct_acquisition_monthly", "romi", "and channel = 'all'"),
    "crr": ("fct_crr_monthly", "crr", ""),
}
URL = re.compile(r"https?://", re.IGNORECASE)
#: The vendored plotly.js bundle names URLs (map tiles, a CDN for optional locales) that only
#: map traces or explicit config would fetch; the dashboard uses neither, and the browser test
#: asserts that no request leaves file:// at runtime.
VENDOR = {"plotly.min.js"}


@pytest.fixture(scope="module")
def site(marts: MartsBuild, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dashboard built once per backend from the shared marts (Russian labels)."""
    out = tmp_path_factory.mktemp(f"dashboard_{marts.backend}")
    build_dashboard(out, marts.wh.query_df, lang="ru", state_query=marts.wh.query_df)
    return out


def page_json(path: Path, element_id: str) -> Any:
    """The JSON a page carries inline (`voronka-data` payload or `voronka-meta`)."""
    text = path.read_text(encoding="utf-8")
    match = re.search(rf'<script type="application/json" id="{element_id}">(.*?)</script>',
                      text, re.S)
    assert match, (path.name, element_id)
    return json.loads(match.group(1))


def month_add(day: dt.date, months: int) -> dt.date:
    index = day.year * 12 + day.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1)


def as_date(value: Any) -> dt.date:
    return value.date() if hasattr(value, "date") and callable(value.date) else value


def test_every_page_and_asset_is_written(site: Path) -> None:
    pages = load_pages()
    assert [p.spec.slug for p in pages] == list(SLUGS)
    for page in pages:
        assert (site / page.spec.filename).is_file(), page.spec.slug
        assert (site / "assets" / "pages" / f"{page.spec.slug}.js").is_file()
    assert (site / "index.html").read_text(encoding="utf-8").count('data-page="overview"') == 1
    plotly = (site / "assets" / "plotly.min.js").read_text(encoding="utf-8")
    assert len(plotly) > 1_000_000 and "Plotly" in plotly[:2000]
    for name in ("core.js", "style.css"):
        assert (site / "assets" / name).stat().st_size > 0


def test_every_page_builds_without_error_from_the_shared_marts(site: Path) -> None:
    for page in load_pages():
        payload = page_json(site / page.spec.filename, "voronka-data")
        assert page.build is not None, f"{page.spec.slug}: module missing"
        assert "_error" not in payload and "_missing" not in payload, (page.spec.slug, payload)


def test_nothing_points_to_the_network(site: Path) -> None:
    """No http(s) URL in any file we write, and every script/stylesheet is a local file."""
    for path in site.rglob("*"):
        if path.is_file() and path.name not in VENDOR:
            text = path.read_text(encoding="utf-8")
            assert not URL.search(text), (path, URL.search(text))
    for html in site.glob("*.html"):
        text = html.read_text(encoding="utf-8")
        refs = re.findall(r'(?:src|href)="([^"]+)"', text)
        assert refs, html
        for ref in refs:
            assert not ref.startswith(("/", "//")) and ":" not in ref, (html.name, ref)
            assert (site / ref).is_file(), (html.name, ref)


def test_header_shows_the_as_of_date_and_every_sources_range(site: Path,
                                                               marts: MartsBuild) -> None:
    dates = marts.df("select source, as_of_date, first_data_date, last_data_date "
                     "from marts.dim_report_dates")
    meta = page_json(site / "retention.html", "voronka-meta")
    assert meta["as_of_date"] == as_date(dates["as_of_date"].iloc[0]).isoformat()
    ranges = {r["source"]: (r["first_data_date"], r["last_data_date"]) for r in meta["ranges"]}
    expected = {row.source: (as_date(row.first_data_date).isoformat(),
                             as_date(row.last_data_date).isoformat())
                for row in dates.itertuples()}
    assert ranges == expected
    html = (site / "funnel.html").read_text(encoding="utf-8")
    as_of = as_date(dates["as_of_date"].iloc[0])
    assert as_of.strftime("%d.%m.%Y") in html
    assert all(f'<span class="src">{source}</span>' in html for source in expected)
    nav = re.findall(r'<nav class="vk-nav">(.*?)</nav>', html, re.S)[0]
    assert all(f'href="{p.spec.filename}"' in nav for p in load_pages())


def _mart_value(marts: MartsBuild, mart: str, column: str, extra: str, month: dt.date) -> Any:
    frame = marts.df(f"select {column} from marts.{mart} "
                     f"where month = date '{month.isoformat()}' {extra}")
    if frame.empty or frame[column].isna().all():
        return None
    return float(frame[column].iloc[0])


def test_overview_figures_equal_the_marts(site: Path, marts: MartsBuild) -> None:
    """Last complete month, the month before and a year before: each tile's figure is the
    mart's, and so is every sparkline point and its complete flag."""
    last = marts.df("select max(month) as m from marts.fct_customer_value_monthly "
                    "where month_complete")["m"].iloc[0]
    month = as_date(last)
    payload = page_json(site / "index.html", "voronka-data")
    assert payload["last_complete_month"] == month.isoformat()
    kpis = {k["key"]: k for k in payload["kpis"]}
    assert set(kpis) == set(OVERVIEW)
    for key, (mart, column, extra) in OVERVIEW.items():
        for field, shift in (("current", 0), ("previous", -1), ("year_ago", -12)):
            expected = _mart_value(marts, mart, column, extra, month_add(month, shift))
            got = kpis[key][field]
            assert (got is None) == (expected is None), (key, field, got, expected)
            if expected is not None:
                assert got == pytest.approx(expected, rel=1e-9), (key, field)
        flags = "month_complete and not is_warm_up" if mart == "fct_crr_monthly" \
            else "month_complete"
        series = marts.df(f"select month, {column} as v, {flags} as complete "
                          f"from marts.{mart} where true {extra} order by month")
        points = kpis[key]["series"]
        assert [p["month"] for p in points] == [as_date(m).isoformat() for m in series["month"]]
        assert [p["complete"] for p in points] == [bool(c) for c in series["complete"]]
        for point, value in zip(points, series["v"], strict=True):
            if value is None or value != value:
                assert point["value"] is None, (key, point)
            else:
                assert point["value"] == pytest.approx(float(value), rel=1e-9), (key, point)


@pytest.mark.parametrize("marts", ["duckdb"], indirect=True)
def test_cli_builds_english_from_the_published_file(marts: MartsBuild, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture) -> None:
    """`voronka dashboard --lang en` reads the published DuckDB file read-only (here the
    shared build's file, which holds schema `marts`) and prints where the site is."""
    from voronka import cli

    monkeypatch.setenv("VORONKA_WAREHOUSE", "duckdb")
    monkeypatch.setenv("VORONKA_PUBLISHED_PATH", marts.env["VORONKA_DUCKDB_PATH"])
    monkeypatch.setenv("VORONKA_DUCKDB_PATH", str(tmp_path / "no_working_warehouse.duckdb"))
    out = tmp_path / "site"
    assert cli.main(["dashboard", "--out", str(out), "--lang", "en"]) == 0
    printed = capsys.readouterr().out
    assert str(out / "index.html") in printed and "MB" in printed
    index = (out / "index.html").read_text(encoding="utf-8")
    assert '<html lang="en">' in index and ">Overview</a>" in index
    assert page_json(out / "index.html", "voronka-meta")["lang"] == "en"
    titles = [k["title"] for k in page_json(out / "index.html", "voronka-data")["kpis"]]
    assert "Revenue" in titles
    assert not (tmp_path / "no_working_warehouse.duckdb").exists()  # opened read-only, if at all


def test_cli_says_when_nothing_is_published(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture) -> None:
    from voronka import cli

    monkeypatch.setenv("VORONKA_WAREHOUSE", "duckdb")
    monkeypatch.setenv("VORONKA_PUBLISHED_PATH", str(tmp_path / "none.duckdb"))
    assert cli.main(["dashboard", "--out", str(tmp_path / "site")]) == 1
    assert "no published marts" in capsys.readouterr().err


def test_a_warehouse_without_marts_still_builds_every_page(tmp_path: Path) -> None:
    """Before the first run (or with a mart missing) every page says "no data" instead of the
    build failing: each mart reads as an empty frame with the contract's columns."""

    def no_marts(sql: str) -> Any:
        raise RuntimeError("no such table")

    assert read_marts(no_marts)["fct_orders"].empty
    build_dashboard(tmp_path, no_marts, lang="en")
    for page in load_pages():
        payload = page_json(tmp_path / page.spec.filename, "voronka-data")
        assert "_error" not in payload, (page.spec.slug, payload)
    assert page_json(tmp_path / "index.html", "voronka-meta")["as_of_date"] is None


def test_numbers_are_written_the_way_each_language_writes_them() -> None:
    """ru: thin-space thousands, comma decimals, ₽; en: comma thousands, point, RUB (the
    same rules as Voronka.fmt in static/core.js)."""
    assert fmt_number(1234567.4, "ru", "money") == "1\u2009234\u2009567\u00a0₽"
    assert fmt_number(1234567.4, "en", "money") == "1,234,567\u00a0RUB"
    assert fmt_number(42.5, "ru", "money") == "42,50\u00a0₽"
    assert fmt_number(0.1234, "ru", "percent") == "12,3%"
    assert fmt_number(0.1234, "en", "percent") == "12.3%"
    assert fmt_number(-2.5, "en", "ratio") == "-2.50"
    assert fmt_number(-2.5, "ru", "ratio") == "−2,50"
    assert fmt_number(12.25, "en", "days") == "12.3\u00a0days"
    assert fmt_number(None, "ru", "count") == "—"
    assert fmt_number(float("nan"), "en", "money") == "—"


def test_the_exposure_names_what_the_pages_read() -> None:
    """dbt's marketing_dashboard exposure lists exactly the marts the page modules and the
    header read, so lineage shows what a mart change breaks."""
    spec = yaml.safe_load((DBT_PROJECT / "models" / "exposures.yml").read_text())
    exposure = next(e for e in spec["exposures"] if e["name"] == "marketing_dashboard")
    declared = {re.fullmatch(r"ref\('(\w+)'\)", d).group(1) for d in exposure["depends_on"]}
    assert declared == _marts_the_pages_name()


def _marts_the_pages_name() -> set[str]:
    pages = Path(__file__).resolve().parent.parent / "dashboard" / "pages"
    read = {"dim_report_dates"}  # the header of every page (site.py)
    for module in pages.glob("*.py"):
        read |= set(re.findall(r"\b((?:fct|dim)_[a-z0-9_]+)\b", module.read_text()))
    return read


@pytest.mark.parametrize("marts", ["duckdb"], indirect=True)
def test_a_build_reads_only_the_marts_its_pages_use(marts: MartsBuild, tmp_path: Path) -> None:
    """A mart is read when a page asks for it: the per-lead and per-stage marts no page
    shows (at scale 10 reading every mart took 430 MB at its peak) are never read."""
    queried: list[str] = []

    def recording(sql: str) -> Any:
        queried.append(sql)
        return marts.wh.query_df(sql)

    build_dashboard(tmp_path, recording, lang="en", state_query=marts.wh.query_df)
    read = set(re.findall(r"from marts\.(\w+)", " ".join(queried)))
    from dashboard.data import OPTIONAL_MARTS
    assert read - set(OPTIONAL_MARTS) == _marts_the_pages_name()
    assert "fct_lead_stages" not in read and len(queried) == len(read)


def test_a_build_prepared_during_the_run_is_the_whole_build(
        marts: MartsBuild, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`voronka demo` prepares the pages of the published marts while the audience syncs
    run and writes the pages of the audience state after them: the state pages wait for the
    second part, and the two parts write exactly what one build writes."""
    from dashboard.site import STATE_PAGES, build_published, finish_published, prepare_published

    for name, value in marts.env.items():
        monkeypatch.setenv(name, value)
    if marts.backend == "duckdb":  # the shared build's file holds schema marts
        monkeypatch.setenv("VORONKA_PUBLISHED_PATH", marts.env["VORONKA_DUCKDB_PATH"])
    pages = {p.spec.slug: p.spec.filename for p in load_pages()}
    prepared = prepare_published(tmp_path / "ahead", lang="en")
    written = {p.name for p in (tmp_path / "ahead").glob("*.html")}
    assert STATE_PAGES and written == {f for s, f in pages.items() if s not in STATE_PAGES}
    report = finish_published(prepared)
    whole = build_published(tmp_path / "whole", lang="en")
    assert report.failed_pages == whole.failed_pages == ()
    assert report.total_bytes == whole.total_bytes
    for filename in pages.values():
        assert (tmp_path / "ahead" / filename).read_bytes() == (
            tmp_path / "whole" / filename).read_bytes(), filename
