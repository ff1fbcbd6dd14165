"""`voronka run` as a user runs it: a `.env` file, the command, its live steps, its exit code.

Each test starts the real command in a subprocess with a clean environment (only what the
`.env` file or the test sets), so nothing from other tests' emulators leaks in.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from _support import Receiver

from voronka.demo import DEMO_DIRECT_TOKEN, running_emulators

VORONKA = str(Path(sys.executable).with_name("voronka"))
SOURCE_PREFIXES = ("AMOCRM_", "YANDEX_", "VK_ADS_", "GOOGLE_", "META_", "BITRIX24_",
                   "VORONKA_", "DAGSTER_")


def clean_environment() -> dict[str, str]:
    """The test process's environment without any source or voronka setting."""
    return {k: v for k, v in os.environ.items() if not k.startswith(SOURCE_PREFIXES)}


def write_env_file(path: Path, settings: dict[str, str]) -> Path:
    path.write_text("".join(f"{name}={value}\n" for name, value in settings.items()))
    return path


def warehouse_settings(folder: Path) -> dict[str, str]:
    return {
        "VORONKA_DUCKDB_PATH": str(folder / "warehouse.duckdb"),
        "VORONKA_PUBLISHED_PATH": str(folder / "voronka.duckdb"),
        "VORONKA_STATE_DIR": str(folder / "state"),
        "VORONKA_LOG_DIR": str(folder / "logs"),
    }


def run_voronka(*args: str, cwd: Path, env: dict[str, str] | None = None,
                timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([VORONKA, "run", "--no-history", *args], cwd=cwd,
                          env=env or clean_environment(), capture_output=True, text=True,
                          timeout=timeout)


def test_run_exits_non_zero_and_names_the_failed_step(tmp_path: Path) -> None:
    """A wrong Yandex Direct token: the raw step fails, the rest is skipped, the summary names
    the step and the API's error, the exit code is 1, and the token is nowhere in the output."""
    wrong_token = "not-the-direct-token-5f2c"
    receiver = Receiver()  # a Slack-style webhook on loopback: no daemon, the run posts itself
    with running_emulators(seed=5, scale=0.05) as servers:
        env = {**clean_environment(), **warehouse_settings(tmp_path),
               "YANDEX_DIRECT_BASE_URL": servers.direct.base_url,
               "YANDEX_DIRECT_TOKEN": wrong_token,
               "YANDEX_DIRECT_CLIENT_LOGIN": servers.business.subdomain,
               "YANDEX_DIRECT_START_DATE": servers.business.start.isoformat(),
               "YANDEX_DIRECT_UNTIL_DATE": servers.business.end.isoformat(),
               "VORONKA_ALERT_WEBHOOK_URL": f"{receiver.url}/hooks/secret-path"}
        assert wrong_token != DEMO_DIRECT_TOKEN
        done = run_voronka(cwd=tmp_path, env=env)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out[-3000:]
    assert "FAILED step raw__yandex_direct__campaign_stats" in out
    # the live display showed the failure and what did not run because of it
    assert "FAIL" in out and "assets not materialised because a step they depend on" in out
    assert wrong_token not in out
    receiver.server.shutdown()
    [(path, body)] = receiver.posts
    assert path == "/hooks/secret-path" and "raw__yandex_direct__campaign_stats" in body["text"]
    assert wrong_token not in body["text"] and "Failure alert sent to webhook" in out
    assert wrong_token not in (tmp_path / "logs" / "run.log").read_text()


@pytest.mark.parametrize(("args", "settings", "message"), [
    ((), {}, "no source is configured"),
    (("--from", "2025-01-01"), {"VORONKA_FILES_DIR": "files"},
     "no ad platform is configured"),
    (("--from", "2025-03-01", "--until", "2025-02-01"),
     {"YANDEX_DIRECT_CLIENT_LOGIN": "shop", "YANDEX_DIRECT_TOKEN": "t",
      "YANDEX_DIRECT_START_DATE": "2025-01-01"}, "is after --until"),
    (("--from", "2024-06-01", "--until", "2025-02-01"),
     {"YANDEX_DIRECT_CLIENT_LOGIN": "shop", "YANDEX_DIRECT_TOKEN": "t",
      "YANDEX_DIRECT_START_DATE": "2025-01-01"}, "before the earliest ad-platform start date"),
    (("--env-file", "missing.env"), {}, "no such file"),
    ((), {"VORONKA_FILES_DIR": "files", "VORONKA_WAREHOUSE": "postgres",
          "VORONKA_POSTGRES_PORT": "1"}, "PostgreSQL at 127.0.0.1:1 (user postgres) cannot be"),
])
def test_run_refuses_to_start_with_a_clear_reason(
    tmp_path: Path, args: tuple[str, ...], settings: dict[str, str], message: str,
) -> None:
    (tmp_path / "files").mkdir()
    env = {**clean_environment(), **warehouse_settings(tmp_path), **settings}
    done = run_voronka(*args, cwd=tmp_path, env=env, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr


def test_query_with_a_typo_says_what_is_wrong_without_a_traceback(tmp_path: Path) -> None:
    published = tmp_path / "voronka.duckdb"
    with duckdb.connect(str(published)) as con:
        con.execute("create schema marts; create table marts.fct_orders as select 1 as amount")
    env = {**clean_environment(), "VORONKA_PUBLISHED_PATH": str(published)}
    done = subprocess.run([VORONKA, "query", "select amout from marts.fct_orders"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.startswith("voronka query: Binder Error") and "amout" in done.stderr
    assert "Traceback" not in done.stderr
