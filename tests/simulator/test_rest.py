"""REST resources with unmodified simple-salesforce: records, metadata, errors, limits, composite."""

from __future__ import annotations

from typing import Any

import pytest
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceError,
    SalesforceMalformedRequest,
    SalesforceResourceNotFound,
)

from simulator.app import RunningSimulator
from streams.salesforce.rest import connect
from tests.simulator.conftest import auth_config, fault


def _error(raised: pytest.ExceptionInfo[SalesforceError]) -> dict[str, Any]:
    content = raised.value.content
    assert isinstance(content, list)
    return content[0]


def test_record_lifecycle(sf: Salesforce) -> None:
    created = sf.Account.create(
        {"Name": "Acme Rockets", "AnnualRevenue": 5e6, "Industry": "Technology"}
    )
    assert created["success"] and created["id"].startswith("001") and len(created["id"]) == 18
    record = sf.Account.get(created["id"])
    assert record["Name"] == "Acme Rockets"
    assert record["AnnualRevenue"] == 5e6
    assert record["attributes"]["type"] == "Account"
    assert sf.Account.update(created["id"], {"Churn_Risk__c": 42.5}) == 204
    assert sf.Account.get(created["id"])["Churn_Risk__c"] == 42.5
    assert sf.Account.get(created["id"][:15])["Id"] == created["id"]
    assert sf.Account.delete(created["id"]) == 204
    with pytest.raises(SalesforceResourceNotFound):
        sf.Account.get(created["id"])
    deleted = sf.query_all(
        f"SELECT Id, IsDeleted FROM Account WHERE Id = '{created['id']}'", include_deleted=True
    )
    assert deleted["records"][0]["IsDeleted"] is True


def test_describe_has_custom_fields_with_types(sf: Salesforce) -> None:
    names = {o["name"] for o in sf.describe()["sobjects"]}
    assert {"Lead", "Contact", "Account", "Opportunity", "Case", "Task", "User"} <= names
    types = {f["name"]: f for f in sf.Lead.describe()["fields"]}
    assert types["AI_Enhanced_Score__c"]["type"] == "double"
    assert types["Tech_Stack__c"]["type"] == "multipicklist"
    assert types["Estimated_Budget__c"]["type"] == "currency"
    assert types["AI_Reasoning__c"]["type"] == "textarea"
    opportunity = {f["name"]: f for f in sf.Opportunity.describe()["fields"]}
    assert opportunity["AI_Win_Probability__c"]["type"] == "percent"
    assert opportunity["Optimal_Close_Date__c"]["type"] == "date"
    account_describe = sf.Account.describe()
    children = {
        (c["childSObject"], c["relationshipName"]) for c in account_describe["childRelationships"]
    }
    assert {("Contact", "Contacts"), ("Opportunity", "Opportunities")} <= children
    account = {f["name"]: f for f in account_describe["fields"]}
    assert [v["value"] for v in account["Engagement_Level__c"]["picklistValues"]] == [
        "High",
        "Medium",
        "Low",
    ]
    assert account["Last_Active_Date__c"]["type"] == "datetime"


@pytest.mark.parametrize(
    ("body", "code", "fields"),
    [
        ({"LastName": "X", "Company": "Y", "Nope__c": 1}, "INVALID_FIELD", None),
        ({"LastName": "X" * 81, "Company": "Y"}, "STRING_TOO_LONG", ["LastName"]),
        (
            {"LastName": "X", "Company": "Y", "AnnualRevenue": "lots"},
            "INVALID_TYPE_ON_FIELD_IN_RECORD",
            ["AnnualRevenue"],
        ),
        ({"Company": "Y"}, "REQUIRED_FIELD_MISSING", ["LastName"]),
        (
            {"LastName": "X", "Company": "Y", "Email": "not-an-email"},
            "INVALID_EMAIL_ADDRESS",
            ["Email"],
        ),
        ({"LastName": "X", "Company": "Y", "OwnerId": "005abc"}, "MALFORMED_ID", ["OwnerId"]),
        (
            {"LastName": "X", "Company": "Y", "Status": "Bogus"},
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            ["Status"],
        ),
    ],
)
def test_validation_errors(
    sf: Salesforce, body: dict[str, Any], code: str, fields: list[str] | None
) -> None:
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.Lead.create(body)
    error = _error(raised)
    assert error["errorCode"] == code
    assert error["message"]
    if fields:
        assert error["fields"] == fields


def test_not_found_and_malformed_ids(sf: Salesforce) -> None:
    missing = "00Q8d000000ZZZZZZZ"
    with pytest.raises(SalesforceResourceNotFound) as raised:
        sf.Lead.get(missing[:15])
    assert _error(raised)["errorCode"] == "NOT_FOUND"
    with pytest.raises(SalesforceMalformedRequest) as malformed:
        sf.Lead.update("12345", {"LastName": "X"})
    assert _error(malformed)["errorCode"] == "MALFORMED_ID"


def test_limit_header_and_exhausted_budget(start_sim: Any) -> None:
    small = start_sim(daily_api_limit=5)
    client = connect(auth_config(small))
    client.query("SELECT COUNT() FROM User")
    assert client.api_usage["api-usage"].used == 1
    assert client.api_usage["api-usage"].total == 5
    for _ in range(4):
        client.query("SELECT COUNT() FROM User")
    with pytest.raises(SalesforceError) as raised:
        client.query("SELECT COUNT() FROM User")
    assert raised.value.status == 403
    assert _error(raised)["errorCode"] == "REQUEST_LIMIT_EXCEEDED"
    assert raised.value.content[0]["message"] == "TotalRequests Limit exceeded. Limit: 5"


