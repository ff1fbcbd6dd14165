"""The demo: a seeded synthetic business served by local API emulators, run end to end.

The real extractors talk HTTP to the emulators, exactly as they would to amoCRM, Bitrix24 and
the ad platforms; only the base URLs and the (demo) credentials differ. The brand's online-shop
orders are written as files into the folder the files source reads.
"""

from __future__ import annotations

import gc
import hashlib
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emulators import (
    AmoCRMEmulator,
    Bitrix24Emulator,
    GoogleAdsEmulator,
    GoogleDataManagerEmulator,
    MetaAdsEmulator,
    MetaAudiencesEmulator,
    UniSenderEmulator,
    VKAdsEmulator,
    YandexAudiencesEmulator,
    YandexDirectEmulator,
)
from synthetic import SyntheticBusiness, generate
from voronka import settings
from warehouse.records import canonical_json

if TYPE_CHECKING:
    import dagster as dg

DEMO_AMOCRM = {
    "client_id": "demo-client",
    "client_secret": "demo-secret",
    "refresh_token": "demo-refresh-0",
    "redirect_uri": "http://127.0.0.1/callback",
}
DEMO_DIRECT_TOKEN = "demo-direct-token"
DEMO_VK = {"client_id": "demo-vk-client", "client_secret": "demo-vk-secret"}
DEMO_GOOGLE = {
    "customer_id": "1234567890", "client_id": "demo-google-client",
    "client_secret": "demo-google-secret", "refresh_token": "demo-google-refresh",
    "developer_token": "demo-dev-token",
}
DEMO_META = {"ad_account_id": "act_1234567890", "access_token": "demo-meta-token"}
DEMO_DATA_MANAGER_TOKEN = "demo-google-token"
DEMO_YANDEX_AUDIENCE_TOKEN = "demo-yandex-token"
# VK's users lists need 2,000 lines, more than the demo's segments have: the demo syncs the
# other three (VK is exercised against its emulator in tests/test_audience_sync.py), and marks
# members in both CRMs (with the segments' tasks and deals) and in UniSender's lists.
DEMO_AUDIENCE_PLATFORMS = "meta,google,yandex,amocrm,bitrix24,unisender"
DEMO_UNISENDER_KEY = "demo-unisender-key-6h3d"
DEMO_BITRIX24_WEBHOOK_CODE = "demo-b24-webhook-7kq2"  # a secret inside the webhook URL
VORONKA_SCHEMAS = ("raw", "seeds", "staging", "intermediate", "marts", "marts_build")


@dataclass
class DemoServers:
    business: SyntheticBusiness
    amocrm: AmoCRMEmulator
    direct: YandexDirectEmulator
    vk: VKAdsEmulator
    google: GoogleAdsEmulator
    meta: MetaAdsEmulator
    bitrix24: Bitrix24Emulator
    files_dir: Path  # holds orders/ with the shop's order files
    audiences: AudienceServers

    def environment(self) -> dict[str, str]:
        """Every variable a real deployment would set, pointed at these emulators."""
        return demo_environment(
            self.business, self.amocrm.base_url, self.direct.base_url
        ) | ad_platform_environment(
            self.business, self.vk.base_url, self.google.base_url, self.meta.base_url
        ) | crm_and_files_environment(self.business, self.bitrix24, self.files_dir
        ) | self.audiences.environment()


@dataclass
class AudienceServers:
    """The audience upload APIs the demo syncs its dynamic segments to."""

    meta: MetaAudiencesEmulator
    google: GoogleDataManagerEmulator
    yandex: YandexAudiencesEmulator
    unisender: UniSenderEmulator

    def environment(self) -> dict[str, str]:
        return {
            "UNISENDER_BASE_URL": self.unisender.base_url,
            "UNISENDER_API_KEY": DEMO_UNISENDER_KEY,
            "VORONKA_AUDIENCE_PLATFORMS": DEMO_AUDIENCE_PLATFORMS,
            "META_AUDIENCES_BASE_URL": self.meta.base_url,
            "GOOGLE_DATA_MANAGER_BASE_URL": self.google.base_url,
            "GOOGLE_DATA_MANAGER_ACCESS_TOKEN": DEMO_DATA_MANAGER_TOKEN,
            "YANDEX_AUDIENCE_BASE_URL": self.yandex.base_url,
            "YANDEX_AUDIENCE_TOKEN": DEMO_YANDEX_AUDIENCE_TOKEN,
        }


