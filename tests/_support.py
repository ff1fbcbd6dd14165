"""Helpers shared by the test modules (imported as `_support`; tests/ is on the path)."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from voronka.dbt_parse_cache import PARSE_FILE, keep_parse, parse_key, seed_target


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


# -- dbt against a scratch warehouse (DuckDB file or a fresh PostgreSQL database) ----------------
DBT_PROJECT = Path(__file__).resolve().parents[1] / "dbt_project"
PG_HOST = os.environ.get("VORONKA_POSTGRES_HOST", "127.0.0.1")
PG_PORT = os.environ.get("VORONKA_POSTGRES_PORT", "5432")
PG_USER = os.environ.get("VORONKA_POSTGRES_USER", "postgres")
PG_PASSWORD = os.environ.get("VORONKA_POSTGRES_PASSWORD", "")


def run_dbt(workdir: Path, env: dict[str, str], *args: str) -> tuple[int, str, dict]:
    """`dbt <args>` in a subprocess with its own target and log dirs (tests may run in parallel),
    starting from the partial parse of the same target and vars that an earlier one kept."""
    target, logs = workdir / "dbt_target", workdir / "dbt_logs"
    env = same_profile_in_every_workdir(workdir, env)
    key = parse_key({**os.environ, **env}, args)
    if not (target / PARSE_FILE).exists():
        seed_target(target, DBT_PROJECT, key)
    cmd = [
        str(Path(sys.executable).with_name("dbt")), *args,
        "--project-dir", str(DBT_PROJECT), "--profiles-dir", str(DBT_PROJECT),
        "--target-path", str(target), "--log-path", str(logs),
    ]
    proc = subprocess.run(cmd, cwd=workdir, env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=300, check=False)
    keep_parse(target, DBT_PROJECT, key)
    results_file = target / "run_results.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else {}
    return proc.returncode, proc.stdout + proc.stderr, results


def same_profile_in_every_workdir(workdir: Path, env: dict[str, str]) -> dict[str, str]:
    """``env`` with a DuckDB file inside ``workdir`` named relative to it (dbt runs there).

    dbt's partial parse holds only while the profile's connection settings are the same, and
    the DuckDB path is one of them: each test's own absolute path made every test's build
    parse the whole project (~4 s of a dbt start). Relative, it is the same in every test."""
    path = env.get("VORONKA_DUCKDB_PATH")
    if not path or not Path(path).is_absolute() or not Path(path).is_relative_to(workdir):
        return env
    return {**env, "VORONKA_DUCKDB_PATH": str(Path(path).relative_to(workdir))}


def pg_admin(sql: str) -> None:
    """Run one statement on the server's `postgres` database (create/drop a test database)."""
    import psycopg2

    conn = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, password=PG_PASSWORD,
                            dbname="postgres")
    conn.autocommit = True
    try:
        conn.cursor().execute(sql)
    finally:
        conn.close()


@contextmanager
def scratch_warehouse(backend: str, workdir: Path, label: str) -> Iterator[tuple[Any, dict]]:
    """A fresh warehouse and the environment dbt needs to build into it; a PostgreSQL
    database is created for the test and dropped after."""
    if backend == "duckdb":
        from warehouse.duckdb_backend import DuckDBWarehouse

        path = workdir / "warehouse.duckdb"
        yield (DuckDBWarehouse(path, workdir / "voronka.duckdb"),
               {"VORONKA_WAREHOUSE": "duckdb", "VORONKA_DUCKDB_PATH": str(path)})
        return
    from warehouse.postgres_backend import PostgresWarehouse

    with pg_test_database() as db:
        auth = f"{PG_USER}:{PG_PASSWORD}" if PG_PASSWORD else PG_USER
        yield (PostgresWarehouse(f"postgresql://{auth}@{PG_HOST}:{PG_PORT}/{db}"),
               {"VORONKA_WAREHOUSE": "postgres", "VORONKA_POSTGRES_HOST": PG_HOST,
                "VORONKA_POSTGRES_PORT": PG_PORT, "VORONKA_POSTGRES_USER": PG_USER,
                "VORONKA_POSTGRES_PASSWORD": PG_PASSWORD, "VORONKA_POSTGRES_DB": db})


_DATABASES_IN_USE: set[str] = set()


