"""Lead qualification decisions (SPEC Flow 1), without Kafka or models."""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from agents import lead_qualification as lq
from agents.base import COMPLETED, NOTIFICATIONS, PREDICTIONS, SALESFORCE_COMMANDS, Emission, run_id
from agents.base import WORKFLOW_EVENTS as WORKFLOWS
from agents.enrichment import LocalEnrichment
from agents.lead_qualification import LeadConfig, LeadFact
from agents.scoring import Score
from schema_registry.codec import Codec
from schema_registry.events import (
    ChangeEventHeader,
    ChangeType,
    Factor,
    LeadRoute,
    LeadScored,
    ModelRef,
    NotificationChannel,
    NotificationRequested,
    PlatformEventPublished,
    PredictionMade,
    RecordChanged,
    SalesforceOperation,
    SalesforceWriteRequested,
    WorkflowAdvanced,
)
from schema_registry.ids import derived_event_id
from simulator import ids as sf_ids
from simulator.schema import sobject
from simulator.values import missing_required, validate_input

# Late in the (UTC) day, so "due in 24 h" crosses into the next date.
WHEN = datetime(2026, 3, 14, 22, 30, tzinfo=UTC)
DUE = "2026-03-15"
LEAD = sf_ids.make_id("00Q", 1)
OTHER_LEAD = sf_ids.make_id("00Q", 2)
AES = tuple(sf_ids.make_id("005", n) for n in (1, 2, 3))
CONFIG = LeadConfig(senior_ae_queue=AES)
MODEL = ModelRef(name="lead", version="1")
MODEL_REASONING = "lead v1: probability 90.0%"
FACTORS = (
    Factor(name="annual_revenue", contribution=0.21),
    Factor(name="lead_source", contribution=0.08),
    Factor(name="industry", contribution=-0.03),
)
FEATURES: dict[str, Any] = {
    "annual_revenue": 10_000_000.0,
    "number_of_employees": 5000.0,
    "lead_source": "Web",
    "industry": "Technology",
}
FIELDS: dict[str, Any] = {
    "Company": "Acme Corp",
    "FirstName": "Ada",
    "LastName": "Lovelace",
    "Email": "ada@acme.example",
    "LeadSource": "Web",
    "Einstein_Lead_Score__c": 95.0,
}
ENRICHMENT = {
    "provider": "local",
    "company_intelligence": "Acme Corp: enterprise; 5,000 employees",
    "tech_stack": "AWS;Salesforce",
    "estimated_budget": "150000",
    "decision_makers": "CIO\nVP Procurement",
}
UPDATE_FROM_ENRICHMENT = {
    "Company_Intelligence__c": "Acme Corp: enterprise; 5,000 employees",
    "Tech_Stack__c": "AWS;Salesforce",
    "Estimated_Budget__c": 150000.0,
    "Decision_Makers__c": "CIO\nVP Procurement",
}


def score(probability: float = 0.9, reasoning: str = MODEL_REASONING) -> Score:
    return Score(
        model=MODEL,
        probability=probability,
        features=dict(FEATURES),
        factors=FACTORS,
        descriptions=(
            "annual_revenue = 1e+07 (typical 2e+06) increases it by 0.210",
            "lead_source = Web (typical Email) increases it by 0.080",
            "industry = Technology (typical Retail) decreases it by 0.030",
        ),
        reasoning=reasoning,
    )


def change(
    change_type: ChangeType = ChangeType.CREATE,
    fields: dict[str, Any] | None = None,
    *,
    entity: str = "Lead",
    snapshot: bool = False,
    echo: bool = False,
    record_id: str = LEAD,
    event_id: str = "cdc-create-1",
    correlation_id: str | None = None,
) -> RecordChanged:
    return RecordChanged(
        id=event_id,
        source="salesforce.cdc",
        subject=record_id,
        time=WHEN,
        correlation_id=correlation_id,
        header=ChangeEventHeader(
            entity_name=entity,
            record_ids=(record_id,),
            change_type=change_type,
            change_origin="",
            transaction_key="tx-1",
            sequence_number=1,
            commit_timestamp=WHEN,
            commit_number=10,
            commit_user="005USER",
        ),
        replay_id="42",
        event_uuid="uuid-1",
        fields=dict(FIELDS if fields is None else fields),
        is_snapshot=snapshot,
        is_echo=echo,
    )


def platform_event(
    fields: dict[str, Any] | None = None,
    name: str = "New_Lead__e",
    event_id: str = "pe-1",
    time: datetime = WHEN,
) -> PlatformEventPublished:
    return PlatformEventPublished(
        id=event_id,
        source="salesforce.platform_event",
        subject=LEAD,
        time=time,
        event_name=name,
        replay_id="7",
        event_uuid="pe-uuid",
        created_date=time,
        created_by_id="005USER",
        fields=dict(
            {
                "Lead_Id__c": LEAD,
                "Email__c": "ada@acme.example",
                "Company__c": "Acme Corp",
                "Source__c": "Web",
            }
            if fields is None
            else fields
        ),
    )


def fact(fields: dict[str, Any] | None = None, **kwargs: Any) -> LeadFact:
    result = lq.fact_from_change(change(fields=fields, **kwargs))
    assert result is not None
    return result


