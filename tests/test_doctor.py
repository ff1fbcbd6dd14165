"""`voronka doctor` against the emulators: each configured source checked with one cheap call,
wrong credentials and missing settings named in a sentence, never a secret, exit code 0/1."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from voronka import doctor
from voronka.demo import DemoServers, running_emulators

# Every variable the doctor may read: cleared before each test so only what a test sets counts
# (and anything the --env-file loader adds is removed again by monkeypatch).
PREFIXES = ("AMOCRM_", "BITRIX24_", "YANDEX_", "VK_ADS_", "GOOGLE_", "META_", "VORONKA_")
SECRET_NAMES = ("AMOCRM_CLIENT_SECRET", "AMOCRM_REFRESH_TOKEN", "YANDEX_DIRECT_TOKEN",
                "VK_ADS_CLIENT_SECRET", "GOOGLE_ADS_CLIENT_SECRET", "GOOGLE_ADS_REFRESH_TOKEN",
                "GOOGLE_ADS_DEVELOPER_TOKEN", "META_ADS_ACCESS_TOKEN",
                "GOOGLE_DATA_MANAGER_ACCESS_TOKEN", "YANDEX_AUDIENCE_TOKEN")
SOURCE_PREFIXES = {"amocrm": ("AMOCRM_",), "bitrix24": ("BITRIX24_",),
                   "yandex_direct": ("YANDEX_DIRECT_",), "vk_ads": ("VK_ADS_",),
                   "google_ads": ("GOOGLE_ADS_",), "meta_ads": ("META_ADS_",),
                   "files": ("VORONKA_FILES_",)}
ALL_SOURCES = tuple(SOURCE_PREFIXES)


@pytest.fixture(scope="module")
def servers() -> Iterator[DemoServers]:
    with running_emulators(seed=5, scale=0.05) as running:
        yield running


@pytest.fixture(scope="module")
def shared_state(tmp_path_factory) -> Path:
    """One token store for the tests with good credentials: amoCRM's refresh token is
    single-use and a VK cabinet holds 5 tokens, so they reuse what the first check stored."""
    return tmp_path_factory.mktemp("doctor_state")


def configure(monkeypatch, tmp_path: Path, servers: DemoServers, sources: tuple[str, ...],
              state: Path, **overrides: str | None) -> None:
    """The environment of ``sources`` pointed at the emulators, a scratch DuckDB, and the
    overrides (None unsets)."""
    for name in list(os.environ):
        if name.startswith(PREFIXES):
            monkeypatch.delenv(name)
    env = servers.environment()
    for name, value in env.items():
        if any(name.startswith(p) for s in sources for p in SOURCE_PREFIXES[s]):
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("VORONKA_STATE_DIR", str(state))
    monkeypatch.setenv("VORONKA_DUCKDB_PATH", str(tmp_path / "warehouse.duckdb"))
    monkeypatch.setenv("VORONKA_PUBLISHED_PATH", str(tmp_path / "voronka.duckdb"))
    for name, value in overrides.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)


def run_doctor(capsys, tmp_path: Path, env_file_text: str = "") -> tuple[int, str]:
    """`voronka doctor --env-file <scratch file>` (never the developer's own .env)."""
    env_file = tmp_path / "doctor.env"
    env_file.write_text(env_file_text)
    parser = argparse.ArgumentParser(prog="voronka")
    doctor.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["doctor", "--env-file", str(env_file)])
    code = args.func(args)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def lines_of(out: str, subject: str) -> list[str]:
    return [line for line in out.splitlines() if f" {subject} " in f"{line} "]


def assert_no_secret(out: str, *values: str) -> None:
    for value in values:
        assert value not in out, "a secret reached the doctor's output"


def test_all_configured_sources_good(monkeypatch, tmp_path, capsys, servers, shared_state):
    """Every source, the warehouse and the audience destinations pass; exit code 0."""
    configure(monkeypatch, tmp_path, servers, ALL_SOURCES, shared_state,
              VORONKA_AUDIENCE_PLATFORMS=servers.environment()["VORONKA_AUDIENCE_PLATFORMS"])
    for name, value in servers.audiences.environment().items():
        monkeypatch.setenv(name, value)
    before = len(servers.amocrm.request_log)

    code, out = run_doctor(capsys, tmp_path)

    assert code == 0, out
    expected = {"amoCRM": "account Voronka Demo", "Yandex Direct": "currency RUB",
                "VK Ads": "ad plans", "Google Ads": "customer 1234567890",
                "Meta Ads": "ad account act_1234567890", "Files": "orders file(s)",
                "Bitrix24": "acting as user #1", "warehouse": "DuckDB"}
    for subject, words in expected.items():
        [line] = lines_of(out, subject)
        assert line.lstrip().startswith("ok") and words in line, line
    assert len(lines_of(out, "audiences")) == 6  # meta, google, yandex, amocrm, bitrix24, unisender
    assert "FAIL" not in out and "all good" in out
    paths = [e["path"] for e in servers.amocrm.request_log[before:]]
    assert "/api/v4/account" in paths and not any(p.startswith("/api/v4/leads") for p in paths)
    env = servers.environment()
    assert_no_secret(out, *(env[n] for n in SECRET_NAMES), env["BITRIX24_WEBHOOK_URL"],
                     "demo-b24-webhook-7kq2")


