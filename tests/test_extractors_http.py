"""The shared HTTP layer: rate limiter, retries, auth refresh, redaction, HAL paging, state."""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import random
import stat
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import requests
from _support import RecordingSleep

from emulators import AmoCRMEmulator
from extractors.http import (
    ApiError,
    HttpClient,
    LeakyBucketLimiter,
    RateLimiter,
    Redactor,
    RequestsCancelled,
    SendStampingAdapter,
    bucket_for,
    cancel_requests,
    describe_error_body,
    iter_hal_pages,
    limiter_for,
    parse_error_body,
    resume_requests,
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


def each_on_a_thread(work: Callable[..., object], *args_each: tuple, timeout: float = 30,
                     stagger_s: float = 0.0) -> None:
    """Run ``work(*args)`` for each of ``args_each`` on threads of their own, side by side
    (``stagger_s`` apart), and wait for them all."""
    threads = [threading.Thread(target=work, args=args) for args in args_each]
    for t in threads:
        t.start()
        time.sleep(stagger_s)
    for t in threads:
        t.join(timeout)


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


def test_rate_limiter_without_burst_paces_every_call_even_after_idling():
    """amoCRM's limiter: no opening burst, so any 8 calls span 7 intervals (1.08 s at 6.5
    req/s) and arrival jitter up to 77 ms cannot put 8 into the server's second."""
    clock = FakeClock()
    limiter = RateLimiter(6.5, burst=False, clock=clock, sleep=clock.sleep)
    starts = []
    for _ in range(10):
        limiter.acquire()
        starts.append(clock.now)
    clock.now += 30.0  # idle
    for _ in range(10):
        limiter.acquire()
        starts.append(clock.now)
    assert min(b - a for a, b in itertools.pairwise(starts)) == pytest.approx(1 / 6.5)
    assert min(b - a for a, b in zip(starts, starts[7:], strict=False)) == pytest.approx(7 / 6.5)


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


def achieved_rate(limiter: RateLimiter, clock: FakeClock, calls: int) -> tuple[float, list[float]]:
    """Calls per second over 20 windows of back-to-back acquires, counted from the middle of
    ``calls`` (the steady rate: the opening burst allowed after idling is long spent), and
    every start time."""
    starts = []
    for _ in range(calls):
        limiter.acquire()
        starts.append(clock.now)
    span = 20 * limiter.per
    begin = starts[calls // 2]
    assert starts[-1] >= begin + span, "too few calls to span 20 windows"
    return sum(1 for t in starts if begin <= t < begin + span) / span, starts


def most_in_any_window(starts: list[float], window: float) -> int:
    return max(sum(1 for u in starts if t <= u < t + window - 1e-9) for t in starts)


@pytest.mark.parametrize(("rate", "per", "server_limit"), [
    (6.5, 1.0, 7),        # amoCRM: 6.5 configured under the server's 7 per second
    (100 / 60, 60.0, 100),  # Meta: 100 calls per 60 s
    (100 / 60, 1.0, 2),   # the same rate counted per second
    (2.0, 10.0, 20),      # Yandex Direct: 20 per 10 s
    (7.0, 1.0, 7),
])
def test_rate_limiter_achieves_its_rate_without_overrunning_the_window(rate, per, server_limit):
    """The achieved rate is the configured one (within 5 %, the old window rounded 6.5 down to
    6 per 1.05 s: 5.7 at best) and no server window ever sees more than its limit."""
    clock = FakeClock()
    limiter = RateLimiter(rate, per=per, clock=clock, sleep=clock.sleep)
    calls = max(3000, int(rate * per * 45))
    achieved, starts = achieved_rate(limiter, clock, calls)
    assert achieved == pytest.approx(rate, rel=0.05)
    assert achieved <= rate + 1 / (20 * per)  # never above it (one call of counting slack)
    assert most_in_any_window(starts, per) <= server_limit


def test_rate_limiter_from_many_threads_holds_the_same_rate():
    """Eight threads sharing one limiter (concurrent extraction) get the configured rate
    between them, not eight times it."""
    clock_lock = threading.Lock()
    clock = FakeClock()

    def sleep(seconds: float) -> None:  # a shared fake clock: each wait moves it
        with clock_lock:
            clock.now += seconds

    limiter = RateLimiter(6.5, clock=clock, sleep=sleep)
    stamps: list[float] = []

    def worker() -> None:
        for _ in range(25):
            limiter.acquire()
            with clock_lock:
                stamps.append(clock.now)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    stamps.sort()
    assert len(stamps) == 200
    assert most_in_any_window(stamps, 1.0) <= 7


def test_limiter_against_the_emulator_sends_no_request_over_its_limit(amo):
    """Real time, real server: four threads share amoCRM's 6.5 req/s limiter against the
    emulator's 7 req/s window; not one 429."""
    limiter = RateLimiter(6.5)
    clients = [client_for(amo, limiter=limiter, max_retries=0) for _ in range(4)]

    def worker(client: HttpClient) -> None:
        for _ in range(5):
            client.get("/api/v4/users")

    each_on_a_thread(worker, *[(c,) for c in clients])
    statuses = [r["status"] for r in amo.request_log]
    assert len(statuses) == 20 and set(statuses) == {200}


class StallingAdapter(SendStampingAdapter):
    """The client's adapter, sending every ``every``-th request ``stall_s`` after its turn,
    the way a sender that lost the interpreter lock right after its grant does (a collector
    pass, a long C call in another thread)."""

    def __init__(self, every: int, stall_s: float) -> None:
        super().__init__()
        self.every, self.stall_s, self.sent = every, stall_s, itertools.count(1)

    def send(self, request, **kwargs):  # type: ignore[no-untyped-def]
        if next(self.sent) % self.every == 1:
            time.sleep(self.stall_s)
        return super().send(request, **kwargs)


def test_a_call_sent_late_after_its_turn_does_not_crowd_the_servers_second(amo):
    """Real time, real server: amoCRM's paced 6.5 req/s leaves 8 calls 1.08 s apart, 30 ms
    over the server's second with the window's margin. A call that goes out 120 ms after its
    grant lands right before the next one on time: counted from its grant, the server saw
    8 in a second (a 429 in a loaded scale-10 demo); counted from its send, not once."""
    adapter = StallingAdapter(every=8, stall_s=0.12)
    limiter = RateLimiter(6.5, burst=False)
    clients = [client_for(amo, limiter=limiter, max_retries=0) for _ in range(3)]
    for client in clients:
        client.session.mount("http://", adapter)

    def worker(client: HttpClient) -> None:
        for _ in range(10):
            with contextlib.suppress(ApiError):  # a 429: in the log below
                client.get("/api/v4/users")

    each_on_a_thread(worker, *[(c,) for c in clients])
    statuses = [r["status"] for r in amo.request_log]
    assert len(statuses) == 30 and set(statuses) == {200}, statuses


def test_a_slow_answer_does_not_hold_the_window_for_the_calls_behind_it(amo):
    """A call counts in the window from its request's write (what the server counts), not
    from its answer: behind a call answered in 0.8 s, 2 calls per 1.05 s still go out on time
    (counted from the answer, the third would wait until 1.85 s)."""
    amo.faults.add("slow", seconds=0.8)
    limiter = RateLimiter(2.0, burst=False)  # one call every 0.5 s, 2 in any 1.05 s
    clients = [client_for(amo, limiter=limiter) for _ in range(3)]
    # the slow one first
    each_on_a_thread(lambda c: c.get("/api/v4/users"), *[(c,) for c in clients],
                     stagger_s=0.05)
    arrivals = sorted(r["t"] for r in amo.request_log)
    assert len(arrivals) == 3 and [r["status"] for r in amo.request_log] == [200] * 3
    assert arrivals[2] - arrivals[0] == pytest.approx(1.05, abs=0.3)


def test_cancelled_requests_stop_every_client_until_resumed(amo):
    """An interrupted run stops its extraction threads at their next call."""
    client = client_for(amo)
    cancel_requests()
    try:
        with pytest.raises(RequestsCancelled, match="run interrupted"):
            client.get("/api/v4/users")
        assert amo.request_log == []
    finally:
        resume_requests()
    assert client.get("/api/v4/users").status_code == 200


def test_limiter_for_shares_one_limiter_per_key():
    a = limiter_for("test:acct-1", 7)
    assert limiter_for("test:acct-1", 7) is a
    assert limiter_for("test:acct-2", 7) is not a
    bucket = bucket_for("test:portal-1", 2, 50)
    assert bucket_for("test:portal-1", 2, 50) is bucket
    assert isinstance(bucket, LeakyBucketLimiter) and bucket.capacity == 45


def test_leaky_bucket_bursts_then_drains_at_its_rate():
    clock = FakeClock()
    bucket = LeakyBucketLimiter(2, 10, clock=clock, sleep=clock.sleep)  # capacity 9 of 10
    assert [bucket.acquire() for _ in range(9)] == [0.0] * 9
    assert bucket.acquire() == pytest.approx(0.5)  # one slot drains in 1 / 2 s
    assert bucket.acquire() == pytest.approx(0.5)
    clock.now += 10.0  # idle: the bucket empties
    assert [bucket.acquire() for _ in range(9)] == [0.0] * 9
    clock.now += 10.0
    bucket.saturate()  # the server said 503: full, so calls go at the drain rate at once
    assert bucket.acquire() == pytest.approx(0.5)
    bucket.pause(3)
    assert bucket.acquire() == pytest.approx(3.0)


def test_pause_waited_out_through_the_injected_sleep_is_not_waited_twice():
    for limiter_kind in (lambda c: RateLimiter(7, clock=c, sleep=c.sleep),
                         lambda c: LeakyBucketLimiter(7, 10, clock=c, sleep=c.sleep)):
        clock = FakeClock()
        limiter = limiter_kind(clock)
        recorded = RecordingSleep()  # a test's sleep: the fake clock does not move
        limiter.pause(5, sleep=recorded)
        assert recorded.calls == [5]
        assert limiter.acquire() == 0.0 and clock.sleeps == []
        clock.now += 10.0
        limiter.pause(4)  # a pause nobody waited out holds the next caller
        assert limiter.acquire() == pytest.approx(4.0)


def test_sliding_window_saturate_fills_the_window():
    clock = FakeClock()
    limiter = RateLimiter(7, margin_s=0.0, clock=clock, sleep=clock.sleep)
    limiter.acquire()
    limiter.saturate()
    assert limiter.acquire() == pytest.approx(1.0)


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
    clock = FakeClock()
    limiter = RateLimiter(7, clock=clock, sleep=clock.sleep)
    held: list[float] = []

    def sleep(seconds: float) -> None:  # while this caller waits, another one is held too
        calls.append(seconds)
        held.append(limiter.acquire())

    calls: list[float] = []
    client = client_for(amo, sleep, limiter=limiter)
    started = time.monotonic()
    resp = client.get("/api/v4/users")
    assert resp.status_code == 200
    assert calls == [1.0]  # Retry-After, waited through the injected sleep
    assert held == [pytest.approx(1.0)]  # the shared limiter held the other caller as long
    assert time.monotonic() - started < 0.9  # and nothing really slept a second
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


ERROR_BODIES = {
    "amocrm": ({"validation-errors": [{"request_id": "0", "errors": [
        {"code": "NotSupportedChoice", "path": "custom_fields_values.0.field_id",
         "detail": "The value you selected is not a valid choice."}]}],
        "title": "Bad Request", "type": "https://httpstatus.es/400", "status": 400,
        "detail": "Request validation failed"}, "NotSupportedChoice",
        ["Bad Request", "Request validation failed", "custom_fields_values.0.field_id",
         "not a valid choice"]),
    "bitrix24": ({"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"},
                 "QUERY_LIMIT_EXCEEDED", ["QUERY_LIMIT_EXCEEDED: Too many requests"]),
    "yandex_direct": ({"error": {"request_id": "8695", "error_code": 53,
                                 "error_string": "Authorization error",
                                 "error_detail": "Invalid OAuth token"}},
                      "53", ["error_code=53", "Invalid OAuth token", "request_id=8695"]),
    "vk_ads": ({"error": {"code": "ERR_WRONG_PARAMETER", "message": "Unknown field 'x'"}},
               "ERR_WRONG_PARAMETER", ["ERR_WRONG_PARAMETER: Unknown field 'x'"]),
    "google_ads": ({"error": {"code": 403, "status": "PERMISSION_DENIED",
                              "message": "The caller does not have permission", "details": [
        {"@type": "type.googleapis.com/google.ads.googleads.v26.errors.GoogleAdsFailure",
         "errors": [{"errorCode": {"authorizationError": "USER_PERMISSION_DENIED"},
                     "message": "User doesn't have permission to access customer."}],
         "requestId": "rq-1"}]}},
        "USER_PERMISSION_DENIED",
        ["PERMISSION_DENIED authorizationError=USER_PERMISSION_DENIED",
         "permission to access customer", "requestId=rq-1"]),
    "meta_ads": ({"error": {"message": "(#17) User request limit reached",
                            "type": "OAuthException", "code": 17, "error_subcode": 2446079,
                            "fbtrace_id": "AbC123xyz"}},
                 "17", ["code=17 subcode=2446079", "User request limit reached",
                        "fbtrace_id=AbC123xyz"]),
}


@pytest.mark.parametrize("source", sorted(ERROR_BODIES))
def test_every_sources_error_envelope_names_code_and_message(source):
    body, code, parts = ERROR_BODIES[source]
    info = parse_error_body(json.dumps(body))
    assert info.code == code
    for part in parts:
        assert part in info.message
    # what an ApiError of the shared client then says: source, status, code and message
    resp = requests.Response()
    resp.status_code, resp.url = 400, "http://127.0.0.1:9/x?access_token=tok-secret-77"
    resp._content = json.dumps(body).encode()
    err = HttpClient("http://127.0.0.1:9", source=source).api_error(resp)
    assert str(err).startswith(f"{source}: HTTP 400 for http://127.0.0.1:9/x?access_token=***")
    assert all(part in str(err) for part in parts)
    # the Redactor masks a JSON "code" that is not an UPPER_CASE name (OAuth codes are secrets)
    assert err.error_code == (None if source == "amocrm" else code)


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
    assert describe_error_body("<html>\n<title>502</title>") == "HTML page '502'"


def test_on_response_sees_every_response_errors_included(amo):
    amo.faults.add("429", path_prefix="/api/v4/users", retry_after=0)
    seen: list[int] = []
    client = client_for(amo, on_response=lambda resp: seen.append(resp.status_code))
    assert client.get("/api/v4/users").status_code == 200
    assert seen == [429, 200]


# -- redaction -------------------------------------------------------------------------------


def test_urllib3_request_logs_carry_no_registered_secret(amo, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "wh-code-in-path-9x7q"
    client = client_for(amo, redact=[secret, "llt-http-test-token-1234"])
    with pytest.raises(ApiError):
        client.get(f"/rest/1/{secret}/user.get.json", params={"auth": "query-token-5566"})
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("urllib3")]
    assert any("/rest/1/***/user.get.json" in line for line in lines)  # it did log the line
    assert secret not in caplog.text and "query-token-5566" not in caplog.text


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