def kinds(decision: Any) -> list[tuple[str, str]]:
    return [(e.topic, e.event.type) for e in decision.emissions]


def lead_id_of(purpose: str, lead_id: str = LEAD) -> str:
    return derived_event_id(f"lead:{lead_id}", lq.AGENT, purpose)


# --- which facts qualify a lead -------------------------------------------------------


@pytest.mark.parametrize("change_type", [ChangeType.CREATE, ChangeType.GAP_CREATE])
def test_a_create_qualifies_the_lead(change_type: ChangeType) -> None:
    cause = change(change_type)
    result = lq.fact_from_change(cause)
    assert result == LeadFact(lead_id=LEAD, fields=FIELDS, cause=cause)
    assert result.from_platform_event is False


@pytest.mark.parametrize(
    "change_type",
    [
        ChangeType.UPDATE,
        ChangeType.DELETE,
        ChangeType.UNDELETE,
        ChangeType.GAP_UPDATE,
        ChangeType.GAP_DELETE,
        ChangeType.GAP_OVERFLOW,
    ],
)
def test_other_changes_start_nothing(change_type: ChangeType) -> None:
    assert lq.fact_from_change(change(change_type)) is None


def test_an_echo_of_our_own_write_starts_nothing() -> None:
    assert lq.fact_from_change(change(echo=True)) is None


def test_a_create_of_another_entity_starts_nothing() -> None:
    assert lq.fact_from_change(change(entity="Contact")) is None


def test_a_snapshot_of_an_unscored_lead_qualifies_it() -> None:
    cause = change(ChangeType.UPDATE, {**FIELDS, "AI_Enhanced_Score__c": None}, snapshot=True)
    result = lq.fact_from_change(cause)
    assert result is not None
    assert result.lead_id == LEAD
    assert result.cause is cause
    assert result.fields["Company"] == "Acme Corp"


def test_a_snapshot_of_a_scored_lead_starts_nothing() -> None:
    cause = change(ChangeType.UPDATE, {**FIELDS, "AI_Enhanced_Score__c": 77.0}, snapshot=True)
    assert lq.fact_from_change(cause) is None


def test_a_snapshot_of_a_deleted_lead_starts_nothing() -> None:
    assert lq.fact_from_change(change(ChangeType.DELETE, {}, snapshot=True)) is None
    assert lq.fact_from_change(change(ChangeType.DELETE, FIELDS, snapshot=True)) is None


def test_an_echoed_snapshot_starts_nothing() -> None:
    assert lq.fact_from_change(change(ChangeType.UPDATE, snapshot=True, echo=True)) is None


def test_new_lead_event_maps_its_fields_to_lead_fields() -> None:
    event = platform_event(
        {
            "Lead_Id__c": LEAD,
            "Email__c": "ada@acme.example",
            "Company__c": "Acme Corp",
            "Source__c": None,
            "CreatedById": "005USER",
        }
    )
    result = lq.fact_from_platform_event(event)
    assert result is not None
    assert result.lead_id == LEAD
    assert dict(result.fields) == {"Id": LEAD, "Email": "ada@acme.example", "Company": "Acme Corp"}
    assert result.cause is event
    assert result.from_platform_event is True


def test_new_lead_event_maps_the_lead_source() -> None:
    result = lq.fact_from_platform_event(platform_event())
    assert result is not None
    assert result.fields["LeadSource"] == "Web"


def test_other_platform_events_start_nothing() -> None:
    assert lq.fact_from_platform_event(platform_event(name="Order_Placed__e")) is None


@pytest.mark.parametrize("lead_id", [None, "", 42])
def test_new_lead_event_without_a_lead_id_starts_nothing(lead_id: Any) -> None:
    event = platform_event({"Lead_Id__c": lead_id, "Company__c": "Acme Corp"})
    assert lq.fact_from_platform_event(event) is None


# --- scoring input ---------------------------------------------------------------------


def test_scoring_record_fills_gaps_from_the_enrichment() -> None:
    lead = fact({"Company": "Acme Corp", "Tech_Stack__c": ""})
    record = lq.scoring_record(lead, ENRICHMENT)
    assert record == {
        "Company": "Acme Corp",
        "Tech_Stack__c": "AWS;Salesforce",
        "Decision_Makers__c": "CIO\nVP Procurement",
        "Estimated_Budget__c": 150000.0,
    }
    assert dict(lead.fields) == {"Company": "Acme Corp", "Tech_Stack__c": ""}


def test_scoring_record_keeps_the_leads_own_values() -> None:
    own = {
        "Tech_Stack__c": "Kafka",
        "Decision_Makers__c": "CTO",
        "Estimated_Budget__c": 99000.0,
    }
    record = lq.scoring_record(fact(own), ENRICHMENT)
    assert record == own


def test_scoring_record_ignores_an_unreadable_budget() -> None:
    record = lq.scoring_record(fact({}), {"estimated_budget": "a lot"})
    assert record == {}


