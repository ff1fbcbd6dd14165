"""Shared test switches."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from _support import MARTS_SCALE, MARTS_SEED, MartsBuild, built_marts

import synthetic

POSTGRES_ON = os.environ.get("VORONKA_TEST_POSTGRES") == "1"
POSTGRES_SKIP_REASON = (
    "PostgreSQL tests are off: they need a server on 127.0.0.1:5432; "
    "set VORONKA_TEST_POSTGRES=1 (.ci/run does) to run them"
)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        # under `pytest -n 2 --dist loadgroup` (make test) the tests of one backend's shared
        # marts build run on one worker, so each build happens once, not once per worker
        if "marts" in getattr(item, "fixturenames", ()):
            backend = item.callspec.params.get("marts", "duckdb")
            item.add_marker(pytest.mark.xdist_group(f"marts_{backend}"))
    if POSTGRES_ON:
        return
    skip = pytest.mark.skip(reason=POSTGRES_SKIP_REASON)
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


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
