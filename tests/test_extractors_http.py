"""The shared HTTP layer: rate limiter, retries, auth refresh, redaction, HAL paging, state."""

from __future__ import annotations

import json
import logging
import os
import random
import stat
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import requests
from _support import RecordingSleep

from emulators import AmoCRMEmulator
from extractors.http import (
    ApiError,
    HttpClient,
    RateLimiter,
    Redactor,
    describe_error_body,
    iter_hal_pages,
    limiter_for,
)
from extractors.state import TokenSet, TokenStore

SECRET = "demo-secret-for-http-tests"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def amo() -> Iterator[AmoCRMEmulator]:
    users = [{"id": i, "name": f"User {i}", "email": f"u{i}@example.com"} for i in range(1, 8)]
    emulator = AmoCRMEmulator({"users": users}, client_secret=SECRET,
                              long_lived_token="llt-http-test-token-1234").start()
    yield emulator
    emulator.stop()


def client_for(amo: AmoCRMEmulator, sleep: RecordingSleep | None = None, **kwargs) -> HttpClient:
    params = {"auth": lambda: {"Authorization": "Bearer llt-http-test-token-1234"},
              "redact": ["llt-http-test-token-1234", SECRET], "max_retries": 3,
              "backoff_base": 0.01, "backoff_max": 0.05, "timeout": (1.0, 1.0),
              "sleep": sleep or RecordingSleep(), "rng": random.Random(1), "source": "amocrm",
              **kwargs}
    return HttpClient(amo.base_url, **params)


# -- rate limiter ----------------------------------------------------------------------------


def test_rate_limiter_allows_burst_then_waits_for_the_window():
    clock = FakeClock()
    limiter = RateLimiter(7, margin_s=0.0, clock=clock, sleep=clock.sleep)
    starts = []
    for _ in range(15):
        limiter.acquire()
        starts.append(clock.now)
    assert starts[:7] == [1000.0] * 7
    assert starts[7] == pytest.approx(1001.0)
    assert starts[14] == pytest.approx(1002.0)
    # no 1-second window ever holds more than 7 calls
    assert max(sum(1 for u in starts if t <= u < t + 1.0) for t in starts) == 7


def test_rate_limiter_per_window_and_pause():
    clock = FakeClock()
    limiter = RateLimiter(2, per=10, margin_s=0.0, clock=clock, sleep=clock.sleep)  # 20 / 10 s
    for _ in range(20):
        assert limiter.acquire() == 0.0
    assert limiter.acquire() == pytest.approx(10.0)
    limiter.pause(30)
    assert limiter.acquire() == pytest.approx(30.0)


def test_rate_limiter_is_thread_safe():
    limiter = RateLimiter(100, per=0.2, margin_s=0.01)  # 20 calls per 0.21 s
    stamps: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(15):
            limiter.acquire()
            with lock:
                stamps.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(stamps) == 60
    stamps.sort()
    assert max(sum(1 for u in stamps if t <= u < t + 0.2) for t in stamps) <= 20
    assert stamps[-1] - stamps[0] >= 0.4


def test_limiter_for_shares_one_limiter_per_key():
    a = limiter_for("test:acct-1", 7)
    assert limiter_for("test:acct-1", 7) is a
    assert limiter_for("test:acct-2", 7) is not a


# -- retries and errors ----------------------------------------------------------------------


def test_backoff_is_exponential_with_seeded_jitter(amo):
    c1, c2 = client_for(amo, backoff_base=0.5, backoff_max=30), client_for(
        amo, backoff_base=0.5, backoff_max=30)
    seq1 = [c1.backoff(n) for n in range(8)]
    assert seq1 == [c2.backoff(n) for n in range(8)]  # same seed, same jitter
    for n, delay in enumerate(seq1):
        cap = min(30, 0.5 * 2**n)
        assert cap / 2 <= delay <= cap