def test_injected_failures(sim: RunningSimulator, sf: Salesforce) -> None:
    fault(sim, action="fail_next", count=1, status=503)
    with pytest.raises(SalesforceError) as raised:
        sf.query("SELECT COUNT() FROM User")
    assert raised.value.status == 503
    fault(sim, action="fail_next", count=1, status=403)
    with pytest.raises(SalesforceError) as limited:
        sf.query("SELECT COUNT() FROM User")
    assert _error(limited)["errorCode"] == "REQUEST_LIMIT_EXCEEDED"
    assert sf.query("SELECT COUNT() FROM User")["totalSize"] == 1


def test_collections_all_or_none(sf: Salesforce) -> None:
    records = [
        {"attributes": {"type": "Contact"}, "LastName": "Good"},
        {"attributes": {"type": "Contact"}, "FirstName": "No last name"},
    ]
    partial = sf.restful(
        "composite/sobjects", method="POST", json={"allOrNone": False, "records": records}
    )
    assert partial[0]["success"] is True
    assert partial[1]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
    before = sf.query("SELECT COUNT() FROM Contact")["totalSize"]
    rolled = sf.restful(
        "composite/sobjects", method="POST", json={"allOrNone": True, "records": records}
    )
    assert rolled[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert sf.query("SELECT COUNT() FROM Contact")["totalSize"] == before
    too_many = [{"attributes": {"type": "Contact"}, "LastName": str(i)} for i in range(201)]
    with pytest.raises(SalesforceMalformedRequest):
        sf.restful("composite/sobjects", method="POST", json={"records": too_many})


def test_collections_upsert_on_an_external_id(sf: Salesforce) -> None:
    key = "5f0e8c1e-0000-4000-8000-000000000001"
    task = {"attributes": {"type": "Task"}, "SFE_Command_Id__c": key, "Subject": "Call back"}
    first = sf.restful(
        "composite/sobjects/Task/SFE_Command_Id__c",
        method="PATCH",
        json={"allOrNone": False, "records": [task]},
    )
    assert first[0]["success"] and first[0]["created"] is True
    again = sf.restful(
        "composite/sobjects/Task/SFE_Command_Id__c",
        method="PATCH",
        json={"allOrNone": False, "records": [{**task, "Subject": "Call back today"}]},
    )
    assert again[0] == {"id": first[0]["id"], "success": True, "errors": [], "created": False}
    found = sf.query(f"SELECT Id, Subject FROM Task WHERE SFE_Command_Id__c = '{key}'")
    assert [r["Subject"] for r in found["records"]] == ["Call back today"]
    describe = {f["name"]: f for f in sf.Task.describe()["fields"]}
    assert describe["SFE_Command_Id__c"]["externalId"] is True
    assert describe["SFE_Command_Id__c"]["unique"] is True


def test_external_id_values_are_unique_and_required_for_upsert(sf: Salesforce) -> None:
    key = "5f0e8c1e-0000-4000-8000-000000000002"
    sf.Case.create({"Subject": "First", "SFE_Command_Id__c": key})
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.Case.create({"Subject": "Second", "SFE_Command_Id__c": key})
    assert _error(raised)["errorCode"] == "DUPLICATE_VALUE"
    missing = sf.restful(
        "composite/sobjects/Case/SFE_Command_Id__c",
        method="PATCH",
        json={"records": [{"attributes": {"type": "Case"}, "Subject": "No key"}]},
    )
    assert missing[0]["errors"][0]["statusCode"] == "MISSING_ARGUMENT"
    not_external = sf.restful(
        "composite/sobjects/Case/Subject",
        method="PATCH",
        json={"records": [{"attributes": {"type": "Case"}, "Subject": "x"}]},
    )
    assert not_external[0]["errors"][0]["statusCode"] == "INVALID_FIELD"


def test_composite_with_references(sf: Salesforce) -> None:
    body = {
        "allOrNone": True,
        "compositeRequest": [
            {"method": "POST", "url": "/services/data/v62.0/sobjects/Account", "referenceId": "acct",
             "body": {"Name": "Composite Co"}},
            {"method": "POST", "url": "/services/data/v62.0/sobjects/Contact", "referenceId": "person",
             "body": {"LastName": "Ref", "AccountId": "@{acct.id}"}},
            {"method": "GET", "referenceId": "check",
             "url": "/services/data/v62.0/query?q=SELECT+Account.Name+FROM+Contact+WHERE+Id='@{person.id}'"},
        ],
    }  # fmt: skip
    answers = sf.restful("composite", method="POST", json=body)["compositeResponse"]
    assert [a["httpStatusCode"] for a in answers] == [201, 201, 200]
    assert answers[2]["body"]["records"][0]["Account"]["Name"] == "Composite Co"


def test_platform_event_publish_and_einstein(sf: Salesforce) -> None:
    published = sf.restful(
        "sobjects/New_Lead__e", method="POST", json={"Lead_Id__c": "00Q8d0000000001AAA"}
    )
    assert published["success"] is True and published["id"].startswith("e00")
    prediction = sf.restful(
        "smartdatadiscovery/predict",
        method="POST",
        json={"predictionDefinition": "1OR000000000001", "type": "RawData",
              "columnNames": ["Title", "Industry", "LeadSource"], "rows": [["VP Sales", "Technology", "Web"]]},
    )  # fmt: skip
    result = prediction["predictions"][0]
    assert 0 <= result["prediction"]["total"] <= 100
    assert result["prediction"]["middleValues"][0]["columns"][0]["columnName"] == "Title"
    assert result["prescriptions"]
