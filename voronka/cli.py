"""`voronka` command line: demo, emulators, query."""

from __future__ import annotations

import argparse
import atexit
import errno
import os
import sys
from contextlib import suppress
from datetime import date
from pathlib import Path


def _cmd_demo(args: argparse.Namespace) -> int:
    from voronka.demo import run_demo

    return run_demo(seed=args.seed, scale=args.scale, fresh=args.fresh,
                    keep_history=args.keep_history)


def _iso_date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date (YYYY-MM-DD): {value!r}") from None


def _cmd_run(args: argparse.Namespace) -> int:
    from voronka.run import run_configured

    return run_configured(first=args.date_from, last=args.date_until, as_of=args.as_of,
                          env_file=args.env_file, history=not args.no_history)


def _cmd_emulators(args: argparse.Namespace) -> int:
    """Serve the demo business on fixed ports until Ctrl-C (for `dagster dev`)."""
    import time

    from voronka.demo import running_emulators

    with running_emulators(seed=args.seed, scale=args.scale, amocrm_port=args.amocrm_port,
                           direct_port=args.direct_port) as servers:
        env = servers.environment()
        print("Emulators are up. Point voronka at them with:")
        for name, value in env.items():
            print(f"  export {name}={value}")
        sys.stdout.flush()
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return 0


def _cmd_dev(args: argparse.Namespace) -> int:
    """Emulators plus `dagster dev`: materialising in the UI does what the demo does."""
    import os
    import subprocess
    from pathlib import Path

    from voronka import demo

    demo.reset_demo_state(fresh=False)
    demo.ensure_dagster_home()
    with demo.running_emulators(seed=args.seed, scale=args.scale, amocrm_port=args.amocrm_port,
                                direct_port=args.direct_port) as servers:
        os.environ.update(servers.environment())
        dagster = Path(sys.executable).with_name("dagster")
        try:
            return subprocess.call([str(dagster), "dev", "-m", "orchestration.definitions",
                                    "-p", str(args.port)])
        except KeyboardInterrupt:
            return 0


def _cmd_query(args: argparse.Namespace) -> int:
    """Query the published marts read-only: safe while a run is writing."""
    from voronka import settings

    conf = settings.WarehouseSettings.from_env()
    if conf.kind == "duckdb":
        import duckdb

        if not conf.published_path.exists():
            print(f"No published marts at {conf.published_path}; run `make demo` first.")
            return 1
        with duckdb.connect(str(conf.published_path), read_only=True) as con:
            try:
                con.sql(args.sql).show(max_rows=args.max_rows, max_width=250)
            except duckdb.Error as exc:  # a typo in the SQL: the engine's message, no trace
                print(f"voronka query: {exc}", file=sys.stderr)
                return 1
    else:
        import psycopg2

        try:
            print(conf.open().query_df(args.sql).head(args.max_rows).to_string(index=False))
        except psycopg2.Error as exc:
            print(f"voronka query: {str(exc).strip()}", file=sys.stderr)
            return 1
    return 0


def _cmd_docs(args: argparse.Namespace) -> int:
    """dbt's docs site: every source, model and column with its description and tests, and the
    lineage graph, built from the configured warehouse (run the pipeline first)."""
    import json
    import subprocess
    from pathlib import Path

    from voronka import settings

    settings.WarehouseSettings.from_env().export_for_dbt()
    dbt = str(Path(sys.executable).with_name("dbt"))
    target = Path(args.target_path or settings.DBT_PROJECT_DIR / "target").resolve()
    project = ["--project-dir", str(settings.DBT_PROJECT_DIR),
               "--profiles-dir", str(settings.DBT_PROJECT_DIR), "--target-path", str(target)]
    as_of = settings.as_of_date()
    variables = ["--vars", json.dumps({"as_of_date": as_of.isoformat()})] if as_of else []
    code = subprocess.call([dbt, "docs", "generate", "--quiet", *project, *variables],
                           cwd=settings.DBT_PROJECT_DIR)
    if code:
        return code
    site = target / "index.html"
    print(f"dbt docs built: {site} (needs the JSON files beside it; `voronka docs --serve` "
          "serves them)")
    if args.serve:
        return subprocess.call([dbt, "docs", "serve", "--port", str(args.port),
                                "--no-browser", *project], cwd=settings.DBT_PROJECT_DIR)
    return 0


