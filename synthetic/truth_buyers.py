"""Extended truth of the amoCRM buyer funnel («Покупатели»): buyers per status per month,
moves between statuses, expected vs actual purchases, overdue buyers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from synthetic.business import _Simulator


def tables(sim: _Simulator) -> dict[str, pd.DataFrame]:
    """Truth tables by name (each a DataFrame sorted by its key columns)."""
    return {}
