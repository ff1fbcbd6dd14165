"""The one Great Expectations 1.x runtime of the process, built lazily and reused.

Importing GX costs seconds, so nothing in `expectations` imports it at module level: the Dagster
code location can import this package cheaply, and the first validation pays the import once.
One ephemeral context holds one pandas data source with one whole-dataframe batch definition;
each suite becomes a `ValidationDefinition` the first time it is used and is cached by name.

GX is not used through SQLAlchemy: with duckdb-engine its SQL engine fetches after the
connection is closed and every expectation comes back empty. Frames are read with
`Warehouse.query_df` and validated in pandas, which works the same for DuckDB and PostgreSQL.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

_lock = threading.RLock()
_runtime: _Runtime | None = None

#: Seconds spent importing GX and creating the context (filled on first use).
TIMINGS: dict[str, float] = {}


class _Runtime:
    def __init__(self) -> None:
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
        t0 = time.perf_counter()
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        t1 = time.perf_counter()
        self.gx = gx
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        source = self.context.data_sources.add_pandas("voronka_frames")
        asset = source.add_dataframe_asset("frame")
        self.batch_definition = asset.add_batch_definition_whole_dataframe("whole_frame")
        self.definitions: dict[str, Any] = {}
        t2 = time.perf_counter()
        TIMINGS["import_s"] = round(t1 - t0, 3)
        TIMINGS["context_s"] = round(t2 - t1, 3)

    def definition(self, name: str, build: Callable[[], Sequence[Any]]) -> Any:
        vd = self.definitions.get(name)
        if vd is None:
            gx = self.gx
            suite = self.context.suites.add(gx.ExpectationSuite(name=name))
            for expectation in build():
                suite.add_expectation(expectation)
            vd = self.context.validation_definitions.add(
                gx.ValidationDefinition(data=self.batch_definition, suite=suite, name=name)
            )
            self.definitions[name] = vd
        return vd


def gx_runtime() -> _Runtime:
    global _runtime
    with _lock:
        if _runtime is None:
            _runtime = _Runtime()
        return _runtime


def expectations_module() -> Any:
    """`great_expectations.expectations`, imported on first use."""
    return gx_runtime().gx.expectations


def run_suite(
    name: str, build: Callable[[], Sequence[Any]], df: pd.DataFrame, result_format: str
) -> Any:
    """Validate `df` against the cached suite `name`; return GX's suite validation result."""
    with _lock:
        vd = gx_runtime().definition(name, build)
        t0 = time.perf_counter()
        result = vd.run(
            batch_parameters={"dataframe": df}, result_format={"result_format": result_format}
        )
        elapsed = round(time.perf_counter() - t0, 3)
        TIMINGS.setdefault("first_validation_s", elapsed)
        TIMINGS["last_validation_s"] = elapsed
        return result


def exception_message(result: Any) -> str | None:
    """The exception GX caught while evaluating one expectation, if any."""
    info = result.exception_info or {}
    if info.get("raised_exception"):
        return str(info.get("exception_message"))
    for value in info.values():  # keyed by metric id when a metric failed
        if isinstance(value, dict) and value.get("raised_exception"):
            return str(value.get("exception_message"))
    return None
