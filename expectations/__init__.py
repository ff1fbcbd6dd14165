"""Great Expectations 1.x suites over pandas frames: raw batches before landing, marts after dbt.

Importing this package is cheap; GX itself is imported (once per process, a few seconds) on
the first validation, and its context and suites are cached for the life of the process.
"""

from expectations._gx import TIMINGS as GX_TIMINGS
from expectations._gx import warm_up_in_background
from expectations.marts import (
    MART_COLUMNS,
    MART_SUITES,
    validate_mart,
    validate_orders_belong_to_customers,
)
from expectations.raw import RAW_SUITES, validate_records
from expectations.reconcile import reconcile_frames, reconcile_revenue
from expectations.results import BatchValidation, MartValidation

__all__ = [
    "GX_TIMINGS",
    "MART_COLUMNS",
    "MART_SUITES",
    "RAW_SUITES",
    "BatchValidation",
    "MartValidation",
    "reconcile_frames",
    "reconcile_revenue",
    "validate_mart",
    "validate_orders_belong_to_customers",
    "validate_records",
    "warm_up_in_background",
]
