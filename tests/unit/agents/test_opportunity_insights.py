"""Opportunity insights decisions (SPEC Flow 2), without Kafka or models."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from agents import opportunity_insights as oi
from agents.base import run_id
from agents.scoring import Score
from agents.snapshots import evolve
from ml.features.signals import days_in_stage, stage_regressions
from schema_registry.events import (
    ChangeEventHeader,
    ChangeType,
    Factor,
    ModelRef,
    NotificationChannel,
    NotificationRequested,
    OpportunityInsightsComputed,
    PredictionMade,
    RecordChanged,
    SalesforceOperation,
    SalesforceWriteRequested,
    WorkflowAdvanced,
)

OPP = "006000000000001AAA"
OWNER = "005000000000001AAA"
ACCOUNT = "001000000000001AAA"
WHEN = datetime(2024, 5, 10, 15, 30, tzinfo=UTC)
CONFIG = oi.OpportunityConfig()

RECORD: dict[str, Any] = {
    "Name": "Acme expansion",
    "StageName": "Proposal/Price Quote",
    "Amount": 120000.0,
    "CloseDate": "2024-06-30",
    "OwnerId": OWNER,
    "AccountId": ACCOUNT,
    "Competitor_Count__c": 2,
    "Competitor__c": "Globex; Initech",
    "Close_Date_Pushes__c": 3,
}


def change(
    change_type: ChangeType = ChangeType.CREATE,
    fields: dict[str, Any] | None = None,
    changed: tuple[str, ...] = (),
    *,
    echo: bool = False,
    snapshot: bool = False,
    entity: str = "Opportunity",
    commit_number: int = 10,
) -> RecordChanged:
    return RecordChanged(
        id=f"cause-{change_type}-{commit_number}",
        source="salesforce.cdc",
        subject=OPP,
        time=WHEN,
        header=ChangeEventHeader(
            entity_name=entity,
            record_ids=(OPP,),
            change_type=change_type,
            change_origin="",
            transaction_key="tx",
            sequence_number=1,
            commit_timestamp=WHEN,
            commit_number=commit_number,
            commit_user="005USER",
            changed_fields=changed,
        ),
        replay_id="1",
        event_uuid="uuid",
        fields=dict(RECORD if fields is None else fields),
        is_snapshot=snapshot,
        is_echo=echo,
    )


def score(probability: float, *factors: tuple[str, float], **features: Any) -> Score:
    return Score(
        model=ModelRef(name="win", version="3"),
        probability=probability,
        features={"amount": 120000.0, "days_in_stage": 12.0, **features},
        factors=tuple(Factor(name=n, contribution=c) for n, c in factors),
        descriptions=tuple(f"{n} moves it by {c:+.3f}" for n, c in factors),
        reasoning="win v3",
    )


AT_RISK = score(
    0.22,
    ("competitor_count", -0.08),
    ("amount", 0.03),
    ("close_date_pushes", -0.12),
    ("stakeholders_engaged", -0.02),
)
ON_TRACK = score(0.71, ("stakeholders_engaged", 0.10), ("activities_30d", 0.05))


def created() -> tuple[RecordChanged, dict[str, Any]]:
    cause = change()
    return cause, evolve(None, cause)


# --- triggers ---------------------------------------------------------------


def test_create_triggers() -> None:
    cause, snap = created()
    assert oi.triggers(cause, snap)
    assert oi.skip_reason(cause, snap) is None


def test_snapshot_triggers() -> None:
    cause = change(ChangeType.UPDATE, snapshot=True)
    assert oi.triggers(cause, evolve(None, cause))


def test_stage_update_triggers_reading_the_stage_from_the_snapshot() -> None:
    _, snap = created()
    moved = change(ChangeType.UPDATE, {"StageName": "Negotiation/Review"}, ("StageName",))
    assert oi.triggers(moved, evolve(snap, moved))


def test_echo_is_ignored() -> None:
    cause = change(echo=True)
    assert not oi.triggers(cause, evolve(None, cause))
    assert oi.skip_reason(cause) == "echo"


def test_update_without_stage_change_is_ignored() -> None:
    _, snap = created()
    update = change(ChangeType.UPDATE, {"Amount": 5.0}, ("Amount",), commit_number=11)
    assert not oi.triggers(update, evolve(snap, update))
    assert oi.skip_reason(update) == "not_stage_change"


@pytest.mark.parametrize("stage", ["Closed Won", "Closed Lost"])
def test_closed_stages_are_ignored(stage: str) -> None:
    _, snap = created()
    closed = change(ChangeType.UPDATE, {"StageName": stage}, ("StageName",), commit_number=11)
    assert not oi.triggers(closed, evolve(snap, closed))
    assert oi.skip_reason(closed, evolve(snap, closed)) == "closed"


def test_closed_stage_found_only_in_the_snapshot_is_ignored() -> None:
    _, snap = created()
    snap = {**snap, "fields": {**snap["fields"], "StageName": "Closed Lost"}}
    cause = change(ChangeType.UPDATE, {}, ("StageName",), commit_number=11)
    assert oi.skip_reason(cause, snap) == "closed"


def test_delete_gap_and_other_entities_are_ignored() -> None:
    assert oi.skip_reason(change(ChangeType.DELETE, {})) == "deleted"
    assert oi.skip_reason(change(ChangeType.DELETE, {}, snapshot=True)) == "deleted"
    assert oi.skip_reason(change(ChangeType.GAP_UPDATE, {})) == "not_stage_change"
    assert oi.skip_reason(change(entity="Lead")) == "not_opportunity"


def test_decide_on_an_ignored_change_emits_nothing() -> None:
    cause = change(echo=True)
    decision = oi.decide(cause, evolve(None, cause), AT_RISK, CONFIG)
    assert decision.emissions == ()
    assert decision.outcome == "echo"


# --- the at-risk decision -----------------------------------------------------


def test_at_risk_decision_emits_the_expected_events_in_order() -> None:
    cause, snap = created()
    decision = oi.decide(cause, snap, AT_RISK, CONFIG)
    assert decision.outcome == "at_risk"
    assert [(e.topic, type(e.event).__name__) for e in decision.emissions] == [
        ("decisions.opportunities", "OpportunityInsightsComputed"),
        ("predictions", "PredictionMade"),
        ("commands.salesforce", "SalesforceWriteRequested"),
        ("commands.notifications", "NotificationRequested"),
        ("commands.salesforce", "SalesforceWriteRequested"),
        ("workflow.events", "WorkflowAdvanced"),
        ("workflow.events", "WorkflowAdvanced"),
    ]
    keys = [e.key for e in decision.emissions]
    assert keys[:5] == [OPP] * 5
    assert keys[5] == run_id(oi.AGENT + ".retention", cause.id)
    assert keys[6] == run_id(oi.AGENT, cause.id)
    ids = [e.event.id for e in decision.emissions]
    assert len(set(ids)) == len(ids)
    for emission in decision.emissions:
        assert emission.event.time == WHEN
        assert emission.event.causation_id == cause.id
        assert emission.event.source == oi.AGENT


def test_at_risk_insights_event() -> None:
    cause, snap = created()
    insights = oi.decide(cause, snap, AT_RISK, CONFIG).emissions[0].event
    assert isinstance(insights, OpportunityInsightsComputed)
    assert insights.subject == OPP
    assert insights.win_probability == 0.22
    assert insights.at_risk is True
    # negative factors only, strongest first
    assert insights.risk_factors == (
        "close_date_pushes moves it by -0.120",
        "competitor_count moves it by -0.080",
        "stakeholders_engaged moves it by -0.020",
    )
    assert insights.recommended_actions == (oi.VALIDATE_CLOSE, oi.COMPETITIVE_PLAY, oi.MULTI_THREAD)
    assert insights.next_best_action == oi.VALIDATE_CLOSE
    # 2024-06-30 is beyond the 7-day lead; at risk slips 30 days; 12 days in stage: no stall
    assert insights.optimal_close_date == date(2024, 7, 30)
    assert insights.model == ModelRef(name="win", version="3")
    assert insights.features == AT_RISK.features
    assert insights.factors == AT_RISK.factors
    assert insights.enrichment["provider"] == "local"
    assert insights.enrichment["competitor_intelligence"] == (
        "Local competitor intelligence: 2 competitors (Globex, Initech) on the opportunity; "
        "pressure moderate. Prepare a battle card and customer references; expect price pressure."
    )


def test_at_risk_prediction_and_write_back() -> None:
    cause, snap = created()
    emissions = oi.decide(cause, snap, AT_RISK, CONFIG).emissions
    prediction = emissions[1].event
    assert isinstance(prediction, PredictionMade)
    assert prediction.purpose == "win_probability"
    assert prediction.entity == "Opportunity"
    assert prediction.score == 0.22
    assert prediction.subject == OPP

    write = emissions[2].event
    assert isinstance(write, SalesforceWriteRequested)
    assert write.operation == SalesforceOperation.UPDATE
    assert (write.sobject, write.record_id) == ("Opportunity", OPP)
    assert write.fields == {
        "AI_Win_Probability__c": 22.0,
        "Risk_Factors__c": (
            "- close_date_pushes moves it by -0.120\n"
            "- competitor_count moves it by -0.080\n"
            "- stakeholders_engaged moves it by -0.020"
        ),
        "Recommended_Actions__c": (
            f"1. {oi.VALIDATE_CLOSE}\n2. {oi.COMPETITIVE_PLAY}\n3. {oi.MULTI_THREAD}"
        ),
        "Next_Best_Action__c": oi.VALIDATE_CLOSE,
        "Optimal_Close_Date__c": "2024-07-30",
        "Competitor_Intelligence__c": emissions[0].event.enrichment["competitor_intelligence"],  # type: ignore[attr-defined]
    }


def test_at_risk_alert_task_and_retention() -> None:
    cause, snap = created()
    emissions = oi.decide(cause, snap, AT_RISK, CONFIG).emissions
    alert = emissions[3].event
    assert isinstance(alert, NotificationRequested)
    assert alert.channel == NotificationChannel.EMAIL
    assert alert.recipient == OWNER
    assert alert.title == "At-risk deal: Acme expansion (22.00% win probability)"
    # 8 points below 30 %: 5 + 0.5 * 8 = 9 %
    assert alert.data["suggested_discount_percent"] == "9.0"
    assert "up to 9.0% discount" in alert.body
    assert alert.data["account_id"] == ACCOUNT
    assert alert.data["retention_run_id"] == run_id(oi.AGENT + ".retention", cause.id)

    task = emissions[4].event
    assert isinstance(task, SalesforceWriteRequested)
    assert task.operation == SalesforceOperation.CREATE
    assert task.sobject == "Task"
    assert task.record_id is None
    assert task.subject == OPP
    assert task.fields["Subject"] == "At-risk deal: talking points"
    assert task.fields["Priority"] == "High"
    assert task.fields["ActivityDate"] == "2024-05-12"
    assert task.fields["WhatId"] == OPP
    assert task.fields["OwnerId"] == OWNER
    description = str(task.fields["Description"])
    assert description.startswith("Talking points for Acme expansion (win probability 22.00%).")
    assert "- close_date_pushes moves it by -0.120" in description
    assert f"1. {oi.VALIDATE_CLOSE}" in description
    assert description.endswith(
        "Incentive: offer up to 9.0% discount for a signature by 2024-07-30."
    )

    retention = emissions[5].event
    assert isinstance(retention, WorkflowAdvanced)
    assert retention.workflow == "retention"
    assert retention.subject == run_id(oi.AGENT + ".retention", cause.id)
    assert (retention.from_state, retention.to_state) == (None, "STARTED")
    assert retention.attributes["record_id"] == OPP

    run = emissions[6].event
    assert isinstance(run, WorkflowAdvanced)
    assert run.workflow == "opportunity_insights"
    assert run.subject == run_id(oi.AGENT, cause.id)
    assert (run.from_state, run.to_state) == (None, "COMPLETED")
    assert run.attributes["steps_completed"] == run.attributes["total_steps"] == "5"
    assert run.attributes["outcome"] == "at_risk"


def test_unknown_owner_gets_the_placeholder_recipient_and_no_task_owner() -> None:
    fields = {k: v for k, v in RECORD.items() if k != "OwnerId"}
    cause = change(fields=fields)
    emissions = oi.decide(cause, evolve(None, cause), AT_RISK, CONFIG).emissions
    assert emissions[3].event.recipient == "opportunity-owner"  # type: ignore[attr-defined]
    assert "OwnerId" not in emissions[4].event.fields  # type: ignore[attr-defined]


# --- the on-track decision ------------------------------------------------------


def test_on_track_decision_has_no_alert_task_or_retention() -> None:
    cause, snap = created()
    decision = oi.decide(cause, snap, ON_TRACK, CONFIG)
    assert decision.outcome == "on_track"
    assert [type(e.event).__name__ for e in decision.emissions] == [
        "OpportunityInsightsComputed",
        "PredictionMade",
        "SalesforceWriteRequested",
        "WorkflowAdvanced",
    ]
    insights = decision.emissions[0].event
    assert isinstance(insights, OpportunityInsightsComputed)
    assert insights.at_risk is False
    assert insights.risk_factors == ()
    # no factor lowers it: the stage's default action
    assert insights.recommended_actions == (oi.STAGE_ACTIONS["Proposal/Price Quote"],)
    assert insights.next_best_action == oi.STAGE_ACTIONS["Proposal/Price Quote"]
    # confident (>= 60 %): the planned close date stands
    assert insights.optimal_close_date == date(2024, 6, 30)
    write = decision.emissions[2].event
    assert isinstance(write, SalesforceWriteRequested)
    assert write.fields["AI_Win_Probability__c"] == 71.0
    assert write.fields["Risk_Factors__c"] == "No factor lowers the win probability."
    run = decision.emissions[3].event
    assert isinstance(run, WorkflowAdvanced)
    assert run.attributes["steps_completed"] == run.attributes["total_steps"] == "2"
    assert decision.events("commands.notifications") == []


def test_probability_at_the_threshold_is_on_track() -> None:
    cause, snap = created()
    assert oi.decide(cause, snap, score(0.30), CONFIG).outcome == "on_track"
    assert oi.decide(cause, snap, score(0.2999), CONFIG).outcome == "at_risk"


def test_deciding_twice_yields_equal_events() -> None:
    cause, snap = created()
    first = oi.decide(cause, snap, AT_RISK, CONFIG)
    second = oi.decide(cause, dict(snap), AT_RISK, CONFIG)
    assert first == second
    assert [e.event.id for e in first.emissions] == [e.event.id for e in second.emissions]


def test_another_cause_yields_other_ids() -> None:
    _, snap = created()
    first = oi.decide(change(commit_number=10), snap, AT_RISK, CONFIG)
    other = oi.decide(change(commit_number=11), snap, AT_RISK, CONFIG)
    assert not {e.event.id for e in first.emissions} & {e.event.id for e in other.emissions}


def test_missing_close_date_is_not_written() -> None:
    fields = {k: v for k, v in RECORD.items() if k != "CloseDate"}
    cause = change(fields=fields)
    decision = oi.decide(cause, evolve(None, cause), ON_TRACK, CONFIG)
    assert decision.emissions[0].event.optimal_close_date is None  # type: ignore[attr-defined]
    assert "Optimal_Close_Date__c" not in decision.emissions[2].event.fields  # type: ignore[attr-defined]


# --- text rules -----------------------------------------------------------------


def test_next_best_action_is_truncated_to_255(monkeypatch: pytest.MonkeyPatch) -> None:
    long_action = "Call the buyer " * 40
    monkeypatch.setitem(oi.FACTOR_ACTIONS, "amount", (long_action,))
    cause, snap = created()
    decision = oi.decide(cause, snap, score(0.5, ("amount", -0.1)), CONFIG)
    write = decision.emissions[2].event
    assert isinstance(write, SalesforceWriteRequested)
    action = str(write.fields["Next_Best_Action__c"])
    assert len(action) == 255
    assert action == long_action[:254] + "\u2026"
    assert decision.emissions[0].event.next_best_action == action  # type: ignore[attr-defined]


def test_truncate() -> None:
    assert oi.truncate("abc", 3) == "abc"
    assert oi.truncate("abcd", 3) == "ab\u2026"


def test_risk_factors_are_capped_at_five() -> None:
    factors = [(f"f{i}", -0.01 * (i + 1)) for i in range(7)]
    assert oi.risk_factors(score(0.1, *factors)) == tuple(
        f"f{i} moves it by {-0.01 * (i + 1):+.3f}" for i in (6, 5, 4, 3, 2)
    )


def test_recommended_actions_are_not_repeated_and_fall_back_to_the_stage() -> None:
    s = score(0.4, ("industry", -0.2), ("stage", -0.1), ("industry", -0.05))
    assert oi.recommended_actions(s, "Prospecting") == (oi.CASE_STUDIES,)
    assert oi.recommended_actions(score(0.4, ("stage", -0.1)), "Prospecting") == (
        oi.STAGE_ACTIONS["Prospecting"],
    )
    assert oi.recommended_actions(score(0.4), "Unknown stage") == (oi.DEFAULT_ACTION,)


# --- optimal close date ---------------------------------------------------------

TODAY = date(2024, 5, 10)


@pytest.mark.parametrize(
    ("close", "probability", "in_stage", "expected"),
    [
        (date(2024, 6, 30), 0.80, 10, date(2024, 6, 30)),  # confident: as planned
        (date(2024, 6, 30), 0.45, 10, date(2024, 7, 14)),  # uncertain: +14
        (date(2024, 6, 30), 0.10, 10, date(2024, 7, 30)),  # at risk: +30
        (date(2024, 6, 30), 0.80, 45, date(2024, 7, 15)),  # 15 days stalled: +15
        (date(2024, 6, 30), 0.80, 400, date(2024, 7, 30)),  # stall capped at 30
        (date(2024, 4, 1), 0.80, None, date(2024, 5, 17)),  # past date: today + 7
        (date(2024, 5, 12), 0.45, 0, date(2024, 5, 31)),  # too soon: today + 7 + 14
        (None, 0.80, 10, None),
    ],
)
def test_optimal_close_date(
    close: date | None, probability: float, in_stage: int | None, expected: date | None
) -> None:
    assert oi.optimal_close_date(close, probability, in_stage, TODAY, CONFIG) == expected


# --- discount -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("probability", "discount"),
    [(0.30, 0.0), (0.75, 0.0), (0.29, 5.5), (0.25, 7.5), (0.20, 10.0), (0.10, 15.0), (0.0, 15.0)],
)
def test_suggested_discount(probability: float, discount: float) -> None:
    assert oi.suggested_discount(probability, CONFIG) == discount


def test_discount_cap_is_configurable() -> None:
    config = oi.OpportunityConfig(discount_max_percent=8.0)
    assert oi.suggested_discount(0.05, config) == 8.0


# --- scoring record and stage history -------------------------------------------


def test_scoring_record_is_the_snapshot_fields() -> None:
    _, snap = created()
    assert oi.scoring_record(snap) == RECORD
    history = [{"StageName": "Prospecting", "CreatedDate": "2024-05-01"}]
    assert oi.scoring_record({**snap, "Stage_History": history})["Stage_History"] == history


def test_track_stage_feeds_the_stage_features() -> None:
    first = change()
    snap = oi.track_stage(None, evolve(None, first), first)
    assert snap["Stage_History"] == [
        {"StageName": "Proposal/Price Quote", "CreatedDate": "2024-05-10"}
    ]
    # redelivery adds nothing; an update without a stage change keeps the history
    assert oi.track_stage(snap, evolve(snap, first), first) == snap
    amount = change(ChangeType.UPDATE, {"Amount": 1.0}, ("Amount",), commit_number=11)
    assert (
        oi.track_stage(snap, evolve(snap, amount), amount)["Stage_History"] == snap["Stage_History"]
    )
    back = change(
        ChangeType.UPDATE, {"StageName": "Qualification"}, ("StageName",), commit_number=12
    )
    later = oi.track_stage(snap, evolve(snap, back), back)
    record = oi.scoring_record(later)
    assert stage_regressions(record, date(2024, 5, 20)) == 1
    assert days_in_stage(record, date(2024, 5, 20)) == 10
