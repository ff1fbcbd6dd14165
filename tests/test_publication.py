"""Publication that checks cannot be skipped; the PostgreSQL build-schema swap and BI role.

Two layers. A tiny real graph (one mart written to a real DuckDB warehouse, one blocking check,
the real `published/marts` asset, runs on a real Dagster instance) pins the verdict rules
run by run. Then the whole pipeline on a shop's order files, once per backend: after a full run,
a mart is spoiled, its checks run alone and fail, and `published/marts` selected alone
publishes nothing; on PostgreSQL the BI role reads `marts` only, BI keeps seeing the old marts
while the build schema fails its checks, and a fixed build is swapped in with the grants.
"""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import psycopg2
import pytest
from _support import PG_HOST, PG_PORT, pg_admin, pg_test_database

from orchestration.assets.publish import PUBLISHED_KEY, build_published_marts
from orchestration.resources import WarehouseResource
from voronka import settings
from warehouse.publication import scram_verifier

# -- the verdict on a one-mart graph ---------------------------------------------------------

MART = dg.AssetKey(["marts", "tiny"])
VERDICT = {"passed": True, "severity": dg.AssetCheckSeverity.ERROR}


@dg.asset(key=MART)
def tiny_mart(warehouse: WarehouseResource) -> None:
    with warehouse.open().connect() as conn:
        conn.cursor().execute("create schema if not exists marts")
        conn.cursor().execute("create or replace table marts.tiny as select 42 as answer")


@dg.asset_check(asset=MART, name="answer_is_right", blocking=True)
def tiny_check() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=VERDICT["passed"], severity=VERDICT["severity"])


CHECK_KEY = dg.AssetCheckKey(MART, "answer_is_right")
TINY = dg.Definitions(assets=[tiny_mart, build_published_marts(["tiny"], [CHECK_KEY])],
                      asset_checks=[tiny_check], resources={"warehouse": WarehouseResource()})


def _run(instance: dg.DagsterInstance, assets: set[dg.AssetKey],
         checks: set[dg.AssetCheckKey]) -> dg.ExecuteInProcessResult:
    job = TINY.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection=assets, asset_check_selection=checks)
    return job.execute_in_process(instance=instance, raise_on_error=False)


def _refusal(result: dg.ExecuteInProcessResult) -> str:
    [failure] = [e for e in result.all_events if e.is_step_failure]
    return failure.step_failure_data.error.message


def _published_answer(path: Path) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as bi:
        return bi.sql("select answer from marts.tiny").fetchall()


@pytest.fixture
def tiny_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VORONKA_WAREHOUSE", "duckdb")
    monkeypatch.setenv("VORONKA_DUCKDB_PATH", str(tmp_path / "warehouse.duckdb"))
    monkeypatch.setenv("VORONKA_PUBLISHED_PATH", str(tmp_path / "voronka.duckdb"))
    monkeypatch.setitem(VERDICT, "passed", True)
    monkeypatch.setitem(VERDICT, "severity", dg.AssetCheckSeverity.ERROR)
    return tmp_path / "voronka.duckdb"


def test_publishing_alone_follows_the_checks_of_the_latest_build(tiny_env: Path) -> None:
    instance = dg.DagsterInstance.ephemeral()
    assert _run(instance, {MART, PUBLISHED_KEY}, {CHECK_KEY}).success
    assert _published_answer(tiny_env) == [(42,)]
    published_at = tiny_env.stat().st_mtime_ns

    VERDICT["passed"] = False  # the checks run again, alone, and fail
    assert not _run(instance, set(), {CHECK_KEY}).success
    refused = _run(instance, {PUBLISHED_KEY}, set())
    assert not refused.success
    message = _refusal(refused)
    assert "Publication refused, nothing was published" in message
    assert "marts/tiny check answer_is_right failed" in message
    assert tiny_env.stat().st_mtime_ns == published_at

    # a new build whose checks were left out of the selection: not vouched for either
    VERDICT["passed"] = True
    assert _run(instance, {MART}, set()).success
    message = _refusal(_run(instance, {PUBLISHED_KEY}, set()))
    assert "marts/tiny check answer_is_right has not evaluated the latest build" in message

    # its checks pass: publishing alone goes through
    assert _run(instance, set(), {CHECK_KEY}).success
    assert _run(instance, {PUBLISHED_KEY}, set()).success
    assert tiny_env.stat().st_mtime_ns != published_at


