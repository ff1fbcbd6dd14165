"""The run-failure alert: a failed Dagster run reaches a local webhook receiver and a local
stand-in for the Telegram Bot API with the job, run id, failed steps, first error line and UI
link, and never a secret; delivery failures are named without the URL."""

from __future__ import annotations

from collections.abc import Iterator

import dagster as dg
import pytest
from _support import Receiver

from orchestration.alerts import (
    ALERTED_TAG,
    SENSOR_NAME,
    TELEGRAM_API_ENV,
    TELEGRAM_CHAT_ENV,
    TELEGRAM_TOKEN_ENV,
    UI_ENV,
    WEBHOOK_ENV,
    AlertDeliveryError,
    build_alert_sensors,
    destinations,
    send_failure_alert,
)
from orchestration.assets.channel_mapping import channel_mapping
from orchestration.resources import WarehouseResource

WEBHOOK_SECRET = "T0AAAA/B0BBBB/xoxb-webhook-secret-path"
BOT_TOKEN = "123456:telegram-bot-secret-token"
DB_PASSWORD = "pg-secret-password-42"
ALERT_ENV = (WEBHOOK_ENV, TELEGRAM_TOKEN_ENV, TELEGRAM_CHAT_ENV, TELEGRAM_API_ENV, UI_ENV)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    yield rec
    rec.server.shutdown()
    rec.server.server_close()


@pytest.fixture
def configured(receiver, monkeypatch) -> Receiver:
    """Both destinations pointed at the receiver, a UI link, a database password in the env."""
    receiver.posts.clear()
    receiver.status = 200
    monkeypatch.setenv(WEBHOOK_ENV, f"{receiver.url}/services/{WEBHOOK_SECRET}")
    monkeypatch.setenv(TELEGRAM_TOKEN_ENV, BOT_TOKEN)
    monkeypatch.setenv(TELEGRAM_CHAT_ENV, "-100200300")
    monkeypatch.setenv(TELEGRAM_API_ENV, receiver.url)
    monkeypatch.setenv(UI_ENV, "http://dagster.local:3000/")
    monkeypatch.setenv("VORONKA_POSTGRES_PASSWORD", DB_PASSWORD)
    return receiver


def run_and_alert(assets: list, resources: dict | None = None,
                  ) -> tuple[dg.DagsterInstance, dg.DagsterRun]:
    """Materialise `assets` (expected to fail) on an ephemeral instance, then evaluate the
    run-failure sensor on that run as the daemon would."""
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(assets, instance=instance, resources=resources or {},
                            raise_on_error=False)
    assert not result.success
    [sensor] = build_alert_sensors()
    context = dg.build_run_status_sensor_context(
        sensor_name=SENSOR_NAME, dagster_instance=instance, dagster_run=result.dagster_run,
        dagster_event=result.get_run_failure_event(),
    ).for_run_failure()
    sensor(context)
    return instance, result.dagster_run


def test_failed_run_reaches_webhook_and_telegram(configured, tmp_path, monkeypatch):
    """The pipeline's own raw/channel_mapping step fails on a bad file: both destinations get
    one message naming the job, run, step and the first line of the error, with the UI link."""
    bad = tmp_path / "mapping.csv"
    bad.write_text("utm_source,utm_medium,channel\nvk,*,telegram_ads\n")
    monkeypatch.setenv("VORONKA_CHANNEL_MAPPING", str(bad))
    monkeypatch.setenv("VORONKA_WAREHOUSE", "duckdb")
    monkeypatch.setenv("VORONKA_DUCKDB_PATH", str(tmp_path / "warehouse.duckdb"))
    instance, run = run_and_alert([channel_mapping], {"warehouse": WarehouseResource()})

    posts = dict(configured.posts)
    assert set(posts) == {f"/services/{WEBHOOK_SECRET}", f"/bot{BOT_TOKEN}/sendMessage"}
    text = posts[f"/services/{WEBHOOK_SECRET}"]["text"]
    telegram = posts[f"/bot{BOT_TOKEN}/sendMessage"]
    assert telegram["chat_id"] == "-100200300" and telegram["text"] == text
    lines = text.splitlines()
    assert lines[0] == f"voronka: run of {run.job_name} failed"
    assert lines[1] == f"run id: {run.run_id}"
    assert lines[2] == "failed steps: raw__channel_mapping"
    assert lines[3] == (
        f"error: warehouse.channel_mapping.ChannelMappingError: channel mapping {bad}, line 2, "
        "field channel: 'telegram_ads' is not a channel the marts know (one of: yandex_direct, "
        "vk_ads, google_ads, meta_ads, organic, referral, direct, other)")
    assert lines[4] == f"details: http://dagster.local:3000/runs/{run.run_id}"
    assert len(lines) == 5
    # posted once: the run is tagged, so a second evaluation (the daemon after a headless
    # runner posted it, or the other way round) sends nothing
    assert instance.get_run_by_id(run.run_id).tags[ALERTED_TAG] == "webhook,telegram"
    assert send_failure_alert(instance, run) == []
    assert len(configured.posts) == 2


