"""Acceptance with unmodified simple-salesforce: SOQL paging over 5,000 records, Collections
updates of 200 records, and a Bulk API 2.0 ingest of 10,000 rows with invalid ones.
"""

from __future__ import annotations

import csv
import io

import pytest
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest

from simulator.app import RunningSimulator

ROWS = 10_000
INVALID_ROWS = {17: "LastName", 4_321: "AnnualRevenue", 9_998: "Email"}


@pytest.fixture(scope="module")
def bulk_job(sf: Salesforce) -> dict[str, object]:
    """One Bulk API 2.0 insert of 10,000 leads, three of them invalid."""
    records = []
    for index in range(ROWS):
        row = {"LastName": f"Bulk-{index:05d}", "Company": f"Company {index % 97}",
               "AnnualRevenue": str(1000 * index), "Email": f"lead{index}@example.com",
               "Status": "Open - Not Contacted"}  # fmt: skip
        if INVALID_ROWS.get(index) == "LastName":
            row["LastName"] = ""
        elif INVALID_ROWS.get(index) == "AnnualRevenue":
            row["AnnualRevenue"] = "a lot"
        elif INVALID_ROWS.get(index) == "Email":
            row["Email"] = "broken@"
        records.append(row)
    results = sf.bulk2.Lead.insert(records=records, wait=0.2)
    return results[0]


def test_bulk_ingest_reports_invalid_rows(sf: Salesforce, bulk_job: dict[str, object]) -> None:
    assert bulk_job["numberRecordsProcessed"] == ROWS
    assert bulk_job["numberRecordsFailed"] == len(INVALID_ROWS)
    job_id = str(bulk_job["job_id"])
    failed = list(csv.DictReader(io.StringIO(sf.bulk2.Lead.get_failed_records(job_id))))
    assert len(failed) == len(INVALID_ROWS)
    errors = {row["sf__Error"].split(":")[0] for row in failed}
    assert errors == {
        "REQUIRED_FIELD_MISSING",
        "INVALID_TYPE_ON_FIELD_IN_RECORD",
        "INVALID_EMAIL_ADDRESS",
    }
    assert {row["Email"] for row in failed} >= {"broken@"}
    succeeded = list(csv.DictReader(io.StringIO(sf.bulk2.Lead.get_successful_records(job_id))))
    assert len(succeeded) == ROWS - len(INVALID_ROWS)
    assert all(
        row["sf__Created"] == "true" and row["sf__Id"].startswith("00Q") for row in succeeded
    )
    unprocessed = sf.bulk2.Lead.get_unprocessed_records(job_id).strip().splitlines()
    assert len(unprocessed) == 1 and '"LastName"' in unprocessed[0]


def test_query_pages_over_5000_records(sf: Salesforce, bulk_job: dict[str, object]) -> None:
    first = sf.query(
        "SELECT Id, LastName, Owner.Name FROM Lead WHERE LastName LIKE 'Bulk-%' ORDER BY LastName"
    )
    assert first["totalSize"] == ROWS - len(INVALID_ROWS)
    assert first["done"] is False and len(first["records"]) == 2000
    assert first["nextRecordsUrl"].startswith("/services/data/v")
    everything = sf.query_all(
        "SELECT Id, LastName FROM Lead WHERE LastName LIKE 'Bulk-%' ORDER BY LastName"
    )
    names = [r["LastName"] for r in everything["records"]]
    assert len(names) == len(set(names)) == ROWS - len(INVALID_ROWS)
    assert names == sorted(names)
    batch = sf.query("SELECT Id FROM Lead", headers={"Sforce-Query-Options": "batchSize=500"})
    assert len(batch["records"]) == 500