def test_a_warning_does_not_block_and_an_instance_without_history_refuses(
    tiny_env: Path,
) -> None:
    VERDICT.update(passed=False, severity=dg.AssetCheckSeverity.WARN)
    instance = dg.DagsterInstance.ephemeral()
    result = _run(instance, {MART, PUBLISHED_KEY}, {CHECK_KEY})
    assert result.success
    assert _published_answer(tiny_env) == [(42,)]

    fresh = dg.DagsterInstance.ephemeral()  # e.g. `dagster asset materialize` without DAGSTER_HOME
    message = _refusal(_run(fresh, {PUBLISHED_KEY}, set()))
    assert "marts/tiny has never been built in this Dagster instance" in message


# -- the demo pipeline, once per backend -----------------------------------------------------

SEED, SCALE = 5, 0.1
BI_PASSWORD = "bi-secret-Zq81"
ORDERS = dg.AssetKey(["marts", "fct_orders"])


@dataclass
class Pipeline:
    """A full `daily_refresh` against the emulators, on a Dagster instance kept for more runs."""

    backend: str
    instance: dg.DagsterInstance
    defs: dg.Definitions
    result: dg.ExecuteInProcessResult
    wh: Any
    role: str
    database: str

    def run(self, assets: set[dg.AssetKey],
            checks: set[dg.AssetCheckKey]) -> dg.ExecuteInProcessResult:
        """The same graph, only the selected assets and checks (as the UI or the CLI would)."""
        job = self.defs.resolve_job_def("daily_refresh").get_subset(
            asset_selection=assets, asset_check_selection=checks)
        return job.execute_in_process(instance=self.instance, raise_on_error=False)

    def orders_checks(self) -> set[dg.AssetCheckKey]:
        return set(self.defs.resolve_asset_graph().get(ORDERS).check_keys)

    @contextmanager
    def bi(self) -> Iterator[Any]:
        """A cursor as the BI role (the test server trusts loopback: no password asked)."""
        conn = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=self.role, dbname=self.database)
        conn.autocommit = True
        try:
            yield conn.cursor()
        finally:
            conn.close()

    def published_orders(self) -> int:
        """fct_orders rows as BI sees them."""
        if self.backend == "duckdb":
            path = settings.WarehouseSettings.from_env().published_path
            with duckdb.connect(str(path), read_only=True) as bi:
                return bi.sql("select count(*) from marts.fct_orders").fetchall()[0][0]
        with self.bi() as cur:
            cur.execute("select count(*) from marts.fct_orders")
            return cur.fetchall()[0][0]


@contextmanager
def _backend_env(backend: str, mp: pytest.MonkeyPatch, tmp: Path) -> Iterator[str]:
    """The warehouse settings of one backend; on PostgreSQL a fresh database and BI role,
    both removed after."""
    if backend == "duckdb":
        mp.setenv("VORONKA_WAREHOUSE", "duckdb")
        mp.setenv("VORONKA_DUCKDB_PATH", str(tmp / "warehouse.duckdb"))
        mp.setenv("VORONKA_PUBLISHED_PATH", str(tmp / "voronka.duckdb"))
        yield ""
        return
    role = f"voronka_bi_{uuid.uuid4().hex[:8]}"
    try:
        with pg_test_database() as database:  # dropped first: the role has grants in it
            for name, value in {"VORONKA_WAREHOUSE": "postgres", "VORONKA_POSTGRES_DB": database,
                                "VORONKA_BI_ROLE": role, "VORONKA_BI_PASSWORD": BI_PASSWORD,
                                }.items():
                mp.setenv(name, value)
            yield database
    finally:
        pg_admin(f"drop role if exists {role}")


#: every variable that switches a source on: the pipeline here runs on the order files alone
SOURCE_PREFIXES = ("AMOCRM_", "YANDEX_DIRECT_", "VK_ADS_", "GOOGLE_ADS_", "META_ADS_",
                   "BITRIX24_", "VORONKA_FILES_", "VORONKA_AUDIENCE", "META_AUDIENCES_",
                   "GOOGLE_DATA_MANAGER_", "YANDEX_AUDIENCE_")


