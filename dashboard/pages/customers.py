"""Customers and audiences page: who the customers are now and what the audiences hold.

Why this page: the marketer's morning questions after "how much did we sell" are "who is due
to buy again" and "did the audiences reach the ad platforms". The customer figures are a
snapshot of ``marts.dim_customers`` at the marts' as-of date (RFM scores, repurchase status);
nothing here reads the wall clock.

Audience state (segment sizes, sync runs) lives in the warehouse schema ``audiences``, which
publication does NOT copy (only ``marts`` is published). ``read_audience_state`` reads it
through any ``query`` callable (the WORKING warehouse's ``query_df``); the site builder merges
its frames into the marts under ``AUDIENCE_SEGMENTS`` / ``AUDIENCE_SYNCS``. Without them the
page says that audience state was not available instead of showing zeros.
"""

from collections.abc import Callable
from typing import Any

import pandas as pd

from dashboard.pages import PageSpec

PAGE = PageSpec("customers", "Клиенты и аудитории", "Customers and audiences")

AUDIENCE_SEGMENTS = "audience_segments"  # segment -> open members (membership_history)
AUDIENCE_SYNCS = "audience_syncs"  # one row per sync attempt (sync_runs), no message text
REPURCHASE_ORDER = ("due", "overdue", "lapsed", "upcoming", "none")

SEGMENTS_SQL = (
    "select segment, count(*) filter (where left_at is null) as members, "
    "max(greatest(entered_at, coalesce(left_at, entered_at))) as changed_at "
    "from audiences.membership_history group by segment"
)
SYNCS_SQL = (
    "select run_id, segment, platform, started_at, finished_at, status, added, removed, "
    "excluded, pending from audiences.sync_runs"
)


