"""voronka's dashboard: a static site built from the published marts (`voronka dashboard`)."""

from typing import Any


def __getattr__(name: str) -> Any:
    """`dashboard.build_dashboard` without importing the site (and every page) on import."""
    if name == "build_dashboard":
        from dashboard.site import build_dashboard

        return build_dashboard
    raise AttributeError(name)