@pytest.fixture(scope="module", params=["duckdb", pytest.param("postgres",
                                                                marks=pytest.mark.postgres)])
def pipeline(request: pytest.FixtureRequest,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    """One full run per backend on a small shop's order files (the cheapest whole pipeline:
    landing, dbt build with its tests, the GX checks, publication)."""
    from orchestration.definitions import build_defs
    from synthetic import generate
    from voronka.runner import run_daily_refresh

    tmp = tmp_path_factory.mktemp(f"publication_{request.param}")
    business = generate(seed=SEED, scale=SCALE)
    business.write_order_files(tmp / "files")
    with pytest.MonkeyPatch.context() as mp, _backend_env(request.param, mp, tmp) as database:
        for name in [n for n in os.environ if n.startswith(SOURCE_PREFIXES)]:
            mp.delenv(name)
        mp.setenv("VORONKA_FILES_DIR", str(tmp / "files"))
        mp.setenv("VORONKA_AS_OF_DATE", business.end.isoformat())
        mp.setenv("VORONKA_STATE_DIR", str(tmp / "state"))
        # no segments: audience syncs follow publication and are not under test here
        (tmp / "no_segments").mkdir()
        mp.setenv("VORONKA_SEGMENTS_DIR", str(tmp / "no_segments"))
        instance = dg.DagsterInstance.ephemeral()
        result = run_daily_refresh(instance=instance)
        yield Pipeline(request.param, instance, build_defs(), result,
                       settings.WarehouseSettings.from_env().open(),
                       os.environ.get("VORONKA_BI_ROLE", ""), database)


def _spoil_orders(p: Pipeline) -> None:
    """The latest build's fct_orders repeats an order (the unique order_id checks fail). On
    PostgreSQL the build lives in marts_build, which BI cannot read."""
    table = p.wh.mart_table("fct_orders")
    assert table == ("marts_build.fct_orders" if p.backend == "postgres" else "marts.fct_orders")
    with p.wh.connect() as conn:
        conn.cursor().execute(f"insert into {table} select * from {table} limit 1")


def test_failed_checks_leave_published_marts_alone(pipeline: Pipeline) -> None:
    assert pipeline.result.success
    published = pipeline.published_orders()
    assert published > 0
    _spoil_orders(pipeline)

    checked = pipeline.run(set(), pipeline.orders_checks())
    failed = {e.check_name for e in checked.get_asset_check_evaluations() if not e.passed}
    assert "unique_fct_orders_order_id" in failed  # dbt's test, run as an asset check

    refused = pipeline.run({PUBLISHED_KEY}, set())
    assert not refused.success
    assert "marts/fct_orders check unique_fct_orders_order_id failed" in _refusal(refused)
    assert pipeline.published_orders() == published  # BI still reads the checked build


def _first_table(p: Pipeline, schema: str) -> str:
    tables = p.wh.list_tables(schema)
    assert tables, f"nothing built in {schema}"
    return f"{schema}.{tables[0]}"


@pytest.mark.parametrize("pipeline", [pytest.param("postgres", marks=pytest.mark.postgres)],
                         indirect=True)
def test_bi_role_reads_marts_only_and_every_publication_regrants_it(pipeline: Pipeline) -> None:
    assert pipeline.result.success
    with pipeline.bi() as cur:
        cur.execute("select count(*) from marts.dim_customers")
        assert cur.fetchall()[0][0] > 0
        for schema in ("raw", "staging", "intermediate", "marts_build"):
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                cur.execute(f"select 1 from {_first_table(pipeline, schema)} limit 1")

    with pipeline.wh.connect() as conn:  # a sound build awaits publication
        cur = conn.cursor()
        cur.execute("delete from marts_build.fct_orders")
        cur.execute("insert into marts_build.fct_orders select * from marts.fct_orders")
    assert pipeline.run(set(), pipeline.orders_checks()).success
    published = pipeline.run({PUBLISHED_KEY}, set())
    assert published.success
    [materialization] = published.asset_materializations_for_node("published__marts")
    assert "fct_orders" in materialization.metadata["published_tables"].value
    assert materialization.metadata["warnings"].value == []
    with pipeline.bi() as cur:  # the new tables were granted in the same transaction
        cur.execute("select count(*) from marts.fct_orders")
        assert cur.fetchall()[0][0] == pipeline.wh.count_rows("marts_build.fct_orders")

    assert _is_verifier_of(_stored_verifier(pipeline.role), BI_PASSWORD)
    for run in pipeline.instance.get_runs():
        logged = " ".join(str(e) for e in pipeline.instance.all_logs(run.run_id))
        assert BI_PASSWORD not in logged



def _stored_verifier(role: str) -> str:
    conn = psycopg2.connect(host=PG_HOST, port=PG_PORT, user="postgres", dbname="postgres")
    try:
        cur = conn.cursor()
        cur.execute("select rolpassword from pg_authid where rolname = %s", (role,))
        return cur.fetchall()[0][0]
    finally:
        conn.close()


def _is_verifier_of(verifier: str, password: str) -> bool:
    """Recompute the verifier with its own iterations and salt."""
    iterations, salt = verifier.split("$")[1].split(":")
    return scram_verifier(password, int(iterations), base64.b64decode(salt)) == verifier


@pytest.mark.postgres
def test_the_password_verifier_is_the_one_postgres_makes() -> None:
    role = f"voronka_scram_{uuid.uuid4().hex[:8]}"
    pg_admin("set password_encryption = 'scram-sha-256'; "
             f"create role {role} password '{BI_PASSWORD}'")
    try:
        assert _is_verifier_of(_stored_verifier(role), BI_PASSWORD)
        assert not _is_verifier_of(_stored_verifier(role), BI_PASSWORD + "x")
    finally:
        pg_admin(f"drop role {role}")


# -- PostgreSQL publication without the pipeline ---------------------------------------------

def test_a_bad_bi_role_name_is_refused_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from warehouse.publication import BIRole

    monkeypatch.setenv("VORONKA_BI_ROLE", "bi; drop schema marts")
    with pytest.raises(ValueError, match="VORONKA_BI_ROLE"):
        BIRole.from_env()
    monkeypatch.setenv("VORONKA_BI_ROLE", "metabase_reader")
    monkeypatch.setenv("VORONKA_BI_PASSWORD", BI_PASSWORD)
    assert BI_PASSWORD not in repr(BIRole.from_env())


@pytest.mark.postgres
def test_a_user_who_may_not_manage_roles_still_publishes_with_a_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """voronka's database user owns its database but may not create roles: the build is
    swapped in (a subset build leaves the other marts alone) and a warning says why there is
    no BI role."""
    from warehouse.postgres_backend import PostgresWarehouse

    suffix = uuid.uuid4().hex[:8]
    owner, database, role = f"voronka_owner_{suffix}", f"voronka_pub_{suffix}", f"bi_{suffix}"
    pg_admin(f"create role {owner} login")
    pg_admin(f"create database {database} owner {owner}")
    monkeypatch.setenv("VORONKA_BI_ROLE", role)
    try:
        wh = PostgresWarehouse(f"postgresql://{owner}@{PG_HOST}:{PG_PORT}/{database}")
        with wh.connect() as conn:
            cur = conn.cursor()
            cur.execute("create schema marts; create schema marts_build")
            cur.execute("create table marts.kept as select 1 as n")
            cur.execute("create table marts.fresh as select 1 as n")
            cur.execute("create table marts_build.fresh as select 2 as n union all select 3")
            cur.execute("comment on column marts_build.fresh.n is 'the answer'")
        publication = wh.publish_marts(["fresh", "kept"])
        assert publication.tables == ("fresh",)
        [warning] = publication.warnings
        assert f"could not create the BI role '{role}'" in warning
        assert wh.scalar("select sum(n) from marts.fresh") == 5
        assert wh.scalar("select n from marts.kept") == 1
        assert wh.scalar("select col_description('marts.fresh'::regclass, 1)") == "the answer"
        assert wh.mart_table("fresh") == "marts_build.fresh"  # the build stays for the checks
        assert wh.mart_table("kept") == "marts.kept"
    finally:
        pg_admin(f"drop database if exists {database} with (force)")
        pg_admin(f"drop role if exists {owner}")
