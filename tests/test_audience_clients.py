"""Audience upload clients against the audience emulators on loopback (ad_apis.md §B1-B4)."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator

import pytest
import requests

from audiences.clients import ApiError, UploadResult
from audiences.clients.google import GoogleAudienceClient
from audiences.clients.meta import MetaAudienceClient
from audiences.clients.vk import VKAudienceClient
from audiences.clients.yandex import YandexAudienceClient
from emulators.audiences import (
    GoogleDataManagerEmulator,
    MetaAudiencesEmulator,
    VKAudiencesEmulator,
    YandexAudiencesEmulator,
)
from extractors.http import HttpOptions

META_TOKEN = "EAAmeta-secret-token-4411"
GOOGLE_TOKEN = "ya29.google-secret-token-7719"
YANDEX_TOKEN = "y0_yandex-secret-token-5523"
VK_TOKEN = "vk-secret-token-8830"
TOKENS = (META_TOKEN, GOOGLE_TOKEN, YANDEX_TOKEN, VK_TOKEN)


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
    for token in TOKENS:  # no test of this module may leak a token to any log record
        assert token not in caplog.text


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
