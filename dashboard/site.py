"""Build the static dashboard: one HTML file per page, plus local assets, no network.

Each page is `<out>/<slug>.html` (the overview is `index.html`): a header with the navigation,
the as-of date and every source's data range, the page payload as inline JSON, then
`assets/plotly.min.js`, `assets/core.js` and `assets/pages/<slug>.js` loaded from disk."""

import html
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dashboard.data import (
    Marts,
    Query,
    published_query,
    read_marts,
    records,
    to_date,
    working_query,
)
from dashboard.i18n import t
from dashboard.pages import Page, load_pages

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"


def _script_json(payload: Any) -> str:
    """JSON safe inside <script>: no "</" can close the tag, no "<!--" can open a comment."""
    text = json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def report_meta(marts: Marts, lang: str) -> dict[str, Any]:
    """The header's facts: the as-of date and each source's first/last data date."""
    frame = marts.report_dates
    cols = ["source", "source_kind", "first_data_date", "last_data_date", "as_of_basis"]
    ranges = records(frame.sort_values("source"), [c for c in cols if c in frame]) \
        if not frame.empty else []
    as_of = marts.as_of_date
    return {"as_of_date": as_of.isoformat() if as_of else None, "ranges": ranges, "lang": lang}


def _fmt_day(value: Any, lang: str) -> str:
    day = to_date(value)
    if day is None:
        return "—"
    return day.strftime("%d.%m.%Y") if lang == "ru" else day.isoformat()


def _header(pages: list[Page], current: str, meta: dict[str, Any], lang: str) -> str:
    """Navigation to every page, the as-of date and the data ranges (static HTML)."""
    links = []
    for page in pages:
        cls = ' class="active" aria-current="page"' if page.spec.slug == current else ""
        links.append(f'<a href="{page.spec.filename}"{cls}>'
                     f"{html.escape(page.spec.title(lang))}</a>")
    ranges = "".join(
        f'<li><span class="src">{html.escape(str(r.get("source")))}</span> '
        f'{_fmt_day(r.get("first_data_date"), lang)} – {_fmt_day(r.get("last_data_date"), lang)}'
        "</li>"
        for r in meta["ranges"])
    as_of = _fmt_day(meta["as_of_date"], lang)
    firsts = [r["first_data_date"] for r in meta["ranges"] if r.get("first_data_date")]
    lasts = [r["last_data_date"] for r in meta["ranges"] if r.get("last_data_date")]
    span = (f": {_fmt_day(min(firsts), lang)} – {_fmt_day(max(lasts), lang)}"
            if firsts and lasts else "")
    return (
        '<header class="vk-header">'
        f'<div class="vk-brand">{html.escape(t("title", lang))}</div>'
        f'<nav class="vk-nav">{"".join(links)}</nav>'
        f'<div class="vk-asof"><span>{html.escape(t("as_of", lang))}</span> '
        f'<strong id="as-of-date">{as_of}</strong>'
        f'<details class="vk-ranges"><summary>{html.escape(t("data_ranges", lang))}{span}'
        "</summary>"
        f'<ul>{ranges}</ul></details></div>'
        "</header>")


def render_page(page: Page, pages: list[Page], payload: dict[str, Any], meta: dict[str, Any],
                lang: str) -> str:
    """One page's HTML: only relative local assets, the payload inline (works from file://)."""
    title = html.escape(page.spec.title(lang))
    slug = page.spec.slug
    return (
        f'<!DOCTYPE html>\n<html lang="{lang}">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{title} · Voronka</title>\n"
        '<link rel="stylesheet" href="assets/style.css">\n</head>\n'
        f'<body data-page="{slug}" data-lang="{lang}">\n'
        f"{_header(pages, slug, meta, lang)}\n"
        f'<main><h1 class="vk-title">{title}</h1>\n'
        '<div id="filters" class="vk-filters"></div>\n<div id="content" class="vk-content"></div>'
        "\n</main>\n"
        f'<script type="application/json" id="voronka-meta">{_script_json(meta)}</script>\n'
        f'<script type="application/json" id="voronka-data">{_script_json(payload)}</script>\n'
        '<script src="assets/plotly.min.js"></script>\n'
        '<script src="assets/core.js"></script>\n'
        f'<script src="assets/pages/{slug}.js"></script>\n'
        "</body>\n</html>\n")


