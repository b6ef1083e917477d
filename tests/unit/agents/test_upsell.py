"""Upsell decisions, without Kafka or models."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from agents import churn, upsell
from agents.base import run_id
from agents.scoring import Score
from schema_registry.events import (
    ChangeEventHeader,
    ChangeType,
    Factor,
    FieldValue,
    ModelRef,
    PredictionMade,
    RecordChanged,
    SalesforceOperation,
    SalesforceWriteRequested,
    UpsellCandidateFlagged,
    WorkflowAdvanced,
)
from schema_registry.ids import derived_event_id

ACCOUNT = "001000000000001AAA"
OTHER = "001000000000002AAA"
OWNER = "005000000000001AAA"
MODEL = ModelRef(name="upsell", version="2")
FEATURES: dict[str, FieldValue] = {
    "seat_utilization": 0.95,
    "storage_utilization": 0.5,
    "api_calls_30d": 20_000.0,
    "plan_tier": "Growth",
    "products_owned": 4.0,
    "nps_score": 10.0,
    "employee_growth_12m": 0.05,
    "feature_adoption_rate": 60.0,
}
WHEN = datetime(2026, 1, 3, 22, 15, tzinfo=UTC)


def score(probability: float = 0.72) -> Score:
    return Score(
        model=MODEL,
        probability=probability,
        features=FEATURES,
        factors=(Factor(name="seat_utilization", contribution=0.2),),
        descriptions=("seat_utilization = 0.95 (typical 0.8) increases it by 0.200",),
        reasoning="upsell v2: probability 72.0%",
    )


def account_change(echo: bool = False) -> RecordChanged:
    return RecordChanged(
        id="cause-account-change",
        source="salesforce.cdc",
        subject=ACCOUNT,
        time=WHEN,
        header=ChangeEventHeader(
            entity_name="Account",
            record_ids=(ACCOUNT,),
            change_type=ChangeType.UPDATE,
            change_origin="com/salesforce/api/rest/60.0",
            transaction_key="tx-1",
            sequence_number=1,
            commit_timestamp=WHEN,
            commit_number=42,
            commit_user=OWNER,
            changed_fields=("Monthly_Active_Users__c",),
        ),
        replay_id="7",
        event_uuid="uuid-1",
        fields={"Monthly_Active_Users__c": 95.0},
        is_echo=echo,
    )


FIELDS: dict[str, Any] = {"Name": "Acme", "OwnerId": OWNER}


def test_candidate_gets_flag_task_and_completed_run() -> None:
    cause = account_change()
    decision = upsell.decide(cause, ACCOUNT, FIELDS, score(), upsell.UpsellConfig())
    assert decision.outcome == "candidate"
    prediction, flagged, task, run = decision.events()
    assert [(e.topic, e.key) for e in decision.emissions] == [
        ("predictions", ACCOUNT),
        ("decisions.upsell", ACCOUNT),
        ("commands.salesforce", ACCOUNT),
        ("workflow.events", run.subject),
    ]

    assert isinstance(prediction, PredictionMade)
    assert prediction.id == derived_event_id(cause.id, upsell.AGENT, f"prediction:upsell:{ACCOUNT}")
    assert (prediction.purpose, prediction.entity, prediction.score) == ("upsell", "Account", 0.72)
    assert prediction.features == FEATURES
    assert (prediction.causation_id, prediction.time) == (cause.id, WHEN)

    assert isinstance(flagged, UpsellCandidateFlagged)
    assert flagged.id == derived_event_id(cause.id, upsell.AGENT, f"flag:{ACCOUNT}")
    assert flagged.expansion_probability == 0.72
    assert flagged.products == ("Additional seats", "Enterprise plan upgrade")
    assert flagged.model == MODEL
    assert flagged.factors == score().factors

    assert isinstance(task, SalesforceWriteRequested)
    assert (task.operation, task.sobject, task.subject) == (
        SalesforceOperation.CREATE,
        "Task",
        ACCOUNT,
    )
    assert task.fields == {
        "Subject": "Expansion opportunity: Additional seats, Enterprise plan upgrade",
        "Description": (
            "Acme: expansion probability 72% (upsell v2).\n\nSuggested products:\n"
            "- Additional seats\n- Enterprise plan upgrade\n\nupsell v2: probability 72.0%"
        ),
        "Status": "Not Started",
        "Priority": "Normal",
        "ActivityDate": "2026-01-08",
        "WhatId": ACCOUNT,
        "OwnerId": OWNER,
    }
    assert task.causation_id == flagged.id

    assert isinstance(run, WorkflowAdvanced)
    assert run.subject == run_id(upsell.AGENT, flagged.id)
    assert (run.workflow, run.from_state, run.to_state) == ("upsell", None, "COMPLETED")
    assert run.attributes == {"record_id": ACCOUNT, "steps_completed": "2", "total_steps": "2"}
    for event in (flagged, task, run):
        assert event.correlation_id == cause.id
        assert event.time == WHEN


def test_not_a_candidate_gets_the_prediction_only() -> None:
    decision = upsell.decide(account_change(), ACCOUNT, FIELDS, score(0.49))
    assert decision.outcome == "not_candidate"
    assert [type(e) for e in decision.events()] == [PredictionMade]
    assert decision.emissions[0].topic == "predictions"


def test_exactly_at_the_threshold_is_a_candidate() -> None:
    assert upsell.decide(account_change(), ACCOUNT, FIELDS, score(0.5)).outcome == "candidate"


def test_echoes_of_our_own_writes_are_ignored() -> None:
    decision = upsell.decide(account_change(echo=True), ACCOUNT, FIELDS, score(0.9))
    assert decision.outcome == "echo"
    assert decision.emissions == ()


def test_batch_cause_gives_every_account_its_own_ids_and_repeats_exactly() -> None:
    as_of = date(2026, 1, 3)
    cause = churn.batch_cause(as_of)
    one = upsell.decide(cause, ACCOUNT, {}, score(0.85))
    two = upsell.decide(cause, OTHER, {}, score(0.85))
    again = upsell.decide(churn.batch_cause(as_of), ACCOUNT, {}, score(0.85))
    assert one == again
    ids_one = {e.event.id for e in one.emissions}
    ids_two = {e.event.id for e in two.emissions}
    assert len(ids_one) == len(ids_two) == 4
    assert not ids_one & ids_two
    task = one.events("commands.salesforce")[0]
    assert isinstance(task, SalesforceWriteRequested)
    assert task.fields["ActivityDate"] == "2026-01-08"
    assert task.fields["Priority"] == "High"
    assert "OwnerId" not in task.fields


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, ("Additional seats", "Enterprise plan upgrade")),
        ({"seat_utilization": 0.9}, ("Enterprise plan upgrade",)),
        (
            {"seat_utilization": 0.5, "employee_growth_12m": 0.3},
            ("Additional seats", "Enterprise plan upgrade"),
        ),
        (
            {"seat_utilization": None, "storage_utilization": 0.85},
            ("Storage expansion", "Enterprise plan upgrade"),
        ),
        (
            {"seat_utilization": 0.2, "api_calls_30d": 1_000_000.0},
            ("API add-on", "Enterprise plan upgrade"),
        ),
        ({"seat_utilization": 0.2, "plan_tier": "Starter"}, ("Growth plan upgrade",)),
        ({"seat_utilization": 0.2, "plan_tier": "Enterprise"}, ("Account expansion review",)),
        ({"seat_utilization": 0.2, "plan_tier": "__missing__"}, ("Account expansion review",)),
        (
            {"seat_utilization": 0.2, "plan_tier": "Enterprise", "feature_adoption_rate": 85.0},
            ("Premium features",),
        ),
        (
            {
                "seat_utilization": 0.2,
                "plan_tier": "Enterprise",
                "products_owned": 2.0,
                "nps_score": 30.0,
            },
            ("Complementary product",),
        ),
        (
            {
                "seat_utilization": 1.2,
                "storage_utilization": 0.95,
                "api_calls_30d": 5e6,
                "plan_tier": "Starter",
            },
            ("Additional seats", "Storage expansion", "API add-on", "Growth plan upgrade"),
        ),
    ],
)
def test_product_suggestion_table(
    changes: dict[str, FieldValue], expected: tuple[str, ...]
) -> None:
    assert upsell.suggest_products({**FEATURES, **changes}) == expected
