"""Customers -> their normalised identifiers, read from ``intermediate.int_customer_identifiers``.

Phones are E.164 with '+' and e-mails trimmed + lower-cased, normalised once in the warehouse
(warehouse/contact_points.py). Platform transforms and hashes are applied later, at export
time (``audiences.destinations``); this module only reads.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from warehouse.base import Warehouse

IDENTIFIERS_TABLE = "intermediate.int_customer_identifiers"
IDENTIFIER_COLUMNS = ["customer_id", "kind", "value"]
_CHUNK = 1_000  # customer ids per query (bound parameters)


def customer_identifiers(wh: Warehouse, customer_ids: Sequence[str]) -> pd.DataFrame:
    """The normalised phones and e-mails of ``customer_ids``: columns customer_id, kind
    ('phone' | 'email') and value, ordered by customer_id, kind, value. Ids are bound as
    query parameters (never formatted into the SQL); a customer without identifiers has no
    row."""
    ids = list(dict.fromkeys(str(c) for c in customer_ids))
    frames = []
    with wh.connect() as conn:
        cur = conn.cursor()
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start:start + _CHUNK]
            cur.execute(
                f"select customer_id, kind, value_normalized from {IDENTIFIERS_TABLE} "
                f"where customer_id in ({wh._marks(len(chunk))})",
                chunk,
            )
            frames.append(pd.DataFrame(cur.fetchall(), columns=IDENTIFIER_COLUMNS))
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in IDENTIFIER_COLUMNS})
    frame = pd.concat(frames, ignore_index=True)
    return frame.sort_values(IDENTIFIER_COLUMNS, kind="stable").reset_index(drop=True)