def test_soql_filters(sf: Salesforce, bulk_job: dict[str, object]) -> None:
    query = (
        "SELECT Id, AnnualRevenue FROM Lead WHERE (AnnualRevenue >= 100000 AND AnnualRevenue < 110000) "
        "AND NOT LastName IN ('Bulk-00100', 'Bulk-00101') AND CreatedDate = LAST_N_DAYS:1"
    )
    found = sf.query_all(query)["records"]
    assert len(found) == 8
    assert sf.query("SELECT COUNT() FROM Lead WHERE CreatedDate < YESTERDAY")["totalSize"] == 0
    page = sf.query(
        "SELECT LastName FROM Lead WHERE LastName LIKE 'Bulk-0%' ORDER BY LastName DESC LIMIT 3 OFFSET 2"
    )
    assert [r["LastName"] for r in page["records"]] == [
        "Bulk-09996",
        "Bulk-09995",
        "Bulk-09994",
    ]  # 09998 was invalid
    with pytest.raises(SalesforceMalformedRequest) as bad_field:
        sf.query("SELECT Nope FROM Lead")
    assert bad_field.value.content[0]["errorCode"] == "INVALID_FIELD"
    with pytest.raises(SalesforceMalformedRequest) as bad_object:
        sf.query("SELECT Id FROM Nothing")
    assert bad_object.value.content[0]["errorCode"] == "INVALID_TYPE"
    with pytest.raises(SalesforceMalformedRequest) as bad_syntax:
        sf.query("SELECT Id FROM Lead WHERE")
    assert bad_syntax.value.content[0]["errorCode"] == "MALFORMED_QUERY"


def test_collections_update_of_200_records(sf: Salesforce, bulk_job: dict[str, object]) -> None:
    leads = sf.query(
        "SELECT Id FROM Lead WHERE LastName LIKE 'Bulk-%' ORDER BY LastName LIMIT 200"
    )["records"]
    payload = {"allOrNone": True, "records": [
        {"attributes": {"type": "Lead"}, "Id": r["Id"], "AI_Enhanced_Score__c": 50 + i % 50}
        for i, r in enumerate(leads)
    ]}  # fmt: skip
    results = sf.restful("composite/sobjects", method="PATCH", json=payload)
    assert len(results) == 200 and all(r["success"] for r in results)
    scored = sf.query("SELECT COUNT() FROM Lead WHERE AI_Enhanced_Score__c >= 50")["totalSize"]
    assert scored == 200


def test_bulk_query_job_pages_with_locator(sf: Salesforce, bulk_job: dict[str, object]) -> None:
    pages = list(
        sf.bulk2.Lead.query(
            "SELECT Id, LastName, Owner.Name FROM Lead WHERE LastName LIKE 'Bulk-%'",
            max_records=4000,
            wait=0.2,
        )
    )
    assert len(pages) == 3
    rows = [row for page in pages for row in csv.DictReader(io.StringIO(page))]
    assert len(rows) == ROWS - len(INVALID_ROWS)
    assert set(rows[0]) == {"Id", "LastName", "Owner.Name"}


def test_bulk_ingest_produces_change_events(
    sim: RunningSimulator, bulk_job: dict[str, object]
) -> None:
    creates = [e for e in sim.state.bus.read("/data/LeadChangeEvent", 0, 100_000)
               if e.payload["ChangeEventHeader"]["changeType"] == "CREATE"]  # fmt: skip
    created_ids = {i for e in creates for i in e.payload["ChangeEventHeader"]["recordIds"]}
    assert len(created_ids) >= ROWS - len(INVALID_ROWS)


def test_aggregate_query_over_rest(sf: Salesforce, bulk_job: dict[str, object]) -> None:
    grouped = sf.query(
        "SELECT Company, COUNT(Id) n FROM Lead WHERE LastName LIKE 'Bulk-%' GROUP BY Company"
    )
    assert grouped["totalSize"] == 97
    assert sum(r["n"] for r in grouped["records"]) == ROWS - len(INVALID_ROWS)
    assert grouped["records"][0]["attributes"]["type"] == "AggregateResult"