# --- the score -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (72.5, 72.5),
        (0, 0.0),
        ("64", 64.0),
        (150.0, 100.0),
        (-5.0, 0.0),
        (None, None),
        (True, None),
        ("n/a", None),
    ],
)
def test_einstein_score_is_bounded_to_0_100(raw: Any, expected: float | None) -> None:
    assert lq.einstein_score({"Einstein_Lead_Score__c": raw}) == expected


def test_einstein_score_of_a_lead_without_one_is_none() -> None:
    assert lq.einstein_score({"Company": "Acme"}) is None


@pytest.mark.parametrize(
    ("einstein", "model", "weight", "expected"),
    [
        (90.0, 70.0, 0.4, 78.0),  # 0.4 x 90 + 0.6 x 70
        (95.0, 90.0, 0.4, 92.0),
        (10.0, 20.0, 0.4, 16.0),
        (100.0, 0.0, 0.4, 40.0),
        (33.333, 12.345, 0.4, 20.74),  # 13.3332 + 7.407, two decimals
        (90.0, 70.0, 0.0, 70.0),
        (90.0, 70.0, 1.0, 90.0),
        (None, 73.45, 0.4, 73.45),  # fallback: the model alone, not 0.6 x model
        (None, 0.0, 0.4, 0.0),
    ],
)
def test_enhanced_score(
    einstein: float | None, model: float, weight: float, expected: float
) -> None:
    assert lq.enhanced_score(einstein, model, weight) == pytest.approx(expected, abs=1e-9)


def test_enhanced_score_bounds_an_out_of_range_einstein_score() -> None:
    too_high = lq.einstein_score({"Einstein_Lead_Score__c": 250.0})
    assert lq.enhanced_score(too_high, 50.0, 0.4) == pytest.approx(70.0)
    too_low = lq.einstein_score({"Einstein_Lead_Score__c": -40.0})
    assert lq.enhanced_score(too_low, 50.0, 0.4) == pytest.approx(30.0)


@pytest.mark.parametrize(
    ("enhanced", "route"),
    [
        (100.0, LeadRoute.SENIOR_AE),
        (80.01, LeadRoute.SENIOR_AE),
        (80.0, LeadRoute.NURTURE),
        (50.01, LeadRoute.NURTURE),
        (50.0, LeadRoute.MQL),
        (0.0, LeadRoute.MQL),
    ],
)
def test_route_thresholds_are_strict(enhanced: float, route: LeadRoute) -> None:
    assert lq.route_of(enhanced, LeadConfig()) is route


def test_route_thresholds_are_configurable() -> None:
    config = LeadConfig(senior_ae_above=90.0, nurture_above=20.0)
    assert lq.route_of(85.0, config) is LeadRoute.NURTURE
    assert lq.route_of(90.5, config) is LeadRoute.SENIOR_AE
    assert lq.route_of(20.0, config) is LeadRoute.MQL


def test_lead_config_defaults() -> None:
    config = LeadConfig()
    assert config.einstein_weight == 0.4
    assert (config.senior_ae_above, config.nurture_above) == (80.0, 50.0)
    assert config.senior_ae_queue == ()
    assert config.slack_channel == "#high-value-leads"
    assert config.follow_up_hours == 24


@pytest.mark.parametrize("weight", [-0.01, 1.01])
def test_lead_config_refuses_a_weight_outside_0_1(weight: float) -> None:
    with pytest.raises(ValueError, match="einstein_weight"):
        LeadConfig(einstein_weight=weight)


def test_lead_config_refuses_nurture_above_senior_threshold() -> None:
    with pytest.raises(ValueError, match="nurture_above"):
        LeadConfig(senior_ae_above=60.0, nurture_above=70.0)


def test_lead_config_accepts_equal_thresholds_and_edge_weights() -> None:
    assert LeadConfig(senior_ae_above=60.0, nurture_above=60.0).nurture_above == 60.0
    assert LeadConfig(einstein_weight=0.0).einstein_weight == 0.0
    assert LeadConfig(einstein_weight=1.0).einstein_weight == 1.0


# --- senior AE assignment -------------------------------------------------------------


def test_senior_ae_without_a_queue_is_none() -> None:
    assert lq.senior_ae_for(LEAD, ()) is None


def test_senior_ae_is_stable_and_from_the_queue() -> None:
    first = lq.senior_ae_for(LEAD, AES)
    assert first in AES
    assert all(lq.senior_ae_for(LEAD, list(AES)) == first for _ in range(5))
    assert lq.senior_ae_for(LEAD, AES[:1]) == AES[0]


def test_senior_aes_share_the_leads_evenly() -> None:
    leads = [sf_ids.make_id("00Q", n) for n in range(1, 3001)]
    counts = Counter(lq.senior_ae_for(lead, AES) for lead in leads)
    assert set(counts) == set(AES)
    assert all(800 <= n <= 1200 for n in counts.values()), counts


# --- reasoning -------------------------------------------------------------------------


def test_reasoning_with_einstein_shows_the_formula() -> None:
    text = lq.reasoning(95.0, score(0.9), 92.0, LeadConfig())
    assert text == (
        f"Enhanced score 92.00 = 0.4 x Einstein 95.00 + 0.6 x model 90.00\n{MODEL_REASONING}"
    )