def _payload(page: Page, marts: Marts, lang: str) -> dict[str, Any]:
    """The page's payload; a page that is missing or fails says so on the page, not in a crash
    of the whole build (the error is logged for the operator)."""
    if page.build is None:
        return {"_missing": True, "_message": t("page_missing", lang)}
    try:
        return page.build(marts, lang)
    except Exception as exc:
        log.exception("dashboard page %s failed to build", page.spec.slug)
        return {"_error": f"{type(exc).__name__}: {exc}"}


def _write_assets(out_dir: Path, pages: list[Page]) -> None:
    """plotly.js from the installed plotly package, core.js, style.css and each page script."""
    from plotly.offline import get_plotlyjs

    assets = out_dir / "assets"
    (assets / "pages").mkdir(parents=True, exist_ok=True)
    (assets / "plotly.min.js").write_text(get_plotlyjs(), encoding="utf-8")
    for name in ("core.js", "style.css"):
        shutil.copyfile(STATIC_DIR / name, assets / name)
    for page in pages:
        source = STATIC_DIR / "pages" / f"{page.spec.slug}.js"
        target = assets / "pages" / f"{page.spec.slug}.js"
        if source.exists() and page.build is not None:
            shutil.copyfile(source, target)
        else:
            target.write_text("Voronka.missingPage();\n", encoding="utf-8")


STATE_PAGES = frozenset({"customers"})
"""The pages that read the working warehouse's state (``_add_state``): the rest need only the
published marts."""


def _add_state(marts: Marts, state_query: Query | None) -> None:
    """Merge warehouse state the marts do not publish (audience segments and syncs, read by
    the customers page's `read_audience_state`) into the marts mapping."""
    if state_query is None:
        return
    try:
        from dashboard.pages.customers import read_audience_state
    except Exception:  # the customers page is not there: nothing reads the state
        return
    marts.update(read_audience_state(state_query))


