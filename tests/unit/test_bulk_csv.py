"""CSV cells and error rows of the sink's Bulk API 2.0 jobs."""

from __future__ import annotations

import csv
import io

from projections.salesforce.bulk import NULL_CELL, csv_cell, parse_error, records_csv


def test_values_are_written_as_bulk_api_reads_them() -> None:
    assert csv_cell(None) == NULL_CELL == "#N/A"
    assert csv_cell(True) == "true" and csv_cell(False) == "false"
    assert csv_cell(1e-05) == "0.00001"
    assert csv_cell(12345678912345.5) == "12345678912345.5"
    assert csv_cell(42) == "42"
    assert csv_cell('a, "quoted"\nline') == 'a, "quoted"\nline'


def test_records_round_trip_through_csv() -> None:
    records = [
        {"Id": "00Q000000000001AAA", "AI_Reasoning__c": 'says "hi", twice\nthen stops'},
        {"Id": "00Q000000000002AAA", "AI_Reasoning__c": None},
    ]
    rows = list(csv.DictReader(io.StringIO(records_csv(records))))
    assert rows == [
        {"Id": "00Q000000000001AAA", "AI_Reasoning__c": 'says "hi", twice\nthen stops'},
        {"Id": "00Q000000000002AAA", "AI_Reasoning__c": "#N/A"},
    ]


def test_a_field_one_record_does_not_set_is_an_empty_cell() -> None:
    text = records_csv([{"Id": "00Q1", "A__c": 1}, {"Id": "00Q2", "B__c": None}])
    assert text.splitlines() == ["Id,A__c,B__c", "00Q1,1,", "00Q2,,#N/A"]


def test_failed_rows_give_the_error_code_message_and_fields() -> None:
    error = parse_error("INVALID_FIELD:No such column 'Foo__c' on entity 'Lead':Foo__c --")
    assert error.status_code == "INVALID_FIELD"
    assert error.message == "No such column 'Foo__c' on entity 'Lead'"
    assert error.fields == ("Foo__c",)
    bare = parse_error("ENTITY_IS_DELETED:entity is deleted: --")
    assert (bare.status_code, bare.message, bare.fields) == (
        "ENTITY_IS_DELETED",
        "entity is deleted",
        (),
    )
