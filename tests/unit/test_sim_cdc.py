"""Transactions and change events of the org simulator, without a server."""

from __future__ import annotations

import pytest

from simulator.errors import SalesforceError
from simulator.events import EventBus
from simulator.org import Org
from simulator.storage import MemoryRecorder

USER = "0058d0000000001AAA"


def new_org() -> Org:
    """An empty in-memory org whose only record is the user with id ``USER``."""
    org = Org(EventBus(3600), MemoryRecorder())
    org.records["User"][USER] = {"Id": USER, "IsDeleted": False, "Username": "u@x.com"}
    return org


def test_same_change_to_many_records_is_one_event() -> None:
    org = new_org()
    bus = org.bus
    with org.transaction(USER, "origin") as tx:
        made = [tx.create("Lead", {"LastName": f"L{i}", "Company": "Co"}) for i in range(3)]
    with org.transaction(USER, "origin") as tx:
        for record_id in made:
            tx.update("Lead", record_id, {"Rating": "Hot"})
        tx.update("Lead", made[0], {"Rating": "Hot"})  # no change: no event
    updates = [
        e
        for e in bus.read("/data/ChangeEvents", 0, 100)
        if e.payload["ChangeEventHeader"]["changeType"] == "UPDATE"
    ]
    assert len(updates) == 1
    assert updates[0].payload["ChangeEventHeader"]["recordIds"] == made


def test_rollback_restores_records_and_emits_nothing() -> None:
    org = new_org()
    bus = org.bus
    with pytest.raises(SalesforceError), org.transaction(USER, "origin") as tx:
        tx.create("Lead", {"LastName": "Kept?", "Company": "Co"})
        tx.create("Lead", {"Company": "no last name"})
    assert org.records["Lead"] == {}
    assert bus.latest("cdc") == 0


def test_person_names_are_compound_in_change_events() -> None:
    org = new_org()
    with org.transaction(USER, "origin") as tx:
        lead = tx.create("Lead", {"FirstName": "Ada", "LastName": "Lovelace", "Company": "Co"})
    with org.transaction(USER, "origin") as tx:
        tx.update("Lead", lead, {"LastName": "King", "Title": None})
    created, updated = (e.payload for e in org.bus.read("/data/LeadChangeEvent", 0, 10))
    assert created["Name"] == {"FirstName": "Ada", "LastName": "Lovelace"}
    assert updated["Name"] == {"LastName": "King"}
    assert updated["ChangeEventHeader"]["changedFields"] == ["Name.LastName", "LastModifiedDate"]
    assert "FirstName" not in updated and "Title" not in updated


def test_oversized_transaction_yields_gap_overflow() -> None:
    org = new_org()
    org.overflow_threshold = 5
    with org.transaction(USER, "origin") as tx:
        for index in range(6):
            tx.create("Lead", {"LastName": f"L{index}", "Company": "Co"})
        tx.create("Account", {"Name": "A"})
    events = [e.payload["ChangeEventHeader"] for e in org.bus.read("/data/ChangeEvents", 0, 100)]
    assert [(h["entityName"], h["changeType"], h["recordIds"]) for h in events] == [
        ("Account", "GAP_OVERFLOW", ["000000000000000AAA"]),
        ("Lead", "GAP_OVERFLOW", ["000000000000000AAA"]),
    ]


def test_change_events_write_utc_times_with_z() -> None:
    org = new_org()
    with org.transaction(USER, "origin") as tx:
        tx.create(
            "Opportunity", {"Name": "Deal", "StageName": "Prospecting", "CloseDate": "2026-05-01"}
        )
    (event,) = org.bus.read("/data/OpportunityChangeEvent", 0, 10)
    assert event.payload["LastModifiedDate"].endswith(".000Z") or event.payload[
        "LastModifiedDate"
    ].endswith("Z")
    assert event.payload["CloseDate"] == "2026-05-01"
    record = next(iter(org.records["Opportunity"].values()))
    assert record["LastModifiedDate"].endswith("+0000")
