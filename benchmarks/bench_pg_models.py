"""Benchmark every dbt model on DuckDB and on PostgreSQL over the demo business (issue 17,
point 4: every model within 5x of DuckDB).

Usage: .venv/bin/python benchmarks/bench_pg_models.py [--seed 42] [--scale 1] [--repeat 3]
       [--workdir DIR] [--reuse] [--select SELECTOR] [--threads 1] [--project-dir DIR]

The demo business (seed 42, scale 1, as `voronka demo` generates it) is landed straight into a
fresh DuckDB file and a fresh PostgreSQL database (synthetic.landing: the same raw records the
extractors land), `dbt seed` runs once, then `dbt run` runs `--repeat` times on each backend;
each model's time is dbt's own `execution_time` (run_results.json, hooks included), the
fastest of the runs (the machine is shared: the minimum is the least disturbed figure). One dbt
thread on both by default, so a model's time is not inflated by its neighbours'. --project-dir
measures another checkout's dbt project (e.g. a worktree of the baseline commit) over the same
data.

The PostgreSQL server is the one the tests use (VORONKA_POSTGRES_HOST/PORT/USER/PASSWORD,
default 127.0.0.1:5432, user postgres); the database `voronka_bench_models` is dropped and
created again unless --reuse keeps the one landed by an earlier run in the same --workdir.
Models where both backends take under --floor seconds are per-statement overhead, not work:
they are listed but the "worst ratio (real work)" leaves them out.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROJECT = REPO / "dbt_project"  # its profiles.yml is used whatever --project-dir measures
PG_DB = "voronka_bench_models"
sys.path.insert(0, str(REPO))


def pg_env() -> dict[str, str]:
    """The environment dbt's profile reads to build into the benchmark database."""
    return {
        "VORONKA_WAREHOUSE": "postgres",
        "VORONKA_POSTGRES_HOST": os.environ.get("VORONKA_POSTGRES_HOST", "127.0.0.1"),
        "VORONKA_POSTGRES_PORT": os.environ.get("VORONKA_POSTGRES_PORT", "5432"),
        "VORONKA_POSTGRES_USER": os.environ.get("VORONKA_POSTGRES_USER", "postgres"),
        "VORONKA_POSTGRES_PASSWORD": os.environ.get("VORONKA_POSTGRES_PASSWORD", ""),
        "VORONKA_POSTGRES_DB": PG_DB,
    }


def pg_dsn(env: dict[str, str], db: str) -> str:
    user, password = env["VORONKA_POSTGRES_USER"], env["VORONKA_POSTGRES_PASSWORD"]
    auth = f"{user}:{password}" if password else user
    return (f"postgresql://{auth}@{env['VORONKA_POSTGRES_HOST']}:"
            f"{env['VORONKA_POSTGRES_PORT']}/{db}")


def recreate_pg_database(env: dict[str, str]) -> None:
    """Drop and create the benchmark database (a clean slate, like the tests' scratch one)."""
    import psycopg2

    conn = psycopg2.connect(pg_dsn(env, "postgres"))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(f"drop database if exists {PG_DB} with (force)")
            cur.execute(f"create database {PG_DB}")
    finally:
        conn.close()


def land(seed: int, scale: float, workdir: Path) -> dict[str, dict[str, str]]:
    """Land the business into both warehouses; returns each backend's dbt environment."""
    from synthetic.business import generate
    from synthetic.landing import land_business
    from warehouse.duckdb_backend import DuckDBWarehouse
    from warehouse.postgres_backend import PostgresWarehouse

    business = generate(seed=seed, scale=scale)
    duck_path = workdir / "warehouse.duckdb"
    duck_path.unlink(missing_ok=True)
    land_business(business, DuckDBWarehouse(duck_path, workdir / "voronka.duckdb"))
    envs = backend_envs(workdir)
    recreate_pg_database(envs["postgres"])
    land_business(business, PostgresWarehouse(pg_dsn(envs["postgres"], PG_DB)))
    return envs


def backend_envs(workdir: Path) -> dict[str, dict[str, str]]:
    return {"duckdb": {"VORONKA_WAREHOUSE": "duckdb",
                       "VORONKA_DUCKDB_PATH": str(workdir / "warehouse.duckdb")},
            "postgres": pg_env()}


