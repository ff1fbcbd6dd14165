"""The short report printed after a run: rows, checks, where the data is, what to do next."""

from __future__ import annotations

import contextlib
import sys
import threading
from typing import Any

import dagster as dg
import pandas as pd

from voronka import settings

QUERY_EXAMPLE = (
    "select month, channel, spend, new_customers, cac from marts.fct_acquisition_monthly "
    "where channel = 'all' order by month desc limit 6"
)


def _table(title: str, counts: dict[str, int]) -> list[str]:
    width = max((len(n) for n in counts), default=10)
    lines = [title]
    lines += [f"  {name:<{width}}  {count:>8,}" for name, count in sorted(counts.items())]
    return lines


def check_lines(result: dg.ExecuteInProcessResult) -> tuple[int, list[str]]:
    """Count passed checks; describe each failed one (check name, asset, why). A failed WARN
    check (records quarantined, the rest landed) is a warning, not a failure."""
    evaluations = result.get_asset_check_evaluations()
    failed = [e for e in evaluations if not e.passed]
    errors = [e for e in failed if e.severity != dg.AssetCheckSeverity.WARN]
    lines = [f"Checks: {len(evaluations) - len(failed)} passed, {len(errors)} failed, "
             f"{len(failed) - len(errors)} warnings "
             "(dbt tests and Great Expectations suites, as Dagster asset checks)"]
    for e in failed:
        meta = {k: getattr(v, "value", v) for k, v in (e.metadata or {}).items()}
        detail = meta.get("failures") or meta.get("reasons") or meta
        label = "WARNING" if e.severity == dg.AssetCheckSeverity.WARN else "FAILED"
        lines.append(f"  {label} {e.asset_key.to_user_string()} :: {e.check_name}: {detail}")
    return len(errors), lines


def step_failure_lines(result: dg.ExecuteInProcessResult) -> list[str]:
    """Each failed step with the first line of its root-cause error (not Dagster's wrapper)."""
    lines = []
    for event in result.get_step_failure_events():
        error = event.step_failure_data.error
        while error is not None and error.cause is not None:
            error = error.cause
        message = error.message.strip().splitlines()[0] if error else "unknown error"
        lines.append(f"  FAILED step {event.step_key}: {message}")
    return lines


def skipped_entity_lines(result: dg.ExecuteInProcessResult) -> list[str]:
    """Source entities the account does not have or has switched off (402/422/204 answers),
    with the reason, so a user sees why a raw table is empty or missing."""
    lines = []
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        reason = (materialization.metadata or {}).get("skipped")
        if reason is not None:
            lines.append(f"  {materialization.asset_key.to_user_string()}: "
                         f"{getattr(reason, 'value', reason)}")
    return ["Skipped source entities (the run went on without them):", *lines, ""] \
        if lines else []


def audience_lines(wh: Any) -> list[str]:
    """The latest sync of each segment to each platform: status and customers added/removed
    (counts only, never an identifier)."""
    from audiences.state import sync_runs

    latest: dict[str, dict[str, dict[str, Any]]] = {}
    for run in sync_runs(wh):
        latest.setdefault(run["segment"], {})[run["platform"]] = run
    if not latest:
        return []
    width = max(len(name) for name in latest)
    lines = ["Audiences (latest sync per platform; `voronka audiences list` for members):"]
    for segment, runs in sorted(latest.items()):
        parts = []
        for platform, run in sorted(runs.items()):
            if run["status"] == "skipped":
                parts.append(f"{platform} skipped (below minimum)")
            else:
                parts.append(f"{platform} {run['status']} +{run['added']} -{run['removed']}")
        lines.append(f"  {segment.ljust(width)}  {' | '.join(parts)}")
    return [*lines, ""]


ACTIVATION_PLATFORMS = {"amocrm": "tag", "bitrix24": "field", "unisender": "list"}