def crm_and_files_environment(business: SyntheticBusiness, bitrix24: Bitrix24Emulator,
                              files_dir: Path) -> dict[str, str]:
    """Bitrix24 (incoming webhook; the code in its URL is the secret) and the files folder."""
    return {
        "BITRIX24_WEBHOOK_URL": bitrix24.webhook_url,
        "BITRIX24_PORTAL_URL": bitrix24.base_url,
        "BITRIX24_ACCOUNT": business.bitrix24_account,
        "VORONKA_FILES_DIR": str(files_dir),
    }


def ad_platform_environment(
    business: SyntheticBusiness, vk_url: str, google_url: str, meta_url: str
) -> dict[str, str]:
    """VK Ads, Google Ads and Meta settings pointed at their emulators."""
    start, end = business.start.isoformat(), business.end.isoformat()
    return {
        "VK_ADS_BASE_URL": vk_url,
        "VK_ADS_ACCOUNT": business.subdomain,
        "VK_ADS_CLIENT_ID": DEMO_VK["client_id"],
        "VK_ADS_CLIENT_SECRET": DEMO_VK["client_secret"],
        "VK_ADS_START_DATE": start,
        "VK_ADS_UNTIL_DATE": end,
        # The demo business lives in its own calendar: "today" is the day after it ends, so
        # VK's 366-day statistics horizon is counted from there, not from the wall clock.
        "VK_ADS_TODAY": (business.end + timedelta(days=1)).isoformat(),
        "GOOGLE_ADS_BASE_URL": google_url,
        "GOOGLE_ADS_TOKEN_URL": f"{google_url}/token",
        "GOOGLE_ADS_CUSTOMER_ID": DEMO_GOOGLE["customer_id"],
        "GOOGLE_ADS_CLIENT_ID": DEMO_GOOGLE["client_id"],
        "GOOGLE_ADS_CLIENT_SECRET": DEMO_GOOGLE["client_secret"],
        "GOOGLE_ADS_REFRESH_TOKEN": DEMO_GOOGLE["refresh_token"],
        "GOOGLE_ADS_DEVELOPER_TOKEN": DEMO_GOOGLE["developer_token"],
        "GOOGLE_ADS_START_DATE": start,
        "GOOGLE_ADS_UNTIL_DATE": end,
        "META_ADS_BASE_URL": meta_url,
        "META_ADS_ACCOUNT_ID": DEMO_META["ad_account_id"],
        "META_ADS_ACCESS_TOKEN": DEMO_META["access_token"],
        "META_ADS_START_DATE": start,
        "META_ADS_UNTIL_DATE": end,
        "META_ADS_CHUNK_DAYS": "366",
        "META_ADS_POLL_INTERVAL_S": "0.2",
    }


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
    direct_polls: int = 1, files_dir: Path | None = None, copy_data: bool = True,
) -> Iterator[DemoServers]:
    """Start every emulator on loopback, fed by the synthetic business, and write its order
    files under ``files_dir`` (default: a temporary folder removed afterwards); stop after.

    The CRM emulators edit their records (voronka's write-back), so they serve copies and
    ``business`` stays as generated; ``copy_data=False`` hands the records over instead, for
    a caller that never reads them again (the demo: a copy is 270 MB at scale 10)."""
    business = generate(seed=seed, scale=scale)
    with tempfile.TemporaryDirectory(prefix="voronka-files-") as scratch:
        folder = Path(files_dir) if files_dir is not None else Path(scratch)
        business.write_order_files(folder)
        with _emulators(business, amocrm_port, direct_port, direct_polls, folder,
                        copy_data) as servers:
            yield servers


@contextmanager
def _emulators(business: SyntheticBusiness, amocrm_port: int, direct_port: int,
               direct_polls: int, files_dir: Path, copy_data: bool) -> Iterator[DemoServers]:
    amocrm = AmoCRMEmulator(
        business.amocrm, account_id=business.account_id, subdomain=business.subdomain,
        port=amocrm_port, copy_data=copy_data, **DEMO_AMOCRM,
    )
    direct = YandexDirectEmulator(
        business.yandex_direct, token=DEMO_DIRECT_TOKEN, client_login=business.subdomain,
        offline_polls=direct_polls, retry_in_s=1, port=direct_port,
    )
    vk = VKAdsEmulator(business.vk_ads, today=business.end + timedelta(days=1),
                       **DEMO_VK)
    google = GoogleAdsEmulator(business.google_ads, **DEMO_GOOGLE)
    meta = MetaAdsEmulator(business.meta_ads, async_polls=1, **DEMO_META)
    bitrix24 = Bitrix24Emulator(business.bitrix24, portal=business.bitrix24_account,
                                webhook_code=DEMO_BITRIX24_WEBHOOK_CODE, copy_data=copy_data)
    audiences = AudienceServers(
        MetaAudiencesEmulator(access_token=DEMO_META["access_token"],
                              ad_account_id=DEMO_META["ad_account_id"]),
        GoogleDataManagerEmulator(access_token=DEMO_DATA_MANAGER_TOKEN),
        YandexAudiencesEmulator(oauth_token=DEMO_YANDEX_AUDIENCE_TOKEN),
        UniSenderEmulator(api_key=DEMO_UNISENDER_KEY),
    )
    with amocrm, direct, vk, google, meta, bitrix24, audiences.meta, audiences.google, \
            audiences.yandex, audiences.unisender:
        yield DemoServers(business, amocrm, direct, vk, google, meta, bitrix24, files_dir,
                          audiences)


