"""The Faust agents of `sfe worker` against the real broker: insights, onboarding, churn."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest

from agents import onboarding, opportunity_insights
from schema_registry.events import (
    ChangeType,
    ChurnRiskAssessed,
    NotificationRequested,
    OnboardingPlanned,
    OpportunityInsightsComputed,
    ProvisioningRequested,
    SalesforceOperation,
    SalesforceWriteRequested,
    UsageSignalReported,
    WorkflowAdvanced,
)
from sfe.settings import Settings
from simulator.ecosystem import respond
from tests.ports import free_port
from tests.workers.support import (
    WorkerProcess,
    append,
    change,
    read_events,
    wait_for_samples,
)

pytestmark = pytest.mark.integration

ACCOUNT = "001000000000ACCAAA"
OWNER = "005000000000OWNAAA"


def opportunity(stage: str, **fields: object) -> dict[str, object]:
    return {
        "Name": "Analytical Engines - Platform",
        "AccountId": ACCOUNT,
        "OwnerId": OWNER,
        "StageName": stage,
        "Amount": 120_000.0,
        "CloseDate": "2027-01-15",
        "Type": "New Business",
        "LeadSource": "Web",
        **fields,
    }


def writes(events: list[object], record_id: str) -> list[SalesforceWriteRequested]:
    return [
        e
        for e in events
        if isinstance(e, SalesforceWriteRequested)
        and e.operation is SalesforceOperation.UPDATE
        and e.record_id == record_id
    ]


def test_stage_changes_get_insights_and_closed_won_completes_onboarding(
    stack: Settings, prefix: str, spawn: Callable[..., WorkerProcess]
) -> None:
    at_risk, echoed, won, aborted = (f"006000000000{n:03d}AAA" for n in (1, 2, 3, 4))
    append(
        stack,
        prefix,
        "sf.cdc.Opportunity",
        [
            change("Opportunity", at_risk, ChangeType.CREATE, opportunity("Prospecting")),
            change(
                "Opportunity",
                at_risk,
                ChangeType.UPDATE,
                {"StageName": "Negotiation/Review"},
            ),
            change("Opportunity", echoed, ChangeType.CREATE, opportunity("Prospecting")),
            change("Opportunity", echoed, ChangeType.UPDATE, {"StageName": "Proposal"}, echo=True),
            change("Opportunity", won, ChangeType.CREATE, opportunity("Negotiation/Review")),
            change("Opportunity", won, ChangeType.UPDATE, {"StageName": "Closed Won"}),
        ],
    )
    # In an aborted transaction: physically in the log, never to be acted upon.
    append(
        stack,
        prefix,
        "sf.cdc.Opportunity",
        [change("Opportunity", aborted, ChangeType.CREATE, opportunity("Prospecting"))],
        transactional_abort=True,
    )
    metrics_port = free_port()
    spawn(
        "worker",
        "--role",
        "opportunities",
        "--role",
        "onboarding",
        # Every opportunity counts as at risk, so the alert path is certain.
        SFE_OPPORTUNITY_AT_RISK_BELOW="1.0",
        # Deadlines count from the change's time; a slow start on a busy machine must
        # not turn into retries this test does not look at.
        SFE_ONBOARDING_STEP_TIMEOUT_SECONDS="900",
        SFE_METRICS_PORT=str(metrics_port),
    )
    spawn("ecosystem", "respond")

    insights = read_events(
        stack, prefix, "decisions.opportunities", lambda e: len(e) >= 4, timeout=120, settle=3
    )
    assert all(isinstance(i, OpportunityInsightsComputed) for i in insights)
    # CREATE and the stage change of the first, the echo's CREATE only, the won one's CREATE.
    assert Counter(i.subject for i in insights) == {at_risk: 2, echoed: 1, won: 1}
    assert aborted not in {i.subject for i in insights}
    latest = [i for i in insights if i.subject == at_risk][-1]
    assert isinstance(latest, OpportunityInsightsComputed) and latest.at_risk
    assert latest.model.name == "win" and latest.next_best_action

    runs = read_events(
        stack,
        prefix,
        "workflow.events",
        lambda e: any(
            isinstance(x, WorkflowAdvanced)
            and x.to_state == "COMPLETED"
            and x.workflow == "onboarding"
            for x in e
        ),
        timeout=120,
    )
    commands = read_events(
        stack,
        prefix,
        "commands.salesforce",
        lambda e: any("Provisioning_Status__c" in w.fields for w in writes(e, won)),
        timeout=30,
    )
    (written,) = writes(commands, at_risk)[-1:]
    assert 0 <= float(written.fields["AI_Win_Probability__c"]) <= 100
    assert written.fields["Next_Best_Action__c"] and written.fields["Risk_Factors__c"]
    tasks = [
        c
        for c in commands
        if isinstance(c, SalesforceWriteRequested) and c.operation is SalesforceOperation.CREATE
    ]
    assert any(t.fields.get("WhatId") == at_risk and t.sobject == "Task" for t in tasks)
    alerts = read_events(stack, prefix, "commands.notifications", lambda e: len(e) >= 3)
    assert any(
        isinstance(a, NotificationRequested) and a.subject == at_risk and a.recipient == OWNER
        for a in alerts
    )

    plans = read_events(stack, prefix, "decisions.onboarding", lambda e: len(e) >= 1, settle=1)
    (plan,) = plans
    assert isinstance(plan, OnboardingPlanned) and plan.opportunity_id == won
    requests = read_events(stack, prefix, "commands.provisioning", lambda e: len(e) >= 50)
    steps = {(r.system, r.action) for r in requests if isinstance(r, ProvisioningRequested)}
    assert len(steps) == 50
    (completion,) = [w for w in writes(commands, won) if "Provisioning_Status__c" in w.fields]
    assert completion.fields["Provisioning_Status__c"] == "Complete"
    assert str(completion.fields["Portal_URL__c"]).startswith("https://acct-")
    assert completion.fields["Onboarding_Date__c"]
    steps = [r for r in runs if isinstance(r, WorkflowAdvanced) and r.workflow == "onboarding"]
    assert sum(1 for r in steps if r.to_state == "STEP_COMPLETED") == 50
    finished = [r for r in steps if r.to_state == "COMPLETED"]
    assert finished and finished[0].attributes["steps_completed"] == "50"
    # The echoed stage change started nothing beyond the CREATE's insight.
    assert not [w for w in writes(commands, echoed) if "Provisioning_Status__c" in w.fields]

    # The opportunity agent's consumer group reports its lag per partition it holds.
    lag = wait_for_samples(
        metrics_port,
        "sfe_consumer_lag_records",
        group=f"{prefix}sfe.worker.opportunities",
        topic="sf.cdc.Opportunity",
    )
    assert lag and all(sample.value >= 0 for sample in lag)


def test_churn_run_opens_cases_for_high_risk_accounts_once_per_day(
    stack: Settings, prefix: str, spawn: Callable[..., WorkerProcess]
) -> None:
    accounts = [f"001000000000{n:03d}AAA" for n in range(1, 4)]
    append(
        stack,
        prefix,
        "sf.cdc.Account",
        [
            change(
                "Account",
                account,
                ChangeType.CREATE,
                {
                    "Name": f"Account {n}",
                    "OwnerId": OWNER,
                    "Industry": "Technology",
                    "Usage_Score__c": 12.0,
                    "Engagement_Level__c": "Low",
                    "Monthly_Active_Users__c": 3.0,
                    "Feature_Adoption_Rate__c": 8.0,
                    "Support_Ticket_Count_30d__c": 14.0,
                    "NPS_Score__c": -40.0,
                },
            )
            for n, account in enumerate(accounts)
        ],
    )
    from datetime import UTC, datetime

    append(
        stack,
        prefix,
        "usage.signals",
        [
            UsageSignalReported(
                id=f"signal-{n}",
                source="test",
                subject=accounts[0],
                time=datetime(2026, 11, 20, tzinfo=UTC),
                system="apex_os",
                metric="support_tickets",
                value=5.0,
                observed_at=datetime(2026, 11, 20, n, tzinfo=UTC),
            )
            for n in range(3)
        ],
    )
    environment = {"SFE_CHURN_HIGH_RISK_ABOVE": "0.0"}
    for _ in range(2):
        run = spawn("churn", "run", "--as-of", "2026-11-25", **environment)
        assert run.process.wait(120) == 0, run.output()
        assert "3 accounts assessed, 3 high risk" in run.output()

    assessed = read_events(stack, prefix, "decisions.churn", lambda e: len(e) >= 6, settle=1)
    assert len(assessed) == 6 and len({a.id for a in assessed}) == 3
    assert all(isinstance(a, ChurnRiskAssessed) and a.high_risk for a in assessed)
    commands = read_events(stack, prefix, "commands.salesforce", lambda e: len(e) >= 12)
    cases = {
        c.id for c in commands if isinstance(c, SalesforceWriteRequested) and c.sobject == "Case"
    }
    assert len(cases) == 3, "one case per account, the same ids on the second run"
    updates = [
        c for c in commands if isinstance(c, SalesforceWriteRequested) and c.sobject == "Account"
    ]
    assert {u.record_id for u in updates} == set(accounts)
    assert all("Churn_Risk__c" in u.fields and u.fields["Intervention_Plan__c"] for u in updates)


def test_results_read_before_their_plan_wait_for_it(
    stack: Settings, prefix: str, spawn: Callable[..., WorkerProcess]
) -> None:
    """A fast system can answer before the agent reads the plan: nothing is lost."""
    won = "006000000000005AAA"
    create = change("Opportunity", won, ChangeType.CREATE, opportunity("Negotiation/Review"))
    closed = change("Opportunity", won, ChangeType.UPDATE, {"StageName": "Closed Won"})
    snapshot = opportunity_insights.fold(opportunity_insights.fold(None, create), closed)
    config = onboarding.OnboardingConfig(step_timeout_seconds=900)
    _, planned = onboarding.start(closed, snapshot, config)
    requests = [e.event for e in planned.emissions if isinstance(e.event, ProvisioningRequested)]
    assert len(requests) == 50
    # Every result is in the log before the change that makes the worker plan.
    append(stack, prefix, "provisioning.results", [respond(r) for r in requests])
    append(stack, prefix, "sf.cdc.Opportunity", [create, closed])
    spawn(
        "worker",
        "--role",
        "opportunities",
        "--role",
        "onboarding",
        SFE_ONBOARDING_STEP_TIMEOUT_SECONDS="900",
    )
    runs = read_events(
        stack,
        prefix,
        "workflow.events",
        lambda e: any(
            isinstance(x, WorkflowAdvanced)
            and x.workflow == "onboarding"
            and x.to_state == "COMPLETED"
            for x in e
        ),
        timeout=120,
    )
    steps = [r for r in runs if isinstance(r, WorkflowAdvanced) and r.workflow == "onboarding"]
    assert sum(1 for r in steps if r.to_state == "STEP_COMPLETED") == 50
    assert [r.to_state for r in steps].count("COMPLETED") == 1
    # No request was sent twice: the parked results answered the first attempts.
    sent = read_events(stack, prefix, "commands.provisioning", lambda e: len(e) >= 50, settle=2)
    assert sorted(r.id for r in sent) == sorted(r.id for r in requests)
