"""Extended truth over customers: cohort x offset retention and LTV, CRR per month,
CAC per channel-month, funnel reach per stage, per-customer RFM inputs and due dates, manager
figures. Computed from the simulator's people, orders and lead paths (never from the marts).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from synthetic.business import _Simulator


def tables(sim: _Simulator) -> dict[str, pd.DataFrame]:
    """Truth tables by name (each a DataFrame sorted by its key columns)."""
    return {}
