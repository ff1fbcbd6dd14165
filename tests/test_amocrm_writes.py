"""amoCRM write side: the emulator's write endpoints and AmoCRMWriteClient on loopback
(activation_apis.md §1): tags without clobbering, batches of 50, tasks, leads, faults, tokens."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from audiences.clients.amocrm import AmoCRMWriteClient
from emulators import AmoCRMEmulator
from extractors.amocrm import AmoCRMSource
from extractors.http import ApiError, HttpOptions
from extractors.state import TokenStore

CLIENT_ID = "write-client"
CLIENT_SECRET = "amo-write-secret-Qx81"
REFRESH = "amo-write-refresh-0-Lw27"
LONG_LIVED = "amo-long-lived-token-Zk55"
SECRETS = (CLIENT_SECRET, REFRESH, LONG_LIVED)
ACCOUNT_ID = 31990211
SALES, REPEAT = 7310455, 7310460  # pipelines: main "Sales", "Повторные продажи"
USERS = (8812000, 8812001)
DNC_TAG_ID, DNC = 90411, "do_not_contact"
N_CONTACTS = 130
TS = 1767225600


def contact_id(i: int) -> int:
    return 51000000 + i


def amo_data() -> dict[str, list[dict]]:
    users = [{"id": uid, "name": f"Manager {n}", "email": f"m{n}@example.com"}
             for n, uid in enumerate(USERS)]

    def stage(sid: int, pid: int, name: str, sort: int, kind: int = 0) -> dict:
        return {"id": sid, "name": name, "sort": sort, "pipeline_id": pid, "type": kind,
                "is_editable": True, "color": "#99ccff", "account_id": ACCOUNT_ID}

    won_lost = [(142, "Closed - won", 10000), (143, "Closed - lost", 11000)]
    pipelines = [
        {"id": SALES, "name": "Sales", "sort": 1, "is_main": True, "account_id": ACCOUNT_ID,
         "_embedded": {"statuses": [stage(61880209, SALES, "Incoming leads", 10, 1),
                                    stage(61880213, SALES, "First contact", 20),
                                    *(stage(s, SALES, n, o) for s, n, o in won_lost)]}},
        {"id": REPEAT, "name": "Повторные продажи", "sort": 2, "is_main": False,
         "account_id": ACCOUNT_ID,
         "_embedded": {"statuses": [stage(62000002, REPEAT, "Предложение", 30),
                                    stage(62000001, REPEAT, "Неразобранное", 10, 1),
                                    stage(62000003, REPEAT, "Переговоры", 40),
                                    *(stage(s, REPEAT, n, o) for s, n, o in won_lost)]}},
    ]
    contacts = [
        {"id": contact_id(i), "name": f"Client {i}", "responsible_user_id": USERS[0],
         "created_at": TS + 30 * i, "updated_at": TS + 30 * i + 5, "is_deleted": False,
         "account_id": ACCOUNT_ID,
         "_embedded": {"tags": [{"id": DNC_TAG_ID, "name": DNC, "color": None}]
                       if i % 10 == 0 else [], "companies": []}}
        for i in range(N_CONTACTS)
    ]
    leads = [{"id": 30000000 + i, "name": f"Order #{i}", "price": 1000, "status_id": 142,
              "pipeline_id": SALES, "responsible_user_id": USERS[0], "created_at": TS + i,
              "updated_at": TS + i, "is_deleted": False, "account_id": ACCOUNT_ID,
              "_embedded": {"tags": [], "contacts": [{"id": contact_id(i), "is_main": True}]}}
             for i in range(5)]
    return {"users": users, "pipelines": pipelines, "contacts": contacts, "leads": leads}


class RecordingSleep:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def amo() -> Iterator[AmoCRMEmulator]:
    with AmoCRMEmulator(amo_data(), client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                        refresh_token=REFRESH, long_lived_token=LONG_LIVED,
                        rate_limit_per_s=1000) as emulator:
        yield emulator


@pytest.fixture
def sleeper() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
def store(tmp_path: Path) -> TokenStore:
    return TokenStore(tmp_path / "amocrm_token.json")


@pytest.fixture
def client(amo: AmoCRMEmulator, store: TokenStore,
           sleeper: RecordingSleep) -> Iterator[AmoCRMWriteClient]:
    source = AmoCRMSource(
        amo.base_url, account="voronka-demo", client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
        redirect_uri="http://127.0.0.1/callback", token_store=store,
        initial_refresh_token=REFRESH, rate_limit_per_s=1000,
        http_options=HttpOptions(timeout=(2.0, 10.0), max_retries=3, backoff_base=0.01,
                                 backoff_max=0.05, sleep=sleeper))
    with AmoCRMWriteClient(source) as writer:
        yield writer


@pytest.fixture(autouse=True)
def _no_secrets_in_logs(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    yield
    stored = TokenStore(tmp_path / "amocrm_token.json").load()
    issued = (stored.access_token, stored.refresh_token) if stored else ()
    for secret in (*SECRETS, *issued):
        assert secret and secret not in caplog.text


def raw(amo: AmoCRMEmulator, method: str, path: str, body: Any = None,
        **params: Any) -> requests.Response:
    """A request as any client sends it, with the long-lived token."""
    return requests.request(method, f"{amo.base_url}{path}", json=body, params=params,
                            headers={"Authorization": f"Bearer {LONG_LIVED}"}, timeout=10)


def writes(amo: AmoCRMEmulator, method: str, path: str) -> list[int]:
    """Items per write call the emulator served (a faulted request never reaches it)."""
    return [n for m, p, n in amo.write_requests() if (m, p) == (method, path)]


def sent(amo: AmoCRMEmulator, method: str, path: str) -> int:
    """How many such requests arrived, faulted ones included."""
    return sum(1 for r in amo.request_log if (r["method"], r["path"]) == (method, path))


def task(entity: int, text: str = "Позвонить", **extra: Any) -> dict[str, Any]:
    return {"text": text, "complete_till": TS + 86400, "entity_id": entity,
            "entity_type": "contacts", "responsible_user_id": USERS[1], **extra}


# -- tags -------------------------------------------------------------------------------------


def test_tags_are_added_and_removed_without_touching_other_tags(amo, client):
    ids = [contact_id(i) for i in (0, 1, 10)]
    before = {c["id"]: c["updated_at"] for c in amo.data["contacts"] if c["id"] in ids}
    result = client.update_contact_tags(ids, add=["seg_high_ltv", "seg_churn"])
    assert (result.rows, result.batches, result.operation) == (3, [3], "add")
    assert amo.contact_tags(contact_id(0)) == [DNC, "seg_high_ltv", "seg_churn"]
    assert amo.contact_tags(contact_id(1)) == ["seg_high_ltv", "seg_churn"]

    client.update_contact_tags(ids, delete=["seg_churn", "never_there"])
    assert amo.contact_tags(contact_id(0)) == [DNC, "seg_high_ltv"]
    assert amo.contact_tags(contact_id(10)) == [DNC, "seg_high_ltv"]
    assert amo.contact_tags(contact_id(2)) == []  # not in the call
    answered = result.responses[0]["_embedded"]["contacts"]
    assert [c["id"] for c in answered] == ids
    assert all(answered[n]["updated_at"] > before[cid] for n, cid in enumerate(ids))

    # the extractor reads the tags (do-not-contact included) as before
    contacts = raw(amo, "GET", "/api/v4/contacts", **{"filter[id]": contact_id(0)}).json()
    assert [t["name"] for t in contacts["_embedded"]["contacts"][0]["_embedded"]["tags"]] == [
        DNC, "seg_high_ltv"]


def test_embedded_tags_replace_the_whole_set_and_win_over_the_lists(amo):
    cid = contact_id(20)  # has the do-not-contact tag
    resp = raw(amo, "PATCH", "/api/v4/contacts", [
        {"id": cid, "tags_to_add": [{"name": "ignored"}], "tags_to_delete": [{"name": DNC}],
         "_embedded": {"tags": [{"name": "only_this"}]}}])
    assert resp.status_code == 200
    assert amo.contact_tags(cid) == ["only_this"]  # the pitfall: do-not-contact is gone
    raw(amo, "PATCH", "/api/v4/contacts", [{"id": cid, "_embedded": {"tags": None}}])
    assert amo.contact_tags(cid) == []
    names = [t["name"] for t in raw(amo, "GET", "/api/v4/contacts/tags", limit=250)
             .json()["_embedded"]["tags"]]
    assert "only_this" in names and "ignored" not in names


def test_tags_by_id_and_the_tag_dictionary(amo, client):
    assert client.ensure_contact_tag(DNC) == DNC_TAG_ID  # seeded from the contacts' tags
    first = client.ensure_contact_tag("seg_winback")
    assert client.ensure_contact_tag("seg_winback") == first
    assert writes(amo, "POST", "/api/v4/contacts/tags") == [1]
    again = raw(amo, "POST", "/api/v4/contacts/tags", [{"name": "seg_winback"}])
    assert again.status_code == 400
    assert again.json()["validation-errors"][0]["errors"][0]["code"] == "NotUnique"

    cid = contact_id(3)
    raw(amo, "PATCH", "/api/v4/contacts", [{"id": cid, "tags_to_add": [{"id": first}]}])
    raw(amo, "PATCH", "/api/v4/contacts", [{"id": cid, "tags_to_add": [{"id": first}]}])
    assert amo.contact_tags(cid) == ["seg_winback"]  # not twice
    raw(amo, "PATCH", "/api/v4/contacts", [{"id": cid, "tags_to_delete": [{"id": first}]}])
    assert amo.contact_tags(cid) == []
    unknown = raw(amo, "PATCH", "/api/v4/contacts", [{"id": cid, "tags_to_add": [{"id": 1}]}])
    assert unknown.status_code == 400


def test_ensure_tag_finds_a_tag_whose_create_answer_was_lost(amo, client):
    # faults match by path in order: the lookup takes the first, the create the second
    amo.faults.add("slow", path_prefix="/api/v4/contacts/tags", seconds=0)
    amo.faults.add("drop", path_prefix="/api/v4/contacts/tags", after_write=True)
    tag_id = client.ensure_contact_tag("seg_lost_answer")
    tags = raw(amo, "GET", "/api/v4/contacts/tags",
               **{"filter[name]": "seg_lost_answer"}).json()["_embedded"]["tags"]
    assert [t["id"] for t in tags] == [tag_id]
    assert writes(amo, "POST", "/api/v4/contacts/tags") == [1]  # created once, never re-sent


def test_120_contacts_are_patched_in_three_batches_of_at_most_50(amo, client):
    ids = [contact_id(i) for i in range(120)]
    result = client.update_contact_tags(ids, add=["seg_a"], delete=["seg_b"])
    assert result.batches == [50, 50, 20] and result.calls == 3 and result.rows == 120
    assert writes(amo, "PATCH", "/api/v4/contacts") == [50, 50, 20]
    assert all("seg_a" in amo.contact_tags(cid) for cid in ids)
    assert amo.contact_tags(contact_id(121)) == []  # beyond the 120
    assert amo.contact_tags(contact_id(50)) == [DNC, "seg_a"]


def test_unknown_contact_fails_the_whole_patch_and_the_error_names_it(amo, client):
    ids = [contact_id(5), 59999999, contact_id(6)]
    with pytest.raises(ApiError) as caught:
        client.update_contact_tags(ids, add=["seg_x"])
    err = caught.value
    assert err.status == 400 and err.error_code == "NotFound"
    assert "contact 59999999 (item 1)" in str(err) and "id NotFound" in str(err)
    assert amo.contact_tags(contact_id(5)) == []  # nothing of the request applied


def test_patch_retried_after_a_lost_answer_is_harmless(amo, client, sleeper):
    amo.faults.add("drop", path_prefix="/api/v4/contacts", after_write=True)
    client.update_contact_tags([contact_id(7)], add=["seg_once"])
    assert writes(amo, "PATCH", "/api/v4/contacts") == [1, 1]  # re-sent: an upsert
    assert amo.contact_tags(contact_id(7)) == ["seg_once"]
    assert len(sleeper.calls) == 1


def test_bad_write_bodies_and_methods_are_refused(amo):
    assert raw(amo, "PATCH", "/api/v4/contacts", {"id": contact_id(1)}).status_code == 400
    assert raw(amo, "PATCH", "/api/v4/contacts", []).status_code == 400
    too_many = [{"id": contact_id(i % N_CONTACTS)} for i in range(251)]
    assert raw(amo, "PATCH", "/api/v4/contacts", too_many).status_code == 400
    fields = raw(amo, "PATCH", "/api/v4/contacts",
                 [{"id": contact_id(1), "custom_fields_values": []}])
    assert fields.status_code == 400  # a round-tripped record is refused, not half-applied
    for method, path in (("DELETE", "/api/v4/leads"), ("PUT", "/api/v4/contacts"),
                         ("POST", "/api/v4/contacts"), ("PATCH", "/api/v4/leads")):
        resp = raw(amo, method, path, [{}])
        assert resp.status_code == 405, (method, path)
        assert resp.json()["detail"] == "The emulator is read-only"


# -- tasks ------------------------------------------------------------------------------------


def test_tasks_are_created_in_order_and_open_tasks_filters_them(amo, client):
    entities = [contact_id(i) for i in range(60)]
    bodies = [task(cid, f"Напомнить {n}", request_id=f"r{cid}-{n}")
              for cid in entities for n in range(5)]
    ids = client.create_tasks(bodies)
    assert writes(amo, "POST", "/api/v4/tasks") == [50] * 6
    stored = {t["id"]: t for t in amo.tasks()}
    assert [stored[i]["text"] for i in ids] == [b["text"] for b in bodies]
    assert stored[ids[0]]["task_type_id"] == 1 and stored[ids[0]]["is_completed"] is False
    assert stored[ids[0]]["responsible_user_id"] == USERS[1]

    done = raw(amo, "PATCH", f"/api/v4/tasks/{ids[0]}",
               {"is_completed": True, "result": {"text": "Позвонил"}})
    assert done.status_code == 200 and set(done.json()) == {"id", "updated_at", "_links"}
    client.create_tasks([{**task(30000001, "lead task"), "entity_type": "leads"}])

    open_ids = {t["id"] for t in client.open_tasks("contacts", entities)}
    assert open_ids == set(ids) - {ids[0]}  # 299 tasks: two queries, the first two pages
    assert {t["entity_id"] for t in client.open_tasks("contacts", [contact_id(1)])} == {
        contact_id(1)}
    assert client.open_tasks("leads", [30000001])[0]["text"] == "lead task"
    assert client.open_tasks("contacts", [contact_id(99)]) == []  # 204
    assert client.open_tasks("contacts", []) == []


def test_task_filters_follow_the_api(amo, client):
    [tid] = client.create_tasks([task(contact_id(1), task_type_id=2)])
    no_type = raw(amo, "GET", "/api/v4/tasks", **{"filter[entity_id][]": contact_id(1)})
    assert no_type.status_code == 400  # pitfall 4
    assert "filter[entity_type]" in no_type.text
    found = raw(amo, "GET", "/api/v4/tasks", **{"filter[task_type]": 2,
                                               "filter[responsible_user_id]": USERS[1]})
    assert [t["id"] for t in found.json()["_embedded"]["tasks"]] == [tid]
    assert raw(amo, "GET", "/api/v4/tasks", **{"filter[is_completed]": 1}).status_code == 204
    assert raw(amo, "GET", f"/api/v4/tasks/{tid}").json()["id"] == tid
    with pytest.raises(ValueError, match="entity_type"):
        client.open_tasks("deals", [1])


def test_an_invalid_task_fails_the_request_and_the_error_names_it(amo, client):
    bodies = [task(contact_id(1)), task(contact_id(2), responsible_user_id=4242,
                                        request_id="wb-51000002")]
    with pytest.raises(ApiError) as caught:
        client.create_tasks(bodies)
    text = str(caught.value)
    assert caught.value.status == 400 and caught.value.error_code == "NotSupportedChoice"
    assert "task #1 (request_id wb-51000002)" in text
    assert "responsible_user_id NotSupportedChoice" in text and "4242" in text
    assert amo.tasks() == []  # nothing of the request was applied
    for bad, path in (({"complete_till": "tomorrow"}, "complete_till"),
                      ({"entity_id": 1}, "entity_id"), ({"text": ""}, "text"),
                      ({"entity_type": "deals"}, "entity_type")):
        with pytest.raises(ApiError, match=path):
            client.create_tasks([task(contact_id(3), **bad)])


def test_a_create_429_is_retried(amo, client, sleeper):
    amo.faults.add("429", path_prefix="/api/v4/tasks", retry_after=2)
    [tid] = client.create_tasks([task(contact_id(4))])
    assert [t["id"] for t in amo.tasks()] == [tid]
    assert writes(amo, "POST", "/api/v4/tasks") == [1]  # the 429 never reached the handler
    assert 2 in sleeper.calls


@pytest.mark.parametrize("fault", [{"kind": "drop", "after_write": True},
                                   {"kind": "5xx", "status": 502}])
def test_a_create_whose_answer_is_lost_raises_and_is_not_resent(amo, client, fault):
    first = client.create_tasks([task(contact_id(8), f"batch1-{n}") for n in range(50)])
    amo.faults.add(path_prefix="/api/v4/tasks", **fault)
    with pytest.raises(ApiError) as caught:
        client.create_tasks([task(contact_id(9), "lost answer")])
    assert caught.value.created == []
    assert sent(amo, "POST", "/api/v4/tasks") == 2  # the lost one was sent once
    dropped = fault["kind"] == "drop"
    assert len(amo.tasks()) == 50 + dropped  # the drop fault applied the write: no duplicate
    assert len(client.open_tasks("contacts", [contact_id(9)])) == int(dropped)
    assert len(first) == 50


def test_a_failure_in_a_later_batch_reports_what_was_created(amo, client):
    bodies = [task(contact_id(10)) for _ in range(60)]
    bodies[55]["responsible_user_id"] = 1
    with pytest.raises(ApiError) as caught:
        client.create_tasks(bodies)
    assert "task #55" in str(caught.value)
    assert caught.value.created == [t["id"] for t in amo.tasks()] and len(amo.tasks()) == 50


def test_token_expiry_mid_run_refreshes_once_and_writes_go_on(amo, client, store):
    client.update_contact_tags([contact_id(11)], add=["seg_t"])
    assert amo.token_refreshes == 1
    amo.expire_access_tokens()
    [tid] = client.create_tasks([task(contact_id(11))])  # 401, refresh, sent once
    amo.faults.add("expired_token", path_prefix="/api/v4/leads")
    [lead] = client.create_leads([{"name": "После обновления токена"}])
    assert amo.token_refreshes == 3
    assert [t["id"] for t in amo.tasks()] == [tid] and len(amo.created_leads()) == 1
    assert amo.created_leads()[0]["id"] == lead
    assert store.load().refresh_token == amo.current_refresh_token


# -- leads, pipelines, users ------------------------------------------------------------------


def test_leads_are_created_in_a_pipeline_and_found_again(amo, client):
    pipelines = {p["name"]: p for p in client.pipelines()}
    repeat = pipelines["Повторные продажи"]
    assert repeat["is_main"] is False and pipelines["Sales"]["is_main"] is True
    assert [s["id"] for s in repeat["statuses"]] == [62000001, 62000002, 62000003, 142, 143]
    assert client.users() == [{"id": USERS[0], "name": "Manager 0"},
                              {"id": USERS[1], "name": "Manager 1"}]

    ids = client.create_leads([
        {"name": "Win-back: Client 1", "pipeline_id": REPEAT, "responsible_user_id": USERS[1],
         "_embedded": {"contacts": [{"id": contact_id(1), "is_main": True}]}},
        {"name": "Win-back: Client 2", "pipeline_id": REPEAT, "status_id": 62000003,
         "_embedded": {"contacts": [{"id": contact_id(2)}]}},
        {"name": "Default stage", "price": 5000},
    ])
    created = {lead["id"]: lead for lead in amo.created_leads()}
    assert list(created) == ids
    assert created[ids[0]]["status_id"] == 62000002  # the first stage after the unsorted one
    assert created[ids[1]]["status_id"] == 62000003
    assert (created[ids[2]]["pipeline_id"], created[ids[2]]["status_id"]) == (SALES, 61880213)

    found = client.find_leads("win-back")
    assert [lead["id"] for lead in found] == ids[:2]
    assert found[0]["_embedded"]["contacts"][0]["id"] == contact_id(1)  # with=contacts
    assert "_links" not in json.dumps(found)
    assert client.find_leads("no such lead") == []
    listed = raw(amo, "GET", "/api/v4/leads", limit=250).json()["_embedded"]["leads"]
    assert set(ids) <= {lead["id"] for lead in listed}  # listed like any other lead


def test_an_invalid_lead_names_the_item(amo, client):
    with pytest.raises(ApiError) as caught:
        client.create_leads([{"name": "ok", "pipeline_id": REPEAT},
                             {"name": "bad", "pipeline_id": REPEAT, "status_id": 61880213},
                             {"name": "ghost", "_embedded": {"contacts": [{"id": 1}]}}])
    text = str(caught.value)
    assert "lead #1 (request_id 1): status_id NotSupportedChoice" in text
    assert "lead #2 (request_id 2): _embedded.contacts.0.id NotFound" in text
    assert amo.created_leads() == []


def test_a_lead_create_drop_after_write_is_not_resent(amo, client):
    amo.faults.add("drop", path_prefix="/api/v4/leads", after_write=True)
    with pytest.raises(ApiError) as caught:
        client.create_leads([{"name": "Win-back: Client 3"}])
    assert caught.value.status is None
    assert len(amo.created_leads()) == 1 and writes(amo, "POST", "/api/v4/leads") == [1]
    assert len(client.find_leads("Client 3")) == 1


# -- configuration and secrets ----------------------------------------------------------------


def test_from_env_shares_the_extractor_token_store(amo, tmp_path):
    env = {"AMOCRM_BASE_URL": amo.base_url, "AMOCRM_SUBDOMAIN": "voronka-demo",
           "AMOCRM_CLIENT_ID": CLIENT_ID, "AMOCRM_CLIENT_SECRET": CLIENT_SECRET,
           "AMOCRM_REDIRECT_URI": "http://127.0.0.1/callback", "AMOCRM_REFRESH_TOKEN": REFRESH,
           "VORONKA_STATE_DIR": str(tmp_path / "state")}
    with AmoCRMWriteClient.from_env(env) as writer:
        assert writer.users()[0]["id"] == USERS[0]
        assert CLIENT_SECRET not in repr(writer)
    stored = TokenStore(tmp_path / "state" / "amocrm_voronka-demo_token.json").load()
    assert stored is not None and stored.refresh_token == amo.current_refresh_token

    with AmoCRMWriteClient.from_env({"AMOCRM_SUBDOMAIN": "acme",
                                     "AMOCRM_LONG_LIVED_TOKEN": LONG_LIVED,
                                     "VORONKA_STATE_DIR": str(tmp_path)}) as writer:
        assert writer.source.base_url == "https://acme.amocrm.ru"
    with pytest.raises(ValueError, match="AMOCRM_CLIENT_SECRET") as caught:
        AmoCRMWriteClient.from_env({"AMOCRM_SUBDOMAIN": "acme", "AMOCRM_CLIENT_ID": "x"})
    assert "AMOCRM_CLIENT_ID" not in str(caught.value)
    with pytest.raises(ValueError, match="AMOCRM_BASE_URL"):
        AmoCRMWriteClient.from_env({})


def test_errors_never_carry_a_token_or_secret(amo, client, store):
    client.users()
    tokens = store.load()
    assert tokens is not None
    errors: list[ApiError] = []
    for call in (lambda: client.create_tasks([task(contact_id(1), responsible_user_id=1)]),
                 lambda: client.update_contact_tags([1], add=["x"])):
        with pytest.raises(ApiError) as caught:
            call()
        errors.append(caught.value)
    amo.faults.add("5xx", count=10, path_prefix="/api/v4/users")
    with pytest.raises(ApiError) as caught:
        client.users()
    errors.append(caught.value)
    for err in errors:
        text = " ".join([str(err), err.url, err.body_excerpt, repr(err)])
        for secret in (*SECRETS, tokens.access_token, tokens.refresh_token):
            assert secret not in text
