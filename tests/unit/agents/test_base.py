"""Derivation: deterministic ids, envelopes and the event builders every agent uses."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agents.base import (
    IGNORED,
    NOTIFICATIONS,
    PREDICTIONS,
    SALESFORCE_COMMANDS,
    WORKFLOW_EVENTS,
    Decision,
    Derivation,
    Emission,
    run_id,
)
from schema_registry.events import (
    Factor,
    FieldValue,
    ModelRef,
    NotificationChannel,
    NotificationRequested,
    PlatformEventPublished,
    PredictionMade,
    SalesforceOperation,
    SalesforceWriteRequested,
    WorkflowAdvanced,
)
from schema_registry.ids import derived_event_id

WHEN = datetime(2026, 2, 1, 8, 15, 30, tzinfo=UTC)
AGENT = "agents.test"
LEAD = "00Q000000000001AAA"


def cause(event_id: str = "cause-1", correlation_id: str | None = None) -> PlatformEventPublished:
    return PlatformEventPublished(
        id=event_id,
        source="salesforce.platform_event",
        subject=LEAD,
        time=WHEN,
        correlation_id=correlation_id,
        event_name="New_Lead__e",
        replay_id="1",
        event_uuid="uuid-1",
        created_date=WHEN,
        created_by_id="005USER",
        fields={"Lead_Id__c": LEAD},
    )


# --- ids -----------------------------------------------------------------------------------


def test_ids_are_uuid5_of_cause_agent_and_purpose() -> None:
    assert Derivation(AGENT, cause()).id("score") == derived_event_id("cause-1", AGENT, "score")


def test_ids_are_deterministic_across_derivations() -> None:
    assert Derivation(AGENT, cause()).id("score") == Derivation(AGENT, cause()).id("score")


def test_ids_differ_per_purpose_agent_and_cause() -> None:
    derive = Derivation(AGENT, cause())
    ids = {
        derive.id("score"),
        derive.id("write_back"),
        Derivation("agents.other", cause()).id("score"),
        Derivation(AGENT, cause("cause-2")).id("score"),
    }
    assert len(ids) == 4


def test_a_purpose_may_be_used_once() -> None:
    derive = Derivation(AGENT, cause())
    derive.id("score")
    with pytest.raises(ValueError, match="'score'"):
        derive.id("score")
    # Another derivation of the same cause starts afresh.
    assert Derivation(AGENT, cause()).id("score") == derived_event_id("cause-1", AGENT, "score")


def test_builders_also_refuse_a_reused_purpose() -> None:
    derive = Derivation(AGENT, cause())
    derive.update("write", "Lead", LEAD, {"Status": "x"})
    with pytest.raises(ValueError):
        derive.create("write", "Task", LEAD, {"Subject": "y"})


def test_identity_overrides_the_cause_id() -> None:
    first = Derivation(AGENT, cause("cdc-1"), identity=f"lead:{LEAD}")
    second = Derivation(AGENT, cause("pe-1"), identity=f"lead:{LEAD}")
    expected = derived_event_id(f"lead:{LEAD}", AGENT, "decision")
    assert first.id("decision") == second.id("decision") == expected
    assert expected != Derivation(AGENT, cause("cdc-1")).id("decision")


def test_identity_does_not_change_causation() -> None:
    envelope = Derivation(AGENT, cause("cdc-1"), identity="lead:x").envelope("decision", LEAD)
    assert envelope["causation_id"] == "cdc-1"
    assert envelope["correlation_id"] == "cdc-1"


# --- envelope -----------------------------------------------------------------------------


def test_envelope_fields() -> None:
    assert Derivation(AGENT, cause()).envelope("score", LEAD) == {
        "id": derived_event_id("cause-1", AGENT, "score"),
        "source": AGENT,
        "subject": LEAD,
        "time": WHEN,
        "causation_id": "cause-1",
        "correlation_id": "cause-1",
    }


def test_time_is_the_causes() -> None:
    assert Derivation(AGENT, cause()).time == WHEN


def test_correlation_id_falls_back_from_explicit_to_cause_correlation_to_cause_id() -> None:
    explicit = Derivation(AGENT, cause(correlation_id="flow-0"), correlation_id="flow-x")
    assert explicit.envelope("a", LEAD)["correlation_id"] == "flow-x"
    inherited = Derivation(AGENT, cause(correlation_id="flow-0"))
    assert inherited.envelope("a", LEAD)["correlation_id"] == "flow-0"
    first = Derivation(AGENT, cause())
    assert first.envelope("a", LEAD)["correlation_id"] == "cause-1"


# --- builders -----------------------------------------------------------------------------


def test_update() -> None:
    fields: dict[str, FieldValue] = {"AI_Enhanced_Score__c": 91.5, "AI_Reasoning__c": "why"}
    emission = Derivation(AGENT, cause()).update("write_back", "Lead", LEAD, fields)
    fields["AI_Reasoning__c"] = "changed afterwards"
    assert emission == Emission(
        SALESFORCE_COMMANDS,
        LEAD,
        SalesforceWriteRequested(
            id=derived_event_id("cause-1", AGENT, "write_back"),
            source=AGENT,
            subject=LEAD,
            time=WHEN,
            causation_id="cause-1",
            correlation_id="cause-1",
            operation=SalesforceOperation.UPDATE,
            sobject="Lead",
            record_id=LEAD,
            fields={"AI_Enhanced_Score__c": 91.5, "AI_Reasoning__c": "why"},
        ),
    )


def test_create() -> None:
    emission = Derivation(AGENT, cause()).create("task", "Task", LEAD, {"Subject": "Call"})
    assert emission.topic == SALESFORCE_COMMANDS
    assert emission.key == LEAD
    event = emission.event
    assert isinstance(event, SalesforceWriteRequested)
    assert event.id == derived_event_id("cause-1", AGENT, "task")
    assert event.operation is SalesforceOperation.CREATE
    assert event.sobject == "Task"
    assert event.record_id is None
    assert event.subject == LEAD
    assert dict(event.fields) == {"Subject": "Call"}


def test_notify() -> None:
    emission = Derivation(AGENT, cause()).notify(
        "slack", LEAD, NotificationChannel.SLACK, "#leads", "tpl", "Title", "Body", {"a": "1"}
    )
    assert emission.topic == NOTIFICATIONS
    assert emission.key == LEAD
    assert emission.event == NotificationRequested(
        id=derived_event_id("cause-1", AGENT, "slack"),
        source=AGENT,
        subject=LEAD,
        time=WHEN,
        causation_id="cause-1",
        correlation_id="cause-1",
        channel=NotificationChannel.SLACK,
        recipient="#leads",
        template="tpl",
        title="Title",
        body="Body",
        data={"a": "1"},
    )


def test_notify_without_data() -> None:
    emission = Derivation(AGENT, cause()).notify(
        "mail", LEAD, NotificationChannel.EMAIL, "a@b.example", "tpl", "T", "B"
    )
    event = emission.event
    assert isinstance(event, NotificationRequested)
    assert dict(event.data) == {}


def test_prediction() -> None:
    model = ModelRef(name="lead", version="1")
    factors = [Factor(name="x", contribution=0.2)]
    emission = Derivation(AGENT, cause()).prediction(
        "lead_score", "Lead", LEAD, model, 0.83, {"x": 1.0}, factors
    )
    assert emission.topic == PREDICTIONS
    assert emission.key == LEAD
    assert emission.event == PredictionMade(
        id=derived_event_id("cause-1", AGENT, "prediction:lead_score"),
        source=AGENT,
        subject=LEAD,
        time=WHEN,
        causation_id="cause-1",
        correlation_id="cause-1",
        purpose="lead_score",
        entity="Lead",
        model=model,
        score=0.83,
        features={"x": 1.0},
        factors=(Factor(name="x", contribution=0.2),),
    )


def test_prediction_purpose_is_namespaced() -> None:
    derive = Derivation(AGENT, cause())
    derive.id("lead_score")  # a plain purpose does not clash with the prediction's
    derive.prediction("lead_score", "Lead", LEAD, ModelRef(name="m", version="1"), 0.5, {}, [])
    with pytest.raises(ValueError):
        derive.id("prediction:lead_score")


def test_workflow() -> None:
    run = run_id(AGENT, "cause-1")
    emission = Derivation(AGENT, cause()).workflow(
        "started", "lead_qualification", run, None, "STARTED", "begun", LEAD, 0, 4, route="MQL"
    )
    assert emission.topic == WORKFLOW_EVENTS
    assert emission.key == run
    assert emission.event == WorkflowAdvanced(
        id=derived_event_id("cause-1", AGENT, "started"),
        source=AGENT,
        subject=run,
        time=WHEN,
        causation_id="cause-1",
        correlation_id="cause-1",
        workflow="lead_qualification",
        from_state=None,
        to_state="STARTED",
        detail="begun",
        attributes={"record_id": LEAD, "steps_completed": "0", "total_steps": "4", "route": "MQL"},
    )


def test_workflow_transition_between_states() -> None:
    emission = Derivation(AGENT, cause()).workflow(
        "done", "wf", "run-1", "STARTED", "COMPLETED", "ok", LEAD, 3, 3
    )
    event = emission.event
    assert isinstance(event, WorkflowAdvanced)
    assert (event.from_state, event.to_state) == ("STARTED", "COMPLETED")
    assert dict(event.attributes) == {
        "record_id": LEAD,
        "steps_completed": "3",
        "total_steps": "3",
    }


# --- run ids and decisions ----------------------------------------------------------------


def test_run_id_is_deterministic() -> None:
    assert run_id(AGENT, "cause-1") == run_id(AGENT, "cause-1")
    assert run_id(AGENT, "cause-1") == derived_event_id("cause-1", AGENT, "run")
    assert run_id(AGENT, "cause-1") != run_id(AGENT, "cause-2")
    assert run_id(AGENT, "cause-1") != run_id("agents.other", "cause-1")


def test_decision_events_filter_by_topic() -> None:
    derive = Derivation(AGENT, cause())
    update = derive.update("w", "Lead", LEAD, {})
    note = derive.notify("n", LEAD, NotificationChannel.EMAIL, "a@b.example", "t", "T", "B")
    decision = Decision((update, note), outcome="done")
    assert decision.events() == [update.event, note.event]
    assert decision.events(NOTIFICATIONS) == [note.event]
    assert decision.events(PREDICTIONS) == []


def test_ignored_decision_emits_nothing() -> None:
    assert IGNORED.emissions == ()
    assert IGNORED.outcome == "ignored"
    assert IGNORED.events() == []