def activation_lines(wh: Any) -> list[str]:
    """Per segment and CRM / e-mail destination: the tag, field or list, how many customers
    carry it now, and the tasks and deals created on entry (counts only)."""
    from audiences.state import DESTINATIONS, SYNCED, actions, ensure_state

    with wh.connect() as conn:
        ensure_state(wh, conn)
        cur = conn.cursor()
        cur.execute(f"select d.segment, d.platform, d.audience_id, count(s.customer_id) "
                    f"from {DESTINATIONS} d left join {SYNCED} s on s.segment = d.segment "
                    f"and s.platform = d.platform and s.audience_id = d.audience_id "
                    f"group by d.segment, d.platform, d.audience_id")
        marks = {(str(seg), str(pl)): (str(aid), int(n)) for seg, pl, aid, n in cur.fetchall()
                 if str(pl) in ACTIVATION_PLATFORMS}
    made: dict[tuple[str, str], dict[str, int]] = {}
    for action in actions(wh):
        key = (action["segment"], action["platform"])
        status = action["action_kind"] if action["status"] == "created" else action["status"]
        made.setdefault(key, {}).setdefault(status, 0)
        made[key][status] += 1
    if not marks and not made:
        return []
    by_segment: dict[str, list[str]] = {}
    for segment, platform in sorted(set(marks) | set(made)):
        aid, members = marks.get((segment, platform), ("-", 0))
        counts = made.get((segment, platform), {})
        text = f"{platform}: {ACTIVATION_PLATFORMS[platform]} {aid} on {members} customers"
        for kind in ("task", "deal", "failed", "pending"):
            if counts.get(kind):
                text += f", {counts[kind]} {kind}{'s' if kind in ('task', 'deal') else ''}"
        by_segment.setdefault(segment, []).append(text)
    width = max(len(name) for name in by_segment)
    lines = ["CRM and e-mail activation (tags/fields on contacts, tasks and deals on entry, "
             "e-mail/SMS lists):"]
    lines += [f"  {segment.ljust(width)}  {' | '.join(parts)}"
              for segment, parts in sorted(by_segment.items())]
    return [*lines, ""]


BUYER_FUNNEL_QUERY = (
    "select month, period_end, status_name, status_sort, buyers_at_month_end, "
    "purchases_expected, purchases_made, buyers_overdue_at_month_end "
    "from marts.fct_buyer_funnel_monthly "
    "where month = (select max(month) from marts.fct_buyer_funnel_monthly) "
    "order by account, status_sort"
)


def buyer_funnel_lines(wh: Any) -> list[str]:
    """The amoCRM buyer funnel at the as-of month's end: buyers per status, purchases expected
    vs made this month, overdue buyers; nothing when the account has no buyer funnel."""
    try:
        frame = wh.query_df(BUYER_FUNNEL_QUERY)
    except Exception:  # no marts yet, or a build without the buyer funnel
        return []
    if frame.empty:
        return []
    month = str(frame["month"].iloc[0])[:7]
    period_end = str(frame["period_end"].iloc[0])[:10]
    totals = frame.groupby(["status_sort", "status_name"], sort=True)[
        ["buyers_at_month_end", "purchases_expected", "purchases_made",
         "buyers_overdue_at_month_end"]].sum()
    width = max(len(name) for _sort, name in totals.index)
    lines = [f"Buyer funnel (amoCRM «Покупатели»), {month} up to {period_end}: "
             "buyers per status (marts.fct_buyer_funnel_monthly):"]
    lines += [f"  {name.ljust(width)}  {int(row.buyers_at_month_end):>6,}"
              for (_sort, name), row in totals.iterrows()]
    lines.append(f"  purchases this month: {int(totals.purchases_expected.sum()):,} expected, "
                 f"{int(totals.purchases_made.sum()):,} made; overdue buyers: "
                 f"{int(totals.buyers_overdue_at_month_end.sum()):,}")
    return [*lines, ""]


PREDICTIONS_TITLE = "Customer predictions (BG/NBD + Gamma-Gamma)"


