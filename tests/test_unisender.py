"""UniSender: the emulator (activation_apis.md §3) and the list client against it on loopback."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import requests

from audiences.clients import ApiError, UploadResult
from audiences.clients.unisender import UniSenderClient, mask_identifiers
from emulators import UniSenderEmulator
from extractors.http import HttpOptions

KEY = "us-secret-api-key-6402"
OTHER_KEY = "us-wrong-api-key-1177"
ROLE = "info@shop-example.ru"
BAD_EMAIL = "broken.address-at-example"
PHONE_RAW = "+7 916 555-12-34"


class RecordingSleep:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def email(i: int) -> str:
    return f"buyer{i}@example.ru"


def options(sleep: RecordingSleep | None = None, **kwargs) -> HttpOptions:
    return HttpOptions(**{"timeout": (2.0, 10.0), "max_retries": 3, "backoff_base": 0.01,
                          "sleep": sleep or RecordingSleep(), **kwargs})


def client(emulator: UniSenderEmulator, key: str = KEY, sleep: RecordingSleep | None = None,
           **kwargs) -> UniSenderClient:
    return UniSenderClient(emulator.base_url, key, lang=emulator.lang,
                           http_options=options(sleep, **kwargs), rate_limit_per_s=None)


def raw(emulator: UniSenderEmulator, method: str, pairs: list[tuple[str, str]] | None = None,
        key: str = KEY) -> tuple[int, dict]:
    """One form POST straight to the emulator: (HTTP status, JSON body)."""
    resp = requests.post(f"{emulator.base_url}/{emulator.lang}/api/{method}?format=json",
                         data=[("api_key", key), *(pairs or [])], timeout=5)
    return resp.status_code, resp.json()


def import_pairs(fields: list[str], rows: list[list[str]]) -> list[tuple[str, str]]:
    pairs = [(f"field_names[{j}]", name) for j, name in enumerate(fields)]
    return pairs + [(f"data[{i}][{j}]", cell) for i, row in enumerate(rows)
                    for j, cell in enumerate(row)]


def calls_of(emulator: UniSenderEmulator, method: str) -> list[int]:
    return [rows for name, rows in emulator.calls() if name == method]


@pytest.fixture(autouse=True)
def _no_secrets_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    yield
    for secret in (KEY, OTHER_KEY, ROLE, BAD_EMAIL, PHONE_RAW, "79165551234", "@example.ru"):
        assert secret not in caplog.text


@pytest.fixture
def uni() -> Iterator[UniSenderEmulator]:
    emulator = UniSenderEmulator(api_key=KEY).start()
    yield emulator
    emulator.stop()


# ---------------------------------------------------------------------------------------------
# client against the emulator
# ---------------------------------------------------------------------------------------------


def test_list_is_created_once_and_reused(uni):
    with client(uni) as c:
        first = c.list_id("Reminder 30 days")
        again = c.list_id("Reminder 30 days")
        other = c.list_id("Win-back")
    assert first == again != other
    assert uni.lists() == {int(first): "Reminder 30 days", int(other): "Win-back"}
    assert len(calls_of(uni, "createList")) == 2
    # the key travels in the form body only: no request URL the server saw carries it
    assert all("api_key" not in entry["query"] for entry in uni.request_log)


def test_1200_emails_go_in_three_imports_and_land_in_the_list(uni):
    contacts = [email(i) for i in range(1200)]
    with client(uni) as c:
        list_id = c.list_id("Segment")
        result = c.import_contacts(list_id, "email", contacts)

    assert isinstance(result, UploadResult)
    assert (result.audience_id, result.operation, result.rows) == (list_id, "add", 1200)
    assert result.batches == [500, 500, 200]
    assert calls_of(uni, "importContacts") == [500, 500, 200]
    assert [r["inserted"] for r in result.responses] == [500, 500, 200]
    assert all(r["log"] == [] and r["invalid"] == 0 for r in result.responses)
    assert uni.list_members(list_id) == set(contacts)


def test_import_merges_lists_and_is_an_upsert(uni):
    contacts = [email(i) for i in range(10)]
    with client(uni) as c:
        a, b = c.list_id("A"), c.list_id("B")
        c.import_contacts(a, "email", contacts)
        again = c.import_contacts(b, "email", contacts[:4])
        repeat = c.import_contacts(a, "email", contacts)
    assert (again.responses[0]["inserted"], again.responses[0]["updated"]) == (0, 4)
    assert (repeat.responses[0]["inserted"], repeat.responses[0]["updated"]) == (0, 10)
    assert uni.list_members(a) == set(contacts)
    assert uni.list_members(b) == set(contacts[:4])


def test_exclude_removes_from_that_list_only(uni):
    contacts = [email(i) for i in range(6)]
    with client(uni) as c:
        a, b = c.list_id("A"), c.list_id("B")
        c.import_contacts(a, "email", contacts)
        c.import_contacts(b, "email", contacts)
        result = c.exclude(a, "email", contacts[:2])

    assert (result.operation, result.rows, result.batches) == ("remove", 2, [1, 1])
    assert result.responses == [{}, {}]
    assert uni.list_members(a) == set(contacts[2:])
    assert uni.list_members(b) == set(contacts)
    assert uni.unsubscribed(a) == set()  # excluded, not unsubscribed


def test_exclude_of_an_unknown_contact_counts_as_done(uni):
    # the API's own answer: an error envelope with code "unspecified" and the contact quoted
    status, body = raw(uni, "exclude", [("contact_type", "email"),
                                        ("contact", "ghost@example.ru"), ("list_ids", "")])
    assert status == 200
    assert body == {"error": 'Contact "ghost@example.ru" not found', "code": "unspecified",
                    "result": ""}
    with client(uni) as c:
        a = c.list_id("A")
        c.import_contacts(a, "email", [email(1)])
        result = c.exclude(a, "email", ["ghost@example.ru", email(1)])
    assert result.responses == [{"not_found": True}, {}]
    assert uni.list_members(a) == set()


def test_rejected_rows_are_reported_by_index_and_code_without_the_address(uni):
    contacts = [email(0), ROLE, BAD_EMAIL, email(3)]
    with client(uni) as c:
        a = c.list_id("A")
        result = c.import_contacts(a, "email", contacts)

    answer = result.responses[0]
    assert answer["log"] == [{"index": 1, "code": "role_address"},
                             {"index": 2, "code": "invalid_email"}]
    assert (answer["inserted"], answer["invalid"]) == (2, 2)
    assert uni.list_members(a) == {email(0), email(3)}
    for secret in (ROLE, BAD_EMAIL):
        assert secret not in repr(result)
    # the emulator itself quotes the address (as a real service may): the client drops it
    _, body = raw(uni, "importContacts", import_pairs(["email"], [[ROLE]]))
    assert body["result"]["log"][0]["code"] == "role_address"
    assert ROLE in body["result"]["log"][0]["message"]


def test_log_indexes_point_into_the_whole_input_across_batches(uni):
    contacts = [email(i) for i in range(600)]
    contacts[550] = "sales@example.org"
    with client(uni) as c:
        a = c.list_id("A")
        result = c.import_contacts(a, "email", contacts)
    assert result.responses[0]["log"] == []
    assert result.responses[1]["log"] == [{"index": 550, "code": "role_address"}]


def test_phones_import_and_exclude(uni):
    with client(uni) as c:
        a = c.list_id("SMS")
        result = c.import_contacts(a, "phone", [PHONE_RAW, "12-34"])
        assert result.responses[0]["log"] == [{"index": 1, "code": "invalid_phone"}]
        assert uni.list_members(a, kind="phone") == {"79165551234"}
        c.exclude(a, "phone", [PHONE_RAW])
    assert uni.list_members(a, kind="phone") == set()


def test_invalid_key_names_the_code_and_not_the_key(uni, caplog):
    with client(uni, key=OTHER_KEY) as c, pytest.raises(ApiError) as info:
        c.list_id("A")
    exc = info.value
    assert (exc.source, exc.error_code, exc.attempts) == ("unisender", "invalid_api_key", 1)
    assert "Invalid API key" in str(exc)
    for text in (str(exc), exc.body_excerpt, exc.url, repr(c)):
        assert OTHER_KEY not in text and KEY not in text
    assert uni.calls() == []


@pytest.mark.parametrize("code", ["api_call_limit_exceeded_for_api_key", "retry_later"])
def test_rate_limit_and_retry_later_codes_are_retried(uni, code):
    sleep = RecordingSleep()
    uni.faults.add("429", count=2, path_prefix="/ru/api/importContacts", code=code)
    with client(uni, sleep=sleep) as c:
        a = c.list_id("A")
        result = c.import_contacts(a, "email", [email(1), email(2)])
    assert result.batches == [2]
    assert len(sleep.calls) == 2
    assert calls_of(uni, "importContacts") == [2]  # the refused calls did nothing
    assert uni.list_members(a) == {email(1), email(2)}


def test_rate_limit_retries_run_out_into_an_api_error(uni):
    uni.faults.add("429", count=10, path_prefix="/ru/api/getLists")
    with client(uni, max_retries=2) as c, pytest.raises(ApiError) as info:
        c.list_id("A")
    assert info.value.error_code == "api_call_limit_exceeded_for_api_key"
    assert info.value.attempts == 3


def test_errors_and_logs_carry_no_raw_contact_or_key(uni, caplog):
    with client(uni) as c:
        a = c.list_id("A")
        with pytest.raises(ApiError) as info:  # the API quotes the bad contact back
            c.exclude(a, "email", [BAD_EMAIL])
        assert info.value.error_code == "invalid_arg"
        uni.faults.add("5xx", count=10, path_prefix="/ru/api/exclude")
        with pytest.raises(ApiError) as failed:
            c.exclude(a, "phone", [PHONE_RAW])
    for exc in (info.value, failed.value):
        text = f"{exc} {exc.body_excerpt} {exc.detail} {exc.url}"
        for secret in (KEY, BAD_EMAIL, PHONE_RAW, "79165551234"):
            assert secret not in text
    assert "***" in str(info.value)
    assert failed.value.status == 500


def test_a_dropped_import_answer_is_resent_without_duplicates(uni):
    uni.faults.add("drop", path_prefix="/ru/api/importContacts", after_write=True)
    sleep = RecordingSleep()
    contacts = [email(i) for i in range(30)]
    with client(uni, sleep=sleep) as c:
        a = c.list_id("A")
        result = c.import_contacts(a, "email", contacts)
    # applied, answer lost, re-sent: the upsert found them all
    assert calls_of(uni, "importContacts") == [30, 30]
    assert (result.responses[0]["inserted"], result.responses[0]["updated"]) == (0, 30)
    assert uni.list_members(a) == set(contacts)
    assert len(sleep.calls) == 1


def test_create_list_is_never_resent_and_a_made_list_is_found_again(uni):
    uni.faults.add("drop", path_prefix="/ru/api/createList", after_write=True)
    with client(uni) as c:
        list_id = c.list_id("Lapsed")
    assert uni.lists() == {int(list_id): "Lapsed"}
    assert calls_of(uni, "createList") == [0]
    assert [e["path"] for e in uni.request_log].count("/ru/api/createList") == 1


def test_create_list_5xx_is_not_resent_and_raises(uni):
    uni.faults.add("5xx", path_prefix="/ru/api/createList", status=503)
    with client(uni) as c, pytest.raises(ApiError) as info:
        c.list_id("Lapsed")
    assert info.value.status == 503
    assert uni.lists() == {}
    assert [e["path"] for e in uni.request_log].count("/ru/api/createList") == 1


def test_from_env_reads_key_url_and_lang():
    emulator = UniSenderEmulator(api_key=KEY, lang="en").start()
    try:
        env = {"UNISENDER_API_KEY": KEY, "UNISENDER_BASE_URL": emulator.base_url,
               "UNISENDER_LANG": "en"}
        with UniSenderClient.from_env(env, http_options=options()) as c:
            assert c.list_id("A") == "1"
        assert emulator.request_log[0]["path"] == "/en/api/getLists"
    finally:
        emulator.stop()
    with pytest.raises(ValueError, match="UNISENDER_API_KEY"):
        UniSenderClient.from_env({"UNISENDER_BASE_URL": "http://x"})
    with pytest.raises(ValueError, match="UNISENDER_LANG"):
        UniSenderClient.from_env({"UNISENDER_API_KEY": KEY, "UNISENDER_LANG": "de"})
    assert UniSenderClient.from_env({"UNISENDER_API_KEY": KEY}).base_url == \
        "https://api.unisender.com"


def test_mask_identifiers():
    assert mask_identifiers('Contact "x.y@mail.ru" not found') == 'Contact "***" not found'
    assert mask_identifiers("phone +7 (916) 555-12-34 bad") == "phone *** bad"
    assert mask_identifiers("row abc-1 bad", ["abc-1"]) == "row *** bad"
    assert mask_identifiers("List 12 not found") == "List 12 not found"


# ---------------------------------------------------------------------------------------------
# the emulator on its own
# ---------------------------------------------------------------------------------------------


def test_emulator_import_limits_and_required_columns(uni):
    _, body = raw(uni, "createList", [("title", "A")])
    lid = str(body["result"]["id"])
    _, body = raw(uni, "importContacts",
                  import_pairs(["email"], [[email(i)] for i in range(501)]))
    assert body["code"] == "invalid_arg" and "result" not in body
    _, body = raw(uni, "importContacts", import_pairs(["name"], [["Ivan"]]))
    assert body["code"] == "invalid_arg"
    _, body = raw(uni, "importContacts",
                  import_pairs(["email", "email_list_ids"], [[email(1), "999"]]))
    assert body["code"] == "invalid_arg"
    assert uni.list_members(lid) == set()
    assert calls_of(uni, "importContacts") == []
    _, body = raw(uni, "createList", [("title", "A")])
    assert body["code"] == "invalid_arg"  # titles are unique
    status, body = raw(uni, "sendEmail")
    assert (status, body["code"]) == (200, "unknown_method")


def test_emulator_overwrite_lists_replaces_and_unsubscribe_sticks(uni):
    a = str(raw(uni, "createList", [("title", "A")])[1]["result"]["id"])
    b = str(raw(uni, "createList", [("title", "B")])[1]["result"]["id"])
    fields = ["email", "email_list_ids"]
    raw(uni, "importContacts", import_pairs(fields, [[email(1), f"{a},{b}"],
                                                     [email(2), a]]))
    raw(uni, "importContacts",
        [*import_pairs(fields, [[email(1), b]]), ("overwrite_lists", "1")])
    assert uni.list_members(a) == {email(2)}
    assert uni.list_members(b) == {email(1)}

    _, body = raw(uni, "unsubscribe", [("contact_type", "email"), ("contact", email(2)),
                                       ("list_ids", a)])
    assert body == {"result": {}}
    raw(uni, "importContacts", import_pairs(fields, [[email(2), f"{a},{b}"]]))
    assert uni.unsubscribed(a) == {email(2)}
    assert uni.list_members(a) == set()  # not re-added by a later import
    assert uni.list_members(b) == {email(1), email(2)}

    _, body = raw(uni, "exclude", [("contact_type", "email"), ("contact", email(1))])
    assert body == {"result": {}}  # no list_ids: every list
    assert uni.list_members(b) == {email(2)}


def test_emulator_rate_window_and_bad_key_answer_in_the_envelope():
    emulator = UniSenderEmulator(api_key=KEY, rate_limit_per_min=2, error_status=400).start()
    try:
        assert raw(emulator, "getLists")[1] == {"result": []}
        assert raw(emulator, "getLists")[0] == 200
        status, body = raw(emulator, "getLists")
        assert (status, body["code"]) == (400, "api_call_limit_exceeded_for_api_key")
        status, body = raw(emulator, "getLists", key=OTHER_KEY)
        assert (status, body["code"]) == (400, "invalid_api_key")
        assert OTHER_KEY not in body["error"]
        resp = requests.post(f"{emulator.base_url}/en/api/getLists", data={"api_key": KEY},
                             timeout=5)
        assert (resp.status_code, resp.json()["code"]) == (404, "unknown_method")
        assert emulator.calls() == [("getLists", 0), ("getLists", 0)]
    finally:
        emulator.stop()


def test_client_reads_error_envelopes_with_a_4xx_status_too():
    emulator = UniSenderEmulator(api_key=KEY, error_status=400).start()
    try:
        with client(emulator) as c:
            a = c.list_id("A")
            assert c.exclude(a, "email", ["ghost@example.ru"]).responses == [
                {"not_found": True}]
            emulator.faults.add("429", path_prefix="/ru/api/exclude")
            c.import_contacts(a, "email", [email(1)])
            assert c.exclude(a, "email", [email(1)]).responses == [{}]
        assert emulator.list_members(a) == set()
    finally:
        emulator.stop()