def test_server_delay_headers_and_body():
    client = HttpClient("http://127.0.0.1:9")

    def response(headers=None, body=b"") -> requests.Response:
        resp = requests.Response()
        resp.status_code = 429
        resp.headers.update(headers or {})
        resp._content = body
        return resp

    assert client._server_delay(response({"Retry-After": "7"})) == 7.0
    assert client._server_delay(response({"retryIn": "3"})) == 3.0
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=60), usegmt=True)
    assert 55 <= client._server_delay(response({"Retry-After": when})) <= 61
    body = json.dumps({"title": "Too Many Requests", "status": 429, "retry_after": 300})
    assert client._server_delay(response(body=body.encode())) == 300.0
    assert client._server_delay(response(body=b"<html>blocked</html>")) is None


def test_429_with_retry_after_is_retried_and_pauses_the_shared_limiter(amo):
    amo.faults.add("429", path_prefix="/api/v4/users", retry_after=1)
    sleep = RecordingSleep()
    limiter = RateLimiter(7)
    client = client_for(amo, sleep, limiter=limiter)
    started = time.monotonic()
    resp = client.get("/api/v4/users")
    assert resp.status_code == 200
    assert sleep.calls == [1.0]
    assert time.monotonic() - started >= 0.9  # the limiter held the retry for Retry-After
    assert [r["status"] for r in amo.request_log] == [429, 200]


def test_retry_after_beyond_the_limit_fails_fast(amo):
    amo.faults.add("429", path_prefix="/api/v4/users", retry_after=900)
    client = client_for(amo, max_retry_after=60)
    with pytest.raises(ApiError, match="server asked to wait 900s") as info:
        client.get("/api/v4/users")
    assert info.value.status == 429 and len(amo.request_log) == 1


def test_non_retryable_status_raises_at_once_with_detail(amo):
    client = client_for(amo)
    with pytest.raises(ApiError) as info:
        client.get("/api/v4/nothing-here")
    err = info.value
    assert err.status == 404 and err.attempts == 1 and len(amo.request_log) == 1
    assert "Not Found" in str(err) and "/api/v4/nothing-here" in str(err)


def test_401_triggers_one_refresh_then_gives_up(amo):
    calls = []
    client = client_for(amo, auth=lambda: {"Authorization": "Bearer wrong-token-abcdef"},
                        on_unauthorized=lambda: calls.append(1),
                        redact=["wrong-token-abcdef"])
    with pytest.raises(ApiError) as info:
        client.get("/api/v4/users")
    assert calls == [1]
    assert info.value.status == 401
    assert [r["status"] for r in amo.request_log] == [401, 401]
    assert "wrong-token-abcdef" not in str(info.value)


def test_401_refresh_then_success(amo):
    token = {"value": "stale-token-000000"}

    def refresh() -> None:
        token["value"] = "llt-http-test-token-1234"

    client = client_for(amo, auth=lambda: {"Authorization": f"Bearer {token['value']}"},
                        on_unauthorized=refresh)
    assert client.get("/api/v4/users").status_code == 200
    assert [r["status"] for r in amo.request_log] == [401, 200]


def test_connection_errors_exhaust_retries_into_api_error(caplog):
    caplog.set_level(logging.DEBUG)
    sleep = RecordingSleep()
    # port 9 (discard) on loopback: nothing listens, connection refused
    client = HttpClient("http://127.0.0.1:9", max_retries=2, backoff_base=0.01,
                        sleep=sleep, rng=random.Random(3), source="test",
                        auth=lambda: {"Authorization": "Bearer tok-zzzz-9999"},
                        redact=["tok-zzzz-9999"])
    with pytest.raises(ApiError) as info:
        client.get("/x", params={"access_token": "tok-zzzz-9999", "page": 2})
    err = info.value
    assert err.status is None and err.attempts == 3 and len(sleep.calls) == 2
    assert "ConnectionError" in str(err)
    assert "tok-zzzz-9999" not in str(err) and "tok-zzzz-9999" not in caplog.text
    assert "access_token=***" in err.url and "page=2" in err.url


def test_api_error_survives_pickling():
    import pickle

    err = ApiError(500, "http://h/x", "body", "amocrm", error_code="1000", attempts=3)
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is ApiError and str(back) == str(err)
    assert (back.status, back.error_code, back.attempts) == (500, "1000", 3)