def test_wrong_credentials_are_named_without_the_secret(monkeypatch, tmp_path, capsys,
                                                       servers):
    """A rejected credential per source: one FAIL line naming the variable to fix; the wrong
    values (which are secrets too) never appear."""
    wrong = {"AMOCRM_REFRESH_TOKEN": "wrong-amo-refresh-4f1",
             "YANDEX_DIRECT_TOKEN": "wrong-direct-token-9c2",
             "VK_ADS_CLIENT_SECRET": "wrong-vk-secret-77a",
             "GOOGLE_ADS_REFRESH_TOKEN": "wrong-google-refresh-e3",
             "META_ADS_ACCESS_TOKEN": "wrong-meta-token-5d"}
    webhook = f"{servers.bitrix24.base_url}/rest/1/wrong-webhook-code-31/"
    configure(monkeypatch, tmp_path, servers, ALL_SOURCES, tmp_path / "fresh_state",
              BITRIX24_WEBHOOK_URL=webhook, **wrong)

    code, out = run_doctor(capsys, tmp_path)

    assert code == 1
    expected = {
        "amoCRM": ("refresh token was rejected (HTTP 401)", "AMOCRM_REFRESH_TOKEN"),
        "Bitrix24": ("incoming webhook was rejected (HTTP 401", "BITRIX24_WEBHOOK_URL"),
        "Yandex Direct": ("OAuth token was rejected (error 53", "YANDEX_DIRECT_TOKEN"),
        "VK Ads": ("client credentials were rejected", "VK_ADS_CLIENT_SECRET"),
        "Google Ads": ("OAuth refresh was refused", "GOOGLE_ADS_REFRESH_TOKEN"),
        "Meta Ads": ("access token was rejected (Graph code 190)", "META_ADS_ACCESS_TOKEN"),
    }
    for subject, words in expected.items():
        [line] = lines_of(out, subject)
        assert line.lstrip().startswith("FAIL") and all(w in line for w in words), line
    [files] = lines_of(out, "Files")
    assert files.lstrip().startswith("ok")
    assert "6 problems" in out
    assert_no_secret(out, *wrong.values(), webhook, "wrong-webhook-code-31",
                     servers.environment()["AMOCRM_CLIENT_SECRET"])


def test_amocrm_client_credentials_named(monkeypatch, tmp_path, capsys, servers):
    """A wrong client secret is told apart from a spent refresh token."""
    configure(monkeypatch, tmp_path, servers, ("amocrm",), tmp_path / "fresh_state",
              AMOCRM_CLIENT_SECRET="not-the-client-secret-8b")

    code, out = run_doctor(capsys, tmp_path)

    [line] = lines_of(out, "amoCRM")
    assert code == 1 and "credentials were rejected" in line and "AMOCRM_CLIENT_SECRET" in line
    assert_no_secret(out, "not-the-client-secret-8b", servers.environment()["AMOCRM_REFRESH_TOKEN"])


def test_missing_settings_are_named_before_any_call(monkeypatch, tmp_path, capsys, servers,
                                                    shared_state):
    """Settings missing or malformed: named (each missing variable), and the source is not
    called at all."""
    configure(monkeypatch, tmp_path, servers, ("amocrm", "yandex_direct", "vk_ads"),
              tmp_path / "fresh_state", AMOCRM_CLIENT_SECRET=None, AMOCRM_REFRESH_TOKEN=None,
              YANDEX_DIRECT_START_DATE="01.02.2025", VK_ADS_CLIENT_SECRET=None)
    before = len(servers.amocrm.request_log), len(servers.vk.request_log)

    code, out = run_doctor(capsys, tmp_path)

    assert code == 1
    [amo] = lines_of(out, "amoCRM")
    assert "AMOCRM_CLIENT_SECRET, AMOCRM_REFRESH_TOKEN are not set" in amo
    assert "AMOCRM_LONG_LIVED_TOKEN" in amo  # the alternative is named too
    [direct] = lines_of(out, "Yandex Direct")
    assert "YANDEX_DIRECT_START_DATE must be an ISO date" in direct
    [vk] = lines_of(out, "VK Ads")
    assert "VK_ADS_CLIENT_SECRET is not set" in vk
    assert (len(servers.amocrm.request_log), len(servers.vk.request_log)) == before