def read_audience_state(query: Callable[[str], pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The audience frames for ``build``, read with the working warehouse's ``query``.

    Empty when the ``audiences`` schema is missing (no segment was ever refreshed) or
    unreadable (e.g. the BI role): the page then says so. The sync message is not read: it
    may quote a platform's error text, and nothing but counts belongs on the page."""
    try:
        return {AUDIENCE_SEGMENTS: query(SEGMENTS_SQL), AUDIENCE_SYNCS: query(SYNCS_SQL)}
    except Exception:  # any backend error means "no audience state"
        return {}


def _frame(marts: Any, name: str) -> pd.DataFrame | None:
    """A frame of the marts by name, None when the mapping does not hold it (``Marts[name]``
    answers a missing name with an empty frame; ``get`` does not)."""
    return marts.get(name)


def _int(value: Any) -> int | None:
    return None if value is None or pd.isna(value) else int(value)


def _timestamp(value: Any) -> str | None:
    """Naive-UTC timestamp as text (the state tables store naive UTC)."""
    if value is None or pd.isna(value):
        return None
    return pd.Timestamp(value).strftime("%Y-%m-%d %H:%M UTC")


def _customers(marts: Any) -> pd.DataFrame:
    out = marts["dim_customers"].copy()  # an empty frame when the mart is missing
    out["channel"] = out["channel"].fillna("other").astype(str)
    out["repurchase_status"] = out["repurchase_status"].fillna("none").astype(str)
    out["revenue"] = pd.to_numeric(out["revenue"], errors="coerce").astype(float).fillna(0.0)
    return out


def rfm_cells(customers: pd.DataFrame) -> list[dict[str, Any]]:
    """Active customers and their revenue per (channel, R score, F score) with the segment
    name; the page sums over the selected channels."""
    active = customers[customers["recency_score"].notna() & customers["frequency_score"].notna()]
    active = active.assign(rfm_segment=active["rfm_segment"].fillna("—"))
    grouped = (active.groupby(["channel", "recency_score", "frequency_score", "rfm_segment"])
               .agg(customers=("revenue", "size"), revenue=("revenue", "sum")).reset_index())
    return [{"channel": r.channel, "recency_score": int(r.recency_score),
             "frequency_score": int(r.frequency_score), "rfm_segment": str(r.rfm_segment),
             "customers": int(r.customers), "revenue": float(r.revenue)}
            for r in grouped.sort_values(["channel", "recency_score", "frequency_score"])
            .itertuples()]


def rfm_segments(customers: pd.DataFrame) -> list[dict[str, Any]]:
    """Customers and revenue per (channel, rfm_segment), 'Churned' included."""
    grouped = (customers.assign(rfm_segment=customers["rfm_segment"].fillna("—"))
               .groupby(["channel", "rfm_segment"])
               .agg(customers=("revenue", "size"), revenue=("revenue", "sum")).reset_index())
    return [{"channel": r.channel, "rfm_segment": str(r.rfm_segment),
             "customers": int(r.customers), "revenue": float(r.revenue)}
            for r in grouped.sort_values(["channel", "rfm_segment"]).itertuples()]


def repurchase_counts(customers: pd.DataFrame) -> list[dict[str, Any]]:
    """Customers per (channel, repurchase status), and how many of them are contactable
    (the only ones any audience may include). 'none' = no expected next order."""
    frame = customers.assign(contactable=customers["is_contactable"].fillna(False).astype(bool))
    grouped = (frame.groupby(["channel", "repurchase_status"])
               .agg(customers=("contactable", "size"), contactable=("contactable", "sum"))
               .reset_index())
    rank = {s: i for i, s in enumerate(REPURCHASE_ORDER)}
    grouped["rank"] = grouped["repurchase_status"].map(lambda s: rank.get(s, len(rank)))
    return [{"channel": r.channel, "status": str(r.repurchase_status),
             "customers": int(r.customers), "contactable": int(r.contactable)}
            for r in grouped.sort_values(["rank", "channel"]).itertuples()]


def latest_syncs(syncs: pd.DataFrame) -> list[dict[str, Any]]:
    """Per (segment, platform): the latest attempt (as ``voronka run``'s summary shows it) and
    when it last succeeded or exported."""
    if syncs.empty:
        return []
    ordered = syncs.sort_values(["started_at", "run_id"])
    done = ordered[ordered["status"].isin(["success", "exported"])]
    last_done = done.groupby(["segment", "platform"])["finished_at"].max()
    rows = []
    for (segment, platform), runs in ordered.groupby(["segment", "platform"], sort=True):
        run = runs.iloc[-1]
        rows.append({"segment": str(segment), "platform": str(platform),
                     "status": str(run["status"]), "finished_at": _timestamp(run["finished_at"]),
                     "last_success_at": _timestamp(last_done.get((segment, platform))),
                     "added": _int(run["added"]), "removed": _int(run["removed"]),
                     "excluded": _int(run["excluded"]), "pending": _int(run["pending"]),
                     "attempts": len(runs)})
    return rows


def segment_sizes(segments: pd.DataFrame) -> list[dict[str, Any]]:
    """Open members per segment at its last refresh (contactable customers only)."""
    return [{"segment": str(r.segment), "members": int(r.members or 0),
             "changed_at": _timestamp(r.changed_at)}
            for r in segments.sort_values("segment").itertuples()]


def audiences(marts: Any) -> dict[str, Any]:
    """Segment sizes and latest syncs, or ``available: False`` without audience state."""
    segments, syncs = _frame(marts, AUDIENCE_SEGMENTS), _frame(marts, AUDIENCE_SYNCS)
    if segments is None or syncs is None:
        return {"available": False, "segments": [], "syncs": [], "platforms": []}
    latest = latest_syncs(syncs)
    return {"available": True, "segments": segment_sizes(segments), "syncs": latest,
            "platforms": sorted({r["platform"] for r in latest})}


def _as_of(marts: Any) -> str | None:
    value = getattr(marts, "as_of_date", None)
    return None if value is None or pd.isna(value) else str(pd.Timestamp(value).date())


def build(marts: Any, lang: str) -> dict[str, Any]:
    """The page payload: RFM grid, repurchase counts and audience state, as JSON-able
    records (the page filters by channel)."""
    customers = _customers(marts)
    return {
        "lang": lang,
        "as_of_date": _as_of(marts),
        "channels": sorted(customers["channel"].unique().tolist()),
        "customers_total": len(customers),
        "active_customers": int(customers["is_active"].fillna(False).astype(bool).sum()),
        "rfm": rfm_cells(customers),
        "rfm_segments": rfm_segments(customers),
        "repurchase": repurchase_counts(customers),
        "audiences": audiences(marts),
    }