def test_reasoning_without_einstein_says_model_only() -> None:
    text = lq.reasoning(None, score(0.9), 90.0, LeadConfig())
    assert text == (
        f"Enhanced score 90.00: model only (no Einstein score), 90.00\n{MODEL_REASONING}"
    )


def test_reasoning_is_clipped_to_the_long_text_length() -> None:
    text = lq.reasoning(None, score(0.9, reasoning="r" * 40_000), 90.0, LeadConfig())
    assert len(text) == 32_768
    assert text.endswith("r…")


# --- decide: the senior AE route ------------------------------------------------------


def test_senior_ae_route_emits_in_order() -> None:
    decision = lq.decide(fact(), score(0.9), ENRICHMENT, CONFIG)
    assert decision.outcome == "SENIOR_AE"
    assert kinds(decision) == [
        (lq.DECISIONS, "LeadScored"),
        (PREDICTIONS, "PredictionMade"),
        (SALESFORCE_COMMANDS, "SalesforceWriteRequested"),
        (SALESFORCE_COMMANDS, "SalesforceWriteRequested"),
        (NOTIFICATIONS, "NotificationRequested"),
        (NOTIFICATIONS, "NotificationRequested"),
        (WORKFLOWS, "WorkflowAdvanced"),
    ]
    assert [e.key for e in decision.emissions[:-1]] == [LEAD] * 6
    assert decision.emissions[-1].key == run_id(lq.AGENT, f"lead:{LEAD}")


def test_senior_ae_route_records_the_decision() -> None:
    decision = lq.decide(fact(), score(0.9), ENRICHMENT, CONFIG)
    scored = decision.emissions[0].event
    assert isinstance(scored, LeadScored)
    why = f"Enhanced score 92.00 = 0.4 x Einstein 95.00 + 0.6 x model 90.00\n{MODEL_REASONING}"
    assert scored.id == lead_id_of("decision")
    assert scored.source == lq.AGENT
    assert scored.subject == LEAD
    assert scored.time == WHEN
    assert scored.causation_id == "cdc-create-1"
    assert scored.correlation_id == "cdc-create-1"
    assert scored.model == MODEL
    assert dict(scored.features) == FEATURES
    assert scored.factors == FACTORS
    assert dict(scored.enrichment) == ENRICHMENT
    assert scored.einstein_score == 95.0
    assert scored.model_score == 90.0
    assert scored.enhanced_score == pytest.approx(92.0)
    assert scored.route is LeadRoute.SENIOR_AE
    assert scored.reasoning == why


def test_decision_copies_the_enrichment_it_received() -> None:
    enrichment = dict(ENRICHMENT)
    decision = lq.decide(fact(), score(0.9), enrichment, CONFIG)
    enrichment["tech_stack"] = "changed later"
    scored = decision.emissions[0].event
    assert isinstance(scored, LeadScored)
    assert scored.enrichment["tech_stack"] == "AWS;Salesforce"


def test_senior_ae_route_records_the_prediction() -> None:
    decision = lq.decide(fact(), score(0.9), ENRICHMENT, CONFIG)
    prediction = decision.emissions[1].event
    assert isinstance(prediction, PredictionMade)
    assert prediction.id == lead_id_of("prediction:lead_score")
    assert prediction.purpose == "lead_score"
    assert prediction.entity == "Lead"
    assert prediction.subject == LEAD
    assert prediction.model == MODEL
    assert prediction.score == 0.9
    assert dict(prediction.features) == FEATURES
    assert prediction.factors == FACTORS


def test_senior_ae_route_writes_back_once_with_the_owner() -> None:
    decision = lq.decide(fact(), score(0.9), ENRICHMENT, CONFIG)
    owner = lq.senior_ae_for(LEAD, AES)
    assert owner in AES
    write = decision.emissions[2].event
    assert isinstance(write, SalesforceWriteRequested)
    assert write.id == lead_id_of("write_back")
    assert write.operation is SalesforceOperation.UPDATE
    assert (write.sobject, write.record_id, write.subject) == ("Lead", LEAD, LEAD)
    assert dict(write.fields) == {
        "AI_Enhanced_Score__c": pytest.approx(92.0),
        "AI_Reasoning__c": (
            f"Enhanced score 92.00 = 0.4 x Einstein 95.00 + 0.6 x model 90.00\n{MODEL_REASONING}"
        ),
        "AI_Lead_Route__c": "Senior AE",
        **UPDATE_FROM_ENRICHMENT,
        "OwnerId": owner,
    }
    lead_writes = [
        e
        for e in decision.events(SALESFORCE_COMMANDS)
        if isinstance(e, SalesforceWriteRequested) and e.sobject == "Lead"
    ]
    assert len(lead_writes) == 1


def test_senior_ae_route_creates_a_follow_up_task_due_in_24_hours() -> None:
    decision = lq.decide(fact(), score(0.9), ENRICHMENT, CONFIG)
    owner = lq.senior_ae_for(LEAD, AES)
    task = decision.emissions[3].event
    assert isinstance(task, SalesforceWriteRequested)
    assert task.id == lead_id_of("follow_up_task")
    assert task.operation is SalesforceOperation.CREATE
    assert (task.sobject, task.record_id, task.subject) == ("Task", None, LEAD)
    assert dict(task.fields) == {
        "Subject": "Follow up: Acme Corp (score 92)",
        "Description": (
            f"Enhanced score 92.00 = 0.4 x Einstein 95.00 + 0.6 x model 90.00\n{MODEL_REASONING}"
        ),
        "Priority": "High",
        "Status": "Not Started",
        "ActivityDate": DUE,
        "WhoId": LEAD,
        "OwnerId": owner,
    }


