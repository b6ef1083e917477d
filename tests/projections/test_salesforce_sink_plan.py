"""The Salesforce sink's planner, without Kafka or Salesforce: fates, merging, grouping."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from projections.salesforce.plan import (
    CORRECTION_SOURCE,
    PROTECTED_FIELD,
    PROTECTED_FIELDS,
    plan,
    protected_fields,
)
from schema_registry.events import SalesforceOperation, SalesforceWriteRequested
from schema_registry.events.envelope import FieldValue


def command(
    record_id: str | None,
    fields: dict[str, FieldValue],
    sobject: str = "Lead",
    operation: SalesforceOperation = SalesforceOperation.UPDATE,
    command_id: str | None = None,
) -> SalesforceWriteRequested:
    return SalesforceWriteRequested(
        id=command_id or str(uuid.uuid4()),
        source="test",
        subject=record_id or "001000000000001AAA",
        time=datetime.now(UTC),
        operation=operation,
        sobject=sobject,
        record_id=record_id,
        fields=fields,
    )


def test_updates_of_one_object_share_a_group_whatever_their_fields() -> None:
    leads = [
        command("00Q000000000001AAA", {"AI_Enhanced_Score__c": 1}),
        command("00Q000000000002AAA", {"AI_Enhanced_Score__c": 2, "Tech_Stack__c": "AWS"}),
    ]
    (group,) = plan(leads, {}, {}).groups
    assert group.fields == ("AI_Enhanced_Score__c", "Tech_Stack__c")
    assert [dict(r.values) for r in group.records] == [dict(c.fields) for c in leads]


def test_updates_group_by_object() -> None:
    commands = [command(f"00Q{i:015d}", {"AI_Enhanced_Score__c": i}) for i in range(3)]
    commands.append(command("006000000000001AAA", {"AI_Win_Probability__c": 40}, "Opportunity"))
    result = plan(commands, {}, {})
    shapes = sorted((g.sobject, g.fields, len(g.records)) for g in result.groups)
    assert shapes == [
        ("Lead", ("AI_Enhanced_Score__c",), 3),
        ("Opportunity", ("AI_Win_Probability__c",), 1),
    ]
    assert result.writes == 4


def test_commands_on_one_record_merge_and_the_later_value_wins() -> None:
    first = command("00Q000000000001AAA", {"AI_Enhanced_Score__c": 10, "AI_Reasoning__c": "a"})
    second = command("00Q000000000001AAA", {"AI_Enhanced_Score__c": 20})
    (group,) = plan([first, second], {}, {}).groups
    (record,) = group.records
    assert record.values == {"AI_Enhanced_Score__c": 20, "AI_Reasoning__c": "a"}
    assert record.commands == (first, second)


def test_fields_already_holding_the_value_are_not_written() -> None:
    lead = "00Q000000000001AAA"
    memory: dict[tuple[str, str, str], FieldValue] = {
        ("Lead", lead, "AI_Enhanced_Score__c"): 80,
        ("Lead", lead, "AI_Reasoning__c"): "x",
    }
    current = command(lead, {"AI_Enhanced_Score__c": 80, "AI_Reasoning__c": "x"})
    partly = command(lead, {"AI_Enhanced_Score__c": 80, "AI_Reasoning__c": "y"})
    result = plan([current, partly], {}, memory)
    assert result.current == (current,)
    (group,) = result.groups
    assert group.records[0].values == {"AI_Reasoning__c": "y"}


def test_a_correction_is_written_whatever_the_sink_remembers() -> None:
    lead = "00Q000000000001AAA"
    memory: dict[tuple[str, str, str], FieldValue] = {("Lead", lead, "AI_Enhanced_Score__c"): 80}
    correction = command(lead, {"AI_Enhanced_Score__c": 80})
    correction = SalesforceWriteRequested(**{**vars(correction), "source": CORRECTION_SOURCE})
    result = plan([correction], {}, memory)
    assert result.current == ()
    (group,) = result.groups
    assert group.records[0].values == {"AI_Enhanced_Score__c": 80}


def test_a_handled_command_id_is_a_repeat_even_within_one_batch() -> None:
    once = command("00Q000000000001AAA", {"AI_Enhanced_Score__c": 1})
    result = plan([once, once], {}, {})
    assert result.repeats == (once,)
    assert plan([once], {once.id: None}, {}).repeats == (once,)


def test_protected_fields_reject_the_whole_command() -> None:
    touching = command("00Q000000000001AAA", {"Email": "a@b.c", "AI_Enhanced_Score__c": 5})
    stage = command("006000000000001AAA", {"StageName": "Closed Won"}, "Opportunity")
    result = plan([touching, stage], {}, {})
    assert not result.groups
    assert [r.error.status_code for r in result.rejected] == [PROTECTED_FIELD] * 2
    assert result.rejected[0].error.fields == ("Email",)
    assert protected_fields("Contact", ["Description"]) == ("Description",)
    assert protected_fields("Lead", ["Name.LastName"]) == ("Name.LastName",)


def test_creates_are_one_record_per_command() -> None:
    fields: dict[str, FieldValue] = {"Subject": "Call", "WhoId": "00Q000000000001AAA"}
    tasks = [command(None, fields, "Task", SalesforceOperation.CREATE) for _ in range(2)]
    (group,) = plan(tasks, {}, {}).groups
    assert group.operation is SalesforceOperation.CREATE
    assert [r.commands for r in group.records] == [(tasks[0],), (tasks[1],)]


@given(
    st.lists(
        st.tuples(
            st.integers(0, 5),
            st.sampled_from(["AI_Enhanced_Score__c", "AI_Reasoning__c", "Email"]),
            st.integers(0, 3),
        ),
        max_size=40,
    )
)
def test_every_command_has_exactly_one_fate_and_records_appear_once(
    steps: list[tuple[int, str, int]],
) -> None:
    commands = [command(f"00Q{r:015d}", {name: value}) for r, name, value in steps]
    result = plan(commands, {}, {})
    pending = [c.id for g in result.groups for r in g.records for c in r.commands]
    fates = [c.id for c in result.current] + [r.command.id for r in result.rejected] + pending
    assert sorted(fates) == sorted(c.id for c in commands)
    keys = [(g.sobject, r.record_id) for g in result.groups for r in g.records]
    assert len(keys) == len(set(keys))
    assert "Email" in PROTECTED_FIELDS["*"]
