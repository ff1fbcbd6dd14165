"""Shared test switches."""

from __future__ import annotations

import os

import pytest

POSTGRES_ON = os.environ.get("VORONKA_TEST_POSTGRES") == "1"
POSTGRES_SKIP_REASON = (
    "PostgreSQL tests are off: they need a server on 127.0.0.1:5432; "
    "set VORONKA_TEST_POSTGRES=1 (.ci/run does) to run them"
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if POSTGRES_ON:
        return
    skip = pytest.mark.skip(reason=POSTGRES_SKIP_REASON)
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)
