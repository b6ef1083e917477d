"""The project's CometD client against the simulator: CDC headers, Platform Events, gap
events, reconnect and resume after dropped connections and forgotten clients, replay errors.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import requests
from aiosfstream_ng import ReplayMarker, ReplayOption
from aiosfstream_ng.exceptions import ServerError
from simple_salesforce import Salesforce

from simulator.app import RunningSimulator
from streams.salesforce.auth import login
from streams.salesforce.rest import connect
from streams.salesforce.streaming import StreamingClient
from tests.simulator.conftest import auth_config, fault, session_for

ORIGIN = "com/salesforce/api/rest/62.0;client=sfe-pipeline"
EXPIRED = (
    "400::The replayId {{{}}} you provided was invalid. Please provide a valid ID, "
    "-2 to replay all events, or -1 to replay only new events."
)


@pytest.fixture
async def stream(sim: RunningSimulator) -> AsyncIterator[StreamingClient]:
    client = StreamingClient(auth_config(sim))
    await client.open()
    yield client
    await client.close()


async def receive(client: StreamingClient, count: int, timeout: float = 20) -> list[dict[str, Any]]:
    return [await asyncio.wait_for(client.receive(), timeout) for _ in range(count)]


def header(message: dict[str, Any]) -> dict[str, Any]:
    return message["data"]["payload"]["ChangeEventHeader"]


async def test_record_update_event_has_salesforce_header(
    sim: RunningSimulator, sf: Salesforce, stream: StreamingClient
) -> None:
    await stream.subscribe("/data/LeadChangeEvent")
    lead_id = (await asyncio.to_thread(sf.Lead.create, {"LastName": "Stream", "Company": "Acme"}))[
        "id"
    ]
    await asyncio.to_thread(
        sf.Lead.update, lead_id, {"Status": "Working - Contacted", "Title": "CTO"}
    )
    created, updated = await receive(stream, 2)
    assert header(created)["changeType"] == "CREATE"
    assert created["data"]["payload"]["Company"] == "Acme"
    head = header(updated)
    assert updated["channel"] == "/data/LeadChangeEvent"
    assert head["entityName"] == "Lead"
    assert head["recordIds"] == [lead_id]
    assert head["changeType"] == "UPDATE"
    assert head["changeOrigin"] == ORIGIN
    assert head["commitUser"] == sim.state.user_id()
    assert head["sequenceNumber"] == 1
    assert head["commitNumber"] > header(created)["commitNumber"]
    assert head["transactionKey"] != header(created)["transactionKey"]
    assert isinstance(head["commitTimestamp"], int) and head["commitTimestamp"] > 1_600_000_000_000
    assert set(head["changedFields"]) == {"Status", "Title", "LastModifiedDate"}
    assert set(updated["data"]["payload"]) == {
        "ChangeEventHeader",
        "Status",
        "Title",
        "LastModifiedDate",
    }
    assert updated["data"]["event"]["replayId"] > created["data"]["event"]["replayId"]


async def test_collections_update_of_200_records_streams_one_transaction(
    sf: Salesforce, stream: StreamingClient
) -> None:
    await stream.subscribe("/data/ChangeEvents")
    records = [{"attributes": {"type": "Contact"}, "LastName": f"C{i}"} for i in range(200)]
    created = await asyncio.to_thread(
        sf.restful, "composite/sobjects", method="POST", json={"records": records}
    )
    ids = [r["id"] for r in created]
    creates = await receive(stream, 200)
    assert {i for m in creates for i in header(m)["recordIds"]} == set(ids)
    same = {
        "records": [{"attributes": {"type": "Contact"}, "Id": i, "Title": "Buyer"} for i in ids]
    }
    await asyncio.to_thread(sf.restful, "composite/sobjects", method="PATCH", json=same)
    (merged,) = await receive(stream, 1)
    assert header(merged)["recordIds"] == ids
    assert merged["data"]["payload"]["Title"] == "Buyer"
    distinct = {
        "records": [
            {"attributes": {"type": "Contact"}, "Id": i, "Title": f"T{n}"}
            for n, i in enumerate(ids)
        ]
    }
    await asyncio.to_thread(sf.restful, "composite/sobjects", method="PATCH", json=distinct)
    events = await receive(stream, 200)
    assert len({header(m)["transactionKey"] for m in events}) == 1
    assert [header(m)["sequenceNumber"] for m in events] == list(range(1, 201))
    assert [m["data"]["payload"]["Title"] for m in events] == [f"T{n}" for n in range(200)]
    assert all(header(m)["changeOrigin"] == ORIGIN for m in events)


async def test_resume_after_drop_and_forget_loses_and_repeats_nothing(
    sim: RunningSimulator, sf: Salesforce
) -> None:
    markers: dict[str, ReplayMarker] = {}
    client = StreamingClient(auth_config(sim), replay=markers)
    await client.open()
    try:
        await client.subscribe("/data/AccountChangeEvent")
        account_id = (await asyncio.to_thread(sf.Account.create, {"Name": "Resume Co"}))["id"]
        first = await receive(client, 1)
        assert (
            markers["/data/AccountChangeEvent"].replay_id == first[0]["data"]["event"]["replayId"]
        )
        client_id = client._transport.client_id  # type: ignore[union-attr]
        assert fault(sim, action="forget_clients")["forgotten"] >= 1

        def change_while_away() -> None:
            for n in range(20):
                sf.Account.update(account_id, {"NumberOfEmployees": n + 1})

        await asyncio.to_thread(change_while_away)
        rest = await receive(client, 20, timeout=30)
        assert client._transport.client_id != client_id  # type: ignore[union-attr]
        assert [m["data"]["payload"]["NumberOfEmployees"] for m in rest] == list(range(1, 21))
        fault(sim, action="drop_connections")
        await asyncio.to_thread(sf.Account.update, account_id, {"NumberOfEmployees": 99})
        (last,) = await receive(client, 1, timeout=30)
        assert last["data"]["payload"]["NumberOfEmployees"] == 99
        replay_ids = [m["data"]["event"]["replayId"] for m in first + rest + [last]]
        assert replay_ids == sorted(set(replay_ids))
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(client.receive(), 1.5)
    finally:
        await client.close()


async def test_replay_all_and_expired_replay_id(start_sim: Callable[..., RunningSimulator]) -> None:
    short = start_sim(event_retention_seconds=1.0)
    sf = connect(auth_config(short))
    await asyncio.to_thread(sf.Account.create, {"Name": "Old"})
    old_id = short.state.bus.latest("cdc")
    await asyncio.sleep(1.2)
    await asyncio.to_thread(sf.Account.create, {"Name": "New"})
    everything = StreamingClient(auth_config(short), default_replay=ReplayOption.ALL_EVENTS)
    await everything.open()
    try:
        await everything.subscribe("/data/AccountChangeEvent")
        (only,) = await receive(everything, 1)
        assert only["data"]["payload"]["Name"] == "New"
    finally:
        await everything.close()
    stale = StreamingClient(
        auth_config(short), replay={"/data/AccountChangeEvent": ReplayMarker("0", old_id)}
    )
    await stale.open()
    try:
        with pytest.raises(ServerError) as refused:
            await stale.subscribe("/data/AccountChangeEvent")
        assert refused.value.args[1]["error"] == EXPIRED.format(old_id)
    finally:
        await stale.close()


def _bayeux(sim: RunningSimulator, token: str, messages: list[dict[str, Any]]) -> requests.Response:
    return session_for(sim).post(
        f"{sim.url}/cometd/62.0", json=messages, headers={"Authorization": f"Bearer {token}"}
    )


def test_bayeux_errors(sim: RunningSimulator) -> None:
    bad = _bayeux(
        sim,
        "nope",
        [
            {
                "channel": "/meta/handshake",
                "version": "1.0",
                "supportedConnectionTypes": ["long-polling"],
            }
        ],
    )
    assert bad.json()[0]["error"] == "401::Authentication invalid"
    token = login(auth_config(sim), session_for(sim)).access_token
    unknown = _bayeux(
        sim,
        token,
        [{"channel": "/meta/connect", "clientId": "gone", "connectionType": "long-polling"}],
    )
    assert unknown.json()[0]["error"] == "403::Unknown client"
    assert unknown.json()[0]["advice"]["reconnect"] == "handshake"
    shake = _bayeux(
        sim,
        token,
        [
            {
                "channel": "/meta/handshake",
                "version": "1.0",
                "supportedConnectionTypes": ["long-polling"],
            }
        ],
    ).json()[0]
    assert shake["successful"] and shake["supportedConnectionTypes"] == ["long-polling"]
    client_id = shake["clientId"]
    began = time.monotonic()
    first = _bayeux(
        sim,
        token,
        [{"channel": "/meta/connect", "clientId": client_id, "connectionType": "long-polling"}],
    )
    assert first.json()[-1]["successful"] and time.monotonic() - began < 2
    future = _bayeux(sim, token, [{"channel": "/meta/subscribe", "clientId": client_id, "subscription": "/data/LeadChangeEvent",
                                   "ext": {"replay": {"/data/LeadChangeEvent": 10**9}}}])  # fmt: skip
    assert future.json()[0]["error"] == EXPIRED.format(10**9)


async def test_platform_events_and_web_to_lead(
    sim: RunningSimulator, stream: StreamingClient
) -> None:
    await stream.subscribe("/event/New_Lead__e")
    answer = await asyncio.to_thread(
        session_for(sim).post, f"{sim.url}/servlet/servlet.WebToLead",
        data={"oid": "00D8d0000000001", "first_name": "Wen", "last_name": "Web", "company": "Form Co",
              "email": "web@form.example", "lead_source": "Web"},
    )  # fmt: skip
    assert answer.status_code == 200
    (event,) = await receive(stream, 1)
    payload = event["data"]["payload"]
    assert payload["Lead_Id__c"] == answer.headers["X-Lead-Id"]
    assert payload["Company__c"] == "Form Co"
    assert payload["CreatedDate"].endswith("Z")
    lead = sim.state.org.records["Lead"][payload["Lead_Id__c"]]
    assert (lead["Name"], lead["Email"], lead["LeadSource"]) == (
        "Wen Web",
        "web@form.example",
        "Web",
    )


async def test_gap_events_carry_no_fields(sim: RunningSimulator, stream: StreamingClient) -> None:
    await stream.subscribe("/data/OpportunityChangeEvent")
    fault(
        sim,
        action="gap",
        entity="Opportunity",
        change_type="GAP_UPDATE",
        record_ids=["0068d0000000001AAA"],
    )
    fault(sim, action="gap", entity="Opportunity", change_type="GAP_OVERFLOW")
    gap, overflow = await receive(stream, 2)
    assert header(gap)["changeType"] == "GAP_UPDATE"
    assert set(gap["data"]["payload"]) == {"ChangeEventHeader"}
    assert header(overflow)["changeType"] == "GAP_OVERFLOW"
    assert header(overflow)["recordIds"] == ["000000000000000AAA"]


async def test_streaming_survives_expired_sessions(
    sim: RunningSimulator, sf: Salesforce, stream: StreamingClient
) -> None:
    await stream.subscribe("/data/CaseChangeEvent")
    fault(sim, action="expire_sessions")
    fault(sim, action="drop_connections")
    case_id = (await asyncio.to_thread(sf.Case.create, {"Subject": "Login again"}))["id"]
    (created,) = await receive(stream, 1, timeout=30)
    assert header(created)["recordIds"] == [case_id]
    assert created["data"]["payload"]["Status"] == "New"


async def test_jwt_streaming_client_and_unknown_channel(
    sim: RunningSimulator, sf: Salesforce
) -> None:
    config = auth_config(sim, password=None, private_key_file=sim.state.jwt_key_file)
    client = StreamingClient(config)
    await client.open()
    try:
        for unknown in ("/data/WidgetChangeEvent", "/topic/Anything"):
            with pytest.raises(ServerError):
                await client.subscribe(unknown)
        await client.subscribe("/data/TaskChangeEvent")
        task_id = (await asyncio.to_thread(sf.Task.create, {"Subject": "Call back"}))["id"]
        (event,) = await receive(client, 1)
        assert header(event)["recordIds"] == [task_id]
    finally:
        await client.close()
