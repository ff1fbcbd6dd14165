"""Shared test switches."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from _support import (
    MARTS_ALT_END,
    MARTS_ALT_SCALE,
    MARTS_ALT_SEED,
    MARTS_ALT_START,
    MARTS_SCALE,
    MARTS_SEED,
    MartsBuild,
    built_marts,
)

import synthetic

# dbt's debug-level file log (dbt_project/logs/dbt.log) is ~12 % of a build's CPU and no test
# reads it (failures carry dbt's stdout): the suite's dbt runs, in this process or a
# subprocess, skip it
os.environ.setdefault("DBT_LOG_LEVEL_FILE", "none")

POSTGRES_ON = os.environ.get("VORONKA_TEST_POSTGRES") == "1"
POSTGRES_SKIP_REASON = (
    "PostgreSQL tests are off: they need a server on 127.0.0.1:5432; "
    "set VORONKA_TEST_POSTGRES=1 (.ci/run does) to run them"
)
CHROMIUM = "/usr/bin/chromium"
BROWSER_ON = os.path.exists(CHROMIUM)
BROWSER_SKIP_REASON = (
    f"browser tests are off: they need Debian's chromium at {CHROMIUM} "
    "(apt-get install -y chromium; .ci/run installs it)"
)


# The longest units of work (an xdist group, or a test outside any group), longest first, as
# `--durations` measured them: xdist hands units out in collection order, and a long one handed
# out last leaves the other worker idle for as long (longest-processing-time-first order).
LONGEST_FIRST = (
    "tests/test_pipeline_e2e.py::test_demo_pipeline_on_duckdb_matches_ground_truth_and_reruns_"
    "idempotently",
    "marts_duckdb",
    "marts_alt",
    "module_test_publication",
    "marts_postgres",
    "module_test_sources_by_config",
    "tests/test_pipeline_e2e.py::test_demo_pipeline_on_postgres_matches_ground_truth",
    "tests/test_transform_state.py::test_a_shop_with_order_files_runs_then_skips_then_rebuilds_"
    "only_what_a_new_file_feeds",
    "module_test_fault_suite",
    "module_test_files_contract",
    "module_test_dbt_ad_spend",
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: needs headless chromium at /usr/bin/chromium")
    # xdist would reorder the units by their number of tests; LONGEST_FIRST orders them instead
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def _unit_of(item: pytest.Item) -> str:
    """The unit xdist's loadgroup hands out whole: the test's group, else the test itself."""
    marker = item.get_closest_marker("xdist_group")
    return marker.args[0] if marker else item.nodeid


def _longest_units_first(items: list[pytest.Item]) -> None:
    rank = {unit: i for i, unit in enumerate(LONGEST_FIRST)}
    position = {id(item): i for i, item in enumerate(items)}
    items.sort(key=lambda item: (rank.get(_unit_of(item), len(rank)), position[id(item)]))


def _uses_module_fixture(item: pytest.Item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    return any(d.scope == "module" for defs in info.name2fixturedefs.values() for d in defs)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        # under `pytest -n 3 --dist loadgroup` (make test) the tests of one backend's shared
        # marts build run on one worker, so each build happens once, not once per worker
        if "marts_alt" in getattr(item, "fixturenames", ()):
            # the second business has its own group: built once, beside the other builds (a
            # module may alias `marts` to it, as the dashboard tests do)
            item.add_marker(pytest.mark.xdist_group("marts_alt"))
        elif "marts" in getattr(item, "fixturenames", ()):
            backend = item.callspec.params.get("marts", "duckdb")
            item.add_marker(pytest.mark.xdist_group(f"marts_{backend}"))
        elif _uses_module_fixture(item):
            # a module-scoped fixture (an edge-case warehouse build, a whole run) is set up
            # once per worker that runs one of its tests: keep its tests on one worker
            item.add_marker(pytest.mark.xdist_group(f"module_{item.module.__name__}"))
    _longest_units_first(items)
    if not BROWSER_ON:
        skip_browser = pytest.mark.skip(reason=BROWSER_SKIP_REASON)
        for item in items:
            if "browser" in item.keywords:
                item.add_marker(skip_browser)
    if POSTGRES_ON:
        return
    skip = pytest.mark.skip(reason=POSTGRES_SKIP_REASON)
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """Under `--dist loadgroup` xdist must have put each group in the nodeid ("...@marts_duckdb"):
    pytest 9.2 made that a no-op (nodeid no longer reads `_nodeid`), and every worker then
    builds every shared warehouse, which blows the suite's time budget without failing."""
    # xdist's workers set option.loadgroup; without -n the option does not exist at all
    if not getattr(session.config.option, "loadgroup", False):
        return
    lost = [item.nodeid for item in session.items
            if item.get_closest_marker("xdist_group") and "@" not in item.nodeid]
    if lost:
        raise pytest.UsageError(
            f"xdist groups are not applied ({lost[0]} has none): use a pytest that pytest-xdist "
            "supports (requirements.lock pins it)")


BACKENDS = [
    "duckdb",
    pytest.param("postgres", marks=[pytest.mark.postgres]),
]


@pytest.fixture(scope="session")
def marts_business() -> synthetic.SyntheticBusiness:
    """The seeded synthetic business the shared marts build is landed from."""
    return synthetic.generate(seed=MARTS_SEED, scale=MARTS_SCALE)


@pytest.fixture(scope="session", params=BACKENDS)
def marts(request, tmp_path_factory, marts_business) -> Iterator[MartsBuild]:
    """The whole dbt project built once per backend over `marts_business`: the metric tests
    share it instead of each landing and building their own copy (the suite's time budget)."""
    workdir = tmp_path_factory.mktemp(f"marts_{request.param}")
    with built_marts(request.param, workdir, marts_business) as build:
        yield build


@pytest.fixture(scope="session")
def marts_alt_business() -> synthetic.SyntheticBusiness:
    """The second seeded business (another seed, scale and a mid-month as-of date)."""
    return synthetic.generate(seed=MARTS_ALT_SEED, scale=MARTS_ALT_SCALE,
                              start=MARTS_ALT_START, end=MARTS_ALT_END)


@pytest.fixture(scope="session")
def marts_alt(tmp_path_factory, marts_alt_business) -> Iterator[MartsBuild]:
    """`marts_alt`: the whole dbt project built ONCE, on DuckDB only, over
    `marts_alt_business` (seed 11, scale 0.15, as-of 2026-08-12; see _support.MARTS_ALT_*),
    shared by every test that runs its metric checks on a second business. Compare it with
    `marts_alt.business.ground_truth`, never with numbers of the first business. A test
    should use `marts` or `marts_alt`, not both (each has its own xdist group)."""
    workdir = tmp_path_factory.mktemp("marts_alt")
    with built_marts("duckdb", workdir, marts_alt_business) as build:
        yield build
