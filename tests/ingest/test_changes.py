"""Splitting streaming messages into per-record facts; echo detection; malformed input."""

from __future__ import annotations

from typing import Any

import pytest

from streams.ingest.changes import (
    EchoPolicy,
    MalformedStreamingMessage,
    split_message,
    topic_for,
)

POLICY = EchoPolicy(client_id="sfe-pipeline", integration_user_id="005000000000001AAA")


def change_message(
    record_ids: list[str], origin: str = "", user: str = "005000000000009AAA"
) -> dict[str, Any]:
    return {
        "channel": "/data/LeadChangeEvent",
        "data": {
            "schema": "abc",
            "event": {"replayId": 42},
            "payload": {
                "ChangeEventHeader": {
                    "entityName": "Lead",
                    "recordIds": record_ids,
                    "changeType": "UPDATE",
                    "changeOrigin": origin,
                    "transactionKey": "0002-tx",
                    "sequenceNumber": 3,
                    "commitTimestamp": 1764100000000,
                    "commitNumber": 99,
                    "commitUser": user,
                    "changedFields": ["Status", "LastModifiedDate"],
                },
                "Status": "Working",
                "LastModifiedDate": "2026-11-25T10:00:00.000Z",
            },
        },
    }


def test_multi_record_event_becomes_one_fact_per_record_keeping_transaction_order() -> None:
    facts = split_message(change_message(["00Q1", "00Q2", "00Q3"]), POLICY)
    assert [fact.record_id for fact in facts] == ["00Q1", "00Q2", "00Q3"]
    assert {fact.header["transactionKey"] for fact in facts} == {"0002-tx"}
    assert {fact.header["sequenceNumber"] for fact in facts} == {3}
    assert all(
        fact.fields == {"Status": "Working", "LastModifiedDate": "2026-11-25T10:00:00.000Z"}
        for fact in facts
    )
    assert len({fact.delivery_key for fact in facts}) == 3
    assert topic_for(facts[0]) == "sf.cdc.Lead"


@pytest.mark.parametrize(
    ("origin", "user", "echo"),
    [
        ("com/salesforce/api/rest/62.0;client=sfe-pipeline", "005000000000009AAA", True),
        ("com/salesforce/api/rest/62.0;client=sfe-pipeline-other", "005000000000009AAA", False),
        ("com/salesforce/api/rest/62.0", "005000000000001AAA", True),
        ("", "005000000000009AAA", False),
    ],
)
def test_our_own_writes_are_flagged_as_echo(origin: str, user: str, echo: bool) -> None:
    (fact,) = split_message(change_message(["00Q1"], origin, user), POLICY)
    assert fact.echo is echo


def test_platform_event_is_keyed_by_its_uuid() -> None:
    message = {
        "channel": "/event/New_Lead__e",
        "data": {
            "event": {"replayId": 7, "EventUuid": "uuid-1"},
            "payload": {"Lead_Id__c": "00Q9", "CreatedDate": "2026-11-25T10:00:00Z"},
        },
    }
    (fact,) = split_message(message, POLICY)
    assert fact.kind == "platform_event"
    assert fact.record_id == "00Q9"
    assert fact.delivery_key == "uuid-1#00Q9"
    assert topic_for(fact) == "sf.events.New_Lead__e"


@pytest.mark.parametrize(
    "message",
    [
        {},
        {"channel": "/data/LeadChangeEvent", "data": {"payload": {}}},
        {"channel": "/data/LeadChangeEvent", "data": {"event": {"replayId": 1}, "payload": {}}},
        {
            "channel": "/data/LeadChangeEvent",
            "data": {
                "event": {"replayId": 1},
                "payload": {
                    "ChangeEventHeader": {
                        "entityName": "Lead",
                        "changeType": "UPDATE",
                        "recordIds": [],
                    }
                },
            },
        },
    ],
)
def test_malformed_messages_raise_with_a_reason(message: dict[str, Any]) -> None:
    with pytest.raises(MalformedStreamingMessage):
        split_message(message, POLICY)


def test_gap_and_overflow_are_recognised() -> None:
    gap = change_message(["00Q1"])
    gap["data"]["payload"]["ChangeEventHeader"]["changeType"] = "GAP_UPDATE"
    overflow = change_message(["000000000000000AAA"])
    overflow["data"]["payload"]["ChangeEventHeader"]["changeType"] = "GAP_OVERFLOW"
    assert split_message(gap, POLICY)[0].is_gap
    assert split_message(overflow, POLICY)[0].is_overflow
