"""The incremental loop every source shares: pages → validate → quarantine/land → cursor.

The cursor is written only after the last page has landed. A run that dies between pages leaves
the old cursor in place; the next run re-pulls from it and idempotent landing (by account,
record_id, payload hash) turns the re-pulled rows into no-ops: nothing lost, nothing doubled.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from extractors.http import Page
from warehouse.records import QuarantinedRecord, RawRecord

log = logging.getLogger("voronka.extractors")

DEFAULT_BATCH_RECORDS = 2500

Validator = Callable[[list[RawRecord]], tuple[list[RawRecord], list[QuarantinedRecord]]]


class Source(Protocol):
    name: str  # "amocrm" | "yandex_direct"
    account: str
    ENTITIES: Sequence[str]

    def pages(self, entity: str, cursor: str | None) -> Iterator[Page]: ...


class LandingWarehouse(Protocol):
    def already_landed(self, records: list[RawRecord]) -> set[int]: ...
    def land(self, records: list[RawRecord], run_id: str) -> Any: ...
    def quarantine(self, items: list[QuarantinedRecord], run_id: str) -> int: ...
    def get_cursor(self, source: str, account: str, entity: str) -> str | None: ...
    def set_cursor(self, source: str, account: str, entity: str, value: str) -> None: ...


@dataclass(frozen=True)
class SyncResult:
    entity: str
    pages: int
    fetched: int
    inserted: int
    duplicates: int
    quarantined: int
    cursor_before: str | None
    cursor_after: str | None
    # why the source landed nothing of this entity (a feature the account does not have,
    # an empty collection), as the source said it in a page's meta["skipped"]
    skipped: str | None = None


@dataclass
class _Tally:
    inserted: int = 0
    duplicates: int = 0
    quarantined: int = 0


def _validate_and_land(
    records: list[RawRecord], warehouse: LandingWarehouse, run_id: str,
    validate: Validator | None, tally: _Tally,
) -> None:
    """Quarantine what the validator rejects, land the rest. Records landed before with the
    same payload are counted as duplicates first, unvalidated: they passed when they landed,
    and a re-run re-pulls many (settling windows, cursor overlaps) to change nothing."""
    unchanged = warehouse.already_landed(records)
    if unchanged:
        tally.duplicates += len(unchanged)
        records = [r for i, r in enumerate(records) if i not in unchanged]
    if not records:
        return
    good, bad = validate(records) if validate else (records, [])
    if len(good) + len(bad) != len(records):
        raise ValueError(
            f"validator returned {len(good)} good + {len(bad)} bad records for a batch of "
            f"{len(records)}; every record must be landed or quarantined"
        )
    if bad:
        tally.quarantined += warehouse.quarantine(bad, run_id)
    if good:
        landed = warehouse.land(good, run_id)
        tally.inserted += landed.inserted
        tally.duplicates += landed.duplicates


def sync_entity(
    source: Source,
    entity: str,
    warehouse: LandingWarehouse,
    *,
    run_id: str,
    validate: Validator | None = None,
    batch_records: int = DEFAULT_BATCH_RECORDS,
) -> SyncResult:
    """Pull one entity from its stored cursor and land it; advance the cursor at the very end.

    Pages are validated and landed in batches of about `batch_records`: one GX validation and
    one warehouse transaction per batch rather than per 100-row page keeps the run bound by
    the API's rate limit, not by our own overhead. A crash loses at most the unlanded batch,
    which the next run re-pulls because the cursor has not moved.
    """
    cursor_before = warehouse.get_cursor(source.name, source.account, entity)
    cursor_after = cursor_before
    pages = fetched = 0
    tally = _Tally()
    pending: list[RawRecord] = []
    skipped: str | None = None
    for page in source.pages(entity, cursor_before):
        if page.meta.get("skipped"):  # a note from the source, not a page of data
            skipped = str(page.meta["skipped"])
            continue
        pages += 1
        fetched += len(page.records)
        pending.extend(page.records)
        if len(pending) >= batch_records:
            _validate_and_land(pending, warehouse, run_id, validate, tally)
            pending = []
        if page.cursor_after is not None:
            cursor_after = page.cursor_after
        log.debug("%s %s %s page %s fetched: %d records", source.name, source.account, entity,
                  page.meta.get("page", pages), len(page.records))
    if pending:
        _validate_and_land(pending, warehouse, run_id, validate, tally)
    if cursor_after is not None and cursor_after != cursor_before:
        warehouse.set_cursor(source.name, source.account, entity, cursor_after)
    inserted, duplicates, quarantined = tally.inserted, tally.duplicates, tally.quarantined
    result = SyncResult(entity, pages, fetched, inserted, duplicates, quarantined,
                        cursor_before, cursor_after, skipped)
    log.info("%s %s %s synced: %d pages, %d fetched, %d inserted, %d duplicates, "
             "%d quarantined, cursor %s -> %s", source.name, source.account, entity, pages,
             fetched, inserted, duplicates, quarantined, cursor_before, cursor_after)
    return result
