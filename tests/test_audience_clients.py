"""Audience upload clients against the audience emulators on loopback (ad_apis.md §B1-B4)."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from audiences.clients import ApiError, UploadResult, client_from_env
from audiences.clients.google import GoogleAudienceClient
from audiences.clients.meta import MetaAudienceClient
from audiences.clients.vk import VKAudienceClient
from audiences.clients.yandex import YandexAudienceClient
from emulators._base import EmulatorServer, Fault, Request, Response
from emulators.audiences import (
    GoogleDataManagerEmulator,
    MetaAudiencesEmulator,
    VKAudiencesEmulator,
    YandexAudiencesEmulator,
)
from extractors.http import HttpOptions, parse_error_body

META_TOKEN = "EAAmeta-secret-token-4411"
GOOGLE_TOKEN = "ya29.google-secret-token-7719"
YANDEX_TOKEN = "y0_yandex-secret-token-5523"
VK_TOKEN = "vk-secret-token-8830"
TOKENS = (META_TOKEN, GOOGLE_TOKEN, YANDEX_TOKEN, VK_TOKEN)
GOOGLE_OAUTH = ("google-client-id.apps", "GOCSPX-google-client-secret-3141",
                "1//google-refresh-token-2718")
VK_CLIENT = ("vk-client-id-77", "vk-client-secret-5926")
SECRETS = (*TOKENS, *GOOGLE_OAUTH[1:], VK_CLIENT[1])


class RecordingSleep:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def options(sleep: RecordingSleep | None = None, **kwargs) -> HttpOptions:
    params = {"timeout": (2.0, 10.0), "max_retries": 3, "backoff_base": 0.01,
              "sleep": sleep or RecordingSleep(), **kwargs}
    return HttpOptions(**params)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def phone(i: int) -> str:
    return f"7916{i:07d}"


def email(i: int) -> str:
    return f"user{i}@example.ru"


@pytest.fixture(autouse=True)
def _debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    yield
    for secret in SECRETS:  # no test of this module may leak a secret to any log record
        assert secret not in caplog.text


# ---------------------------------------------------------------------------------------------
# Meta
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def meta() -> Iterator[MetaAudiencesEmulator]:
    emulator = MetaAudiencesEmulator(access_token=META_TOKEN).start()
    yield emulator
    emulator.stop()


def meta_client(emulator: MetaAudiencesEmulator, token: str = META_TOKEN,
                sleep: RecordingSleep | None = None) -> MetaAudienceClient:
    return MetaAudienceClient(emulator.base_url, token, rate_limit_per_s=None,
                              http_options=options(sleep))


def meta_rows(ids: range) -> list[dict[str, str]]:
    return [{"EMAIL": sha256(email(i)), "PHONE": sha256(phone(i))} for i in ids]


def meta_key(i: int) -> tuple:
    return (("EMAIL", sha256(email(i))), ("PHONE", sha256(phone(i))))


def test_meta_batches_25001_rows_into_three_calls_of_one_session(meta):
    ca = meta.create_audience()
    rows = meta_rows(range(25_001))
    result = meta_client(meta).add(ca, rows)

    assert result.batches == [10_000, 10_000, 5_001]
    assert [b["rows"] for b in meta.batches] == [10_000, 10_000, 5_001]
    assert all(b["method"] == "POST" and b["schema"] == ["EMAIL", "PHONE"]
               for b in meta.batches)
    # exactly the rows, in order, split at the 10,000 boundary
    sent = [row for b in meta.batches for row in b["data"]]
    assert sent == [[r["EMAIL"], r["PHONE"]] for r in rows]
    sessions = [b["session"] for b in meta.batches]
    assert len({s["session_id"] for s in sessions}) == 1
    assert [s["batch_seq"] for s in sessions] == [1, 2, 3]
    assert [s["last_batch_flag"] for s in sessions] == [False, False, True]
    assert {s["estimated_num_total"] for s in sessions} == {25_001}
    assert [r["num_received"] for r in result.responses] == [10_000, 10_000, 5_001]
    assert len(meta.members(ca)) == 25_001


def test_meta_limit_is_100_calls_a_minute_like_the_ads_extractor(meta):
    """Meta's 100 calls per 60 s are one window of 100 (with the pace of 1.67 a second once
    it is spent), as in ``extractors.meta_ads``; a one-second window of ceil(1.67) = 2 calls
    held the third call of every sync back."""
    client = MetaAudienceClient(meta.base_url, META_TOKEN, http_options=options(None))
    limiter = client.http.limiter
    assert (limiter.rate_per_s, limiter.capacity) == (pytest.approx(100 / 60), 100)
    assert [limiter.acquire() for _ in range(10)] == [0.0] * 10


def test_meta_add_then_remove_leaves_expected_members(meta):
    ca = meta.create_audience()
    client = meta_client(meta)
    client.add(ca, meta_rows(range(300)))
    removed = client.remove(ca, meta_rows(range(100, 200)))

    assert removed.batches == [100]
    assert meta.batches[-1]["method"] == "DELETE"
    assert meta.members(ca) == {meta_key(i) for i in (*range(100), *range(200, 300))}


def test_meta_lookalike_value_only_on_value_based_audiences(meta):
    client = meta_client(meta)
    rows = [{"EMAIL": sha256(email(i)), "LOOKALIKE_VALUE": 10.5 * i} for i in range(120)]
    seed = meta.create_audience(value_based=True)
    client.add(seed, rows)
    assert meta.values(seed)[(("EMAIL", sha256(email(3))),)] == 31.5

    plain = meta.create_audience()
    with pytest.raises(ApiError) as info:
        client.add(plain, rows)
    assert info.value.source == "meta_audiences"
    assert info.value.status == 400
    assert info.value.error_code == "100"
    assert "LOOKALIKE_VALUE" in str(info.value)
    assert meta.members(plain) == set()


def test_meta_counts_unhashed_keys_as_invalid(meta):
    ca = meta.create_audience()
    rows = [{"EMAIL": sha256(email(1))}, {"EMAIL": email(2)}, {"EMAIL": md5(email(3))}]
    result = meta_client(meta).add(ca, rows)
    assert result.responses[0]["num_invalid_entries"] == 2
    assert meta.members(ca) == {(("EMAIL", sha256(email(1))),)}


def test_meta_emulator_enforces_row_limit_session_order_and_token(meta):
    ca = meta.create_audience()
    url = f"{meta.base_url}/v25.0/{ca}/users"
    auth = {"Authorization": f"Bearer {META_TOKEN}"}
    rows = [[sha256(email(i))] for i in range(10_001)]
    too_many = requests.post(url, json={"payload": {"schema": ["EMAIL"], "data": rows}},
                             headers=auth, timeout=10)
    assert too_many.status_code == 400
    assert too_many.json()["error"]["code"] == 100
    assert set(too_many.json()["error"]) >= {"message", "type", "code", "fbtrace_id"}

    skipped = requests.post(url, json={"payload": {"schema": ["EMAIL"], "data": rows[:2]},
                                       "session": {"session_id": 7, "batch_seq": 2}},
                            headers=auth, timeout=10)
    assert skipped.json()["error"]["code"] == 2650
    assert skipped.json()["error"]["error_subcode"] == 1870147

    no_token = requests.post(url, json={"payload": {"schema": ["EMAIL"], "data": rows[:2]}},
                             timeout=10)
    assert no_token.json()["error"]["code"] == 190
    assert meta.members(ca) == set() and meta.batches == []


def test_meta_retries_429_then_succeeds(meta):
    ca = meta.create_audience()
    meta.faults.add("429", path_prefix=f"/v25.0/{ca}/users")
    sleep = RecordingSleep()
    result = meta_client(meta, sleep=sleep).add(ca, meta_rows(range(150)))

    assert result.batches == [150]
    assert [e["fault"] for e in meta.request_log] == ["429", None]
    assert len(sleep.calls) == 1
    # the retried batch is the same session and batch_seq, accepted once the throttle is over
    assert [b["session"]["batch_seq"] for b in meta.batches] == [1]
    assert len(meta.members(ca)) == 150


def test_meta_bad_and_expired_token_raise_api_error_without_the_token(meta):
    ca = meta.create_audience()
    with pytest.raises(ApiError) as bad:
        meta_client(meta, token="wrong-token-123456").add(ca, meta_rows(range(5)))
    assert bad.value.error_code == "190"
    assert bad.value.attempts == 1

    meta.faults.add("expired_token")
    with pytest.raises(ApiError) as expired:
        meta_client(meta).add(ca, meta_rows(range(5)))
    assert expired.value.error_code == "190"
    assert "Session has expired" in str(expired.value)
    assert META_TOKEN not in str(expired.value) + expired.value.body_excerpt
    assert meta.members(ca) == set()


# ---------------------------------------------------------------------------------------------
# Google Data Manager
# ---------------------------------------------------------------------------------------------

LIST_ID = "8801234567"


@pytest.fixture
def google() -> Iterator[GoogleDataManagerEmulator]:
    emulator = GoogleDataManagerEmulator(access_token=GOOGLE_TOKEN,
                                         user_lists=(LIST_ID,)).start()
    yield emulator
    emulator.stop()


def google_client(emulator: GoogleDataManagerEmulator, token: str = GOOGLE_TOKEN,
                  sleep: RecordingSleep | None = None) -> GoogleAudienceClient:
    return GoogleAudienceClient(emulator.base_url, token, operating_account_id="1234567890",
                                login_account_id="9876543210", rate_limit_per_s=None,
                                http_options=options(sleep))


def google_rows(ids: range) -> list[dict[str, str]]:
    return [{"emailAddress": sha256(email(i)), "phoneNumber": sha256("+" + phone(i))}
            for i in ids]


def google_member(i: int) -> frozenset:
    return frozenset({("emailAddress", sha256(email(i))),
                      ("phoneNumber", sha256("+" + phone(i)))})


def test_google_batches_and_add_then_remove(google):
    client = google_client(google)
    added = client.add(LIST_ID, google_rows(range(10_250)))
    assert added.batches == [10_000, 250]
    assert [b["members"] for b in google.batches] == [10_000, 250]
    first = google.batches[0]
    assert first["method"] == "ingest" and first["encoding"] == "HEX"
    assert first["destinations"] == [LIST_ID]
    assert first["consent"] == {"adUserData": "CONSENT_GRANTED",
                                "adPersonalization": "CONSENT_GRANTED"}
    assert first["audienceMembers"][0] == {"userData": {"userIdentifiers": [
        {"emailAddress": sha256(email(0))}, {"phoneNumber": sha256("+" + phone(0))}]}}
    assert all("requestId" in r for r in added.responses)

    removed = client.remove(LIST_ID, google_rows(range(10_000, 10_250)))
    assert removed.batches == [250]
    assert google.batches[-1]["method"] == "remove"
    assert google.members(LIST_ID) == {google_member(i) for i in range(10_000)}


def test_google_rejects_unhashed_identifier_with_its_error(google):
    with pytest.raises(ApiError) as info:
        google_client(google).add(LIST_ID, [{"emailAddress": email(1)}])
    assert info.value.source == "google_data_manager"
    assert info.value.status == 400
    assert info.value.error_code == "INVALID_ARGUMENT"
    assert "SHA-256" in str(info.value)
    assert google.members(LIST_ID) == set()


def test_google_identifier_must_hold_exactly_one_kind(google):
    both = {"userData": {"userIdentifiers": [
        {"emailAddress": sha256(email(1)), "phoneNumber": sha256("+" + phone(1))}]}}
    with pytest.raises(ApiError) as info:
        google_client(google).add(LIST_ID, [both])
    assert info.value.error_code == "INVALID_ARGUMENT"
    assert "exactly one of" in str(info.value)
    with pytest.raises(ApiError, match="not found"):
        google_client(google).add("999", google_rows(range(2)))


def test_google_retries_5xx_and_429(google):
    google.faults.add("5xx", status=503).add("429")
    sleep = RecordingSleep()
    result = google_client(google, sleep=sleep).add(LIST_ID, google_rows(range(120)))
    assert result.batches == [120]
    assert [e["fault"] for e in google.request_log] == ["5xx", "429", None]
    assert len(sleep.calls) == 2
    assert len(google.members(LIST_ID)) == 120


def test_google_bad_token_is_unauthenticated(google):
    with pytest.raises(ApiError) as info:
        google_client(google, token="ya29.wrong-token-000").add(LIST_ID, google_rows(range(3)))
    assert info.value.status == 401
    assert info.value.error_code == "UNAUTHENTICATED"


# ---------------------------------------------------------------------------------------------
# Yandex Audiences
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def yandex() -> Iterator[YandexAudiencesEmulator]:
    emulator = YandexAudiencesEmulator(oauth_token=YANDEX_TOKEN).start()
    yield emulator
    emulator.stop()


def yandex_client(emulator: YandexAudiencesEmulator, token: str = YANDEX_TOKEN,
                  sleep: RecordingSleep | None = None) -> YandexAudienceClient:
    return YandexAudienceClient(emulator.base_url, token, rate_limit_per_s=None,
                                http_options=options(sleep))


def yandex_rows(ids: range) -> list[dict[str, str]]:
    return [{"phone": sha256(phone(i)), "email": sha256(email(i))} for i in ids]


def yandex_member(i: int) -> tuple[str, str]:
    return (sha256(phone(i)), sha256(email(i)))


def test_yandex_create_add_remove(yandex):
    client = yandex_client(yandex)
    segment = client.create_segment(yandex_rows(range(150)), "crm_buyers_2026_11")
    assert segment["status"] == "processed"
    assert segment["hashed"] is True and segment["used_hashing_alg"] == "SHA256"
    sid = segment["id"]
    assert yandex.members(sid) == {yandex_member(i) for i in range(150)}

    client.add(sid, yandex_rows(range(150, 300)))
    client.remove(sid, yandex_rows(range(0, 100)))
    assert [(b["method"], b["rows"]) for b in yandex.batches] == [
        ("upload", 150), ("addition", 150), ("subtraction", 100)]
    assert yandex.members(sid) == {yandex_member(i) for i in range(100, 300)}

    client.replace(sid, yandex_rows(range(500, 620)))
    assert yandex.members(sid) == {yandex_member(i) for i in range(500, 620)}


def test_yandex_under_100_rows_rejected_unless_check_size_false(yandex):
    client = yandex_client(yandex)
    with pytest.raises(ApiError) as info:
        client.create_segment(yandex_rows(range(40)), "small")
    assert info.value.source == "yandex_audiences"
    assert info.value.status == 400
    assert info.value.error_code == "invalid_file"
    assert "at least 100" in str(info.value)
    assert yandex.segments == {}

    segment = client.create_segment(yandex_rows(range(40)), "small", check_size=False)
    assert segment["status"] == "few_data"
    sid = segment["id"]
    with pytest.raises(ApiError):
        client.remove(sid, yandex_rows(range(10)))
    client.remove(sid, yandex_rows(range(10)), check_size=False)
    assert yandex.members(sid) == {yandex_member(i) for i in range(10, 40)}


def test_yandex_refuses_md5_and_raw_values(yandex):
    client = yandex_client(yandex)
    rows = [{"phone": md5(phone(i))} for i in range(120)]
    with pytest.raises(ApiError, match="MD5 is no longer accepted"):
        client.create_segment(rows, "md5")
    with pytest.raises(ApiError, match="not a SHA-256 hash"):
        client.create_segment([{"phone": phone(i)} for i in range(120)], "raw")


def test_yandex_retries_429_and_bad_token(yandex):
    yandex.faults.add("429", path_prefix="/v1/management/segments/upload_csv_file")
    sleep = RecordingSleep()
    segment = yandex_client(yandex, sleep=sleep).create_segment(yandex_rows(range(100)), "s")
    assert len(yandex.members(segment["id"])) == 100
    assert [e["fault"] for e in yandex.request_log][:2] == ["429", None]
    assert len(sleep.calls) == 1

    with pytest.raises(ApiError) as info:
        yandex_client(yandex, token="y0_wrong-token-000").add(segment["id"],
                                                              yandex_rows(range(100)))
    assert info.value.status == 403
    assert info.value.error_code == "invalid_token"


# ---------------------------------------------------------------------------------------------
# VK Ads
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def vk() -> Iterator[VKAudiencesEmulator]:
    emulator = VKAudiencesEmulator(access_token=VK_TOKEN, rate_limit_per_s=50).start()
    yield emulator
    emulator.stop()


def vk_client(emulator: VKAudiencesEmulator, token: str = VK_TOKEN,
              sleep: RecordingSleep | None = None, **kwargs) -> VKAudienceClient:
    return VKAudienceClient(emulator.base_url, token, rate_limit_per_s=None,
                            http_options=options(sleep), **kwargs)


def vk_lines(ids: range) -> list[str]:
    return [md5(phone(i)) for i in ids]


def test_vk_create_list_then_diff_add_and_remove(vk):
    client = vk_client(vk)
    created = client.create_list("buyers", "phones", vk_lines(range(2_000)))
    list_id = created["id"]
    assert created["type"] == "phones" and created["base"] == 0

    added: UploadResult = client.add(list_id, vk_lines(range(2_000, 2_030)))
    removed = client.remove(list_id, vk_lines(range(0, 500)), list_type="phones")
    assert added.batches == [30] and removed.batches == [500]
    assert [(b["base"], len(b["lines"])) for b in vk.batches] == [
        (0, 2_000), (list_id, 30), (-list_id, 500)]
    assert vk.batches[1]["lines"] == vk_lines(range(2_000, 2_030))
    assert vk.members(list_id) == set(vk_lines(range(500, 2_030)))


def test_vk_diff_list_under_25_rejected_with_not_enough_ids(vk):
    client = vk_client(vk)
    list_id = client.create_list("buyers", "phones", vk_lines(range(2_000)))["id"]
    with pytest.raises(ApiError) as info:
        client.add(list_id, vk_lines(range(5_000, 5_024)), list_type="phones")
    assert info.value.source == "vk_audiences"
    assert info.value.status == 400
    assert info.value.error_code == "not_enough_ids"
    assert "not_enough_ids" in str(info.value)
    assert vk.members(list_id) == set(vk_lines(range(2_000)))


def test_vk_base_list_under_2000_rejected(vk):
    with pytest.raises(ApiError) as info:
        vk_client(vk).create_list("small", "phones", vk_lines(range(1_999)))
    assert info.value.error_code == "not_enough_ids"
    assert vk.lists == {}


def test_vk_batches_diff_lists_to_max_batch(vk):
    client = vk_client(vk, max_batch=40)
    list_id = client.create_list("buyers", "phones", vk_lines(range(2_000)))["id"]
    result = client.add(list_id, vk_lines(range(3_000, 3_100)))
    # 100 lines at most 40 per list: 34/33/33, never a 20-line tail under the 25 minimum
    assert result.batches == [34, 33, 33]
    assert [len(b["lines"]) for b in vk.batches[1:]] == [34, 33, 33]
    assert [b["base"] for b in vk.batches[1:]] == [list_id] * 3
    assert vk.members(list_id) == set(vk_lines(range(2_000))) | set(vk_lines(range(3_000,
                                                                                 3_100)))


def test_vk_honours_rate_limit_headers_and_429():
    emulator = VKAudiencesEmulator(access_token=VK_TOKEN, rate_limit_per_s=1).start()
    try:
        sleep = RecordingSleep()
        client = VKAudienceClient(emulator.base_url, VK_TOKEN, rate_limit_per_s=50,
                                  http_options=options(sleep))
        started = time.monotonic()
        list_id = client.create_list("a", "phones", vk_lines(range(2_000)))["id"]
        client.add(list_id, vk_lines(range(2_000, 2_030)), list_type="phones")
        client.remove(list_id, vk_lines(range(0, 30)), list_type="phones")
        elapsed = time.monotonic() - started
        # "Remaining: 0" held the client until the next second: never a 429 in three calls
        assert emulator.throttled == 0
        assert [e["status"] for e in emulator.request_log] == [200, 200, 200]
        assert elapsed >= 1.0

        emulator.faults.add("429", retry_after=0)
        client.add(list_id, vk_lines(range(4_000, 4_030)), list_type="phones")
        assert [e["status"] for e in emulator.request_log][-2:] == [429, 200]
        assert len(vk_lines(range(4_000, 4_030))) == 30
        assert emulator.members(list_id) >= set(vk_lines(range(4_000, 4_030)))
    finally:
        emulator.stop()


def test_vk_bad_token(vk):
    with pytest.raises(ApiError) as info:
        vk_client(vk, token="vk-wrong-token-000").create_list("a", "phones",
                                                                vk_lines(range(2_000)))
    assert info.value.status == 401
    assert info.value.error_code == "ERR_ACCESS_DENIED"


# ---------------------------------------------------------------------------------------------
# Tokens never leak
# ---------------------------------------------------------------------------------------------


def test_tokens_never_reach_logs_errors_or_reprs(meta, google, yandex, vk, caplog):
    ca = meta.create_audience()
    for emulator in (meta, google, yandex, vk):
        emulator.faults.add("5xx")
    clients = [meta_client(meta), google_client(google), yandex_client(yandex), vk_client(vk)]
    clients[0].add(ca, meta_rows(range(3)))
    clients[1].add(LIST_ID, google_rows(range(3)))
    clients[2].create_segment(yandex_rows(range(100)), "s")
    clients[3].create_list("a", "phones", vk_lines(range(2_000)))
    assert "retry 1/3" in caplog.text  # the retries were logged, with redacted lines
    for emulator in (meta, google, yandex, vk):
        emulator.faults.add("expired_token")
    errors = []
    for call in (lambda: clients[0].add(ca, meta_rows(range(3))),
                 lambda: clients[1].add(LIST_ID, google_rows(range(3))),
                 lambda: clients[2].create_segment(yandex_rows(range(100)), "s"),
                 lambda: clients[3].create_list("a", "phones", vk_lines(range(2_000)))):
        with pytest.raises(ApiError) as info:
            call()
        errors.append(info.value)
        logging.getLogger("test").error("upload failed: %s", info.value)
    text = " ".join(f"{e} {e.body_excerpt} {e.url}" for e in errors) + repr(clients)
    for token in TOKENS:
        assert token not in text
        assert token not in caplog.text


# ---------------------------------------------------------------------------------------------
# Clients from the environment, audience creation
# ---------------------------------------------------------------------------------------------

ACCOUNT = "act_1234567890"


def meta_env(emulator: MetaAudiencesEmulator) -> dict[str, str]:
    return {"META_AUDIENCES_ACCESS_TOKEN": META_TOKEN, "META_ADS_ACCOUNT_ID": ACCOUNT,
            "META_AUDIENCES_BASE_URL": emulator.base_url}


def google_env(emulator: GoogleDataManagerEmulator) -> dict[str, str]:
    return {"GOOGLE_DATA_MANAGER_BASE_URL": emulator.base_url,
            "GOOGLE_DATA_MANAGER_ACCESS_TOKEN": GOOGLE_TOKEN,
            "GOOGLE_ADS_CUSTOMER_ID": "123-456-7890", "GOOGLE_ADS_LOGIN_CUSTOMER_ID": "9876543210"}


def google_oauth_env(emulator: GoogleDataManagerEmulator) -> dict[str, str]:
    env = google_env(emulator)
    del env["GOOGLE_DATA_MANAGER_ACCESS_TOKEN"]
    client_id, secret, refresh = GOOGLE_OAUTH
    return {**env, "GOOGLE_ADS_CLIENT_ID": client_id, "GOOGLE_ADS_CLIENT_SECRET": secret,
            "GOOGLE_ADS_REFRESH_TOKEN": refresh,
            "GOOGLE_ADS_TOKEN_URL": f"{emulator.base_url}/token"}


def yandex_env(emulator: YandexAudiencesEmulator) -> dict[str, str]:
    return {"YANDEX_AUDIENCE_BASE_URL": emulator.base_url, "YANDEX_AUDIENCE_TOKEN": YANDEX_TOKEN}


def vk_env(emulator: VKAudiencesEmulator) -> dict[str, str]:
    return {"VK_ADS_BASE_URL": emulator.base_url, "VK_ADS_ACCESS_TOKEN": VK_TOKEN}


def vk_credentials_env(emulator: VKAudiencesEmulator, state_dir: Path) -> dict[str, str]:
    return {"VK_ADS_BASE_URL": emulator.base_url, "VK_ADS_CLIENT_ID": VK_CLIENT[0],
            "VK_ADS_CLIENT_SECRET": VK_CLIENT[1], "VK_ADS_ACCOUNT": "shop",
            "VORONKA_STATE_DIR": str(state_dir)}


def test_meta_client_from_env_adds_to_the_emulator(meta):
    client = client_from_env("meta", meta_env(meta), http_options=options())
    assert isinstance(client, MetaAudienceClient)
    assert client.ad_account_id == ACCOUNT
    ca = meta.create_audience()
    client.add(ca, meta_rows(range(5)))
    assert meta.members(ca) == {meta_key(i) for i in range(5)}


def test_meta_client_from_env_falls_back_to_the_ads_variables(meta):
    env = {"META_ADS_ACCESS_TOKEN": META_TOKEN, "META_ADS_ACCOUNT_ID": "1234567890",
           "META_ADS_BASE_URL": meta.base_url, "META_AUDIENCES_ACCESS_TOKEN": "  "}
    client = client_from_env("meta", env, http_options=options())
    assert client.ad_account_id == ACCOUNT  # "act_" added
    ca = meta.create_audience()
    client.add(ca, meta_rows(range(2)))
    assert len(meta.members(ca)) == 2
    # base_url= wins over the variables (an emulator in front of a real configuration)
    pointed = client_from_env("meta", {**env, "META_ADS_BASE_URL": "https://graph.invalid"},
                              base_url=meta.base_url, http_options=options())
    assert pointed.base_url == meta.base_url


def test_meta_create_audience_then_add_lands_in_it():
    emulator = MetaAudiencesEmulator(access_token=META_TOKEN, ad_account_id=ACCOUNT).start()
    try:
        client = MetaAudienceClient(emulator.base_url, META_TOKEN, rate_limit_per_s=None,
                                    http_options=options(), ad_account_id=ACCOUNT)
        seed = client.create_audience("crm_buyers_value", "LTV seed", value_based=True)
        plain = client.create_audience("crm_buyers")
        assert seed != plain and {seed, plain} <= set(emulator.audiences)
        asked = {c["id"]: c for c in emulator.created}
        assert asked[seed]["account"] == ACCOUNT
        assert asked[seed]["name"] == "crm_buyers_value"
        assert asked[seed]["description"] == "LTV seed"
        assert asked[seed]["subtype"] == "CUSTOM"
        assert asked[seed]["customer_file_source"] == "USER_PROVIDED_ONLY"
        assert asked[seed]["is_value_based"] == "1"
        assert "is_value_based" not in asked[plain]
        assert emulator.audiences[seed]["is_value_based"] is True
        assert emulator.audiences[plain]["is_value_based"] is False

        rows = [{"EMAIL": sha256(email(i)), "LOOKALIKE_VALUE": 2.5 * i} for i in range(150)]
        client.add(seed, rows)
        assert emulator.members(seed) == {(("EMAIL", sha256(email(i))),) for i in range(150)}
        assert emulator.values(seed)[(("EMAIL", sha256(email(4))),)] == 10.0
        with pytest.raises(ApiError) as info:  # not value-based: no LOOKALIKE_VALUE
            client.add(plain, rows)
        assert info.value.error_code == "100"
        client.add(plain, meta_rows(range(3)))
        assert emulator.members(plain) == {meta_key(i) for i in range(3)}
    finally:
        emulator.stop()


def test_meta_create_audience_needs_an_ad_account(meta):
    client = meta_client(meta)
    with pytest.raises(ValueError, match="META_ADS_ACCOUNT_ID"):
        client.create_audience("x")
    created = client.create_audience("x", ad_account_id="act_555")
    assert meta.audiences[created]["account"] == "act_555"
    with pytest.raises(ValueError, match="act_<digits>"):
        client.create_audience("x", ad_account_id="555-typo")
    other = MetaAudiencesEmulator(access_token=META_TOKEN, ad_account_id=ACCOUNT).start()
    try:
        with pytest.raises(ApiError) as info:
            meta_client(other).create_audience("x", ad_account_id="act_555")
        assert info.value.error_code == "100" and other.audiences == {}
    finally:
        other.stop()


def test_google_client_from_env_with_access_token(google):
    client = client_from_env("google", google_env(google), http_options=options())
    assert isinstance(client, GoogleAudienceClient)
    assert client.operating_account_id == "1234567890"
    client.add(LIST_ID, google_rows(range(4)))
    assert google.members(LIST_ID) == {google_member(i) for i in range(4)}


def test_google_client_from_env_refreshes_an_oauth_token():
    emulator = GoogleDataManagerEmulator(access_token=GOOGLE_TOKEN, user_lists=(LIST_ID,),
                                         oauth_client=GOOGLE_OAUTH).start()
    try:
        client = client_from_env("google", google_oauth_env(emulator), http_options=options())
        client.add(LIST_ID, google_rows(range(3)))
        client.remove(LIST_ID, google_rows(range(1)))
        assert emulator.members(LIST_ID) == {google_member(i) for i in (1, 2)}
        assert emulator.token_refreshes == 1  # cached between calls

        emulator.access_token = "ya29.rotated-token-000"  # the old token no longer works
        with pytest.raises(ApiError) as info:
            client.add(LIST_ID, google_rows(range(1)))
        assert info.value.status == 401
        client.close()
    finally:
        emulator.stop()


def test_google_create_user_list_then_ingest_and_remove(google):
    client = google_client(google)
    list_id = client.create_user_list("crm_buyers", "CRM buyers, hashed contacts")
    assert list_id and list_id != LIST_ID
    [asked] = google.created
    assert asked["id"] == list_id
    assert (asked["accountType"], asked["accountId"]) == ("GOOGLE_ADS", "1234567890")
    assert asked["loginAccount"] == "accountTypes/GOOGLE_ADS/accounts/9876543210"
    assert asked["body"]["displayName"] == "crm_buyers"
    assert asked["body"]["description"] == "CRM buyers, hashed contacts"
    assert asked["body"]["ingestedUserListInfo"]["uploadKeyTypes"] == ["CONTACT_ID"]

    client.add(list_id, google_rows(range(20)))
    client.remove(list_id, google_rows(range(5)))
    assert google.members(list_id) == {google_member(i) for i in range(5, 20)}
    assert [b["destinations"] for b in google.batches] == [[list_id], [list_id]]
    assert google.members(LIST_ID) == set()

    stranger = GoogleAudienceClient(google.base_url, GOOGLE_TOKEN,
                                    operating_account_id="5555555555", rate_limit_per_s=None,
                                    http_options=options())
    with pytest.raises(ApiError, match="not found"):  # another account's list
        stranger.add(list_id, google_rows(range(1)))


def test_yandex_client_from_env_creates_a_segment(yandex):
    client = client_from_env("yandex", yandex_env(yandex), http_options=options())
    assert isinstance(client, YandexAudienceClient)
    segment = client.create_segment(yandex_rows(range(100)), "crm")
    assert yandex.members(segment["id"]) == {yandex_member(i) for i in range(100)}


def test_vk_client_from_env_with_access_token(vk):
    client = client_from_env("vk", vk_env(vk), http_options=options())
    assert isinstance(client, VKAudienceClient)
    created = client.create_list("buyers", "phones", vk_lines(range(2_000)))
    assert vk.members(created["id"]) == set(vk_lines(range(2_000)))


def test_vk_client_from_env_gets_and_stores_the_extractors_token(tmp_path):
    emulator = VKAudiencesEmulator(access_token=VK_TOKEN, client_id=VK_CLIENT[0],
                                   client_secret=VK_CLIENT[1], rate_limit_per_s=50).start()
    try:
        env = vk_credentials_env(emulator, tmp_path)
        client = client_from_env("vk", env, http_options=options())
        list_id = client.create_list("buyers", "phones", vk_lines(range(2_000)))["id"]
        assert emulator.token_grants == ["client_credentials"]
        store = tmp_path / "vk_ads_shop_token.json"  # the VK Ads extractor's token store
        assert VK_TOKEN in store.read_text()
        # a second client (another run) reuses the stored token: no new grant, one VK slot
        again = client_from_env("vk", env, http_options=options())
        again.add(list_id, vk_lines(range(2_000, 2_030)), list_type="phones")
        assert emulator.token_grants == ["client_credentials"]
        assert emulator.members(list_id) == set(vk_lines(range(2_030)))
        client.close()
        again.close()
    finally:
        emulator.stop()


@pytest.mark.parametrize("platform, env, named", [
    ("meta", {"META_ADS_ACCESS_TOKEN": META_TOKEN}, ["META_ADS_ACCOUNT_ID"]),
    ("meta", {"META_ADS_ACCOUNT_ID": ACCOUNT, "META_AUDIENCES_ACCESS_TOKEN": ""},
     ["META_AUDIENCES_ACCESS_TOKEN", "META_ADS_ACCESS_TOKEN"]),
    ("google", {"GOOGLE_DATA_MANAGER_ACCESS_TOKEN": GOOGLE_TOKEN}, ["GOOGLE_ADS_CUSTOMER_ID"]),
    ("google", {"GOOGLE_ADS_CUSTOMER_ID": "1234567890"},
     ["GOOGLE_DATA_MANAGER_ACCESS_TOKEN", *("GOOGLE_ADS_CLIENT_ID", "GOOGLE_ADS_CLIENT_SECRET",
                                           "GOOGLE_ADS_REFRESH_TOKEN")]),
    ("google", {"GOOGLE_ADS_CUSTOMER_ID": "1234567890", "GOOGLE_ADS_CLIENT_ID": "id",
                "GOOGLE_ADS_CLIENT_SECRET": GOOGLE_OAUTH[1]}, ["GOOGLE_ADS_REFRESH_TOKEN"]),
    ("yandex", {"YANDEX_AUDIENCE_BASE_URL": "http://127.0.0.1:9"}, ["YANDEX_AUDIENCE_TOKEN"]),
    ("vk", {}, ["VK_ADS_ACCESS_TOKEN", "VK_ADS_CLIENT_ID", "VK_ADS_CLIENT_SECRET",
                "VK_ADS_ACCOUNT"]),
    ("vk", {"VK_ADS_CLIENT_ID": "id", "VK_ADS_CLIENT_SECRET": VK_CLIENT[1]},
     ["VK_ADS_ACCOUNT"]),
])
def test_client_from_env_names_missing_variables_never_values(platform, env, named):
    with pytest.raises(ValueError) as info:
        client_from_env(platform, env)
    text = str(info.value)
    assert all(name in text for name in named), text
    assert all(value not in text for value in env.values() if value), text
    for secret in SECRETS:
        assert secret not in text


def test_client_from_env_refuses_an_unknown_platform():
    with pytest.raises(ValueError, match="meta, google, yandex, vk"):
        client_from_env("tiktok", {})


def test_client_from_env_reads_os_environ_by_default(monkeypatch, yandex):
    monkeypatch.setenv("YANDEX_AUDIENCE_TOKEN", YANDEX_TOKEN)
    monkeypatch.setenv("YANDEX_AUDIENCE_BASE_URL", yandex.base_url)
    client = client_from_env("yandex", http_options=options())
    assert client.base_url == yandex.base_url


def test_secrets_from_env_never_reach_reprs_errors_or_logs(meta, yandex, vk, caplog, tmp_path):
    google = GoogleDataManagerEmulator(access_token=GOOGLE_TOKEN, user_lists=(LIST_ID,),
                                       oauth_client=GOOGLE_OAUTH).start()
    vk_oauth = VKAudiencesEmulator(access_token=VK_TOKEN, client_id=VK_CLIENT[0],
                                   client_secret=VK_CLIENT[1], rate_limit_per_s=50).start()
    try:
        clients = {
            "meta": client_from_env("meta", meta_env(meta), http_options=options()),
            "google": client_from_env("google", google_oauth_env(google),
                                      http_options=options()),
            "yandex": client_from_env("yandex", yandex_env(yandex), http_options=options()),
            "vk": client_from_env("vk", vk_env(vk), http_options=options()),
            "vk_oauth": client_from_env("vk", vk_credentials_env(vk_oauth, tmp_path),
                                        http_options=options()),
        }
        ca = meta.create_audience()
        for emulator in (meta, yandex, vk):
            emulator.faults.add("expired_token")
        google.faults.add("expired_token", path_prefix="/v1/")  # the token itself is granted
        vk_oauth.faults.add("expired_token", path_prefix="/api/v3/")
        calls = {
            "meta": lambda c: c.add(ca, meta_rows(range(2))),
            "google": lambda c: c.add(LIST_ID, google_rows(range(2))),
            "yandex": lambda c: c.create_segment(yandex_rows(range(100)), "s"),
            "vk": lambda c: c.create_list("a", "phones", vk_lines(range(2_000))),
            "vk_oauth": lambda c: c.create_list("a", "phones", vk_lines(range(2_000))),
        }
        errors = []
        for name, client in clients.items():
            with pytest.raises(ApiError) as info:
                calls[name](client)
            assert info.value.status in (400, 401, 403), name
            errors.append(info.value)
            logging.getLogger("test").error("upload failed: %s %r", info.value, client)
        assert google.token_refreshes == 1 and vk_oauth.token_grants == ["client_credentials"]
        text = " ".join(f"{e} {e.detail} {e.body_excerpt} {e.url}" for e in errors)
        text += " ".join(repr(c) for c in clients.values())
        for secret in SECRETS:
            assert secret not in text
            assert secret not in caplog.text
    finally:
        google.stop()
        vk_oauth.stop()


# ---------------------------------------------------------------------------------------------
# The shared error parser knows the audience APIs' envelopes
# ---------------------------------------------------------------------------------------------


def test_parse_error_body_reads_vk_field_errors_without_the_line():
    body = {"error": {"fields": {"file": [
        {"line_number": 10, "line": "ivan@example.ru", "code": "invalid_email"},
        {"line_number": 12, "line": "oops", "code": "invalid_email"}]}}}
    info = parse_error_body(json.dumps(body))
    assert info.code == "invalid_email"
    assert info.message == "file: invalid_email at line 10; file: invalid_email at line 12"
    assert "ivan@example.ru" not in info.message  # a customer's e-mail is not an error text

    size = parse_error_body(json.dumps({"error": {"fields": {"file": [
        {"code": "not_enough_ids", "message": "10 valid lines"}]}}}))
    assert (size.code, size.message) == ("not_enough_ids", "file: not_enough_ids (10 valid "
                                                           "lines)")
    base = parse_error_body(json.dumps({"error": {"fields": {"base": {"code": "not_found"}}}}))
    assert (base.code, base.message) == ("not_found", "base: not_found")


def test_parse_error_body_reads_yandex_audiences_errors():
    body = {"errors": [{"error_type": "invalid_file",
                        "message": "Line 3: phone is not a SHA-256 hash"}],
            "code": 400, "message": "Line 3: phone is not a SHA-256 hash"}
    info = parse_error_body(json.dumps(body))
    assert info.code == "invalid_file"
    assert info.message == "invalid_file: Line 3: phone is not a SHA-256 hash"
    bare = parse_error_body(json.dumps({"errors": [], "code": 403, "message": "Forbidden"}))
    assert (bare.code, bare.message) == (None, "Forbidden")


def test_vk_line_errors_reach_the_api_error(vk):
    with pytest.raises(ApiError) as info:
        vk_client(vk).create_list("bad", "emails", ["not-an-email"] * 2_000)
    assert info.value.error_code == "invalid_email"
    assert "file: invalid_email at line 1" in str(info.value)
    assert vk.lists == {}


class EchoingEmulator(EmulatorServer):
    """A careless API that repeats the request's credentials in its error message."""

    def handle(self, request: Request) -> Response:
        said = request.header("Authorization") or ""
        return Response(400, {"error": {"code": 400, "status": "INVALID_ARGUMENT",
                                        "message": f"rejected {said} and {SECRETS[4]}"}},
                        "application/json")

    def fault_response(self, fault: Fault, request: Request) -> Response:
        raise AssertionError(fault.kind)  # no faults are planned here


def test_an_echoed_token_or_secret_is_masked_in_the_api_error(caplog):
    emulator = EchoingEmulator().start()
    try:
        fresh = "ya29.fresh-provider-token-1618"
        client = GoogleAudienceClient(emulator.base_url, lambda: fresh,
                                      operating_account_id="1234567890", rate_limit_per_s=None,
                                      http_options=options())
        client.add_secret(SECRETS[4])  # e.g. the OAuth client secret
        with pytest.raises(ApiError) as info:
            client.add(LIST_ID, google_rows(range(1)))
        logging.getLogger("test").error("upload failed: %s", info.value)
        text = f"{info.value} {info.value.body_excerpt}"
        assert "rejected Bearer *** and ***" in str(info.value)
        assert fresh not in text + caplog.text and SECRETS[4] not in text
    finally:
        emulator.stop()