def test_env_file_configures_the_doctor(monkeypatch, tmp_path, capsys, servers, shared_state):
    """Settings from --env-file count like the environment (which wins); files contract
    problems are named per file, one sentence each."""
    configure(monkeypatch, tmp_path, servers, (), shared_state)
    folder = tmp_path / "exports"
    (folder / "orders").mkdir(parents=True)
    (folder / "orders" / "shop.csv").write_text("order_id;order_date;sum\n1;2026-01-01;5\n")
    (folder / "orders" / "ok.csv").write_text("order_id,order_date,amount\n1,2026-01-01,5\n")
    pq.write_table(pa.table({"order_id": ["7"], "Amount ": [5.0]}),
                   folder / "orders" / "crm.parquet")
    pq.write_table(pa.table({"order_id": ["8"], "order_date": ["2026-01-02"], "amount": [1.0]}),
                   folder / "orders" / "good.parquet")
    (folder / "ad_spend").mkdir()
    (folder / "ad_spend" / "offline.csv").write_text("date,platform,spend\n")

    code, out = run_doctor(capsys, tmp_path, f"VORONKA_FILES_DIR={folder}\n")

    assert code == 1
    problems = lines_of(out, "Files")
    assert len(problems) == 3 and all(p.lstrip().startswith("FAIL") for p in problems)
    [parquet] = [p for p in problems if "orders/crm.parquet" in p]
    assert "column(s) 'order_date' missing" in parquet  # ' Amount ' counts as amount
    [shop] = [p for p in problems if "orders/shop.csv" in p]
    assert "required column(s) 'amount' missing" in shop
    [offline] = [p for p in problems if "ad_spend/offline.csv" in p]
    assert "'campaign_id'" in offline


def test_nothing_configured_unreachable_and_bad_warehouse(monkeypatch, tmp_path, capsys,
                                                         servers, shared_state):
    """No source at all is a problem; so are an API nobody answers and a DuckDB path that
    cannot be written."""
    configure(monkeypatch, tmp_path, servers, (), shared_state)
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv("VORONKA_DUCKDB_PATH", str(blocker / "warehouse.duckdb"))
    code, out = run_doctor(capsys, tmp_path)
    assert code == 1
    assert "no source is configured" in out and "VORONKA_FILES_DIR" in out
    [wh] = lines_of(out, "warehouse")
    assert wh.lstrip().startswith("FAIL") and "VORONKA_DUCKDB_PATH" in wh

    configure(monkeypatch, tmp_path, servers, ("yandex_direct",), shared_state,
              YANDEX_DIRECT_BASE_URL="http://127.0.0.1:9")
    code, out = run_doctor(capsys, tmp_path)
    [direct] = lines_of(out, "Yandex Direct")
    assert code == 1 and "cannot reach 127.0.0.1:9" in direct
    assert "YANDEX_DIRECT_BASE_URL" in direct


@pytest.mark.postgres
def test_postgres_warehouse(monkeypatch, tmp_path, capsys, servers, shared_state):
    """PostgreSQL reachable and writable; a missing database and an unknown user named."""
    configure(monkeypatch, tmp_path, servers, ("bitrix24",), shared_state,
              VORONKA_WAREHOUSE="postgres", VORONKA_POSTGRES_DB="postgres")
    code, out = run_doctor(capsys, tmp_path)
    [wh] = lines_of(out, "warehouse")
    assert code == 0 and wh.lstrip().startswith("ok") and "PostgreSQL" in wh

    monkeypatch.setenv("VORONKA_POSTGRES_DB", "voronka_doctor_absent")
    code, out = run_doctor(capsys, tmp_path)
    assert code == 1 and "database voronka_doctor_absent does not exist" in out

    monkeypatch.setenv("VORONKA_POSTGRES_DB", "postgres")
    monkeypatch.setenv("VORONKA_POSTGRES_USER", "voronka_doctor_nobody")
    monkeypatch.setenv("VORONKA_POSTGRES_PASSWORD", "pg-password-never-shown")
    code, out = run_doctor(capsys, tmp_path)
    [wh] = lines_of(out, "warehouse")
    assert code == 1 and "refused user voronka_doctor_nobody" in wh
    assert_no_secret(out, "pg-password-never-shown")


def test_run_wide_settings_are_checked_naming_the_setting(monkeypatch, tmp_path, capsys,
                                                          servers, shared_state):
    """A bad account currency, a broken channel mapping file, a missing rates file and a
    half-configured Telegram alert are each one line naming the setting (and the file line)."""
    mapping = tmp_path / "channels.csv"
    mapping.write_text("utm_source,utm_medium,channel\nvk,*,vk_ads\nvk,*,other\n")
    configure(monkeypatch, tmp_path, servers, ("files",), shared_state,
              VORONKA_CURRENCY="rubles", VORONKA_CHANNEL_MAPPING=str(mapping),
              VORONKA_CURRENCY_RATES=str(tmp_path / "no_rates.csv"),
              VORONKA_ALERT_TELEGRAM_BOT_TOKEN="123:telegram-secret-never-shown")

    code, out = run_doctor(capsys, tmp_path)

    assert code == 1
    [currency, rates] = lines_of(out, "currency")
    assert "VORONKA_CURRENCY" in currency and "'RUBLES'" in currency
    assert "no_rates.csv" in rates
    [channels] = lines_of(out, "channels")
    assert "channels.csv" in channels and "line 3" in channels
    [alerts] = lines_of(out, "alerts")
    assert "VORONKA_ALERT_TELEGRAM_CHAT_ID" in alerts
    assert_no_secret(out, "telegram-secret-never-shown")