def test_follow_up_hours_are_configurable() -> None:
    config = LeadConfig(senior_ae_queue=AES, follow_up_hours=72)
    decision = lq.decide(fact(), score(0.9), ENRICHMENT, config)
    task = decision.emissions[3].event
    assert isinstance(task, SalesforceWriteRequested)
    assert task.fields["ActivityDate"] == "2026-03-17"


def test_senior_ae_route_sends_a_personal_email_and_a_slack_message() -> None:
    decision = lq.decide(fact(), score(0.9), ENRICHMENT, CONFIG)
    owner = lq.senior_ae_for(LEAD, AES)
    assert owner is not None
    why = f"Enhanced score 92.00 = 0.4 x Einstein 95.00 + 0.6 x model 90.00\n{MODEL_REASONING}"
    data = {"lead_id": LEAD, "score": "92.00", "route": "SENIOR_AE", "owner_id": owner}
    email, slack = decision.events(NOTIFICATIONS)
    assert isinstance(email, NotificationRequested)
    assert email.id == lead_id_of("personal_email")
    assert email.channel is NotificationChannel.EMAIL
    assert email.recipient == "ada@acme.example"
    assert email.template == "senior_ae_introduction"
    assert email.title == "Acme Corp: a conversation about your plans"
    assert email.body == (
        "Hello Ada Lovelace, thank you for your interest. "
        "Your account executive will contact you within one business day."
    )
    assert dict(email.data) == data
    assert isinstance(slack, NotificationRequested)
    assert slack.id == lead_id_of("slack")
    assert slack.channel is NotificationChannel.SLACK
    assert slack.recipient == "#high-value-leads"
    assert slack.template == "high_value_lead"
    assert slack.title == "High-value lead: Acme Corp (92)"
    assert slack.body == why
    assert dict(slack.data) == data


def test_senior_ae_route_completes_the_workflow_run() -> None:
    decision = lq.decide(fact(), score(0.9), ENRICHMENT, CONFIG)
    run = decision.emissions[-1].event
    assert isinstance(run, WorkflowAdvanced)
    assert run.id == lead_id_of("run")
    assert run.subject == run_id(lq.AGENT, f"lead:{LEAD}")
    assert run.workflow == "lead_qualification"
    assert run.from_state is None
    assert run.to_state == COMPLETED
    assert run.detail == "SENIOR_AE: score, write_back, follow_up_task, personal_email, slack"
    assert dict(run.attributes) == {
        "record_id": LEAD,
        "steps_completed": "5",
        "total_steps": "5",
        "route": "SENIOR_AE",
    }


def test_senior_ae_route_without_an_email_skips_the_personal_email() -> None:
    fields = {k: v for k, v in FIELDS.items() if k != "Email"}
    decision = lq.decide(fact(fields), score(0.9), ENRICHMENT, CONFIG)
    assert [e.event.type for e in decision.emissions] == [
        "LeadScored",
        "PredictionMade",
        "SalesforceWriteRequested",
        "SalesforceWriteRequested",
        "NotificationRequested",
        "WorkflowAdvanced",
    ]
    (slack,) = decision.events(NOTIFICATIONS)
    assert isinstance(slack, NotificationRequested)
    assert slack.channel is NotificationChannel.SLACK
    run = decision.emissions[-1].event
    assert isinstance(run, WorkflowAdvanced)
    assert run.detail == "SENIOR_AE: score, write_back, follow_up_task, slack"
    assert run.attributes["steps_completed"] == run.attributes["total_steps"] == "4"


def test_senior_ae_route_without_a_queue_leaves_the_owner() -> None:
    decision = lq.decide(fact(), score(0.9), ENRICHMENT, LeadConfig())
    write, task = decision.events(SALESFORCE_COMMANDS)
    assert isinstance(write, SalesforceWriteRequested)
    assert isinstance(task, SalesforceWriteRequested)
    assert "OwnerId" not in write.fields
    assert "OwnerId" not in task.fields
    for note in decision.events(NOTIFICATIONS):
        assert isinstance(note, NotificationRequested)
        assert note.data["owner_id"] == ""


def test_email_of_a_lead_without_a_name_greets_by_address() -> None:
    fields = {"Company": "Acme Corp", "Email": "ops@acme.example", "Einstein_Lead_Score__c": 95}
    decision = lq.decide(fact(fields), score(0.9), ENRICHMENT, CONFIG)
    email = decision.events(NOTIFICATIONS)[0]
    assert isinstance(email, NotificationRequested)
    assert email.body.startswith("Hello ops@acme.example, thank you")


# --- decide: nurture and MQL ----------------------------------------------------------


def nurture_fields(**extra: Any) -> dict[str, Any]:
    return {**FIELDS, "Einstein_Lead_Score__c": 60.0, **extra}


