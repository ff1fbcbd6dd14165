"""Helpers shared by the extractor test modules (imported as `_support`; tests/ is on the path)."""

from __future__ import annotations

import threading
from datetime import date, timedelta
from decimal import Decimal


class RecordingSleep:
    """Injected into the HTTP layer: records the waits asked for; really waits at most `cap`."""

    def __init__(self, cap: float = 0.0) -> None:
        self.calls: list[float] = []
        self.cap = cap

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        if self.cap > 0:
            threading.Event().wait(min(seconds, self.cap))


def daily_campaign_rows(
    start: date, days: int, campaigns: dict, *, impressions: int = 1000, clicks: int = 50,
    money_key: str = "cost", money: Decimal = Decimal("4312.50"),
) -> list[dict]:
    """One emulator row per day and campaign, with small deterministic variations."""
    rows = []
    for d in range(days):
        for n, (cid, name) in enumerate(campaigns.items()):
            rows.append({"date": (start + timedelta(days=d)).isoformat(), "campaign_id": cid,
                         "campaign_name": name, "impressions": impressions + 10 * d + n,
                         "clicks": clicks + d + n, money_key: money + d + n})
    return rows