def build_dashboard(out_dir: Path, query: Query, lang: str = "ru",
                    state_query: Query | None = None) -> Path:
    """Write the whole site into `out_dir` from the marts `query` reads; return index.html.

    `state_query` (optional) reads the working warehouse for what publication does not copy
    (audience state); without it the customers page says that state is not available."""
    if lang not in ("ru", "en"):
        raise ValueError(f"lang must be ru or en, got {lang!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return _build(out_dir, query, lang, state_query)[0]


def _build(out_dir: Path, query: Query, lang: str,
           state_query: Query | None) -> tuple[Path, list[str]]:
    """The build itself; also returns the slugs of pages that failed or are missing."""
    prepared = _prepare(out_dir, query, lang)
    return out_dir / "index.html", _finish(prepared, state_query)


@dataclass
class PreparedBuild:
    """A build with every page written but those that read the working warehouse's state."""

    out: Path
    lang: str
    marts: Marts
    pages: list[Page]
    meta: dict[str, Any]
    failed: list[str]
    seconds: float


def _prepare(out_dir: Path, query: Query, lang: str) -> PreparedBuild:
    """The marts read, the assets and every page but ``STATE_PAGES`` written."""
    started = time.monotonic()
    marts = read_marts(query)
    pages = load_pages()
    meta = report_meta(marts, lang)
    _write_assets(out_dir, pages)
    now = [p for p in pages if p.spec.slug not in STATE_PAGES]
    failed = _write_pages(out_dir, now, pages, marts, meta, lang)
    return PreparedBuild(out_dir, lang, marts, pages, meta, failed, time.monotonic() - started)


def _finish(prepared: PreparedBuild, state_query: Query | None) -> list[str]:
    """``STATE_PAGES`` written with the state ``state_query`` reads; every failed or missing
    page's slug, in the pages' order."""
    _add_state(prepared.marts, state_query)
    later = [p for p in prepared.pages if p.spec.slug in STATE_PAGES]
    failed = set(prepared.failed) | set(_write_pages(
        prepared.out, later, prepared.pages, prepared.marts, prepared.meta, prepared.lang))
    return [p.spec.slug for p in prepared.pages if p.spec.slug in failed]


def _write_pages(out_dir: Path, pages: list[Page], every: list[Page], marts: Marts,
                 meta: dict[str, Any], lang: str) -> list[str]:
    """Render and write ``pages`` (``every`` page is in the navigation); the slugs of those
    that failed or are missing."""
    failed = []
    for page in pages:
        payload = _payload(page, marts, lang)
        if "_error" in payload or "_missing" in payload:
            failed.append(page.spec.slug)
        text = render_page(page, every, payload, meta, lang)
        (out_dir / page.spec.filename).write_text(text, encoding="utf-8")
    return failed


@dataclass(frozen=True)
class BuildReport:
    """Where the dashboard went, how long it took and how heavy it is (the issue's note)."""

    index: Path
    seconds: float
    total_bytes: int
    plotly_bytes: int
    failed_pages: tuple[str, ...] = ()

    def line(self) -> str:
        mb = self.total_bytes / 1e6
        text = (f"Dashboard: {self.index} (built in {self.seconds:.1f} s, {mb:.1f} MB of which "
                f"{self.plotly_bytes / 1e6:.1f} MB plotly.js; opens from disk, "
                "`voronka dashboard --serve` serves it)")
        if self.failed_pages:
            failed = ", ".join(self.failed_pages)
            text += f"\n  pages not built (each says so; the log has why): {failed}"
        return text


def default_out_dir(conf: object = None) -> Path:
    """VORONKA_DASHBOARD_DIR, else `dashboard/` beside the published DuckDB file (data/ by
    default, gitignored; a run against a scratch warehouse keeps its dashboard beside it),
    else data/dashboard under the repository (PostgreSQL)."""
    import os

    from voronka import settings

    if os.environ.get("VORONKA_DASHBOARD_DIR", "").strip():
        path = Path(os.environ["VORONKA_DASHBOARD_DIR"].strip()).expanduser()
        return path if path.is_absolute() else settings.REPO_ROOT / path
    conf = conf or settings.WarehouseSettings.from_env()
    if conf.kind == "duckdb":
        return conf.published_path.parent / "dashboard"
    return settings.REPO_ROOT / "data" / "dashboard"


def build_published(out_dir: Path | None = None, lang: str = "ru",
                    conf: object = None) -> BuildReport:
    """Build from the PUBLISHED marts (what BI sees), timing it and weighing the folder."""
    return finish_published(prepare_published(out_dir, lang, conf), conf)


def prepare_published(out_dir: Path | None = None, lang: str = "ru",
                      conf: object = None) -> PreparedBuild:
    """The part of ``build_published`` that needs only the published marts: the assets and
    every page but ``STATE_PAGES``. `voronka demo` runs it as soon as the marts are published,
    beside the audience syncs (which change the state those pages show), and
    ``finish_published`` after them."""
    if lang not in ("ru", "en"):
        raise ValueError(f"lang must be ru or en, got {lang!r}")
    out = Path(out_dir) if out_dir else default_out_dir(conf)
    with published_query(conf) as query:
        out.mkdir(parents=True, exist_ok=True)
        prepared = _prepare(out, query, lang)
        prepared.marts.query = None  # its connection closes here; finish_published reopens
        return prepared


def finish_published(prepared: PreparedBuild, conf: object = None) -> BuildReport:
    """The pages that read the working warehouse's state, then the report of the whole
    build (its time: both parts)."""
    started = time.monotonic()
    with published_query(conf) as query, working_query(conf) as state_query:
        prepared.marts.query = query  # the marts the state pages read first
        try:
            failed = _finish(prepared, state_query)
        finally:
            prepared.marts.query = None
    seconds = prepared.seconds + time.monotonic() - started
    out = prepared.out
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    plotly = (out / "assets" / "plotly.min.js").stat().st_size
    return BuildReport(out / "index.html", seconds, total, plotly, tuple(failed))
