"""Extended truth of acquisition vs repeat leads: acquisition leads per channel (and campaign)
per month, and the CPL / Cv inputs built on them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from synthetic.business import _Simulator


def tables(sim: _Simulator) -> dict[str, pd.DataFrame]:
    """Truth tables by name (each a DataFrame sorted by its key columns)."""
    return {}