def _num(value: Any) -> str:
    """A fitted parameter, short: 4 significant digits, thousands without an exponent."""
    value = float(value)
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def _existing(wh: Any, model: str) -> str | None:
    """The latest build of a mart (marts / marts_build), None when it was never written."""
    table = wh.mart_table(model)
    schema, name = table.split(".")
    return table if name in wh.list_tables(schema) else None


def prediction_lines(wh: Any) -> list[str]:
    """The customer-prediction fit of the latest build (marts.fct_clv_model_fit): status,
    parameters, log-likelihoods, the holdout check and how many customers have predictions;
    the reason when the models do not fit. Nothing before a first fit."""
    from predictions.tables import FIT_MODEL, PREDICTIONS_MODEL

    fit_relation = _existing(wh, FIT_MODEL)
    if fit_relation is None:
        return []
    fit = wh.query_df(f"select * from {fit_relation}")
    total = fit[fit["group_name"] == "total"]
    if total.empty:
        return []
    row = total.iloc[0]
    as_of = str(row["fit_date"])[:10]
    published = row["status"] == "ok"
    head = (f"{PREDICTIONS_TITLE}, orders up to {as_of}: "
            + ("ok" if published else f"NOT PUBLISHED ({row['status']})"))
    lines = [f"{head} (marts.{FIT_MODEL}):"]
    if not published:
        lines.append(f"  {row['message']}")
    if pd.notna(row["bgnbd_r"]):
        lines.append("  BG/NBD       " + "  ".join(
            f"{name}={_num(row['bgnbd_' + name])}" for name in ("r", "alpha", "a", "b"))
            + f"  (alpha in weeks)  log-likelihood {float(row['bgnbd_log_likelihood']):,.1f}")
    if pd.notna(row["gg_p"]):
        lines.append("  Gamma-Gamma  " + "  ".join(
            f"{name}={_num(row['gg_' + name])}" for name in ("p", "q", "v"))
            + f"  log-likelihood {float(row['gg_log_likelihood']):,.1f}")
    if pd.notna(row["holdout_error"]):
        lines.append(
            f"  holdout, last {int(row['holdout_weeks'])} weeks: error "
            f"{float(row['holdout_error']):.1%} (bound {float(row['max_holdout_error']):.0%}); "
            f"repeat purchases {float(row['predicted_repeat_purchases']):,.0f} predicted, "
            f"{float(row['actual_repeat_purchases']):,.0f} actual")
    lines.append(f"  {_predictions_line(wh, PREDICTIONS_MODEL, published)}")
    return [*lines, ""]


def _predictions_line(wh: Any, model: str, published: bool) -> str:
    relation = _existing(wh, model)
    frame = (wh.query_df(f"select count(*) as n, max(fit_date) as fit_date from {relation}")
             if relation else pd.DataFrame([{"n": 0, "fit_date": None}]))
    n, fit_date = int(frame["n"].iloc[0]), frame["fit_date"].iloc[0]
    if published:
        return f"predictions for {n:,} customers (marts.{model})"
    if n:
        return (f"the previous predictions stay: {n:,} customers, fitted up to "
                f"{str(fit_date)[:10]} (marts.{model})")
    return f"no predictions (marts.{model} is empty)"


def quarantined_count(wh: Any) -> int:
    """Records in raw._quarantine; 0 when nothing has landed yet (no table, no file)."""
    try:
        return int(wh.scalar("select count(*) from raw._quarantine") or 0)
    except Exception:  # the warehouse or the table does not exist before a first landing
        return 0


DEMO_UI_HINT = ("Dagster UI: make dev   (emulators + `dagster dev`, then open "
                "http://127.0.0.1:3000)")
RUN_UI_HINT = ("Dagster UI: .venv/bin/dagster dev   (reads .env; runs recorded in DAGSTER_HOME "
               "are listed there)")


