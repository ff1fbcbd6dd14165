"""amoCRM buyer status history (issue 13 point 1): the simulator's `customer_status_changed`
events and hand-set next dates, the emulator's /api/v4/events type filter, and the extractor's
own `customer_events` entity (its own cursor, feature-off handling), landing as the synthetic
landing path lands them."""

import logging
from collections import Counter

import pytest
from test_extractors_amocrm import CLIENT_SECRET, INITIAL_REFRESH, api_requests, make_source

import synthetic
from emulators import AmoCRMEmulator
from expectations import validate_records
from extractors.sync import sync_entity
from synthetic import amocrm_extra as X
from synthetic import catalog as C
from synthetic.business import _Simulator
from synthetic.landing import amocrm_entity_records
from warehouse.duckdb_backend import DuckDBWarehouse
from warehouse.records import RawRecord

SEED, SCALE = 7, 0.3
LEAD_EVENTS = 150


@pytest.fixture(scope="module")
def business() -> synthetic.SyntheticBusiness:
    return synthetic.generate(SEED, SCALE)


@pytest.fixture(scope="module")
def sim(business) -> _Simulator:
    """The simulator behind `business` (its ground truth keeps it)."""
    return business.ground_truth._sim


def _served(business) -> dict[str, list[dict]]:
    """The buyer funnel and 150 lead events (enough to show both kinds; HTTP paging through
    every lead and contact of the business would only cost test time)."""
    data = {k: v for k, v in business.amocrm.items() if k not in ("leads", "contacts")}
    return {**data, "events": business.amocrm["events"][:LEAD_EVENTS]}


@pytest.fixture
def amo(business):
    with AmoCRMEmulator(_served(business), account_id=business.account_id,
                        subdomain=business.subdomain, client_secret=CLIENT_SECRET,
                        refresh_token=INITIAL_REFRESH, rate_limit_per_s=1000) as emulator:
        yield emulator


def _status(event: dict, side: str) -> int:
    return event[side][0]["customer_status"]["id"]


def test_events_replay_to_each_buyers_current_status(business):
    events = business.amocrm["customer_events"]
    customers = {c["id"]: c for c in business.amocrm["customers"]}
    statuses = {sid for sid, *_ in C.CUSTOMER_STATUSES}
    assert len(events) > len(customers)  # buyers move more than once on average
    by_buyer: dict[int, list[dict]] = {}
    for e in events:
        assert (e["type"], e["entity_type"]) == ("customer_status_changed", "customer")
        assert e["created_at"] <= business.as_of_ts
        assert _status(e, "value_before") != _status(e, "value_after")
        assert {_status(e, "value_before"), _status(e, "value_after")} <= statuses
        by_buyer.setdefault(e["entity_id"], []).append(e)
    recent = C.CUSTOMER_STATUS_BY_TYPE[4]
    for cid, customer in customers.items():
        chain = by_buyer.get(cid, [])
        # a chain: each event leaves the status the previous one entered; a new buyer starts
        # "recently purchased"; the last event's status is the buyer's status_id
        assert [_status(e, "value_before") for e in chain] == [
            recent, *(_status(e, "value_after") for e in chain)][:len(chain)], cid
        assert (_status(chain[-1], "value_after") if chain else recent) == customer["status_id"]
    assert set(by_buyer) <= set(customers)


def test_some_next_dates_are_set_by_a_manager_not_by_periodicity(business, sim):
    txs: dict[int, list[int]] = {}
    for t in business.amocrm["transactions"]:
        txs.setdefault(t["customer_id"], []).append(t["completed_at"])
    by_rule = {c["id"]: max([c["created_at"], *txs.get(c["id"], [])]) + c["periodicity"] * 86400
               for c in business.amocrm["customers"]}
    differ = {c["id"] for c in business.amocrm["customers"] if c["next_date"] != by_rule[c["id"]]}
    overrides = X.next_date_overrides(sim)
    assert differ == set(overrides) and 0 < len(differ) < len(by_rule)


def test_buyer_events_leave_every_other_payload_alone(business):
    """The buyer events and hand-set dates come from their own random streams: the lead events
    are still only lead events, and a second generation is identical."""
    assert Counter(e["type"] for e in business.amocrm["events"]) == {
        "lead_status_changed": len(business.amocrm["events"])}
    again = synthetic.generate(SEED, SCALE)
    assert again.amocrm == business.amocrm


