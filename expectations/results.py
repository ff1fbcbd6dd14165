"""What validation hands back to the landing code and to the Dagster asset checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from warehouse.records import QuarantinedRecord, RawRecord


@dataclass
class BatchValidation:
    """A raw batch split into records to land and records to quarantine.

    `results` has one dict per expectation (plus one for payloads that could not be
    flattened): suite, expectation, field, column, success, unexpected_count (records),
    records (a sample of failing record ids).
    """

    good: list[RawRecord] = field(default_factory=list)
    quarantined: list[QuarantinedRecord] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return not self.quarantined


@dataclass
class MartValidation:
    """The verdict on one mart (or on a reconciliation), shaped for `AssetCheckResult`.

    Each failure is {expectation, column, unexpected_count, sample, message}; `statistics`
    holds GX's counts (evaluated/successful/unsuccessful expectations, success_percent) and
    row_count, or the reconciliation totals.
    """

    passed: bool
    failures: list[dict[str, Any]] = field(default_factory=list)
    statistics: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        if self.passed:
            return "passed"
        return "; ".join(f.get("message") or f["expectation"] for f in self.failures)