def print_summary(
    result: dg.ExecuteInProcessResult, wall_time_s: float, log_path: object = None,
    ui_hint: str = DEMO_UI_HINT,
) -> None:
    conf = settings.WarehouseSettings.from_env()
    wh = conf.open()
    status = "succeeded" if result.success else "FAILED"
    lines = [f"voronka: run {result.run_id[:8]} {status} in {wall_time_s:.1f} s"]
    lines += step_failure_lines(result)
    if log_path and not result.success:
        lines.append(f"  details: {log_path}")
    lines.append("")
    lines += _table("Raw tables (rows):", wh.table_counts("raw"))
    quarantined = quarantined_count(wh)
    lines.append(f"  quarantined records (raw._quarantine): {quarantined}")
    lines += ["", *skipped_entity_lines(result)]
    lines += [*_table("Marts (rows):", wh.table_counts("marts")), ""]
    lines += check_lines(result)[1]
    lines.append("")
    lines += audience_lines(wh)
    lines += activation_lines(wh)
    lines += buyer_funnel_lines(wh)
    lines += prediction_lines(wh)
    if conf.kind == "duckdb":
        lines += [
            f"Working warehouse (raw + dbt): {conf.duckdb_path}",
            f"Published marts for BI (read-only, swapped atomically): {conf.published_path}",
        ]
    else:
        lines.append(f"Warehouse: {wh.describe()} (schemas raw, staging, intermediate, marts)")
    lines += [
        ui_hint,
        f'Query a mart: .venv/bin/voronka query "{QUERY_EXAMPLE}"',
    ]
    print("\n".join(lines))


PUBLISH_STEP = "published__marts"


def published_by(result: Any) -> bool:
    """Whether the run published the marts (a run with nothing new skips publication; a job
    without the step has no materializations for it)."""
    return bool(result.asset_materializations_for_node(PUBLISH_STEP))


class DashboardAhead:
    """Builds the dashboard's pages of the published marts on a side thread as soon as the run
    has published them, while the audience syncs wait on the platforms' rate limits (~1 s of
    the demo's end). ``print_dashboard`` then writes the pages of the audience state, which
    the syncs change. A run's event listener: it never raises into the run."""

    def __init__(self, lang: str = "ru") -> None:
        self.lang = lang
        self._thread: threading.Thread | None = None
        self._prepared: Any = None
        self._error: Exception | None = None

    def on_event(self, entry: Any) -> None:
        with contextlib.suppress(Exception):
            event = entry.get_dagster_event() if entry.is_dagster_event else None
            if (self._thread is None and event is not None
                    and event.event_type_value == "ASSET_MATERIALIZATION"
                    and event.step_key == PUBLISH_STEP):
                self._thread = threading.Thread(target=self._prepare, name="dashboard-ahead",
                                                daemon=True)
                self._thread.start()

    def _prepare(self) -> None:
        try:
            from dashboard.site import prepare_published

            self._prepared = prepare_published(lang=self.lang)
        except Exception as exc:  # reported by print_dashboard, as a build of its own would be
            self._error = exc

    def prepared(self) -> Any:
        """The prepared build, once ready; None when the run published nothing. Raises what
        the preparation raised."""
        if self._thread is None:
            return None
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._prepared


def print_dashboard(lang: str = "ru", published: bool = True,
                    ahead: DashboardAhead | None = None) -> None:
    """Build the dashboard from the published marts and print where it is; when the run
    published nothing (``published`` False) an existing dashboard already shows them and is
    kept. ``ahead``: the pages already built during the run (only the rest is built here). A
    failure here is reported, never raised: the run's own result and exit code stand."""
    try:
        from dashboard.site import build_published, default_out_dir, finish_published

        index = default_out_dir() / "index.html"
        prepared = ahead.prepared() if ahead is not None else None
        if prepared is None and not published and index.exists():
            print(f"Dashboard: {index} (unchanged: this run published no new marts)")
            return
        report = finish_published(prepared) if prepared is not None else build_published(
            lang=lang)
        print(report.line())
    except FileNotFoundError as exc:
        print(f"Dashboard not built: {exc}")
    except Exception as exc:
        print(f"Dashboard not built: {type(exc).__name__}: {exc}", file=sys.stderr)