@dataclass
class ServedDemo:
    """What the demo's process needs of the business its emulators serve."""

    fingerprint: str  # business_fingerprint
    counts: str  # opening_counts
    variables: dict[str, str]  # DemoServers.environment


def serve_demo(business: SyntheticBusiness, servers: DemoServers,
               ground_truth_dir: Path) -> ServedDemo:
    """Write the business's ground truth and describe it for the demo's process."""
    business.write_ground_truth(ground_truth_dir)
    return ServedDemo(business_fingerprint(business), opening_counts(business),
                      servers.environment())


@contextmanager
def emulators_beside(seed: int, scale: float, files_dir: Path, ground_truth_dir: Path,
                     meanwhile: Callable[[], object] = lambda: None) -> Iterator[ServedDemo]:
    """Generate the business and serve it from a forked child process where the platform
    forks; ``meanwhile`` runs here while the child generates (the pipeline's imports).

    In the demo's own process every page the emulators serve is built and JSON-encoded under
    the same interpreter lock as the extractors, Dagster's events and the audience syncs, so
    a cold demo kept one core busy and the other mostly idle. Where there is no fork
    (Windows) everything runs in this process, one thing after the other."""
    if "fork" not in multiprocessing.get_all_start_methods():
        meanwhile()
        with running_emulators(seed=seed, scale=scale, files_dir=files_dir,
                               copy_data=False) as servers:
            yield serve_demo(servers.business, servers, ground_truth_dir)
        return
    context = multiprocessing.get_context("fork")
    ours, theirs = context.Pipe()
    child = context.Process(target=_serve_until_the_pipe_closes, daemon=True,
                            args=(seed, scale, files_dir, ground_truth_dir, theirs, ours),
                            name="voronka-emulators")
    child.start()
    theirs.close()
    try:
        meanwhile()
        try:
            served = ours.recv()
        except EOFError:
            raise RuntimeError("the demo's emulators did not start (the error above)") from None
        yield served
    finally:
        ours.close()  # the child sees the pipe close and stops its servers
        child.join(timeout=10)
        if child.is_alive():
            child.terminate()