@contextmanager
def pg_test_database() -> Iterator[str]:
    """A fresh PostgreSQL database for one test or fixture, dropped after.

    Its name is reused within a test run: the lowest slot this worker has free. dbt keeps its
    partial parse per database (the name is in every parsed node and in dbt's profile hash),
    so a build into a database an earlier test of the worker used skips the full parse
    (~4 s of a dbt start), where a new name for every test parsed the project every time. The run's
    id (or the process id without xdist) keeps two runs on one server apart."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID", f"p{os.getpid()}")[:8]
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = next(candidate for slot in itertools.count()
                if (candidate := f"voronka_t_{run}_{worker}_{slot}") not in _DATABASES_IN_USE)
    _DATABASES_IN_USE.add(name)
    try:
        pg_admin(f"drop database if exists {name} with (force)")
        pg_admin(f"create database {name}")
        yield name
    finally:
        pg_admin(f"drop database if exists {name} with (force)")
        _DATABASES_IN_USE.discard(name)


def failed_nodes(run_results: dict) -> dict[str, str]:
    """unique_id -> status of the nodes of a dbt run that did not succeed (exposures are
    never built: dbt reports them as 'no-op')."""
    return {r["unique_id"]: r["status"] for r in run_results.get("results", [])
            if r["status"] not in ("success", "pass")
            and not r["unique_id"].startswith("exposure.")}


# -- one synthetic business built once per backend, shared by the metric tests ----------------
MARTS_SEED, MARTS_SCALE = 7, 0.3
# the second business (`marts_alt`, DuckDB only): another seed and scale and a mid-month as-of
# date, so no metric test is tuned to one business. Seed 11 at scale 0.15 up to 2026-08-12 has
# an incomplete as-of month, a CRR month above 100 % (lapsed customers coming back), a
# customer with neither phone nor e-mail, and many campaign-months with spend and no lead.
MARTS_ALT_SEED, MARTS_ALT_SCALE = 11, 0.15
MARTS_ALT_START, MARTS_ALT_END = date(2024, 11, 1), date(2026, 8, 12)


@dataclass
class MartsBuild:
    """A landed synthetic business after a full `dbt build` (models, data and unit tests)."""

    backend: str
    wh: Any
    env: dict[str, str]
    workdir: Path
    business: Any
    run_results: dict
    returncode: int
    output: str

    def df(self, sql: str) -> Any:
        """A query's result as a pandas DataFrame."""
        return self.wh.query_df(sql)

    def statuses(self) -> dict[str, str]:
        """unique_id -> status of every node the build ran."""
        return {r["unique_id"]: r["status"] for r in self.run_results.get("results", [])}

    def assert_nodes_passed(self, fragment: str) -> list[str]:
        """Every built node whose unique_id contains `fragment` passed; returns their ids.

        The shared build runs the whole project, so a module checks the nodes it owns
        rather than the build's exit code."""
        ran = {k: v for k, v in self.statuses().items() if fragment in k}
        assert ran, f"no node matching {fragment!r} ran:\n{self.output[-3000:]}"
        failed = {k: v for k, v in ran.items() if v not in ("success", "pass")}
        assert not failed, failed
        return sorted(ran)


@contextmanager
def built_marts(backend: str, workdir: Path, business: Any) -> Iterator[MartsBuild]:
    """Land `business` into a scratch warehouse of `backend` and `dbt build` everything."""
    from synthetic.landing import land_business

    with scratch_warehouse(backend, workdir, "marts") as (wh, env):
        land_business(business, wh)
        code, out, results = run_dbt(workdir, env, "build")
        yield MartsBuild(backend, wh, env, workdir, business, results, code, out)


class Receiver:
    """An HTTP server on loopback that records every POST (path, JSON body) and answers
    `status`."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict]] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.posts.append((self.path, json.loads(body)))
                self.send_response(receiver.status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"ok": true}')

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


# -- published marts against a synthetic business's own ground truth ----------------------------
def month_labels(series: Any) -> Any:
    """Dates as YYYY-MM labels (marts and truth tables type their months differently)."""
    import pandas as pd

    return pd.to_datetime(series).dt.strftime("%Y-%m")


def assert_marts_match_truth_but_spend(query: Callable[[str], Any], truth: Any) -> None:
    """The published marts equal a synthetic business's ground truth: new customers per
    channel-month, revenue and orders per month and per source, cohort sizes, leads per CRM
    and per channel-month (every order source and CRM landed; spend is the caller's)."""
    got = query("select cohort_month, channel, count(*) as n from marts.dim_customers "
                "group by 1, 2")
    expected = truth.new_customers_by_channel_month
    assert (
        sorted(zip(month_labels(got.cohort_month), got.channel, got.n.astype(int), strict=True))
        == sorted(zip(month_labels(expected.month), expected.channel,
                      expected.new_customers.astype(int), strict=True))
    )
    got = query("select order_month, sum(amount) as revenue, count(*) as orders "
                "from marts.fct_orders group by 1")
    got = dict(zip(month_labels(got.order_month), zip(got.revenue.astype(float).round(2),
                                                      got.orders.astype(int), strict=True),
                   strict=True))
    expected = truth.revenue_by_month
    assert got == dict(zip(month_labels(expected.month), zip(
        expected.revenue.astype(float).round(2), expected.orders.astype(int), strict=True),
        strict=True))
    got = query("select cohort_month, cohort_size from marts.fct_cohort_retention "
                "where month_offset = 0")
    expected = truth.cohort_sizes
    assert dict(zip(month_labels(got.cohort_month), got.cohort_size.astype(int),
                    strict=True)) == dict(zip(month_labels(expected.cohort_month),
                                              expected.customers.astype(int), strict=True))
    got = query("select order_month, order_source, count(*) as n, sum(amount) as revenue "
                "from marts.fct_orders group by 1, 2")
    expected = truth.orders_by_source_month
    assert set(expected.order_source) == {"amocrm_lead", "bitrix24_deal", "amocrm_transaction",
                                          "files"}
    assert sorted(zip(month_labels(got.order_month), got.order_source, got.n.astype(int),
                      got.revenue.astype(float).round(2), strict=True)) == sorted(
        zip(month_labels(expected.month), expected.order_source, expected.orders.astype(int),
            expected.revenue.astype(float).round(2), strict=True))
    got = query("select created_month, crm, channel, count(*) as n from marts.fct_leads "
                "group by 1, 2, 3")
    by_crm = got.groupby([month_labels(got.created_month), got.crm]).n.sum()
    expected = truth.leads_by_crm_month
    assert sorted((m, c, int(n)) for (m, c), n in by_crm.items()) == sorted(
        zip(month_labels(expected.month), expected.crm, expected.leads.astype(int), strict=True))
    by_channel = got.groupby([month_labels(got.created_month), got.channel]).n.sum()
    expected = truth.leads_by_channel_month
    assert sorted((m, c, int(n)) for (m, c), n in by_channel.items()) == sorted(
        zip(month_labels(expected.month), expected.channel, expected.leads.astype(int),
            strict=True))
