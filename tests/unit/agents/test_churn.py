"""Churn prevention decisions (SPEC Flow 4), without Kafka or models."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from agents import churn
from agents.base import run_id
from agents.scoring import Score
from ml import interventions
from ml.features.definitions import CHURN
from schema_registry.events import (
    ChurnRiskAssessed,
    Factor,
    ModelRef,
    NotificationChannel,
    NotificationRequested,
    PredictionMade,
    SalesforceOperation,
    SalesforceWriteRequested,
    WorkflowAdvanced,
)
from schema_registry.ids import derived_event_id

ACCOUNT = "001000000000001AAA"
OTHER = "001000000000002AAA"
OWNER = "005000000000001AAA"
AS_OF = date(2026, 1, 3)
MODEL = ModelRef(name="churn", version="3")
FIELDS: dict[str, Any] = {"Name": "Acme", "OwnerId": OWNER}

TREND = "usage_trend_30d = -0.4 (typical 0.01) increases it by 0.120"
LATE = "late_payments_90d = 2 (typical 0) increases it by 0.050"
NPS = "nps_score = 10 (typical 20) decreases it by 0.020"


def score(probability: float = 0.85, acv: float | None = 120000.0) -> Score:
    return Score(
        model=MODEL,
        probability=probability,
        features={
            "usage_trend_30d": -0.4,
            "late_payments_90d": 2.0,
            "annual_contract_value": acv,
            "plan_tier": "Starter",
            "nps_score": 10.0,
        },
        factors=(
            Factor(name="usage_trend_30d", contribution=0.12),
            Factor(name="late_payments_90d", contribution=0.05),
            Factor(name="nps_score", contribution=-0.02),
        ),
        descriptions=(TREND, LATE, NPS),
        reasoning="churn v3: probability 85.0%",
    )


HIGH_REASON = "churn probability 85% exceeds 70%"
PLAN_LINES = [
    f"[immediate] Alert Customer Success Manager - {HIGH_REASON}",
    f"[immediate] Create high-priority case in Salesforce - {HIGH_REASON}",
    f"[immediate] Deploy dedicated success manager - {HIGH_REASON}",
    "[immediate] Generate retention offer (AI-calculated discount): 15% off the annual "
    f"contract - {LATE}",
    f"[immediate] Trigger executive outreach workflow - {HIGH_REASON}",
    f"[immediate] Schedule emergency QBR - {HIGH_REASON}",
    f"[medium-term] Increase product usage monitoring - {TREND}",
]
PLAN_TEXT = "\n".join(PLAN_LINES)
SUMMARY = (
    "Churn probability 85% as of 2026-01-03 (churn v3).\n\n"
    f"Risk factors:\n{TREND}\n{LATE}\n\nIntervention plan:\n{PLAN_TEXT}"
)


def test_batch_cause_depends_on_the_date_only() -> None:
    cause = churn.batch_cause(AS_OF)
    assert cause == churn.batch_cause(date(2026, 1, 3))
    assert cause.id == derived_event_id("churn-batch:2026-01-03", churn.AGENT, "batch")
    assert cause.subject == run_id(churn.AGENT, "churn-batch:2026-01-03")
    assert cause.subject == churn.batch_run_id(AS_OF)
    assert cause.time == datetime(2026, 1, 3, tzinfo=UTC)
    assert cause.workflow == "churn_prevention_batch"
    assert (cause.from_state, cause.to_state) == (None, "STARTED")
    assert cause.source == churn.AGENT
    assert churn.batch_cause(date(2026, 1, 4)).id != cause.id
    started = churn.batch_started(AS_OF)
    assert (started.topic, started.key, started.event) == ("workflow.events", cause.subject, cause)


def test_batch_finished_completes_the_batch_run() -> None:
    cause = churn.batch_cause(AS_OF)
    finished = churn.batch_finished(cause, 120, 7)
    event = finished.event
    assert isinstance(event, WorkflowAdvanced)
    assert (finished.topic, finished.key) == ("workflow.events", cause.subject)
    assert event.subject == cause.subject
    assert event.id == derived_event_id(cause.id, churn.AGENT, "batch-finished")
    assert (event.from_state, event.to_state) == ("STARTED", "COMPLETED")
    assert event.time == cause.time
    assert event.attributes == {
        "as_of": "2026-01-03",
        "steps_completed": "120",
        "total_steps": "120",
        "high_risk": "7",
    }
    assert churn.batch_finished(churn.batch_cause(AS_OF), 120, 7) == finished


def test_high_risk_emits_the_immediate_actions_in_order() -> None:
    cause = churn.batch_cause(AS_OF)
    decision = churn.decide(cause, ACCOUNT, FIELDS, score(), AS_OF, churn.ChurnConfig())
    assert decision.outcome == "high_risk"
    shape = [(e.topic, e.key, type(e.event).__name__) for e in decision.emissions]
    retention = churn.retention_run_id(ACCOUNT, AS_OF)
    assert shape == [
        ("decisions.churn", ACCOUNT, "ChurnRiskAssessed"),
        ("predictions", ACCOUNT, "PredictionMade"),
        ("commands.salesforce", ACCOUNT, "SalesforceWriteRequested"),
        ("commands.salesforce", ACCOUNT, "SalesforceWriteRequested"),
        ("commands.notifications", ACCOUNT, "NotificationRequested"),
        ("commands.notifications", ACCOUNT, "NotificationRequested"),
        ("commands.salesforce", ACCOUNT, "SalesforceWriteRequested"),
        ("workflow.events", retention, "WorkflowAdvanced"),
    ]
    assessed, prediction, update, case, alert, outreach, task, run = (
        e.event for e in decision.emissions
    )

    assert isinstance(assessed, ChurnRiskAssessed)
    assert assessed.id == derived_event_id(cause.id, churn.AGENT, f"assess:{ACCOUNT}")
    assert (assessed.subject, assessed.time, assessed.source) == (ACCOUNT, cause.time, churn.AGENT)
    assert (assessed.causation_id, assessed.correlation_id) == (cause.id, cause.id)
    assert assessed.as_of == AS_OF
    assert assessed.churn_probability == 0.85
    assert assessed.high_risk is True
    assert assessed.risk_factors == (TREND, LATE)
    assert assessed.intervention_plan == (
        interventions.ALERT_CSM,
        interventions.HIGH_PRIORITY_CASE,
        interventions.DEDICATED_CSM,
        interventions.RETENTION_OFFER,
        interventions.EXECUTIVE_OUTREACH,
        interventions.EMERGENCY_QBR,
        interventions.USAGE_MONITORING,
    )
    assert assessed.model == MODEL
    assert assessed.features["usage_trend_30d"] == -0.4
    assert assessed.factors == score().factors

    for event in (prediction, update, case, alert, outreach, task, run):
        assert event.causation_id == assessed.id
        assert event.correlation_id == cause.id
        assert event.time == cause.time

    assert isinstance(prediction, PredictionMade)
    assert (prediction.purpose, prediction.entity, prediction.score) == ("churn", "Account", 0.85)
    assert prediction.model == MODEL

    assert isinstance(update, SalesforceWriteRequested)
    assert (update.operation, update.sobject, update.record_id) == (
        SalesforceOperation.UPDATE,
        "Account",
        ACCOUNT,
    )
    assert update.fields == {
        "Churn_Risk__c": 85.0,
        "Risk_Factors__c": f"{TREND}\n{LATE}",
        "Intervention_Plan__c": PLAN_TEXT,
    }

    assert isinstance(case, SalesforceWriteRequested)
    assert (case.operation, case.sobject, case.record_id, case.subject) == (
        SalesforceOperation.CREATE,
        "Case",
        None,
        ACCOUNT,
    )
    assert case.fields == {
        "Subject": "Churn risk 85%: retention",
        "Priority": "High",
        "Origin": "Web",
        "Type": "Problem",
        "Reason": "Other",
        "Status": "New",
        "Description": SUMMARY,
        "AccountId": ACCOUNT,
    }

    data = {
        "account_id": ACCOUNT,
        "account_name": "Acme",
        "churn_risk_percent": "85",
        "as_of": "2026-01-03",
    }
    assert isinstance(alert, NotificationRequested)
    assert (alert.channel, alert.recipient, alert.template) == (
        NotificationChannel.SLACK,
        "#customer-success",
        "churn_risk_alert",
    )
    assert alert.title == "Churn risk 85%: Acme"
    assert alert.data == data

    assert isinstance(outreach, NotificationRequested)
    assert (outreach.channel, outreach.recipient, outreach.template) == (
        NotificationChannel.EMAIL,
        OWNER,
        "churn_executive_outreach",
    )
    assert outreach.data == {
        **data,
        "retention_discount_percent": "15",
        "annual_contract_value": "120000",
        "retention_discount_value": "18000",
        "qbr_date": "2026-01-10",
    }
    assert "retention offer of 15% off the annual contract" in outreach.body

    assert isinstance(task, SalesforceWriteRequested)
    assert (task.operation, task.sobject) == (SalesforceOperation.CREATE, "Task")
    assert task.fields == {
        "Subject": "Emergency QBR: Acme (churn risk 85%)",
        "Description": SUMMARY,
        "Status": "Not Started",
        "Priority": "High",
        "ActivityDate": "2026-01-10",
        "WhatId": ACCOUNT,
        "OwnerId": OWNER,
    }

    assert isinstance(run, WorkflowAdvanced)
    assert run.subject == retention == run_id(churn.AGENT, f"churn-retention:{ACCOUNT}:2026-01-03")
    assert (run.workflow, run.from_state, run.to_state) == ("churn_prevention", None, "STARTED")
    assert run.attributes == {
        "record_id": ACCOUNT,
        "steps_completed": "5",
        "total_steps": "7",
        "as_of": "2026-01-03",
        "retention_discount_percent": "15",
    }
    assert run.detail == "churn risk 85%: 5 immediate actions issued, 2 to carry out"

    ids = [e.event.id for e in decision.emissions]
    assert len(set(ids)) == len(ids)


def test_low_risk_emits_decision_prediction_and_field_update_only() -> None:
    cause = churn.batch_cause(AS_OF)
    decision = churn.decide(cause, ACCOUNT, FIELDS, score(0.42), AS_OF)
    assert decision.outcome == "low_risk"
    assert [type(e.event).__name__ for e in decision.emissions] == [
        "ChurnRiskAssessed",
        "PredictionMade",
        "SalesforceWriteRequested",
    ]
    assessed, _, update = decision.events()
    assert isinstance(assessed, ChurnRiskAssessed)
    assert assessed.high_risk is False
    assert assessed.intervention_plan == (
        interventions.DEDICATED_CSM,
        interventions.RETENTION_OFFER,
        interventions.USAGE_MONITORING,
    )
    assert isinstance(update, SalesforceWriteRequested)
    assert update.fields == {
        "Churn_Risk__c": 42.0,
        "Risk_Factors__c": f"{TREND}\n{LATE}",
        "Intervention_Plan__c": (
            f"[immediate] Deploy dedicated success manager - {TREND}\n"
            f"[immediate] Generate retention offer (AI-calculated discount) - {LATE}\n"
            f"[medium-term] Increase product usage monitoring - {TREND}"
        ),
    }


def test_exactly_at_the_threshold_is_not_high_risk() -> None:
    decision = churn.decide(churn.batch_cause(AS_OF), ACCOUNT, FIELDS, score(0.70), AS_OF)
    assert decision.outcome == "low_risk"


def test_running_the_batch_twice_yields_identical_events() -> None:
    first = churn.decide(churn.batch_cause(AS_OF), ACCOUNT, FIELDS, score(), AS_OF)
    second = churn.decide(churn.batch_cause(date(2026, 1, 3)), ACCOUNT, FIELDS, score(), AS_OF)
    assert first == second
    assert [e.event.id for e in first.emissions] == [e.event.id for e in second.emissions]


def test_ids_differ_across_accounts_and_days() -> None:
    cause = churn.batch_cause(AS_OF)
    one = {e.event.id for e in churn.decide(cause, ACCOUNT, FIELDS, score(), AS_OF).emissions}
    two = {e.event.id for e in churn.decide(cause, OTHER, FIELDS, score(), AS_OF).emissions}
    next_day = date(2026, 1, 4)
    later = {
        e.event.id
        for e in churn.decide(
            churn.batch_cause(next_day), ACCOUNT, FIELDS, score(), next_day
        ).emissions
    }
    assert len(one) == len(two) == len(later) == 8
    assert not one & two
    assert not one & later


def test_without_an_owner_the_outreach_goes_to_the_account_owner_role() -> None:
    decision = churn.decide(churn.batch_cause(AS_OF), ACCOUNT, {}, score(acv=None), AS_OF)
    outreach = decision.events("commands.notifications")[1]
    assert isinstance(outreach, NotificationRequested)
    assert outreach.recipient == "account-owner"
    assert outreach.data["account_name"] == ACCOUNT
    assert outreach.data["retention_discount_percent"] == "7.5"
    assert outreach.data["retention_discount_value"] == ""
    task = decision.events("commands.salesforce")[-1]
    assert isinstance(task, SalesforceWriteRequested)
    assert "OwnerId" not in task.fields


@pytest.mark.parametrize(
    ("probability", "acv", "expected"),
    [
        (0.70, 500_000.0, 0.0),
        (0.85, 120_000.0, 15.0),
        (1.00, 120_000.0, 20.0),
        (0.85, 50_000.0, 11.0),
        (0.85, 5_000.0, 7.5),
        (0.85, None, 7.5),
        (0.76, 1_000_000.0, 12.0),
    ],
)
def test_retention_discount(probability: float, acv: float | None, expected: float) -> None:
    assert churn.retention_discount(probability, acv, churn.ChurnConfig()) == expected


def test_retention_discount_never_exceeds_the_configured_cap() -> None:
    config = churn.ChurnConfig(retention_discount_max_percent=10.0)
    assert churn.retention_discount(0.99, 10_000_000.0, config) == 10.0


def test_long_texts_are_cut_to_the_field_lengths() -> None:
    long = Score(
        model=MODEL,
        probability=0.9,
        features={},
        factors=tuple(Factor(name=f"f{i}", contribution=0.01) for i in range(2000)),
        descriptions=tuple("x" * 40 for _ in range(2000)),
        reasoning="",
    )
    decision = churn.decide(churn.batch_cause(AS_OF), ACCOUNT, FIELDS, long, AS_OF)
    update = decision.events("commands.salesforce")[0]
    case = decision.events("commands.salesforce")[1]
    assert isinstance(update, SalesforceWriteRequested)
    assert isinstance(case, SalesforceWriteRequested)
    risk = update.fields["Risk_Factors__c"]
    assert isinstance(risk, str) and len(risk) == 32768 and risk.endswith("...")
    description = case.fields["Description"]
    assert isinstance(description, str) and len(description) <= 32000


def test_outcome_record_is_a_training_row() -> None:
    decision = churn.decide(churn.batch_cause(AS_OF), ACCOUNT, FIELDS, score(), AS_OF)
    assessed = decision.events("decisions.churn")[0]
    assert isinstance(assessed, ChurnRiskAssessed)
    row = churn.outcome_record(assessed, True, date(2026, 4, 3))
    assert row == {
        "usage_trend_30d": -0.4,
        "late_payments_90d": 2.0,
        "annual_contract_value": 120000.0,
        "plan_tier": "Starter",
        "nps_score": 10.0,
        "Id": ACCOUNT,
        "As_Of": "2026-01-03",
        "Observed_At": "2026-04-03",
        "Days_Observed": 90,
        "Churn_Probability": 0.85,
        "Intervened": True,
        "Interventions": "\n".join(assessed.intervention_plan),
        "Model": "churn",
        "Model_Version": "3",
        "Assessment_Id": assessed.id,
        "Churned": True,
    }
    frame = CHURN.frame([row], AS_OF)
    assert float(frame["late_payments_90d"].iloc[0]) == 2.0
    assert frame["plan_tier"].iloc[0] == "Starter"
    with pytest.raises(ValueError, match="before the assessment"):
        churn.outcome_record(assessed, False, date(2026, 1, 2))