def test_secrets_in_an_error_never_reach_the_chat(configured):
    """An error text carrying the database password, a DSN and a token is masked."""

    @dg.asset
    def leaky() -> None:
        raise RuntimeError(f"could not connect to postgresql://etl:{DB_PASSWORD}@db/voronka "
                           f"with access_token={BOT_TOKEN}\nsecond line")

    run_and_alert([leaky])
    assert len(configured.posts) == 2
    for _, body in configured.posts:
        text = body["text"]
        assert DB_PASSWORD not in text and BOT_TOKEN not in text
        assert WEBHOOK_SECRET not in text
        assert "failed steps: leaky" in text
        assert "error: RuntimeError: could not connect to postgresql://etl:***@db/voronka" in text
        assert "second line" not in text
        assert text.splitlines()[-1].startswith("details: http://dagster.local:3000/runs/")


def test_delivery_failures_name_the_destination_not_the_url(configured, monkeypatch):
    @dg.asset
    def broken() -> None:
        raise ValueError("boom")

    configured.status = 500
    with pytest.raises(AlertDeliveryError) as err:
        run_and_alert([broken])
    assert str(err.value) == "run-failure alert to webhook not delivered: HTTP 500"
    assert len(configured.posts) == 2  # Telegram was still tried

    monkeypatch.setenv(WEBHOOK_ENV, f"http://127.0.0.1:9/services/{WEBHOOK_SECRET}")
    monkeypatch.delenv(TELEGRAM_TOKEN_ENV)
    monkeypatch.delenv(TELEGRAM_CHAT_ENV)
    with pytest.raises(AlertDeliveryError) as err:
        run_and_alert([broken])
    assert str(err.value) == "run-failure alert to webhook not delivered: ConnectionError"
    assert err.value.__cause__ is None and err.value.__context__ is None


def test_registered_only_when_configured(monkeypatch):
    for name in ALERT_ENV:
        monkeypatch.delenv(name, raising=False)
    assert build_alert_sensors() == []
    monkeypatch.setenv(TELEGRAM_TOKEN_ENV, BOT_TOKEN)
    with pytest.raises(ValueError, match=f"set {TELEGRAM_CHAT_ENV}$") as err:
        destinations()
    assert BOT_TOKEN not in str(err.value)
    monkeypatch.delenv(TELEGRAM_TOKEN_ENV)
    monkeypatch.setenv(WEBHOOK_ENV, "https://hooks.slack.com/services/x")
    [sensor] = build_alert_sensors()
    assert sensor.name == SENSOR_NAME
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING


def test_definitions_carry_the_sensor_and_the_mapping_step(monkeypatch):
    """The one Definitions object registers the sensor when configured and orders the
    channel-mapping load before the dbt model that reads it."""
    from orchestration.definitions import build_defs

    monkeypatch.setenv(WEBHOOK_ENV, "https://hooks.slack.com/services/x")
    defs = build_defs()
    assert SENSOR_NAME in {s.name for s in defs.sensors}
    graph = defs.resolve_asset_graph()
    parents = graph.get(dg.AssetKey(["intermediate", "int_channel_mapping"])).parent_keys
    assert dg.AssetKey(["raw", "channel_mapping"]) in parents
    monkeypatch.delenv(WEBHOOK_ENV)
    assert SENSOR_NAME not in {s.name for s in build_defs().sensors}