def test_error_bodies_are_summarised():
    yandex = json.dumps({"error": {"request_id": "86952", "error_code": 4000,
                                   "error_string": "Invalid request parameters",
                                   "error_detail": "DateFrom is required"}})
    assert describe_error_body(yandex) == (
        "error_code=4000 Invalid request parameters DateFrom is required (request_id=86952)")
    amo = json.dumps({"hint": "Token has been revoked", "title": "Unauthorized",
                      "status": 401, "detail": "The refresh token is invalid."})
    assert describe_error_body(amo) == (
        "Unauthorized: The refresh token is invalid.: Token has been revoked")
    assert describe_error_body("<html>\n<title>502</title>") == "<html>"


# -- redaction -------------------------------------------------------------------------------


def test_redactor_masks_known_secrets_and_secret_shapes():
    r = Redactor(["s3cr3t-value", None, "ab"])  # too-short strings are ignored
    text = (
        'Authorization: Bearer eyJ0eXAi.abc-def; {"refresh_token": "def502xx", '
        '"client_secret": "cs-1"} url?access_token=zzz&page=2 and s3cr3t-value; ab stays'
    )
    out = r(text)
    for leaked in ("eyJ0eXAi", "def502xx", "cs-1", "zzz", "s3cr3t-value"):
        assert leaked not in out
    assert "page=2" in out and "ab stays" in out
    r.add("rotated-token-42")
    assert r("got rotated-token-42") == "got ***"
    assert r.url("http://u:p@h/x?refresh_token=abc&limit=5") == (
        "http://h/x?refresh_token=***&limit=5")


def test_next_links_are_rebased_onto_the_base_host(amo):
    client = client_for(amo)
    assert client.url_for("https://evil.example.org/api/v4/users?page=2") == (
        f"{amo.base_url}/api/v4/users?page=2")
    assert client.url_for("/api/v4/users") == f"{amo.base_url}/api/v4/users"


# -- HAL paging ------------------------------------------------------------------------------


def test_iter_hal_pages_follows_next_and_keeps_filters(amo):
    client = client_for(amo)
    pages = list(iter_hal_pages(client, "/api/v4/users", {"limit": 3, "page": 1}, "users"))
    assert [p.number for p in pages] == [1, 2, 3]
    assert [len(p.items) for p in pages] == [3, 3, 1]
    assert [i["id"] for p in pages for i in p.items] == list(range(1, 8))
    assert all(r["query"]["limit"] == "3" for r in amo.request_log)


def test_iter_hal_pages_stops_on_204(amo):
    client = client_for(amo)
    pages = list(iter_hal_pages(client, "/api/v4/leads", {"limit": 50}, "leads"))
    assert pages == []
    assert [r["status"] for r in amo.request_log] == [204]


# -- token store -----------------------------------------------------------------------------


def test_token_store_atomic_save_mode_and_roundtrip(tmp_path):
    store = TokenStore(tmp_path / "deep" / "tokens.json")
    assert store.load() is None
    tokens = TokenSet("acc-1", "ref-1", 1_900_000_000.0)
    store.save(tokens)
    assert store.load() == tokens
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    store.save(TokenSet("acc-2", "ref-2", None))
    assert store.load().refresh_token == "ref-2"
    leftovers = [p.name for p in store.path.parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []
    assert "ref-2" not in repr(store.load()) and "acc-2" not in repr(store.load())


def test_token_store_lock_excludes_other_threads(tmp_path):
    a = TokenStore(tmp_path / "t.json")
    b = TokenStore(tmp_path / "t.json")  # another instance on the same file
    order: list[str] = []
    with a.lock():
        t = threading.Thread(target=lambda: (b.lock().__enter__(), order.append("b")))
        t.start()
        time.sleep(0.2)
        order.append("a-done")
        with a.lock():  # re-entrant in the holder
            a.save(TokenSet("x", "y", 1.0))
    t.join(5)
    assert order == ["a-done", "b"]


def test_redactor_masks_oauth_codes_but_keeps_error_names() -> None:
    from extractors.http import Redactor

    text = Redactor()('{"error": {"code": "ERR_LIMIT_EXCEEDED"}} {"code": "def502a1b2c3"}')
    assert text == '{"error": {"code": "ERR_LIMIT_EXCEEDED"}} {"code": "***"}'