def test_emulator_filters_events_by_one_or_several_types(amo, business, tmp_path):
    client = make_source(amo, tmp_path / "tokens.json").client

    def count(types: str) -> Counter:
        seen: Counter = Counter()
        page = 1
        while True:
            resp = client.get("/api/v4/events", params={"filter[type]": types, "limit": 100,
                                                        "page": page})
            if resp.status_code == 204:
                return seen
            seen.update(e["type"] for e in resp.json()["_embedded"]["events"])
            if "next" not in resp.json()["_links"]:
                return seen
            page += 1

    n_lead, n_buyer = LEAD_EVENTS, len(business.amocrm["customer_events"])
    assert count("customer_status_changed") == {"customer_status_changed": n_buyer}
    assert count("lead_status_changed") == {"lead_status_changed": n_lead}
    assert count("lead_status_changed,customer_status_changed") == {
        "lead_status_changed": n_lead, "customer_status_changed": n_buyer}


def test_customer_events_land_with_their_own_cursor(amo, business, tmp_path):
    src = make_source(amo, tmp_path / "tokens.json", page_limit=100)
    wh = DuckDBWarehouse(tmp_path / "wh.duckdb")
    n_buyer = len(business.amocrm["customer_events"])
    first = sync_entity(src, "customer_events", wh, run_id="r1", validate=_suite)
    assert (first.inserted, first.pages) == (n_buyer, -(-n_buyer // 100))
    newest = max(e["created_at"] for e in business.amocrm["customer_events"])
    assert wh.get_cursor("amocrm", business.subdomain, "customer_events") == str(newest)
    assert wh.get_cursor("amocrm", business.subdomain, "events") is None  # lead cursor untouched
    queries = [r["query"] for r in api_requests(amo, "/api/v4/events")]
    assert all(q["filter[type]"] == "customer_status_changed" and q["limit"] == "100"
               for q in queries)
    # what landed is exactly what the synthetic landing path lands
    landed = {r.record_id: r for r in amocrm_entity_records(
        business.subdomain, "customer_events", business.amocrm["customer_events"])}
    extracted = {r.record_id: r for page in src.pages("customer_events", None)
                 for r in page.records}
    assert extracted == landed
    # the lead events stay lead events
    leads = sync_entity(src, "events", wh, run_id="r1")
    assert leads.inserted == LEAD_EVENTS
    # the next run asks only from the cursor (minus the overlap) and lands nothing new
    amo.request_log.clear()
    again = sync_entity(src, "customer_events", wh, run_id="r2", validate=_suite)
    assert again.inserted == 0
    q = next(r["query"] for r in api_requests(amo, "/api/v4/events"))
    assert q["filter[created_at][from]"] == str(newest - 600)


def test_customer_events_with_buyers_off_land_nothing_and_say_so(business, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="voronka.extractors")
    with AmoCRMEmulator(_served(business), client_secret=CLIENT_SECRET,
                        refresh_token=INITIAL_REFRESH, customers_mode="disabled",
                        rate_limit_per_s=1000) as amo:
        src = make_source(amo, tmp_path / "tokens.json")
        wh = DuckDBWarehouse(tmp_path / "wh.duckdb")
        result = sync_entity(src, "customer_events", wh, run_id="r")
        assert (result.fetched, result.pages, result.cursor_after) == (0, 0, None)
        assert result.skipped and "204 No Content" in result.skipped
        # lead events are served as before
        assert sync_entity(src, "events", wh, run_id="r").inserted == LEAD_EVENTS


def test_raw_suite_quarantines_an_event_without_a_status(business):
    records = amocrm_entity_records(business.subdomain, "customer_events",
                                    business.amocrm["customer_events"][:5])
    assert validate_records(records).quarantined == []
    bad = RawRecord("amocrm", records[1].account, "customer_events", records[1].record_id,
                    {**records[1].payload, "value_after": [{"customer_status": {}}]})
    result = validate_records([records[0], bad, *records[2:]])
    assert [q.record.record_id for q in result.quarantined] == [bad.record_id]
    assert "value_after" in result.quarantined[0].reason


def _suite(records: list[RawRecord]):
    result = validate_records(records)
    assert result.quarantined == [], [q.reason for q in result.quarantined]
    return result.good, result.quarantined