def test_nurture_route_emits_in_order() -> None:
    decision = lq.decide(fact(nurture_fields()), score(0.65), ENRICHMENT, CONFIG)  # 63.00
    assert decision.outcome == "NURTURE"
    assert kinds(decision) == [
        (lq.DECISIONS, "LeadScored"),
        (PREDICTIONS, "PredictionMade"),
        (SALESFORCE_COMMANDS, "SalesforceWriteRequested"),
        (NOTIFICATIONS, "NotificationRequested"),
        (WORKFLOWS, "WorkflowAdvanced"),
    ]
    write = decision.emissions[2].event
    assert isinstance(write, SalesforceWriteRequested)
    assert write.operation is SalesforceOperation.UPDATE
    assert dict(write.fields) == {
        "AI_Enhanced_Score__c": pytest.approx(63.0),
        "AI_Reasoning__c": (
            f"Enhanced score 63.00 = 0.4 x Einstein 60.00 + 0.6 x model 65.00\n{MODEL_REASONING}"
        ),
        "AI_Lead_Route__c": "Nurture",
        **UPDATE_FROM_ENRICHMENT,
    }
    note = decision.emissions[3].event
    assert isinstance(note, NotificationRequested)
    assert note.id == lead_id_of("nurture")
    assert note.channel is NotificationChannel.EMAIL
    assert note.recipient == "ada@acme.example"
    assert note.template == "nurture_content_series"
    assert note.title == "Enrol in Nurture - Educational Series"
    assert dict(note.data) == {
        "lead_id": LEAD,
        "score": "63.00",
        "route": "NURTURE",
        "campaign": "Nurture - Educational Series",
    }
    run = decision.emissions[-1].event
    assert isinstance(run, WorkflowAdvanced)
    assert run.to_state == COMPLETED
    assert run.detail == "NURTURE: score, write_back, nurture"
    assert dict(run.attributes) == {
        "record_id": LEAD,
        "steps_completed": "3",
        "total_steps": "3",
        "route": "NURTURE",
    }


def test_nurture_of_a_lead_without_email_goes_to_marketing_automation() -> None:
    fields = {k: v for k, v in nurture_fields().items() if k != "Email"}
    decision = lq.decide(fact(fields), score(0.65), ENRICHMENT, CONFIG)
    (note,) = decision.events(NOTIFICATIONS)
    assert isinstance(note, NotificationRequested)
    assert note.recipient == "marketing-automation"


def test_exactly_80_is_nurtured_not_sent_to_a_senior_ae() -> None:
    decision = lq.decide(fact(nurture_fields(Einstein_Lead_Score__c=None)), score(0.8), {}, CONFIG)
    assert decision.outcome == "NURTURE"
    scored = decision.emissions[0].event
    assert isinstance(scored, LeadScored)
    assert scored.enhanced_score == 80.0
    assert scored.einstein_score is None


def test_mql_route_emits_in_order() -> None:
    fields = {**FIELDS, "Einstein_Lead_Score__c": 20.0}
    decision = lq.decide(fact(fields), score(0.3), ENRICHMENT, CONFIG)  # 26.00
    assert decision.outcome == "MQL"
    assert kinds(decision) == [
        (lq.DECISIONS, "LeadScored"),
        (PREDICTIONS, "PredictionMade"),
        (SALESFORCE_COMMANDS, "SalesforceWriteRequested"),
        (NOTIFICATIONS, "NotificationRequested"),
        (WORKFLOWS, "WorkflowAdvanced"),
    ]
    write = decision.emissions[2].event
    assert isinstance(write, SalesforceWriteRequested)
    assert write.fields["AI_Lead_Route__c"] == "MQL"
    assert write.fields["AI_Enhanced_Score__c"] == pytest.approx(26.0)
    assert "OwnerId" not in write.fields
    note = decision.emissions[3].event
    assert isinstance(note, NotificationRequested)
    assert note.id == lead_id_of("mql_handoff")
    assert note.channel is NotificationChannel.EMAIL
    assert note.recipient == "marketing-automation"
    assert note.template == "mql_handoff"
    assert note.title == "MQL hand-off: Acme Corp"
    assert note.body == "Marketing Qualified Lead: route to marketing automation."
    assert dict(note.data) == {"lead_id": LEAD, "score": "26.00", "route": "MQL"}
    run = decision.emissions[-1].event
    assert isinstance(run, WorkflowAdvanced)
    assert run.detail == "MQL: score, write_back, mql_handoff"
    assert dict(run.attributes) == {
        "record_id": LEAD,
        "steps_completed": "3",
        "total_steps": "3",
        "route": "MQL",
    }


def test_exactly_50_is_an_mql() -> None:
    fields = {**FIELDS, "Einstein_Lead_Score__c": 50.0}
    decision = lq.decide(fact(fields), score(0.5), {}, CONFIG)
    assert decision.outcome == "MQL"


def test_titles_of_a_lead_without_company_name_the_lead() -> None:
    fields = {"Einstein_Lead_Score__c": 20.0}
    decision = lq.decide(fact(fields), score(0.3), {}, CONFIG)
    (note,) = decision.events(NOTIFICATIONS)
    assert isinstance(note, NotificationRequested)
    assert note.title == f"MQL hand-off: {LEAD}"
    senior = lq.decide(fact({"Einstein_Lead_Score__c": 95.0}), score(0.9), {}, CONFIG)
    task = senior.events(SALESFORCE_COMMANDS)[1]
    assert isinstance(task, SalesforceWriteRequested)
    assert task.fields["Subject"] == f"Follow up: {LEAD} (score 92)"


