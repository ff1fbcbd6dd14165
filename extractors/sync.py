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

Validator = Callable[[list[RawRecord]], tuple[list[RawRecord], list[QuarantinedRecord]]]


class Source(Protocol):
    name: str  # "amocrm" | "yandex_direct"
    account: str
    ENTITIES: Sequence[str]

    def pages(self, entity: str, cursor: str | None) -> Iterator[Page]: ...


class LandingWarehouse(Protocol):
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


def sync_entity(
    source: Source,
    entity: str,
    warehouse: LandingWarehouse,
    *,
    run_id: str,
    validate: Validator | None = None,
) -> SyncResult:
    """Pull one entity from its stored cursor and land it; advance the cursor at the very end."""
    cursor_before = warehouse.get_cursor(source.name, source.account, entity)
    cursor_after = cursor_before
    pages = fetched = inserted = duplicates = quarantined = 0
    for page in source.pages(entity, cursor_before):
        pages += 1
        fetched += len(page.records)
        good, bad = (validate(list(page.records)) if validate else (list(page.records), []))
        if len(good) + len(bad) != len(page.records):
            raise ValueError(
                f"validator returned {len(good)} good + {len(bad)} bad records for a page of "
                f"{len(page.records)}; every record must be landed or quarantined"
            )
        if bad:
            quarantined += warehouse.quarantine(bad, run_id)
        if good:
            result = warehouse.land(good, run_id)
            inserted += result.inserted
            duplicates += result.duplicates
        if page.cursor_after is not None:
            cursor_after = page.cursor_after
        log.debug("%s %s %s page %s landed: %d good, %d quarantined",
                  source.name, source.account, entity, page.meta.get("page", pages),
                  len(good), len(bad))
    if cursor_after is not None and cursor_after != cursor_before:
        warehouse.set_cursor(source.name, source.account, entity, cursor_after)
    result = SyncResult(entity, pages, fetched, inserted, duplicates, quarantined,
                        cursor_before, cursor_after)
    log.info("%s %s %s synced: %d pages, %d fetched, %d inserted, %d duplicates, "
             "%d quarantined, cursor %s -> %s", source.name, source.account, entity, pages,
             fetched, inserted, duplicates, quarantined, cursor_before, cursor_after)
    return result