def dbt(project: Path, workdir: Path, backend: str, env: dict[str, str], threads: int,
        *args: str) -> dict:
    """One dbt invocation with its own target dir per backend; returns run_results.json."""
    target = workdir / f"target_{backend}"
    cmd = [str(Path(sys.executable).with_name("dbt")), *args,
           "--project-dir", str(project), "--profiles-dir", str(PROJECT),
           "--target-path", str(target), "--log-path", str(workdir / f"logs_{backend}")]
    full_env = {**os.environ, **env, "VORONKA_DBT_THREADS": str(threads)}
    proc = subprocess.run(cmd, cwd=workdir, env=full_env, capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise SystemExit(f"dbt {' '.join(args)} failed on {backend}:\n{proc.stdout[-4000:]}")
    return json.loads((target / "run_results.json").read_text())


def model_times(results: dict) -> dict[str, float]:
    """model name -> seconds dbt spent executing it."""
    return {r["unique_id"].split(".")[-1]: r["execution_time"]
            for r in results["results"] if r["unique_id"].startswith("model.")}


def measure(project: Path, workdir: Path, envs: dict[str, dict[str, str]], repeat: int,
            threads: int, select: str | None) -> dict[str, dict[str, float]]:
    """backend -> model -> fastest seconds of `repeat` `dbt run`s."""
    extra = ["--select", select] if select else []
    fastest: dict[str, dict[str, float]] = {}
    for backend, env in envs.items():
        dbt(project, workdir, backend, env, threads, "seed")
        runs = [model_times(dbt(project, workdir, backend, env, threads, "run", *extra))
                for _ in range(repeat)]
        fastest[backend] = {m: min(r[m] for r in runs) for m in runs[0]}
    return fastest


def report(times: dict[str, dict[str, float]], floor: float, top: int | None) -> None:
    """A markdown table, slowest on PostgreSQL first, and the worst ratios."""
    duck, pg = times["duckdb"], times["postgres"]
    models = sorted(pg, key=lambda m: -pg[m])
    print("| model | DuckDB (s) | PostgreSQL (s) | PG / DuckDB |")
    print("|---|---:|---:|---:|")
    for m in models[:top] if top else models:
        tiny = " (both < floor)" if max(pg[m], duck[m]) < floor else ""
        print(f"| {m} | {duck[m]:.3f} | {pg[m]:.3f} | {pg[m] / duck[m]:.1f}x{tiny} |")
    print(f"\ntotal: DuckDB {sum(duck.values()):.2f} s, PostgreSQL {sum(pg.values()):.2f} s "
          f"({len(models)} models)")
    worst = max(models, key=lambda m: pg[m] / duck[m])
    print(f"worst ratio (all models): {worst} {pg[worst] / duck[worst]:.1f}x "
          f"({duck[worst]:.3f} s vs {pg[worst]:.3f} s)")
    real = [m for m in models if max(pg[m], duck[m]) >= floor]
    if real:
        w = max(real, key=lambda m: pg[m] / duck[m])
        print(f"worst ratio (real work, a backend >= {floor} s): {w} {pg[w] / duck[w]:.1f}x "
              f"({duck[w]:.3f} s vs {pg[w]:.3f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--floor", type=float, default=0.1,
                        help="seconds under which a model is overhead on both backends")
    parser.add_argument("--top", type=int, default=None, help="print only the N slowest on PG")
    parser.add_argument("--select", default=None, help="a dbt selector (default: every model)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the warehouses here (default: a temporary directory)")
    parser.add_argument("--reuse", action="store_true",
                        help="do not land again: reuse the warehouses already in --workdir")
    parser.add_argument("--json", type=Path, default=None, help="also write the times here")
    parser.add_argument("--project-dir", type=Path, default=PROJECT,
                        help="the dbt project to measure (default: this checkout's)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_pg_models_") as tmp:
        workdir = (args.workdir or Path(tmp)).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        envs = backend_envs(workdir) if args.reuse else land(args.seed, args.scale, workdir)
        times = measure(args.project_dir.resolve(), workdir, envs, args.repeat, args.threads,
                        args.select)
    if args.json:
        args.json.write_text(json.dumps(times, indent=1))
    report(times, args.floor, args.top)


if __name__ == "__main__":
    main()
