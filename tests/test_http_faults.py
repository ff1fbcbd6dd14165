"""Issue 12 item 10: faults of the HTTP layer, served by the real emulators.

A 200 whose body is cut short or is an HTML page is retried; a persistent 5xx names the page's
title (or the status text), never ``<html>``; a dead refresh token stops the source's other
entity steps with one clear message instead of one refresh attempt per entity.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import requests
from _support import RecordingSleep

from emulators import AmoCRMEmulator, Bitrix24Emulator
from extractors.bitrix24 import Bitrix24Source
from extractors.http import ApiError, HttpClient, HttpOptions, iter_hal_pages

TOKEN = "llt-http-faults-token-5678"
SECRET = "demo-secret-http-faults"
USERS = [{"id": i, "name": f"User {i}", "email": f"u{i}@example.com"} for i in range(1, 41)]


@pytest.fixture
def amo() -> Iterator[AmoCRMEmulator]:
    emulator = AmoCRMEmulator({"users": USERS}, client_secret=SECRET,
                              long_lived_token=TOKEN).start()
    yield emulator
    emulator.stop()


def client_for(amo: AmoCRMEmulator, sleep: RecordingSleep | None = None) -> HttpClient:
    return HttpClient(amo.base_url, auth=lambda: {"Authorization": f"Bearer {TOKEN}"},
                      redact=[TOKEN, SECRET], max_retries=3, backoff_base=0.01,
                      backoff_max=0.05, timeout=(2.0, 5.0), sleep=sleep or RecordingSleep(),
                      rng=random.Random(1), source="amocrm")


def user_ids(client: HttpClient) -> list[int]:
    pages = iter_hal_pages(client, "/api/v4/users", {"limit": 250}, "users")
    return [u["id"] for page in pages for u in page.items]


def user_calls(amo: AmoCRMEmulator) -> list[dict]:
    return [r for r in amo.request_log if r["path"] == "/api/v4/users"]


@pytest.mark.parametrize("kind, params", [
    ("truncated_json", {}),
    ("truncated_json", {"declare_full_length": True}),
    ("html_200", {}),
])
def test_a_200_with_a_transient_body_is_retried(amo, kind, params):
    """A proxy cut the JSON short, the connection broke mid-body, or a maintenance page came
    with 200: the page is asked again and every record lands once."""
    amo.faults.add(kind, count=2, path_prefix="/api/v4/users", **params)
    sleep = RecordingSleep()
    assert user_ids(client_for(amo, sleep)) == [u["id"] for u in USERS]
    assert [r["fault"] for r in user_calls(amo)] == [kind, kind, None]
    assert len(sleep.calls) == 2  # backed off before each retry


def test_a_persistent_html_200_fails_naming_the_page(amo):
    amo.faults.add("html_200", count=10, path_prefix="/api/v4/users")
    with pytest.raises(ApiError) as info:
        user_ids(client_for(amo))
    message = str(info.value)
    assert "HTTP 200" in message and "after 4 attempts" in message
    assert "HTML page" in message and "Service temporarily unavailable" in message
    assert "<html" not in message.lower() and "<!doctype" not in message.lower()
    assert TOKEN not in message


def test_a_persistent_5xx_html_page_is_reported_by_its_title(amo):
    """The title sits past the first kilobytes (inline styles): still found, never `<html>`."""
    amo.faults.add("html_5xx", count=10, path_prefix="/api/v4/users", status=502)
    with pytest.raises(ApiError) as info:
        user_ids(client_for(amo))
    message = str(info.value)
    assert info.value.status == 502 and info.value.attempts == 4
    assert message.endswith("HTML page '502 Bad Gateway'")
    assert "<html" not in message.lower() and "<!doctype" not in message.lower()


def test_the_nginx_gateway_page_of_the_amocrm_emulator_names_its_title(amo):
    amo.faults.add("5xx", count=10, path_prefix="/api/v4/users", status=504)
    with pytest.raises(ApiError) as info:
        user_ids(client_for(amo))
    assert str(info.value).endswith("HTML page '504 Gateway Timeout'")
    assert "<html>" not in str(info.value)


def test_an_html_page_without_a_title_reports_the_status_text(amo):
    client = client_for(amo)
    resp = requests.Response()
    resp.status_code, resp.reason, resp.url = 503, "Service Unavailable", amo.base_url
    resp.headers["Content-Type"] = "text/html"
    resp._content = b"<html>\n<body><p>try later</p></body></html>"
    error = client.api_error(resp, attempts=6)
    assert str(error).endswith("after 6 attempts: HTML page (503 Service Unavailable)")
    # a source that builds its error from the body excerpt (Bitrix24's own 503 handling)
    error = ApiError(503, amo.base_url, "<html><body><p>try later</p></body></html>", "bitrix24")
    assert str(error).endswith(": HTML page (503 Service Unavailable)")


def test_bitrix24_list_call_retries_a_truncated_body():
    deals = [{"ID": str(i), "TITLE": f"Deal {i}", "DATE_MODIFY": "2026-01-05T10:00:00+03:00"}
             for i in range(1, 8)]
    with Bitrix24Emulator({"deals": deals}, webhook_code="whk-http-faults-0001") as b24:
        b24.faults.add("truncated_json", count=1, path_prefix="/rest/")
        source = Bitrix24Source(
            b24.base_url, account="voronka.bitrix24.ru", webhook_url=b24.webhook_url,
            http_options=HttpOptions(timeout=(2.0, 5.0), max_retries=3, backoff_base=0.01,
                                     backoff_max=0.05, sleep=RecordingSleep()))
        data = source.call("crm.deal.list", {"start": 0})
        assert sorted(int(d["ID"]) for d in data["result"]) == list(range(1, 8))
        assert [r["fault"] for r in b24.request_log][:2] == ["truncated_json", None]


# -- a definite auth failure stops the source's other steps ----------------------------------


AMO_STEPS = ("users", "pipelines", "loss_reasons", "contacts")


@pytest.fixture
def dead_token_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AmoCRMEmulator]:
    """amoCRM over OAuth whose only refresh token was already spent (or revoked)."""
    emulator = AmoCRMEmulator({"users": USERS}, client_secret=SECRET,
                              refresh_token="demo-refresh-live-0001").start()
    for name in ("AMOCRM_LONG_LIVED_TOKEN", "AMOCRM_SKIP_ENTITIES"):
        monkeypatch.delenv(name, raising=False)
    env = {"VORONKA_WAREHOUSE": "duckdb", "VORONKA_DUCKDB_PATH": str(tmp_path / "w.duckdb"),
           "VORONKA_STATE_DIR": str(tmp_path / "state"), "AMOCRM_BASE_URL": emulator.base_url,
           "AMOCRM_SUBDOMAIN": "voronka-demo", "AMOCRM_CLIENT_ID": "demo-client",
           "AMOCRM_CLIENT_SECRET": SECRET, "AMOCRM_REDIRECT_URI": "http://127.0.0.1/callback",
           "AMOCRM_REFRESH_TOKEN": "demo-refresh-spent-0000"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    yield emulator
    emulator.stop()


def materialize_amocrm() -> dg.ExecuteInProcessResult:
    from orchestration.assets.raw import build_raw_asset
    from orchestration.resources import AmoCRMResource, WarehouseResource

    assets = [build_raw_asset("amocrm", entity) for entity in AMO_STEPS]
    return dg.materialize(assets, resources={"warehouse": WarehouseResource(),
                                             "amocrm": AmoCRMResource()},
                          raise_on_error=False)


def root_errors(result: dg.ExecuteInProcessResult) -> list[str]:
    """Each failed step's root-cause error, in the order the steps ran."""
    messages = []
    for event in result.get_step_failure_events():
        error = event.step_failure_data.error
        while error.cause is not None:
            error = error.cause
        messages.append(error.message.split(": ", 1)[1])  # less the exception class
    return messages


def test_a_dead_refresh_token_is_tried_once_per_run_and_stops_the_other_steps(dead_token_env):
    result = materialize_amocrm()
    token_calls = [r for r in dead_token_env.request_log if r["path"] == "/oauth2/access_token"]
    assert len(token_calls) == 1  # not one refresh attempt per entity step
    assert [r for r in dead_token_env.request_log if r["path"].startswith("/api/")] == []
    errors = root_errors(result)
    assert len(errors) == len(AMO_STEPS)
    first, *others = errors
    assert first.startswith("amocrm: HTTP 401")
    assert "refused the refresh token" in first and "re-authorise" in first
    first_step = result.get_step_failure_events()[0].step_key.replace("__", "/", 1)
    for message in others:  # one short line naming the failed step, then the same reason
        headline, reason = message.split("\n", 1)
        assert "not attempted" in headline and f"failed in step {first_step}" in headline
        assert reason.strip() == first.strip()
    assert all("demo-refresh-spent-0000" not in m and SECRET not in m for m in errors)

    # the next run tries again (the operator may have re-authorised in between)
    materialize_amocrm()
    token_calls = [r for r in dead_token_env.request_log if r["path"] == "/oauth2/access_token"]
    assert len(token_calls) == 2