def _serve_until_the_pipe_closes(seed: int, scale: float, files_dir: Path,
                                 ground_truth_dir: Path, pipe: Any, parents_end: Any) -> None:
    """The child's side: generate and serve, send what the demo needs, wait until the parent
    closes the pipe (at its end or its death; Ctrl-C is the parent's to handle)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parents_end.close()  # else this process holds the pipe open itself and never sees EOF
    with running_emulators(seed=seed, scale=scale, files_dir=files_dir,
                           copy_data=False) as servers:
        pipe.send(serve_demo(servers.business, servers, ground_truth_dir))
        # the business is millions of objects the emulators only read: out of the collector's
        # full passes, which otherwise stall every request for a walk over all of them and
        # release the queued ones together (8 arrivals in amoCRM's second: a 429)
        gc.freeze()
        with suppress(EOFError):
            pipe.recv()


def opening_counts(business: SyntheticBusiness) -> str:
    """What the demo serves, in one line: CRM records, shop orders, ad-platform rows."""
    amo_leads = sum(1 for x in business.amocrm["leads"] if not x.get("is_deleted"))
    b24 = business.bitrix24
    ad_rows = sum(len(rows) for rows in business.ad_rows().values())
    return (f"{amo_leads:,} amoCRM leads, {len(b24['leads']):,} Bitrix24 leads and "
            f"{len(b24['deals']):,} deals, {len(business.file_orders):,} shop orders in files, "
            f"{ad_rows:,} daily ad rows on 4 platforms")


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


def business_fingerprint(business: SyntheticBusiness) -> str:
    """Identifies the generated data, so a demo warehouse is never mixed across versions."""
    sample = {
        "seed": business.seed, "scale": business.scale, "end": business.end.isoformat(),
        "counts": {name: len(rows) for name, rows in business.amocrm.items()},
        "bitrix24_counts": {name: len(rows) for name, rows in business.bitrix24.items()},
        "file_orders": len(business.file_orders),
        "tail": [business.amocrm["leads"][-3:], business.yandex_direct[-3:],
                 business.vk_ads[-3:], business.google_ads[-3:], business.meta_ads[-3:],
                 business.bitrix24["deals"][-3:], business.bitrix24["leads"][-3:],
                 business.file_orders[-3:]],
    }
    return hashlib.sha256(canonical_json(sample).encode()).hexdigest()[:16]


def demo_data_changed(fingerprint: str) -> bool | None:
    """Whether the warehouse holds another business than ``fingerprint`` (remembered for the
    next demo): True or False, or None when no demo has recorded one yet."""
    marker = settings.state_dir().parent / "demo_business"
    changed = marker.read_text().strip() != fingerprint if marker.exists() else None
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(fingerprint)
    return changed


# A single-run backfill over N daily partitions otherwise writes N "materialization planned"
# events per ad-spend asset before the run starts (2,920 for the demo's two years on four
# platforms, ~25 s on the local SQLite event log); with this set Dagster writes one event per
# asset carrying the partition subset. The cost: a failed range run does not mark each of its
# partitions failed (re-running the range repairs it, landing is idempotent).
PLANNED_EVENTS_AS_SUBSET = "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"


def ensure_dagster_home() -> str:
    """A persistent instance for `voronka dev` (and `voronka demo --keep-history`)."""
    os.environ.setdefault(PLANNED_EVENTS_AS_SUBSET, "1")
    home = os.environ.setdefault("DAGSTER_HOME", str(settings.REPO_ROOT / ".dagster_home"))
    os.makedirs(home, exist_ok=True)
    config = Path(home) / "dagster.yaml"
    if not config.exists():  # no network here to send telemetry to, and no banner in the demo
        config.write_text("telemetry:\n  enabled: false\n")
    return home


def demo_instance(keep_history: bool) -> dg.DagsterInstance:
    """Where the demo's run is recorded. By default an in-memory instance: the cold run's
    two-year ad-spend backfill materialises 2,920 daily partitions, and writing those events to
    the local SQLite event log costs ~25 s of the demo. With ``keep_history`` the run goes to
    the persistent instance in DAGSTER_HOME, so `voronka dev` shows it and the partitions'
    health."""
    import dagster as dg

    from voronka.instance import in_memory_instance

    return dg.DagsterInstance.get() if keep_history else in_memory_instance()


def import_the_pipeline() -> None:
    """Dagster and dagster-dbt take ~1.5 s to import: the demo imports them while its
    emulators' process generates the business (the definitions themselves are built later,
    from the environment that points at the emulators). Great Expectations is left to the
    first validation (``expectations``): a re-run on the same data validates nothing."""
    import dagster  # noqa: F401
    import dagster_dbt  # noqa: F401


def run_demo(seed: int = 42, scale: float = 1.0, fresh: bool = False,
             keep_history: bool = False) -> int:
    """Generate, serve, extract, build, check, publish; print the summary. Returns exit code."""
    from voronka.summary import DashboardAhead, print_dashboard, print_summary, published_by

    started = time.monotonic()
    ensure_dagster_home()
    files_dir = settings.REPO_ROOT / "data" / "files"
    ground_truth_dir = settings.REPO_ROOT / "data" / "ground_truth"
    with emulators_beside(seed, scale, files_dir, ground_truth_dir,
                          meanwhile=import_the_pipeline) as served:
        changed = demo_data_changed(served.fingerprint)
        if changed and not fresh:
            print("voronka demo: the synthetic business differs from the one in the demo "
                  "warehouse (another seed, scale or version); starting from scratch.")
        fresh = fresh or changed is not False  # a first demo starts from scratch, silently
        reset_demo_state(fresh)
        os.environ.update(served.variables)
        from voronka.run import execute_with_progress

        log_path = settings.log_dir() / "demo.log"
        print(f"voronka demo: {served.counts} served on 127.0.0.1; "
              "running daily_refresh (extract, land, dbt build, checks, publish) ...\n"
              f"  full Dagster and dbt log: {log_path}", flush=True)
        ahead = DashboardAhead()
        result = execute_with_progress(demo_instance(keep_history), log_path, sys.stdout,
                                       also=ahead.on_event)
    print_summary(result, wall_time_s=time.monotonic() - started, log_path=log_path)
    print_dashboard(published=published_by(result), ahead=ahead)
    return 0 if result.success else 1
