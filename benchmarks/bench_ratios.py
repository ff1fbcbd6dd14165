"""Issue 17's ratios in one run: scale 10 / scale 1 (time, whole-tree peak memory), re-run /
cold, dbt step / raw SQL of the same models, achieved / configured request rate per
rate-limited API, extraction wall / slowest source; beside the issue's targets.

Usage: .venv/bin/python benchmarks/bench_ratios.py [--project-dir DIR] [--repeat 1]
           [--small-scale 1] [--large-scale 10 (0: none)] [--json out.json]
           [--work-dir DIR [--report-only]]

--work-dir keeps every run's record (more runs into the same folder count in the medians);
--report-only redoes the report from them without running anything.

Runs, each a fresh demo process on its own temporary paths (benchmarks/demo_runs.py), the
imports resolved in --project-dir (default: this checkout; checked, so another checkout can be
measured with this script): a cold demo at the small scale, a re-run of it on the same data
(nothing new lands: the emulators serve the same business), and a cold demo at the large
scale. Where each figure comes from:
- wall time: the demo process from start to exit (interpreter, Dagster and dbt start-up
  included); memory: the summed resident set of the demo process and all its descendants
  (dbt, the watchdog), sampled from /proc every 0.2 s; the peak of the sum;
- step timings: the Dagster run's own event log (STEP_START to STEP_SUCCESS timestamps),
  recorded inside the demo by benchmarks/_demo_probe.py through the progress display's hook;
- dbt step: the Dagster step(s) whose key names dbt; raw SQL: the compiled SQL of the models
  that step built (its run_results.json, in its execution order, a dependency order), each run
  as ``CREATE OR REPLACE TABLE <relation> AS <compiled SQL>`` by DuckDB directly, one
  connection, against a copy of the cold run's warehouse; timed from first to last statement;
- request rates, per API with a client-side limiter (``extractors.http`` ``limiter_for`` /
  ``bucket_for``, the configured rate read from the running process): "at the limit" is the
  rate the limiter lets through when a caller always has a request ready, from the limiter's
  own grants (recorded by the probe): a grant it held back was released as soon as the limit
  allowed, so the k grants before it span the limit's time (k = the window's capacity, or 1
  for a leaky bucket or a paced window limiter such as amoCRM's): sum(k) / sum(those spans)
  over the held-back grants; the limiter's
  arithmetic. "achieved" is the emulator's request log: requests / busy time, busy being the
  sum of gaps between consecutive requests no longer than max(1.05 s, 1.5 / rate) (below the
  limit a window limiter lets bursts through, so this can
  exceed the configured rate). 429s (and other errors) are counted in the emulators' logs;
- extraction wall: first raw step's start to last raw step's end; slowest source: the source
  (the step key's second part) whose raw steps ran longest, counting the time at least one of
  them was running: the sum of its step durations when they run one after another; when a
  source's own steps run side by side their durations include waiting on each other (one
  limiter, the writer lock), so their plain sum (also reported) would overstate it.
The machine is shared: the load average at start and end is printed; figures are noisy.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo_runs import (
    MEMORY_SOURCE,
    DemoRun,
    isolated_env,
    load_average,
    run_probed_demo,
)

REPO = Path(__file__).resolve().parent.parent
TARGETS = {"cold_demo_s": 45.0, "rerun_over_cold": 0.2, "rss_large_over_small": 1.5,
           "identity_s": 1.0, "rate_within": 0.05}


# -- step timings from the probe's events -----------------------------------------------------

def step_spans(probe: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """step key -> (start, end) event-log timestamps of the steps that finished."""
    starts, spans = {}, {}
    for event in probe["events"]:
        if event["kind"] == "STEP_START":
            starts[event["step"]] = event["t"]
        elif event["kind"] in ("STEP_SUCCESS", "STEP_FAILURE") and event["step"] in starts:
            spans[event["step"]] = (starts[event["step"]], event["t"])
    return spans


def _union_s(spans: list[tuple[float, float]]) -> float:
    """Seconds during which at least one of ``spans`` was running."""
    total, end = 0.0, float("-inf")
    for start, stop in sorted(spans):
        if stop > end:
            total += stop - max(start, end)
            end = stop
    return total


def extraction(probe: dict[str, Any]) -> dict[str, Any]:
    """Extraction wall (first raw start to last raw end) and each source's time: the time at
    least one of its raw steps was running (serial steps: their sum; a source's steps run side
    by side: its own wall, since their durations then include waiting on each other), and the
    plain sum of its step durations beside it."""
    raw = {k: v for k, v in step_spans(probe).items() if k.startswith("raw__")}
    if not raw:
        return {"wall_s": None, "sources": {}, "slowest": None, "slowest_s": None}
    spans: dict[str, list[tuple[float, float]]] = {}
    for key, span in raw.items():
        spans.setdefault(key.split("__")[1], []).append(span)
    sources = {name: _union_s(s) for name, s in spans.items()}
    sums = {name: sum(e - b for b, e in s) for name, s in spans.items()}
    slowest = max(sources, key=sources.__getitem__)
    wall = max(e for _, e in raw.values()) - min(s for s, _ in raw.values())
    return {"wall_s": wall, "steps": len(raw), "sum_s": sum(sums.values()),
            "sources": dict(sorted(sources.items(), key=lambda kv: -kv[1])),
            "source_step_sums": sums, "slowest": slowest, "slowest_s": sources[slowest],
            "slowest_step_sum_s": sums[slowest]}


def dbt_step_s(probe: dict[str, Any]) -> float:
    return sum(e - s for k, (s, e) in step_spans(probe).items() if "dbt" in k)


def landed_rows(probe: dict[str, Any]) -> int:
    """Rows the raw steps inserted (their materializations' ``inserted``)."""
    return int(sum(e.get("metadata", {}).get("inserted", 0) for e in probe["events"]
                   if e["kind"] == "ASSET_MATERIALIZATION" and e["step"].startswith("raw__")))


# -- request rates from the emulators' logs ---------------------------------------------------

def _limiters_by_netloc(probe: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for key, conf in probe["limiters"].items():
        match = re.search(r"127\.0\.0\.1:\d+", key)
        if match:
            out[match.group(0)] = {**conf, "key": key.split(":")[0]}
    return out


def _at_limit_from_grants(conf: dict[str, Any]) -> tuple[float | None, int]:
    """The rate the limiter lets through when a caller always has a request ready, from its
    own grants: each grant it held back was released as soon as the limit allowed, so the k
    grants before it took exactly the limit's time (k = the window's capacity for a window
    limiter, 1 for a leaky bucket or a window limiter without a burst, which paces every call).
    Summed over every held-back grant: sum(k) / sum(time).
    Returns (rate, held-back grants)."""
    grants = sorted(conf.get("grants") or [])
    paced = conf["class"] == "LeakyBucketLimiter" or conf.get("burst") is False
    k = 1 if paced else max(1, int(conf.get("capacity") or 1))
    count, span = 0, 0.0
    for i in range(k, len(grants)):
        if grants[i][1] > 0:
            count += 1
            span += grants[i][0] - grants[i - k][0]
    return (count * k / span if span > 0 else None), count


def _at_limit_rate(times: list[float], conf: dict[str, Any]) -> float | None:
    """Without the limiter's grants: the rate over the stretches of the server's log where
    the configured limiter was full (a heuristic, labelled as such in the report)."""
    capacity = int(conf.get("capacity") or 1)
    if conf["class"] == "LeakyBucketLimiter":
        rate, level, gaps = conf["rate_per_s"], 0.0, []
        for previous, t in itertools.pairwise(times):
            level = max(0.0, level + 1 - (t - previous) * rate)
            if level + 1 > capacity - 0.5:
                gaps.append(t - previous)
        return len(gaps) / sum(gaps) if gaps and sum(gaps) > 0 else None
    window = conf.get("window") or conf.get("per") or 1.0
    spans = [times[i] - times[i - capacity] for i in range(capacity, len(times))
             if times[i] - times[i - capacity] <= 1.1 * window]
    return capacity / statistics.mean(spans) if spans and statistics.mean(spans) > 0 else None


def api_rates(probe: dict[str, Any]) -> list[dict[str, Any]]:
    """Per emulator with a client-side limiter: requests, 429s, achieved and at-limit rates."""
    limiters, out = _limiters_by_netloc(probe), []
    for emulator in probe["emulators"]:
        conf = limiters.get(urlsplit(emulator["base_url"]).netloc)
        log = emulator["log"]
        if conf is None or not log:
            continue
        times = sorted(row[0] for row in log)
        rate = conf["rate_per_s"]
        threshold = max(1.05, 1.5 / rate)
        busy = sum(g for g in (b - a for a, b in itertools.pairwise(times)) if g <= threshold)
        achieved = (len(times) - 1) / busy if busy > 0 else None
        if conf.get("grants"):
            at_limit, held = _at_limit_from_grants(conf)
            method = "limiter grants"
        else:
            at_limit, held = _at_limit_rate(times, conf), None
            method = "server log heuristic"
        out.append({
            "api": conf["key"], "emulator": emulator["name"], "limiter": conf["class"],
            "configured_per_s": rate, "capacity": conf.get("capacity"),
            "window_s": conf.get("window"), "burst": conf.get("burst"),
            "requests": len(times), "busy_s": busy, "achieved_per_s": achieved,
            "at_limit_per_s": at_limit, "held_back": held, "at_limit_method": method,
            "grants": len(conf.get("grants") or []),
            "status_429": sum(1 for row in log if row[1] == 429),
            "other_errors": sum(1 for row in log if row[1] is not None and row[1] >= 400
                                and row[1] != 429),
            "no_answer": sum(1 for row in log if row[1] is None),
        })
    return out


# -- dbt step vs the same models' SQL -----------------------------------------------------------

def built_models(kept: Path) -> tuple[list[dict[str, Any]], float | None]:
    """The models a dbt invocation built (execution order), and dbt's own elapsed time."""
    results = json.loads((kept / "run_results.json").read_text())
    manifest = json.loads((kept / "manifest.json").read_text())
    models = []
    for result in results["results"]:
        uid = result["unique_id"]
        if not uid.startswith("model.") or result["status"] != "success":
            continue
        node = manifest["nodes"].get(uid, {})
        models.append({"unique_id": uid, "execution_time": result.get("execution_time", 0.0),
                       "relation": result.get("relation_name") or node.get("relation_name"),
                       "materialized": node.get("config", {}).get("materialized"),
                       "sql": result.get("compiled_code") or node.get("compiled_code")})
    return models, results.get("elapsed_time")


def run_raw_sql(warehouse: Path, models: list[dict[str, Any]]) -> float:
    """Seconds DuckDB takes to run the models' compiled SQL on a copy of ``warehouse``."""
    with tempfile.TemporaryDirectory(prefix="bench-raw-sql-") as tmp:
        copy = Path(tmp) / warehouse.name  # same file name: the compiled SQL names the catalog
        shutil.copy2(warehouse, copy)
        con = duckdb.connect(str(copy))
        try:
            started = time.perf_counter()
            for model in models:
                kind = "VIEW" if model["materialized"] == "view" else "TABLE"
                con.execute(f"CREATE OR REPLACE {kind} {model['relation']} AS (\n"
                            f"{model['sql']}\n)")
            return time.perf_counter() - started
        finally:
            con.close()


def dbt_versus_raw(probe: dict[str, Any], warehouse: Path) -> dict[str, Any]:
    """The cold run's dbt step against DuckDB running the same models' SQL."""
    calls = [c for c in probe.get("dbt_calls", []) if c.get("kept")
             and Path(c["kept"], "run_results.json").exists()]
    models: list[dict[str, Any]] = []
    elapsed = 0.0
    for call in calls:
        built, seconds = built_models(Path(call["kept"]))
        models += built
        elapsed += seconds or 0.0
    usable = [m for m in models if m["relation"] and m["sql"]]
    raw = run_raw_sql(warehouse, usable) if usable else None
    return {"dbt_step_s": dbt_step_s(probe), "dbt_elapsed_s": elapsed or None,
            "models": len(usable), "model_execution_sum_s": sum(m["execution_time"]
                                                                for m in usable),
            "raw_sql_s": raw, "source": "Dagster step timing; dbt run_results.json"}


# -- identity (H1's benchmark, when present) ------------------------------------------------------

def identity_figure(project_dir: Path, python: str) -> dict[str, Any]:
    """Run the checkout's benchmarks/bench_identity.py if it has one: its JSON lines (one per
    case); the headline is the slowest end-to-end build (``build_s``) of the cases of many
    records on one shared identifier (the issue's 1,600 on one phone)."""
    script = project_dir / "benchmarks" / "bench_identity.py"
    if not script.exists():
        return {"available": False}
    proc = subprocess.run([python, str(script)], cwd=project_dir, capture_output=True,
                          text=True, env=isolated_env(Path(tempfile.mkdtemp()), project_dir))
    rows = []
    for line in proc.stdout.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    shared = [r for r in rows if any("phone" in str(v) for v in r.values())] or rows
    builds = [r["build_s"] for r in shared if isinstance(r.get("build_s"), int | float)]
    return {"available": True, "rc": proc.returncode, "rows": rows,
            "headline_s": max(builds) if builds else None,
            "output": (proc.stdout + proc.stderr)[-2000:]}


# -- the runs ---------------------------------------------------------------------------------

def _save(run: DemoRun, path: Path) -> None:
    """The probe's record plus what the parent measured, so a report can be redone later."""
    probe = json.loads(path.read_text())
    probe["measured"] = {"wall_s": run.wall_s, "load_after": load_average(),
                         "peak_tree_mib": run.peak_tree_mib,
                         "peak_single_mib": run.peak_single_mib,
                         "most_processes": run.most_processes}
    path.write_text(json.dumps(probe))


def measure(project_dir: Path, python: str, small: float, large: float | None,
            work: Path) -> None:
    """One set of runs into ``work``: cold and re-run at ``small`` (+ raw SQL), cold at
    ``large``."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-small-", dir=work))
    env = isolated_env(tmp, project_dir)
    cold = run_probed_demo(project_dir, env, small, True, python, work / "cold_small.json")
    _save(cold, work / "cold_small.json")
    print(f"  cold demo at scale {small:g}: {cold.wall_s:.1f} s", flush=True)
    kept = work / "cold_small_warehouse" / "warehouse.duckdb"
    kept.parent.mkdir(exist_ok=True)
    shutil.copy2(tmp / "warehouse.duckdb", kept)
    rerun = run_probed_demo(project_dir, env, small, False, python, work / "rerun_small.json")
    _save(rerun, work / "rerun_small.json")
    print(f"  re-run at scale {small:g}: {rerun.wall_s:.1f} s", flush=True)
    dbt = dbt_figures(work)
    print(f"  raw SQL of {dbt.get('models')} models: {dbt.get('raw_sql_s')} s", flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    if large:
        tmp = Path(tempfile.mkdtemp(prefix="bench-large-", dir=work))
        big = run_probed_demo(project_dir, isolated_env(tmp, project_dir), large, True, python,
                              work / "cold_large.json")
        _save(big, work / "cold_large.json")
        print(f"  cold demo at scale {large:g}: {big.wall_s:.1f} s", flush=True)
        shutil.rmtree(tmp, ignore_errors=True)


def dbt_figures(work: Path) -> dict[str, Any]:
    """dbt step vs raw SQL for the cold run in ``work`` (kept in dbt.json; a failure is
    recorded, not raised, so the other runs go on and --report-only can try again)."""
    saved = work / "dbt.json"
    if saved.exists():
        dbt = json.loads(saved.read_text())
        if "error" not in dbt:
            return dbt
    try:
        dbt = dbt_versus_raw(json.loads((work / "cold_small.json").read_text()),
                             work / "cold_small_warehouse" / "warehouse.duckdb")
    except Exception as exc:  # recorded and reported: the other runs go on
        dbt = {"error": f"{type(exc).__name__}: {exc}"}
    saved.write_text(json.dumps(dbt))
    return dbt


def analyse(work: Path) -> dict[str, Any]:
    """The figures of one set of runs saved in ``work``."""
    out: dict[str, Any] = {"dbt": dbt_figures(work)}
    for name in ("cold_small", "rerun_small", "cold_large"):
        if (work / f"{name}.json").exists():
            out[name] = summary(json.loads((work / f"{name}.json").read_text()))
    return out


def summary(probe: dict[str, Any]) -> dict[str, Any]:
    if not step_spans(probe):
        print("WARNING: the probe saw no step events: has voronka.runner.run_daily_refresh "
              "stopped taking on_event=?", file=sys.stderr)
    argv = probe.get("argv", [])
    scale = float(argv[argv.index("--scale") + 1]) if "--scale" in argv[:-1] else None
    return {**probe["measured"], "scale": scale, "landed_rows": landed_rows(probe),
            "extraction": extraction(probe), "dbt_step_s": dbt_step_s(probe),
            "rates": api_rates(probe), "steps": len(step_spans(probe)),
            "modules": probe["modules"]}


# -- the report ---------------------------------------------------------------------------------

def _med(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _f(value: float | None, fmt: str = ".2f") -> str:
    return "n/a" if value is None else format(value, fmt)


def ratios(runs: list[dict[str, Any]], small: float, large: float | None) -> dict[str, Any]:
    """The issue's ratios, medians over the repeats, with the raw figures under them."""
    def med(path: str) -> float | None:
        values = []
        for run in runs:
            value: Any = run
            for part in path.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            values.append(value)
        return _med(values)

    r: dict[str, Any] = {
        "cold_small_s": med("cold_small.wall_s"), "rerun_small_s": med("rerun_small.wall_s"),
        "rerun_landed_rows": med("rerun_small.landed_rows"),
        "cold_small_rss_mib": med("cold_small.peak_tree_mib"),
        "cold_small_single_mib": med("cold_small.peak_single_mib"),
        "dbt_step_s": med("dbt.dbt_step_s"), "dbt_elapsed_s": med("dbt.dbt_elapsed_s"),
        "dbt_models": med("dbt.models"), "model_execution_sum_s":
            med("dbt.model_execution_sum_s"), "raw_sql_s": med("dbt.raw_sql_s"),
        "extraction_wall_s": med("cold_small.extraction.wall_s"),
        "slowest_source_s": med("cold_small.extraction.slowest_s"),
        "slowest_source": runs[0]["cold_small"]["extraction"]["slowest"],
    }
    if large:
        r |= {"cold_large_s": med("cold_large.wall_s"),
              "cold_large_rss_mib": med("cold_large.peak_tree_mib"),
              "cold_large_single_mib": med("cold_large.peak_single_mib"),
              "extraction_wall_large_s": med("cold_large.extraction.wall_s"),
              "slowest_source_large_s": med("cold_large.extraction.slowest_s"),
              "slowest_source_large": next(run["cold_large"]["extraction"]["slowest"]
                                           for run in runs if "cold_large" in run)}
    r["time_large_over_small"] = _ratio(r.get("cold_large_s"), r["cold_small_s"])
    r["rss_large_over_small"] = _ratio(r.get("cold_large_rss_mib"), r["cold_small_rss_mib"])
    r["rerun_over_cold"] = _ratio(r["rerun_small_s"], r["cold_small_s"])
    r["dbt_over_raw_sql"] = _ratio(r["dbt_step_s"], r["raw_sql_s"])
    r["extraction_wall_over_slowest"] = _ratio(r["extraction_wall_s"], r["slowest_source_s"])
    r["extraction_wall_over_slowest_large"] = _ratio(r.get("extraction_wall_large_s"),
                                                     r.get("slowest_source_large_s"))
    return r


def _rate_value(api: dict[str, Any]) -> str:
    ratio = _ratio(api["at_limit_per_s"], api["configured_per_s"])
    return "never at the limit" if ratio is None else f"**{ratio:.2f}**"


def _rate_detail(api: dict[str, Any]) -> str:
    conf = api["configured_per_s"]
    shape = f"capacity {api['capacity']}" + (f" per {api['window_s']:g} s" if api["window_s"]
                                            else f", burst {api['burst']}")
    limit = ("" if api["at_limit_per_s"] is None else
             f"{api['at_limit_per_s']:.2f} req/s at the limit"
             + ("" if api["held_back"] is None else f" ({api['held_back']} grants held back)")
             + f" ({api['at_limit_method']}); ")
    return (f"{limit}{api['requests']:,} requests, {api['busy_s']:.1f} s busy = "
            f"{_f(api['achieved_per_s'])} req/s; configured {conf:.3g} ({shape}); "
            f"**{api['status_429']} × 429**, {api['other_errors']} other errors")


def rate_rows(picked: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """One row per rate-limited API, each scale's figures side by side. The value is at the
    limit / configured when the limiter was ever reached (below the limit a window limiter
    lets bursts through, so requests / busy time says nothing about the limiter)."""
    apis: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for label, run in picked:
        for api in run["rates"]:
            apis.setdefault(api["api"], []).append((label, api))
    rows = []
    for name, figures in apis.items():
        value = "; ".join(f"{label}: {_rate_value(api)}" for label, api in figures)
        detail = "; ".join(f"{label}: {_rate_detail(api)}" for label, api in figures)
        rows.append(f"| {name} request rate, at the limit / configured | 0.95-1.0, zero 429 | "
                    f"{value} | {detail} |")
    return rows


def report(r: dict[str, Any], runs: list[dict[str, Any]], small: float, large: float | None,
           identity: dict[str, Any]) -> str:
    s, big = f"{small:g}", f"{large:g}" if large else "-"
    ident_s = identity.get("headline_s")
    ident_text = ("n/a (no benchmarks/bench_identity.py in this checkout)"
                  if not identity.get("available") else
                  f"**{ident_s:.2f} s**" if ident_s is not None else
                  f"n/a (bench_identity.py exit code {identity.get('rc')}; see the JSON)")
    ident_rows = "; ".join(
        f"{next((v for v in r.values() if isinstance(v, str)), '?')}: build "
        f"{_f(r.get('build_s'))} s, resolve {_f(r.get('resolve_s'), '.3f')} s"
        for r in identity.get("rows", []))
    raw_steps = runs[0]["cold_small"]["extraction"].get("steps", 0)
    per_source = [run["cold_small"]["extraction"]["sources"] for run in runs
                  if "cold_small" in run]  # a run stopped after its first part has none
    ex = {name: statistics.median(sources.get(name, 0.0) for sources in per_source)
          for name in per_source[0]}
    lines = [
        "| ratio | target | value | raw figures |", "|---|---|---|---|",
        f"| cold demo, scale {s} | < {TARGETS['cold_demo_s']:g} s | "
        f"**{_f(r['cold_small_s'], '.1f')} s** | wall of the demo process |",
        f"| demo time, scale {big} / scale {s} | | **{_f(r['time_large_over_small'])}** | "
        f"{_f(r.get('cold_large_s'), '.1f')} s / {_f(r['cold_small_s'], '.1f')} s |",
        f"| peak RSS of the whole process tree, scale {big} / scale {s} | < "
        f"{TARGETS['rss_large_over_small']:g} | **{_f(r['rss_large_over_small'])}** | "
        f"{_f(r.get('cold_large_rss_mib'), '.0f')} MiB / {_f(r['cold_small_rss_mib'], '.0f')} "
        f"MiB (largest single process {_f(r.get('cold_large_single_mib'), '.0f')} / "
        f"{_f(r['cold_small_single_mib'], '.0f')} MiB) |",
        f"| re-run (same data) / cold, scale {s} | < {TARGETS['rerun_over_cold']:g} | "
        f"**{_f(r['rerun_over_cold'])}** | {_f(r['rerun_small_s'], '.1f')} s / "
        f"{_f(r['cold_small_s'], '.1f')} s; the re-run landed "
        f"{_f(r['rerun_landed_rows'], ',.0f')} new rows |",
        f"| dbt step / raw SQL of the same models, scale {s} | | "
        f"**{_f(r['dbt_over_raw_sql'], '.1f')}** | {_f(r['dbt_step_s'], '.1f')} s (Dagster "
        f"step; dbt's own elapsed {_f(r['dbt_elapsed_s'], '.1f')} s, its models' execution "
        f"times sum to {_f(r['model_execution_sum_s'], '.1f')} s) / "
        f"{_f(r['raw_sql_s'], '.2f')} s for {_f(r['dbt_models'], '.0f')} models' compiled SQL "
        f"in DuckDB |",
        f"| extraction wall / slowest source, scale {s} | ~1 (concurrent) | "
        f"**{_f(r['extraction_wall_over_slowest'])}** | {_f(r['extraction_wall_s'], '.1f')} s "
        f"({raw_steps} raw steps) / {_f(r['slowest_source_s'], '.1f')} s "
        f"({r['slowest_source']}); each source's steps (median): "
        + ", ".join(f"{k} {v:.1f}" for k, v in ex.items()) + " |",
    ]
    if large:
        lines.append(
            f"| extraction wall / slowest source, scale {big} | ~1 (concurrent) | "
            f"**{_f(r['extraction_wall_over_slowest_large'])}** | "
            f"{_f(r.get('extraction_wall_large_s'), '.1f')} s / "
            f"{_f(r.get('slowest_source_large_s'), '.1f')} s ({r.get('slowest_source_large')}) |")
    picked = []
    for name, label in (("cold_small", f"scale {s}"), ("cold_large", f"scale {big}")):
        measured = [run[name] for run in runs if name in run]
        graded = [m for m in measured
                  if any(api["at_limit_method"] == "limiter grants" for api in m["rates"])]
        if measured:
            picked.append((label, (graded or measured)[0]))
    lines += rate_rows(picked)
    lines.append(f"| identity at 1,600 shared identifiers | < {TARGETS['identity_s']:g} s | "
                 f"{ident_text} | benchmarks/bench_identity.py (slowest build of the shared-"
                 f"phone cases): {ident_rows or '-'} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project-dir", type=Path, default=REPO,
                        help="the checkout to measure (default: this one)")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter with the project's dependencies (default: this one)")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--small-scale", type=float, default=1.0)
    parser.add_argument("--large-scale", type=float, default=10.0,
                        help="0 skips the large run")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    parser.add_argument("--work-dir", type=Path,
                        help="keep the runs' records here (default: a temporary folder); "
                             "runs already there count in the medians")
    parser.add_argument("--report-only", action="store_true",
                        help="no runs: report on the records already in --work-dir")
    args = parser.parse_args()
    project = args.project_dir.resolve()
    large = args.large_scale or None
    load_start = load_average()
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    print(f"bench_ratios: {project} (python {args.python}); load average {load_start}",
          flush=True)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench-ratios-"))
    print(f"  records: {work}", flush=True)
    if not args.report_only:
        for _ in range(args.repeat):  # a --work-dir that has runs gets more (report: medians)
            run_dir = work / f"run{len(list(work.glob('run*')))}"
            run_dir.mkdir(parents=True)
            measure(project, args.python, args.small_scale, large, run_dir)
    runs = [analyse(d) for d in sorted(work.glob("run*"))]
    small = runs[0]["cold_small"]["scale"] or args.small_scale  # what the records say
    large = next((run["cold_large"]["scale"] for run in runs if "cold_large" in run), None)
    identity = identity_figure(project, args.python)
    load_end = load_average()
    r = ratios(runs, small, large)
    table = report(r, runs, small, large, identity)
    modules = runs[0]["cold_small"]["modules"]
    counts = ", ".join(f"{sum(1 for run in runs if name in run)} × {name}"
                       for name in ("cold_small", "rerun_small", "cold_large"))
    print(f"\nCheckout {project}: modules imported from "
          f"{sorted({str(Path(p).parent.parent) for p in modules.values() if p})}; "
          f"runs (medians): {counts}; "
          + ("report only: the load during the runs was printed when they ran, and each "
             "run's record keeps the load after it (load_after); "
             if args.report_only else
             f"started {started}; load average {load_start} at start, {load_end} at end ")
          + "(2 cores shared: figures are noisy). "
          f"Memory: {MEMORY_SOURCE}.\n")
    print(table)
    if args.json:
        args.json.write_text(json.dumps(
            {"project_dir": str(project), "started": started, "load_start": load_start,
             "load_end": load_end, "memory_source": MEMORY_SOURCE, "targets": TARGETS,
             "ratios": r, "runs": runs, "identity": identity}, indent=1, default=str))


if __name__ == "__main__":
    main()