@pytest.mark.parametrize(
    ("einstein", "probability", "route"),
    [(95.0, 0.9, "SENIOR_AE"), (60.0, 0.65, "NURTURE"), (20.0, 0.3, "MQL")],
)
def test_every_route_completes_with_all_its_steps(
    einstein: float, probability: float, route: str
) -> None:
    decision = lq.decide(
        fact({**FIELDS, "Einstein_Lead_Score__c": einstein}), score(probability), ENRICHMENT, CONFIG
    )
    runs = decision.events(WORKFLOWS)
    assert len(runs) == 1
    run = runs[0]
    assert isinstance(run, WorkflowAdvanced)
    steps = run.detail.split(": ", 1)[1].split(", ")
    assert run.detail.startswith(f"{route}: score, write_back")
    assert run.attributes["steps_completed"] == run.attributes["total_steps"] == str(len(steps))
    # Every step after the score is one emission besides the decision and the prediction.
    assert len(decision.emissions) == 2 + (len(steps) - 1) + 1


# --- decide: write-back contents --------------------------------------------------------


def test_missing_enrichment_answers_are_not_written() -> None:
    decision = lq.decide(fact(), score(0.9), {"provider": "local"}, CONFIG)
    write = decision.emissions[2].event
    assert isinstance(write, SalesforceWriteRequested)
    assert set(write.fields) == {
        "AI_Enhanced_Score__c",
        "AI_Reasoning__c",
        "AI_Lead_Route__c",
        "OwnerId",
    }


def test_an_unreadable_budget_is_not_written() -> None:
    decision = lq.decide(fact(), score(0.9), {**ENRICHMENT, "estimated_budget": "n/a"}, CONFIG)
    write = decision.emissions[2].event
    assert isinstance(write, SalesforceWriteRequested)
    assert "Estimated_Budget__c" not in write.fields
    assert write.fields["Tech_Stack__c"] == "AWS;Salesforce"


def test_long_texts_are_truncated_to_their_field_lengths() -> None:
    enrichment = {
        **ENRICHMENT,
        "company_intelligence": "c" * 40_000,
        "decision_makers": "d" * 40_000,
    }
    fields = {**FIELDS, "Company": "X" * 300}
    decision = lq.decide(fact(fields), score(0.9, reasoning="r" * 40_000), enrichment, CONFIG)
    write, task = decision.events(SALESFORCE_COMMANDS)
    assert isinstance(write, SalesforceWriteRequested)
    assert isinstance(task, SalesforceWriteRequested)
    for name in ("Company_Intelligence__c", "Decision_Makers__c", "AI_Reasoning__c"):
        value = write.fields[name]
        assert isinstance(value, str)
        assert len(value) == 32_768, name
        assert value.endswith("…"), name
    assert write.fields["Company_Intelligence__c"] == "c" * 32_767 + "…"
    subject = task.fields["Subject"]
    description = task.fields["Description"]
    assert isinstance(subject, str)
    assert isinstance(description, str)
    assert len(subject) == 255
    assert subject == f"Follow up: {'X' * 243}…"
    assert len(description) == 32_000
    assert description.endswith("r…")
    email, slack = decision.events(NOTIFICATIONS)
    assert isinstance(email, NotificationRequested)
    assert isinstance(slack, NotificationRequested)
    assert len(email.title) == 255
    assert len(slack.title) == 255
    scored = decision.emissions[0].event
    assert isinstance(scored, LeadScored)
    assert scored.reasoning == write.fields["AI_Reasoning__c"]


def test_texts_at_the_limit_are_not_truncated() -> None:
    enrichment = {**ENRICHMENT, "company_intelligence": "c" * 32_768}
    decision = lq.decide(fact(), score(0.9), enrichment, CONFIG)
    write = decision.emissions[2].event
    assert isinstance(write, SalesforceWriteRequested)
    assert write.fields["Company_Intelligence__c"] == "c" * 32_768


def test_writes_are_accepted_by_the_salesforce_schema() -> None:
    lead_fields = {
        **FIELDS,
        "NumberOfEmployees": 5000,
        "AnnualRevenue": 10_000_000.0,
        "Title": "CTO",
        "Tech_Stack__c": "Salesforce;AWS",
    }
    lead = fact(lead_fields)
    enrichment = LocalEnrichment().answer(lead.fields)
    decision = lq.decide(lead, score(0.9), enrichment, CONFIG)
    write, task = decision.events(SALESFORCE_COMMANDS)
    assert isinstance(write, SalesforceWriteRequested)
    assert isinstance(task, SalesforceWriteRequested)
    lead_type, task_type = sobject("Lead"), sobject("Task")
    assert lead_type is not None
    assert task_type is not None
    stored = validate_input(lead_type, dict(write.fields), creating=False)
    assert stored["AI_Lead_Route__c"] == "Senior AE"
    assert stored["Estimated_Budget__c"] == 150000.0
    created = validate_input(task_type, dict(task.fields), creating=True)
    assert created["ActivityDate"] == DUE
    assert missing_required(task_type, created) is None