def _cmd_dashboard(args: argparse.Namespace) -> int:
    """Build the static dashboard from the published marts; optionally serve it."""
    from dashboard.serve import serve
    from dashboard.site import build_published, default_out_dir

    out = args.out or default_out_dir()
    if not args.no_build:
        try:
            report = build_published(out, lang=args.lang)
        except FileNotFoundError as exc:
            print(f"voronka dashboard: {exc}", file=sys.stderr)
            return 1
        print(report.line())
        if report.failed_pages:
            return 1
    if args.serve:
        try:
            return serve(out, port=args.port)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            print(f"voronka dashboard: port {args.port} is in use; choose another with --port",
                  file=sys.stderr)
            return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voronka", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the whole pipeline against local API emulators")
    demo.add_argument("--seed", type=int, default=42)
    demo.add_argument("--scale", type=float, default=1.0)
    demo.add_argument("--fresh", action="store_true", help="delete the demo warehouse first")
    demo.add_argument("--keep-history", action="store_true",
                      help="record the run in DAGSTER_HOME for `voronka dev` (slower: ~25 s "
                           "more on a cold run, for the event log's 2,920 daily partitions)")
    demo.set_defaults(func=_cmd_demo)

    run = sub.add_parser(
        "run", help="run the daily job against the configured accounts (env or .env), headless",
        description="Extract every configured source, land, dbt build, check, publish and sync "
                    "audiences, with a live step display. Exit code 0 when every step and "
                    "blocking check passed, 1 otherwise, 2 when the run could not start.")
    run.add_argument("--from", dest="date_from", type=_iso_date, metavar="DATE",
                     help="ad-spend backfill: first day to (re-)pull (default: a fresh "
                          "warehouse pulls the whole history, later runs each platform's "
                          "settling window)")
    run.add_argument("--until", dest="date_until", type=_iso_date, metavar="DATE",
                     help="ad-spend backfill: last day (default: yesterday in Moscow)")
    run.add_argument("--as-of", type=_iso_date, metavar="DATE",
                     help="the marts' as-of date (default: VORONKA_AS_OF_DATE, else the "
                          "newest date in the data)")
    run.add_argument("--env-file", type=Path, metavar="PATH",
                     help="settings file (default: ./.env if present); variables already set "
                          "in the environment win")
    run.add_argument("--no-history", action="store_true",
                     help="do not record the run in DAGSTER_HOME (the Dagster UI will not "
                          "show it)")
    run.set_defaults(func=_cmd_run)

    emu = sub.add_parser("emulators", help="serve every API emulator, fed by the demo business")
    emu.add_argument("--seed", type=int, default=42)
    emu.add_argument("--scale", type=float, default=1.0)
    emu.add_argument("--amocrm-port", type=int, default=8811)
    emu.add_argument("--direct-port", type=int, default=8812)
    emu.set_defaults(func=_cmd_emulators)

    dev = sub.add_parser("dev", help="emulators + `dagster dev` (UI on http://127.0.0.1:3000)")
    dev.add_argument("--seed", type=int, default=42)
    dev.add_argument("--scale", type=float, default=1.0)
    dev.add_argument("--amocrm-port", type=int, default=8811)
    dev.add_argument("--direct-port", type=int, default=8812)
    dev.add_argument("--port", type=int, default=3000)
    dev.set_defaults(func=_cmd_dev)

    docs = sub.add_parser("docs", help="build dbt's docs site (descriptions, tests, lineage)")
    docs.add_argument("--serve", action="store_true", help="then serve it on --port")
    docs.add_argument("--port", type=int, default=8080)
    docs.add_argument("--target-path",
                      help="where dbt writes the site (default: dbt_project/target)")
    docs.set_defaults(func=_cmd_docs)

    dash = sub.add_parser(
        "dashboard", help="build the dashboard (static site) from the published marts",
        description="Build a self-contained static dashboard (index.html opens from disk, no "
                    "network) from the published marts: DuckDB file or PostgreSQL `marts`.")
    dash.add_argument("--out", type=Path, metavar="DIR",
                      help="output folder (default: VORONKA_DASHBOARD_DIR, else dashboard/ "
                           "beside the published DuckDB file, i.e. data/dashboard)")
    dash.add_argument("--lang", choices=("ru", "en"), default="ru",
                      help="labels and number format (default: ru)")
    dash.add_argument("--serve", action="store_true",
                      help="then serve the folder on http://127.0.0.1:--port until Ctrl-C")
    dash.add_argument("--port", type=int, default=8050)
    dash.add_argument("--no-build", action="store_true",
                      help="with --serve: serve the folder as it is, without rebuilding")
    dash.set_defaults(func=_cmd_dashboard)

    query = sub.add_parser("query", help="run SQL against the published marts (read-only)")
    query.add_argument("sql")
    query.add_argument("--max-rows", type=int, default=40)
    query.set_defaults(func=_cmd_query)
    from audiences import cli as audiences_cli
    from voronka import doctor

    audiences_cli.add_parser(sub)
    doctor.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        print(f"voronka: a port is already in use ({exc.strerror}); is another `voronka dev` "
              "or `voronka emulators` running? Choose others with --amocrm-port/--direct-port.",
              file=sys.stderr)
        return 1


def run() -> None:
    """The `voronka` command: ``main``, then an exit without the interpreter's teardown.

    The teardown frees every object of Dagster, dbt, Great Expectations and pandas one by
    one: ~3 s at the end of each `voronka demo` and `voronka run` here. What has to happen at
    exit still does: the exit handlers run (temporary folders, logging) and the output is
    flushed. A command that raises exits the usual way, with its traceback."""
    exit_without_teardown(main())


def exit_without_teardown(code: int | None) -> None:
    """Run the exit handlers, flush the output and end the process with ``code``."""
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError):  # a reader that went away (`voronka query ... | head`)
            stream.flush()
    os._exit(code or 0)


if __name__ == "__main__":
    run()
