"""The pure parts of `sfe reconcile`: AI fields, the log's expectations, value-aware diffs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from projections.reconcile import (
    AGENT,
    Difference,
    Expectations,
    FieldInfo,
    RecordExpectation,
    ai_fields,
    correction,
    diff_record,
    run_key,
    same_value,
)
from schema_registry.events import (
    CommandExecuted,
    CommandOutcome,
    SalesforceOperation,
    SalesforceWriteRequested,
)
from schema_registry.ids import derived_event_id

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LEAD = "00Q000000000001AAA"


def command(
    command_id: str,
    fields: dict[str, Any],
    record_id: str | None = LEAD,
    sobject: str = "Lead",
    time: datetime = T0,
    operation: SalesforceOperation = SalesforceOperation.UPDATE,
) -> SalesforceWriteRequested:
    return SalesforceWriteRequested(
        id=command_id,
        source="agents.test",
        subject=record_id or "x",
        time=time,
        correlation_id=f"flow-{command_id}",
        operation=operation,
        sobject=sobject,
        record_id=record_id,
        fields=fields,
    )


def result(command_id: str, outcome: CommandOutcome) -> CommandExecuted:
    return CommandExecuted(
        id=f"r-{command_id}",
        source="sink",
        subject=LEAD,
        time=T0,
        causation_id=command_id,
        command_type="SalesforceWriteRequested",
        target=f"Lead/{LEAD}",
        outcome=outcome,
    )


def test_ai_fields_are_custom_fields_salesforce_does_not_own() -> None:
    names = ["AI_Enhanced_Score__c", "OwnerId", "Status", "Email", "AI_Reasoning__c"]
    assert ai_fields("Lead", names) == ("AI_Enhanced_Score__c", "AI_Reasoning__c")
    assert ai_fields("Contact", ["AI_Score__c"]) == ()  # Salesforce owns the whole object
    assert ai_fields("Opportunity", ["StageName", "AI_Win_Probability__c"]) == (
        "AI_Win_Probability__c",
    )


def test_the_last_applied_command_wins_per_field() -> None:
    folded = Expectations("Lead")
    for cid, outcome in (("c1", CommandOutcome.APPLIED), ("c2", CommandOutcome.ALREADY_APPLIED)):
        folded.add_result(result(cid, outcome))
    folded.add_command(command("c1", {"AI_Enhanced_Score__c": 10.0, "AI_Reasoning__c": "a"}))
    folded.add_command(command("c2", {"AI_Enhanced_Score__c": 20.0, "OwnerId": "005x"}))
    [record] = folded.in_scope()
    assert record.values == {"AI_Enhanced_Score__c": 20.0, "AI_Reasoning__c": "a"}
    assert record.command_id == "c2"
    assert record.correlation_id == "flow-c2"
    assert folded.commands == 2


def test_a_rejected_command_is_not_expected() -> None:
    folded = Expectations("Lead")
    folded.add_result(result("c1", CommandOutcome.APPLIED))
    folded.add_result(result("c2", CommandOutcome.REJECTED))
    folded.add_result(result("c2", CommandOutcome.ALREADY_APPLIED))  # a repeat of a rejection
    folded.add_command(command("c1", {"AI_Enhanced_Score__c": 10.0}))
    folded.add_command(command("c2", {"AI_Enhanced_Score__c": 20.0, "AI_Lead_Route__c": "x"}))
    [record] = folded.in_scope()
    assert record.values == {"AI_Enhanced_Score__c": 10.0}
    assert record.command_id == "c1"
    assert folded.rejected == 1


def test_a_record_whose_only_command_was_rejected_is_out_of_scope() -> None:
    folded = Expectations("Lead")
    folded.add_result(result("c1", CommandOutcome.REJECTED))
    folded.add_command(command("c1", {"AI_Enhanced_Score__c": 10.0}))
    assert folded.in_scope() == []
    assert folded.pending() == 0


def test_a_record_whose_last_command_has_no_result_is_pending() -> None:
    folded = Expectations("Lead")
    folded.add_result(result("c1", CommandOutcome.APPLIED))
    folded.add_command(command("c1", {"AI_Enhanced_Score__c": 10.0}))
    folded.add_command(command("c2", {"AI_Enhanced_Score__c": 20.0}))
    assert folded.in_scope() == []
    assert folded.pending() == 1


def test_other_objects_creates_and_non_ai_updates_are_ignored() -> None:
    folded = Expectations("Lead")
    for cid in ("o", "t", "n"):
        folded.add_result(result(cid, CommandOutcome.APPLIED))
    folded.add_command(command("o", {"AI_Win_Probability__c": 5.0}, sobject="Opportunity"))
    folded.add_command(
        command("t", {"Subject": "call"}, None, "Task", operation=SalesforceOperation.CREATE)
    )
    folded.add_command(command("n", {"OwnerId": "005000000000001AAA"}))
    assert folded.records == {}
    assert folded.commands == 0


def test_since_keeps_records_whose_last_command_is_at_or_after_it() -> None:
    folded = Expectations("Lead")
    other = "00Q000000000002AAA"
    for cid in ("old", "new", "late"):
        folded.add_result(result(cid, CommandOutcome.APPLIED))
    folded.add_command(command("old", {"AI_Enhanced_Score__c": 1.0}, time=T0 - timedelta(days=2)))
    folded.add_command(command("new", {"AI_Enhanced_Score__c": 2.0}, other, time=T0))
    assert [r.record_id for r in folded.in_scope(T0)] == [other]
    assert len(folded.in_scope()) == 2
    # A later command moves the record into the window, with all its expected fields.
    folded.add_command(command("late", {"AI_Reasoning__c": "r"}, time=T0 + timedelta(hours=1)))
    assert {r.record_id for r in folded.in_scope(T0)} == {LEAD, other}


NUMBER = FieldInfo("AI_Enhanced_Score__c", "double", 0, 0)
PERCENT = FieldInfo("AI_Win_Probability__c", "percent", 0, 2)
CURRENCY = FieldInfo("Estimated_Budget__c", "currency", 0, 2)
UNSCALED = FieldInfo("X__c", "double")
TEXT = FieldInfo("AI_Reasoning__c", "textarea", 10)
DAY = FieldInfo("Optimal_Close_Date__c", "date")
MOMENT = FieldInfo("Last_Active_Date__c", "datetime")
CHOICES = FieldInfo("Tech_Stack__c", "multipicklist", 4099)
FLAG = FieldInfo("F__c", "boolean")
INTEGER = FieldInfo("N__c", "int")


@pytest.mark.parametrize(
    ("expected", "actual", "info", "same"),
    [
        (73.0, "73", NUMBER, True),  # Bulk CSV gives text
        (73.4, 73.0, NUMBER, True),  # a scale-0 Number field rounds on save
        (72.5, 73, NUMBER, True),  # half up, as Salesforce rounds
        (73.0, 7.0, NUMBER, False),
        (42.5, "42.50", PERCENT, True),  # percent is stored as given (42.5 means 42.5 %)
        (42.5, 0.425, PERCENT, False),
        (1234.567, 1234.57, CURRENCY, True),
        (1234.56, 1234.57, CURRENCY, False),
        (0.1 + 0.2, 0.3, UNSCALED, True),
        (0.3, 0.31, UNSCALED, False),
        (3, "3.0", INTEGER, True),
        ("abcdefghijKLM", "abcdefghij", TEXT, True),  # cut to the field's length
        ("line 1\r\nline 2", "line 1\nline 2", TEXT, True),
        ("reason a", "reason b", TEXT, False),
        ("", None, TEXT, True),  # Salesforce stores empty text as null
        (None, "", TEXT, True),
        (None, "x", TEXT, False),
        ("x", None, TEXT, False),
        (None, 0.0, NUMBER, False),
        ("2026-04-01", "2026-04-01", DAY, True),
        ("2026-04-01", "2026-04-02", DAY, False),
        ("2026-04-01T09:30:00+00:00", "2026-04-01T09:30:00.000+0000", MOMENT, True),
        ("2026-04-01T11:30:00+02:00", "2026-04-01T09:30:00.000Z", MOMENT, True),
        ("2026-04-01T09:30:00Z", "2026-04-01T09:31:00.000Z", MOMENT, False),
        ("AWS;Kafka", "Kafka; AWS", CHOICES, True),
        ("AWS;Kafka", "AWS", CHOICES, False),
        (True, "true", FLAG, True),
        (False, "true", FLAG, False),
        ("Nurture", "Nurture", FieldInfo("AI_Lead_Route__c", "picklist", 255), True),
        ("Nurture", "MQL", FieldInfo("AI_Lead_Route__c", "picklist", 255), False),
    ],
)
def test_same_value_by_field_type(expected: Any, actual: Any, info: FieldInfo, same: bool) -> None:
    assert same_value(expected, actual, info) is same


def test_diff_record_holds_only_differing_known_fields() -> None:
    expectation = RecordExpectation(
        LEAD,
        {"AI_Enhanced_Score__c": 73.0, "AI_Reasoning__c": "why", "Gone__c": "x"},
        command_id="c9",
        correlation_id="flow",
    )
    infos = {"AI_Enhanced_Score__c": NUMBER, "AI_Reasoning__c": TEXT}
    actual = {"Id": LEAD, "AI_Enhanced_Score__c": 7.0, "AI_Reasoning__c": "why"}
    difference = diff_record("Lead", expectation, actual, infos)
    assert difference == Difference(
        "Lead", LEAD, {"AI_Enhanced_Score__c": (73.0, 7.0)}, "c9", "flow"
    )
    assert diff_record("Lead", expectation, {**actual, "AI_Enhanced_Score__c": "73"}, infos) is None


def test_corrections_have_ids_derived_from_the_run_and_the_record() -> None:
    difference = Difference("Lead", LEAD, {"AI_Enhanced_Score__c": (73.0, 7.0)}, "c9", "flow")
    key = run_key("Lead", None, {1: 40, 0: 12})
    assert key == "reconcile:Lead:all:0:12,1:40"
    first = correction(difference, key, T0)
    again = correction(difference, key, T0 + timedelta(minutes=5))
    assert first.id == again.id == derived_event_id(key, AGENT, f"correct:Lead/{LEAD}")
    assert first.fields == {"AI_Enhanced_Score__c": 73.0}
    assert (first.source, first.subject, first.record_id) == (AGENT, LEAD, LEAD)
    assert (first.causation_id, first.correlation_id) == ("c9", "flow")
    assert first.operation is SalesforceOperation.UPDATE
    later = correction(difference, run_key("Lead", None, {0: 13, 1: 40}), T0)
    assert later.id != first.id
    since = run_key("Lead", datetime(2026, 3, 1, 14, tzinfo=UTC), {0: 12})
    assert since == "reconcile:Lead:2026-03-01T14:00:00+00:00:0:12"
