"""Record types that cross the boundary between extractors, validation and landing."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any


def canonical_json(payload: Any) -> str:
    """Serialise a payload the same way every time, so equal payloads hash equal."""
    return json.dumps(
        payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str
    )


def payload_hash(payload: Any) -> str:
    """Content hash of a payload: the landing key that makes re-landing a page a no-op."""
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class RawRecord:
    """One record exactly as the source API returned it, plus where it came from."""

    source: str  # "amocrm" | "yandex_direct"
    account: str  # amoCRM subdomain, Direct client login
    entity: str  # "leads", "contacts", ..., "campaign_stats"
    record_id: str  # the source's id (stringified); for report rows a natural key
    payload: dict[str, Any]
    updated_at: datetime | None = None  # the source's modification time, UTC, naive

    @property
    def table(self) -> str:
        return raw_table_name(self.source, self.entity)

    @cached_property
    def hash(self) -> str:
        """The payload's hash, computed once: validation, the landed-before lookup and
        landing all key on it (a canonical JSON dump and a SHA-256 per record each time)."""
        return payload_hash(self.payload)


@dataclass(frozen=True)
class QuarantinedRecord:
    """A record that failed validation, kept with the reason instead of being dropped."""

    record: RawRecord
    reason: str  # names the failed field(s) and expectation(s)
    failed_fields: tuple[str, ...] = field(default_factory=tuple)


def raw_table_name(source: str, entity: str) -> str:
    """Raw tables are named `<source>__<entity>` in the `raw` schema."""
    return f"{source}__{entity}"
