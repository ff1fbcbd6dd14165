"""Great Expectations 1.x suites over pandas frames: raw batches before landing, and the marts
dbt does not build. dbt checks its own marts (tests and contract; `mart_columns` reads the
contract back).

Importing this package is cheap; GX itself is imported (once per process, ~2 s) on the first
validation, and its context and suites are cached for the life of the process. Not before: a
run whose pulls bring only records landed before validates nothing (a re-run with nothing new
spent a quarter of its time importing GX), and a cold run's first validation comes seconds
into its extraction, which waits on the APIs' rate limits meanwhile.
"""

from expectations._gx import TIMINGS as GX_TIMINGS
from expectations.contract import mart_columns, mart_contract
from expectations.marts import MART_SUITES, PYTHON_MART_SUITES, validate_mart
from expectations.raw import RAW_SUITES, validate_records
from expectations.reconcile import reconcile_frames, reconcile_revenue
from expectations.results import BatchValidation, MartValidation

__all__ = [
    "GX_TIMINGS",
    "MART_SUITES",
    "PYTHON_MART_SUITES",
    "RAW_SUITES",
    "BatchValidation",
    "MartValidation",
    "mart_columns",
    "mart_contract",
    "reconcile_frames",
    "reconcile_revenue",
    "validate_mart",
    "validate_records",
]
