"""Date windows for report-style sources (ad platforms): re-pull the settling days, chunk.

Ad statistics keep changing for a few days (Direct ~3, VK ~7, Google ~14, Meta up to 28), so
each run starts `settle_days` before the last date pulled; a long range is split into
chunks the API accepts in one report.
"""

from __future__ import annotations

from datetime import date, timedelta


def settling_range(
    cursor: str | None, start_date: date, until: date, settle_days: int
) -> tuple[date, date]:
    """(first, last) days a run pulls; the cursor is the last day pulled (ISO).
    first > last means there is nothing to pull."""
    if cursor:
        first = max(date.fromisoformat(cursor) - timedelta(days=settle_days - 1), start_date)
    else:
        first = start_date
    return first, until


def date_chunks(first: date, until: date, chunk_days: int) -> list[tuple[date, date]]:
    """Consecutive inclusive (from, to) windows of at most `chunk_days` days."""
    out = []
    while first <= until:
        last = min(first + timedelta(days=chunk_days - 1), until)
        out.append((first, last))
        first = last + timedelta(days=1)
    return out
