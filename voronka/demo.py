"""The demo: a seeded synthetic business served by local API emulators, run end to end.

The real extractors talk HTTP to the emulators, exactly as they would to amoCRM and Yandex
Direct; only the base URLs and the (demo) credentials differ.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

from emulators import AmoCRMEmulator, YandexDirectEmulator
from synthetic import SyntheticBusiness, generate
from voronka import settings

DEMO_AMOCRM = {
    "client_id": "demo-client",
    "client_secret": "demo-secret",
    "refresh_token": "demo-refresh-0",
    "redirect_uri": "http://127.0.0.1/callback",
}
DEMO_DIRECT_TOKEN = "demo-direct-token"
VORONKA_SCHEMAS = ("raw", "seeds", "staging", "intermediate", "marts")


@dataclass
class DemoServers:
    business: SyntheticBusiness
    amocrm: AmoCRMEmulator
    direct: YandexDirectEmulator


def demo_environment(business: SyntheticBusiness, amocrm_url: str, direct_url: str) -> dict:
    """The environment a real deployment would set, pointed at the emulators."""
    return {
        "AMOCRM_BASE_URL": amocrm_url,
        "AMOCRM_SUBDOMAIN": business.subdomain,
        "AMOCRM_CLIENT_ID": DEMO_AMOCRM["client_id"],
        "AMOCRM_CLIENT_SECRET": DEMO_AMOCRM["client_secret"],
        "AMOCRM_REDIRECT_URI": DEMO_AMOCRM["redirect_uri"],
        "AMOCRM_REFRESH_TOKEN": DEMO_AMOCRM["refresh_token"],
        "YANDEX_DIRECT_BASE_URL": direct_url,
        "YANDEX_DIRECT_TOKEN": DEMO_DIRECT_TOKEN,
        "YANDEX_DIRECT_CLIENT_LOGIN": business.subdomain,
        "YANDEX_DIRECT_START_DATE": business.start.isoformat(),
        "YANDEX_DIRECT_UNTIL_DATE": business.end.isoformat(),
        "VORONKA_AS_OF_DATE": business.end.isoformat(),
    }


@contextmanager
def running_emulators(
    seed: int = 42, scale: float = 1.0, amocrm_port: int = 0, direct_port: int = 0,
    direct_polls: int = 1,
) -> Iterator[DemoServers]:
    """Start both emulators on loopback, fed by the synthetic business; stop them after."""
    business = generate(seed=seed, scale=scale)
    amocrm = AmoCRMEmulator(
        business.amocrm, account_id=business.account_id, subdomain=business.subdomain,
        port=amocrm_port, **DEMO_AMOCRM,
    )
    direct = YandexDirectEmulator(
        business.yandex_direct, token=DEMO_DIRECT_TOKEN, client_login=business.subdomain,
        offline_polls=direct_polls, retry_in_s=1, port=direct_port,
    )
    with amocrm, direct:
        yield DemoServers(business, amocrm, direct)


def reset_demo_state(fresh: bool) -> None:
    """A new emulator issues tokens afresh, so the stored rotated token must go; `fresh`
    also removes the demo warehouse for a from-scratch run."""
    shutil.rmtree(settings.state_dir(), ignore_errors=True)
    conf = settings.WarehouseSettings.from_env()
    if conf.kind == "postgres":
        warehouse = conf.open()
        warehouse.ensure_database()
        if fresh:
            warehouse.drop_schemas(VORONKA_SCHEMAS)
    elif fresh:
        for path in (conf.duckdb_path, conf.published_path):
            path.unlink(missing_ok=True)
            path.with_name(path.name + ".wal").unlink(missing_ok=True)


def ensure_dagster_home() -> str:
    """Runs go to a persistent instance, so `dagster dev` shows the demo's run history."""
    home = os.environ.setdefault("DAGSTER_HOME", str(settings.REPO_ROOT / ".dagster_home"))
    os.makedirs(home, exist_ok=True)
    config = Path(home) / "dagster.yaml"
    if not config.exists():  # no network here to send telemetry to, and no banner in the demo
        config.write_text("telemetry:\n  enabled: false\n")
    return home


def run_demo(seed: int = 42, scale: float = 1.0, fresh: bool = False) -> int:
    """Generate, serve, extract, build, check, publish; print the summary. Returns exit code."""
    from voronka.summary import print_summary

    started = time.monotonic()
    reset_demo_state(fresh)
    ensure_dagster_home()
    with running_emulators(seed=seed, scale=scale) as servers:
        os.environ.update(
            demo_environment(servers.business, servers.amocrm.base_url, servers.direct.base_url)
        )
        servers.business.write_ground_truth(settings.REPO_ROOT / "data" / "ground_truth")
        from voronka.runner import run_daily_refresh

        log_path = settings.REPO_ROOT / "data" / "logs" / "demo.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        print(f"voronka demo: {len(servers.business.amocrm['leads']):,} leads and "
              f"{len(servers.business.yandex_direct):,} Direct rows served on 127.0.0.1; "
              "running daily_refresh (extract, land, dbt build, checks, publish) ...\n"
              f"  full Dagster and dbt log: {log_path}", flush=True)
        with open(log_path, "w") as log, redirect_stdout(log), redirect_stderr(log):
            result = run_daily_refresh()
    print_summary(result, wall_time_s=time.monotonic() - started, log_path=log_path)
    return 0 if result.success else 1