def test_unknown_technologies_from_enrichment_do_not_break_the_write_back() -> None:
    enrichment = {**ENRICHMENT, "provider": "http", "tech_stack": "AWS;Kubernetes"}
    decision = lq.decide(fact(), score(0.9), enrichment, CONFIG)
    write = decision.emissions[2].event
    assert isinstance(write, SalesforceWriteRequested)
    lead_type = sobject("Lead")
    assert lead_type is not None
    stored = validate_input(lead_type, dict(write.fields), creating=False)
    assert stored["AI_Enhanced_Score__c"] == pytest.approx(92.0)


@pytest.mark.parametrize("budget", ["NaN", "inf"])
def test_a_non_finite_budget_is_not_written(budget: str) -> None:
    decision = lq.decide(fact(), score(0.9), {**ENRICHMENT, "estimated_budget": budget}, CONFIG)
    write = decision.emissions[2].event
    assert isinstance(write, SalesforceWriteRequested)
    value = write.fields.get("Estimated_Budget__c")
    assert value is None or (isinstance(value, float) and math.isfinite(value))


# --- determinism and identity --------------------------------------------------------------


def test_deciding_twice_gives_equal_events() -> None:
    first = lq.decide(fact(), score(0.9), ENRICHMENT, CONFIG)
    second = lq.decide(fact(), score(0.9), ENRICHMENT, CONFIG)
    assert first == second
    assert first.emissions == second.emissions


def test_ids_are_distinct_within_a_decision() -> None:
    decision = lq.decide(fact(), score(0.9), ENRICHMENT, CONFIG)
    ids = [e.event.id for e in decision.emissions]
    assert len(set(ids)) == len(ids) == 7


def test_every_event_has_the_cause_envelope() -> None:
    cause = change(event_id="cdc-7", correlation_id="flow-1")
    lead = lq.fact_from_change(cause)
    assert lead is not None
    decision = lq.decide(lead, score(0.9), ENRICHMENT, CONFIG)
    for emission in decision.emissions:
        event = emission.event
        assert event.time == WHEN
        assert event.source == lq.AGENT
        assert event.causation_id == "cdc-7"
        assert event.correlation_id == "flow-1"


def test_a_cdc_create_and_a_new_lead_event_give_the_same_ids() -> None:
    from_cdc = lq.fact_from_change(change(event_id="cdc-create-1"))
    later = datetime(2026, 3, 14, 22, 30, 5, tzinfo=UTC)
    from_pe = lq.fact_from_platform_event(platform_event(event_id="pe-99", time=later))
    assert from_cdc is not None
    assert from_pe is not None
    # Same route either way, so the same purposes are derived.
    a = lq.decide(from_cdc, score(0.9), ENRICHMENT, CONFIG)
    b = lq.decide(from_pe, score(0.9), ENRICHMENT, CONFIG)
    assert a.outcome == b.outcome == "SENIOR_AE"
    assert [e.event.id for e in a.emissions] == [e.event.id for e in b.emissions]
    assert [(e.topic, e.key) for e in a.emissions] == [(e.topic, e.key) for e in b.emissions]
    assert a.emissions[0].event.causation_id == "cdc-create-1"
    assert b.emissions[0].event.causation_id == "pe-99"


def test_redelivered_facts_with_new_event_ids_give_the_same_ids() -> None:
    a = lq.decide(fact(event_id="cdc-1"), score(0.9), ENRICHMENT, CONFIG)
    snapshot = lq.fact_from_change(change(ChangeType.UPDATE, event_id="snap-1", snapshot=True))
    assert snapshot is not None
    b = lq.decide(snapshot, score(0.9), ENRICHMENT, CONFIG)
    assert [e.event.id for e in a.emissions] == [e.event.id for e in b.emissions]


def test_different_leads_get_different_ids() -> None:
    a = lq.decide(fact(), score(0.9), ENRICHMENT, CONFIG)
    b = lq.decide(fact(record_id=OTHER_LEAD), score(0.9), ENRICHMENT, CONFIG)
    assert not {e.event.id for e in a.emissions} & {e.event.id for e in b.emissions}
    assert b.emissions[0].key == OTHER_LEAD


def test_every_emitted_event_fits_its_topic_schema() -> None:
    codec = Codec()
    emitted: list[Emission] = []
    for einstein, probability in ((95.0, 0.9), (60.0, 0.65), (None, 0.3)):
        fields = {**FIELDS, "Einstein_Lead_Score__c": einstein}
        emitted.extend(lq.decide(fact(fields), score(probability), ENRICHMENT, CONFIG).emissions)
    assert {e.topic for e in emitted} == {
        lq.DECISIONS,
        PREDICTIONS,
        SALESFORCE_COMMANDS,
        NOTIFICATIONS,
        WORKFLOWS,
    }
    for emission in emitted:
        encoded = codec.encode(emission.topic, emission.event)
        decoded = codec.decode(emission.topic, encoded.value, list(encoded.headers))
        assert decoded == emission.event
