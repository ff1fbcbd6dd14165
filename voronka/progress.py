"""A live view of a run on the terminal: one line per finished step, a spinner for the rest.

The job runs in-process; Dagster calls ``RunProgress.on_event`` for every event of the run
(``DagsterInstance.add_event_listener``), so the display needs no polling and no thread of its
own besides rich's refresh. On a terminal the running steps spin below the finished ones; in a
log or CI (no terminal) only the finished lines are printed, plain.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Any

from rich.console import Console, Group
from rich.live import Live
from rich.spinner import Spinner
from rich.text import Text

# Metadata of a raw step worth a glance while the run goes on (counts, never values).
RAW_FIGURES = {"fetched": "fetched", "inserted": "new", "quarantined": "quarantined",
               "skipped": "skipped"}
FRIENDLY_STEPS = {
    "voronka_dbt_models": "dbt build (models, seeds, tests)",
    "published__marts": "publish marts for BI",
    "raw__contact_points": "contact points (phones, e-mails)",
    "customer_predictions": "customer predictions (BG/NBD + Gamma-Gamma fit)",
}


def step_label(step_key: str) -> str:
    """`raw__amocrm__leads` -> `raw amocrm__leads`; known steps by what they do."""
    if step_key in FRIENDLY_STEPS:
        return FRIENDLY_STEPS[step_key]
    head, _, rest = step_key.partition("__")
    return f"{head} {rest}" if rest else step_key


def _figures(metadata: dict[str, Any]) -> str:
    parts = []
    for name, label in RAW_FIGURES.items():
        value = getattr(metadata.get(name), "value", metadata.get(name))
        if value in (None, "") or (value == 0 and name != "inserted"):
            continue
        parts.append(f"{label} {value:,}" if isinstance(value, int) else f"{label}: {value}")
    return ", ".join(parts)


@dataclass
class RunProgress:
    """Collects a run's step events and renders them with rich."""

    console: Console
    started: dict[str, float] = field(default_factory=dict)
    figures: dict[str, str] = field(default_factory=dict)
    finished: int = 0
    failed: int = 0
    checks_passed: int = 0
    checks_failed: int = 0
    checks_warned: int = 0
    models_built: int = 0
    models_kept: int = 0  # a partial build: models no changed source feeds, not rebuilt
    transform_skipped: bool = False  # nothing new landed: dbt and what follows skipped
    skipped_nothing_new: int = 0
    materialized: set[str] = field(default_factory=set)
    checking: set[str] = field(default_factory=set)
    planned: dict[str, None] = field(default_factory=dict)  # asset keys in plan order
    live: Live | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)  # steps log from threads

    @classmethod
    def to_stream(cls, stream: IO[str]) -> RunProgress:
        return cls(Console(file=stream, highlight=False, soft_wrap=True))

    def __enter__(self) -> RunProgress:
        self.live = Live(self._status(), console=self.console, refresh_per_second=4,
                         transient=True, get_renderable=self._status)
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)
            self.live = None
        if self.skipped_nothing_new:
            self.console.print(Text.assemble(
                ("  skip", "yellow"), f"         {self.skipped_nothing_new} steps after dbt "
                "(checks, predictions, publication, audience syncs): nothing new to act on"))
        if self.failed and self.planned:
            # what a user cares about first: publication, then marts
            keys = sorted(self.planned, key=lambda k: (not k.startswith("published"),
                                                       not k.startswith("marts"), k))
            shown = ", ".join(keys[:4]) + (f" and {len(keys) - 4} more" if len(keys) > 4 else "")
            self.console.print(Text.assemble(
                ("  skip", "yellow"), f"         {len(keys)} assets not materialised because "
                f"a step they depend on failed: {shown}"))

    def on_event(self, entry: Any) -> None:
        """Dagster's event listener: must never raise into the run."""
        with contextlib.suppress(Exception), self.lock:  # a display problem must not fail a run
            self._handle(entry)

    def _handle(self, entry: Any) -> None:
        event = entry.get_dagster_event() if entry.is_dagster_event else None
        if event is None:
            return
        kind, step = event.event_type_value, event.step_key
        if kind == "ASSET_MATERIALIZATION_PLANNED":
            self.planned[event.asset_key.to_user_string()] = None
        elif kind == "STEP_START" and step:
            self.started[step] = time.monotonic()
        elif kind == "ASSET_MATERIALIZATION" and step:
            self._on_materialization(step, event)
        elif kind == "ASSET_CHECK_EVALUATION":
            if step:
                self.checking.add(step)
            self._on_check(event.event_specific_data)
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE", "STEP_SKIPPED") and step:
            self._finish(step, kind, event)

    def _on_check(self, evaluation: Any) -> None:
        """Failed checks show at once; a WARN one (records quarantined) as a warning."""
        self.checks_passed += evaluation.passed
        if evaluation.passed:
            return
        warn = getattr(evaluation.severity, "value", evaluation.severity) == "WARN"
        self.checks_warned += warn
        self.checks_failed += not warn
        mark = ("  warn", "yellow") if warn else ("  FAIL", "bold red")
        self.console.print(Text.assemble(
            mark, "         check ",
            f"{evaluation.asset_key.to_user_string()} :: {evaluation.check_name}"))

    def _on_materialization(self, step: str, event: Any) -> None:
        self.materialized.add(step)
        self.planned.pop(event.asset_key.to_user_string(), None)
        if step == "voronka_dbt_models":
            rebuilt = (event.event_specific_data.materialization.metadata or {}).get("rebuilt")
            if getattr(rebuilt, "value", rebuilt) is False:
                self.models_kept += 1
            else:
                self.models_built += 1
            return
        materialization = event.event_specific_data.materialization
        figures = _figures(dict(materialization.metadata or {}))
        if figures:
            self.figures[step] = figures

    def _finish(self, step: str, kind: str, event: Any) -> None:
        began = self.started.pop(step, None)
        took = f"{time.monotonic() - began:5.1f} s" if began is not None else "      "
        label = step_label(step)
        if kind == "STEP_SUCCESS" and step in self.checking and step not in self.materialized:
            self.finished += 1  # a check-only step: counted in the status line, failures shown
            return
        if kind == "STEP_SKIPPED" and self.transform_skipped:
            self.skipped_nothing_new += 1  # told once, at the end
            return
        if kind == "STEP_SUCCESS" and step == "voronka_dbt_models" and not (
                self.models_built or self.models_kept):
            self.transform_skipped = True
            self.finished += 1
            self.console.print(Text.assemble(
                ("  ok  ", "green"), f"{took}  {label}",
                (": skipped, nothing new landed since the last successful build", "dim")))
            return
        if kind == "STEP_SUCCESS":
            self.finished += 1
            extra = self.figures.get(step) or (
                self._models_note() if step == "voronka_dbt_models" else "")
            line = Text.assemble(("  ok  ", "green"), f"{took}  {label}",
                                 (f"  ({extra})" if extra else "", "dim"))
        elif kind == "STEP_FAILURE":
            self.failed += 1
            line = Text.assemble(("  FAIL", "bold red"), f" {took}  {label}: ",
                                 (_root_message(event), "red"))
        else:
            line = Text.assemble(("  skip", "yellow"), f"         {label} (upstream failed)")
        self.console.print(line)

    def _models_note(self) -> str:
        kept = f", {self.models_kept} unchanged, not rebuilt" if self.models_kept else ""
        return f"{self.models_built} models{kept}"

    def _status(self) -> Group:
        now = time.monotonic()
        running = [f"{step_label(s)} {now - t:.0f} s" for s, t in list(self.started.items())]
        counts = (f"{self.finished} steps done, {self.failed} failed; checks "
                  f"{self.checks_passed} passed, {self.checks_failed} failed, "
                  f"{self.checks_warned} warnings")
        if "voronka_dbt_models" in self.started:
            counts += f"; dbt: {self.models_built} models built"
        text = "running: " + (", ".join(running) if running else "(between steps)")
        return Group(Spinner("dots", text=Text(text)), Text(f"  {counts}", style="dim"))


def _root_message(event: Any) -> str:
    """The first line of the root-cause error (not Dagster's wrapper)."""
    error = getattr(event.event_specific_data, "error", None)
    while error is not None and error.cause is not None:
        error = error.cause
    return error.message.strip().splitlines()[0] if error else "unknown error"
