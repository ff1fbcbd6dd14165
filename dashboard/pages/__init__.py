"""The dashboard's pages: each module has `PAGE = PageSpec(...)` and `build(marts, lang)`.

The registry tolerates a page module that does not exist yet (or fails to import): the site
then shows a "not built yet" page for it instead of failing the whole build."""

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PageSpec:
    """A page's slug (file and script name) and its title in both languages."""

    slug: str
    title_ru: str
    title_en: str

    def title(self, lang: str) -> str:
        return self.title_ru if lang == "ru" else self.title_en

    @property
    def filename(self) -> str:
        """The overview is the site's index; every other page is `<slug>.html`."""
        return "index.html" if self.slug == "overview" else f"{self.slug}.html"


#: Page order in the navigation.
SLUGS = ("overview", "acquisition", "cohorts", "retention", "sales_formula", "funnel",
         "managers", "customers", "predictions")

#: Titles used while a page's module is missing (its owner's PageSpec wins once it lands).
FALLBACK_TITLES = {
    "overview": ("Обзор", "Overview"),
    "acquisition": ("Привлечение", "Acquisition"),
    "cohorts": ("Когорты", "Cohorts"),
    "retention": ("Удержание", "Retention"),
    "sales_formula": ("Формула продаж", "Sales formula"),
    "funnel": ("Воронка", "Funnel"),
    "managers": ("Менеджеры", "Managers"),
    "customers": ("Клиенты и аудитории", "Customers and audiences"),
    "predictions": ("Прогнозы", "Predictions"),
}


@dataclass(frozen=True)
class Page:
    """A registered page: its spec and its build function (None when the module is missing)."""

    spec: PageSpec
    build: Callable[[Any, str], dict] | None


def _load(slug: str) -> ModuleType | None:
    try:
        return importlib.import_module(f"dashboard.pages.{slug}")
    except ModuleNotFoundError as exc:
        if exc.name != f"dashboard.pages.{slug}":
            log.warning("dashboard page %s cannot be imported: %s", slug, exc)
        return None
    except Exception as exc:  # a page under construction must not break the others
        log.warning("dashboard page %s cannot be imported: %s", slug, exc)
        return None


def load_pages() -> list[Page]:
    """Every page in navigation order (imported now, so a module added later is picked up)."""
    pages = []
    for slug in SLUGS:
        module = _load(slug)
        spec = getattr(module, "PAGE", None)
        if module is None or not isinstance(spec, PageSpec):
            pages.append(Page(PageSpec(slug, *FALLBACK_TITLES[slug]), None))
        else:
            pages.append(Page(spec, getattr(module, "build", None)))
    return pages


#: The registry at import time (site.py calls `load_pages()` again, to see pages added since).
PAGES: list[Page] = load_pages()


__all__ = ["FALLBACK_TITLES", "PAGES", "SLUGS", "Page", "PageSpec", "load_pages"]
