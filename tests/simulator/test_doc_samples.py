"""Plain HTTP against the simulator with request bodies shaped like Salesforce's documentation
examples, and the fault table of docs/simulator.md checked against the admin endpoint.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from simulator.app import RunningSimulator
from simulator.http.admin import ACTIONS
from streams.salesforce.auth import login
from tests.simulator.conftest import auth_config, session_for

DOCS = Path(__file__).resolve().parents[2] / "docs" / "simulator.md"


@pytest.fixture(scope="module")
def http(sim: RunningSimulator) -> requests.Session:
    session = session_for(sim)
    token = login(auth_config(sim), session).access_token
    session.headers["Authorization"] = f"Bearer {token}"
    return session


def api(sim: RunningSimulator, path: str) -> str:
    return f"{sim.url}/services/data/v62.0/{path}"


def test_create_and_composite_sample(sim: RunningSimulator, http: requests.Session) -> None:
    created = http.post(
        api(sim, "sobjects/Account/"), json={"Name": "Express Logistics and Transport"}
    )
    assert created.status_code == 201
    assert created.json() == {"id": created.json()["id"], "success": True, "errors": []}
    body = {
        "allOrNone": True,
        "compositeRequest": [
            {"method": "POST", "url": "/services/data/v62.0/sobjects/Account", "referenceId": "NewAccount",
             "body": {"Name": "Salesforce", "BillingStreet": "Landmark @ 1 Market Street", "BillingCity": "San Francisco",
                      "BillingState": "California", "Industry": "Technology"}},
            {"method": "GET", "referenceId": "NewAccountInfo",
             "url": "/services/data/v62.0/sobjects/Account/@{NewAccount.id}?fields=Name,BillingPostalCode"},
            {"method": "POST", "url": "/services/data/v62.0/sobjects/Contact", "referenceId": "NewContact",
             "body": {"lastname": "John Smith", "Phone": "1234567890", "Email": "jsmith@salesforce.com",
                      "AccountId": "@{NewAccountInfo.Id}"}},
        ],
    }  # fmt: skip
    answers = http.post(api(sim, "composite"), json=body).json()["compositeResponse"]
    assert [a["httpStatusCode"] for a in answers] == [201, 200, 201]
    assert answers[1]["body"]["Name"] == "Salesforce"
    assert answers[1]["body"]["BillingPostalCode"] is None


def test_bulk_ingest_sample_with_crlf(sim: RunningSimulator, http: requests.Session) -> None:
    job = http.post(api(sim, "jobs/ingest/"), json={"object": "Account", "contentType": "CSV",
                                                     "operation": "insert", "lineEnding": "CRLF"}).json()  # fmt: skip
    assert job["state"] == "Open" and job["contentUrl"].endswith("/batches")
    data = (
        "Name,ShippingCity,NumberOfEmployees,AnnualRevenue,Website,Description\r\n"
        'Lorem Ipsum,Milano,2676,912260031,https://ft.com/lacus/at.jsp,"Lorem ipsum dolor sit amet, '
        'consectetur adipiscing elit."\r\n'
        "Posuere Inc,Bodø,141,896852810,http://webs.com/in/faucibus/orci/luctus/et/ultrices/posuere.json,\r\n"
    )
    upload = http.put(
        f"{sim.url}/{job['contentUrl']}", data=data.encode(), headers={"Content-Type": "text/csv"}
    )
    assert upload.status_code == 201
    assert (
        http.patch(api(sim, f"jobs/ingest/{job['id']}/"), json={"state": "UploadComplete"}).json()[
            "state"
        ]
        == "UploadComplete"
    )
    deadline = time.monotonic() + 10
    info: dict[str, Any] = {}
    while time.monotonic() < deadline:
        info = http.get(api(sim, f"jobs/ingest/{job['id']}/")).json()
        if info["state"] == "JobComplete":
            break
        time.sleep(0.1)
    assert info["state"] == "JobComplete"
    assert (info["numberRecordsProcessed"], info["numberRecordsFailed"]) == (2, 0)
    results = http.get(api(sim, f"jobs/ingest/{job['id']}/successfulResults/")).text.splitlines()
    assert (
        results[0]
        == '"sf__Id","sf__Created","Name","ShippingCity","NumberOfEmployees","AnnualRevenue","Website","Description"'
    )
    assert "Bodø" in results[2]


def test_platform_event_sample(sim: RunningSimulator, http: requests.Session) -> None:
    answer = http.post(
        api(sim, "sobjects/Low_Ink__e/"),
        json={"Printer_Model__c": "XZO-5", "Serial_Number__c": "12345", "Ink_Percentage__c": 0.2},
    )
    assert answer.status_code == 201
    body = answer.json()
    assert body["success"] is True
    assert body["errors"][0]["statusCode"] == "OPERATION_ENQUEUED"
    assert sim.state.bus.read("/event/Low_Ink__e", 0, 10)[-1].payload["Printer_Model__c"] == "XZO-5"


def test_cometd_sample_messages(sim: RunningSimulator, http: requests.Session) -> None:
    url = f"{sim.url}/cometd/62.0/"
    shake = http.post(url, json=[{"version": "1.0", "minimumVersion": "0.9", "channel": "/meta/handshake",
                                  "supportedConnectionTypes": ["long-polling"], "advice": {"timeout": 60000, "interval": 0}}]).json()[0]  # fmt: skip
    assert shake["successful"] is True and shake["ext"]["replay"] is True
    client = shake["clientId"]
    subscribed = http.post(url, json=[{"channel": "/meta/subscribe", "clientId": client, "subscription": "/data/ChangeEvents",
                                       "ext": {"replay": {"/data/ChangeEvents": -2}}}]).json()[0]  # fmt: skip
    assert subscribed["successful"] is True and subscribed["subscription"] == "/data/ChangeEvents"
    connected = http.post(
        url,
        json=[{"channel": "/meta/connect", "clientId": client, "connectionType": "long-polling"}],
    ).json()
    events = [m for m in connected if m["channel"] == "/data/ChangeEvents"]
    assert events and all("replayId" in m["data"]["event"] for m in events)
    assert connected[-1]["channel"] == "/meta/connect" and connected[-1]["successful"] is True
    bye = http.post(url, json=[{"channel": "/meta/disconnect", "clientId": client}]).json()[0]
    assert bye["successful"] is True


def test_docs_list_every_fault_action() -> None:
    table = DOCS.read_text().split("| action | effect |")[1].split("\n\n")[0]
    documented = set(re.findall(r"^\| `(\w+)`", table, flags=re.MULTILINE))
    assert documented == set(ACTIONS)


def test_sobject_tree_sample(sim: RunningSimulator, http: requests.Session) -> None:
    body = {"records": [
        {"attributes": {"type": "Account", "referenceId": "ref1"}, "name": "SampleAccount1", "phone": "1234567890",
         "website": "www.salesforce.com", "numberOfEmployees": "100", "industry": "Banking",
         "Contacts": {"records": [
             {"attributes": {"type": "Contact", "referenceId": "ref2"}, "lastname": "Smith", "Title": "President", "email": "sample@salesforce.com"},
             {"attributes": {"type": "Contact", "referenceId": "ref3"}, "lastname": "Evans", "title": "Vice President", "email": "sample@salesforce.com"}]}},
        {"attributes": {"type": "Account", "referenceId": "ref4"}, "name": "SampleAccount2", "phone": "1234567890"},
    ]}  # fmt: skip
    answer = http.post(api(sim, "composite/tree/Account/"), json=body)
    assert answer.status_code == 201
    results = answer.json()
    assert results["hasErrors"] is False
    assert [r["referenceId"] for r in results["results"]] == ["ref1", "ref2", "ref3", "ref4"]
    contact = sim.state.org.records["Contact"][results["results"][1]["id"]]
    assert contact["AccountId"] == results["results"][0]["id"]
    body["records"][1]["email"] = "broken"
    failed = http.post(api(sim, "composite/tree/Account/"), json=body)
    assert failed.status_code == 400
    assert failed.json()["results"] == [{"referenceId": "ref4", "errors": [
        {"statusCode": "INVALID_FIELD", "message": "No such column 'email' on sobject of type Account", "fields": []}]}]  # fmt: skip


def test_replication_updated_and_deleted(sim: RunningSimulator, http: requests.Session) -> None:
    start = "2020-01-01T00:00:00+00:00"
    end = "2099-01-01T00:00:00+00:00"
    case_id = http.post(api(sim, "sobjects/Case/"), json={"Subject": "Replicate"}).json()["id"]
    updated = http.get(
        api(sim, "sobjects/Case/updated/"), params={"start": start, "end": end}
    ).json()
    assert case_id in updated["ids"]
    assert http.delete(api(sim, f"sobjects/Case/{case_id}")).status_code == 204
    deleted = http.get(
        api(sim, "sobjects/Case/deleted/"), params={"start": start, "end": end}
    ).json()
    assert [r["id"] for r in deleted["deletedRecords"]] == [case_id]


def test_bulk_job_with_unknown_column_fails(sim: RunningSimulator, http: requests.Session) -> None:
    job = http.post(
        api(sim, "jobs/ingest"), json={"object": "Contact", "operation": "insert"}
    ).json()
    http.put(api(sim, f"jobs/ingest/{job['id']}/batches"), data="LastName,Shoe_Size__c\nSmith,44\n")
    http.patch(api(sim, f"jobs/ingest/{job['id']}"), json={"state": "UploadComplete"})
    deadline = time.monotonic() + 10
    while http.get(api(sim, f"jobs/ingest/{job['id']}")).json()["state"] != "Failed":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    info = http.get(api(sim, f"jobs/ingest/{job['id']}")).json()
    assert info["errorMessage"] == "InvalidBatch : Field name not found : Shoe_Size__c"
    unprocessed = http.get(
        api(sim, f"jobs/ingest/{job['id']}/unprocessedrecords/")
    ).text.splitlines()
    assert unprocessed == ['"LastName","Shoe_Size__c"', '"Smith","44"']


def test_composite_batch_sample(sim: RunningSimulator, http: requests.Session) -> None:
    account_id = http.post(api(sim, "sobjects/Account"), json={"Name": "Batch Co"}).json()["id"]
    body = {"batchRequests": [
        {"method": "PATCH", "url": f"v62.0/sobjects/Account/{account_id}", "richInput": {"Name": "NewName"}},
        {"method": "GET", "url": f"v62.0/sobjects/Account/{account_id}?fields=Name,BillingPostalCode"},
        {"method": "GET", "url": "v62.0/sobjects/Account/001000000000000AAA"},
    ]}  # fmt: skip
    answer = http.post(api(sim, "composite/batch"), json=body).json()
    assert answer["hasErrors"] is True
    assert [r["statusCode"] for r in answer["results"]] == [204, 200, 404]
    assert answer["results"][1]["result"]["Name"] == "NewName"


def test_platform_events_published_through_collections(
    sim: RunningSimulator, http: requests.Session
) -> None:
    records = [
        {"attributes": {"type": "Low_Ink__e"}, "Printer_Model__c": f"M{i}"} for i in range(3)
    ]
    answer = http.post(
        api(sim, "composite/sobjects"), json={"allOrNone": False, "records": records}
    ).json()
    assert all(r["success"] and r["id"].startswith("e00") for r in answer)
    models = [
        e.payload["Printer_Model__c"] for e in sim.state.bus.read("/event/Low_Ink__e", 0, 100)
    ]
    assert models[-3:] == ["M0", "M1", "M2"]
