"""`sfe worker --role leads` against the real broker: decisions, commands, echoes, crashes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest

from ml.features import LEAD
from schema_registry.events import (
    ChangeType,
    EventDeadLettered,
    LeadRoute,
    LeadScored,
    NotificationChannel,
    NotificationRequested,
    PredictionMade,
    SalesforceOperation,
    SalesforceWriteRequested,
    WorkflowAdvanced,
)
from sfe.privacy.cipher import is_sealed
from sfe.privacy.setup import privacy_from
from sfe.settings import Settings
from tests.ports import free_port
from tests.workers.support import (
    WorkerProcess,
    append,
    append_raw,
    change,
    read_events,
    wait_for_samples,
)

pytestmark = pytest.mark.integration

AES = ("005000000000AE1AAA", "005000000000AE2AAA")


def lead(index: int, einstein: float, **fields: object) -> dict[str, object]:
    return {
        "FirstName": "Ada",
        "LastName": f"Lovelace-{index}",
        "Company": f"Analytical Engines {index}",
        "Email": f"ada{index}@engines.example.com",
        "Title": "VP Engineering",
        "LeadSource": "Web",
        "Industry": "Technology",
        "NumberOfEmployees": 250,
        "AnnualRevenue": 30_000_000.0,
        "Country": "United Kingdom",
        "Tech_Stack__c": "AWS;Kafka;Python",
        "Status": "Open - Not Contacted",
        "Einstein_Lead_Score__c": einstein,
        **fields,
    }


def lead_id(index: int) -> str:
    return f"00Q{index:015d}"


def test_a_created_lead_gets_its_score_fields_route_and_notifications(
    stack: Settings, prefix: str, spawn: Callable[..., WorkerProcess]
) -> None:
    # Einstein's weight 1 makes the enhanced score Einstein's: each route is certain.
    routes = {
        1: (95.0, LeadRoute.SENIOR_AE),
        2: (65.0, LeadRoute.NURTURE),
        3: (20.0, LeadRoute.MQL),
    }
    facts = [
        change("Lead", lead_id(i), ChangeType.CREATE, lead(i, score))
        for i, (score, _) in routes.items()
    ]
    echoed = change("Lead", lead_id(4), ChangeType.CREATE, lead(4, 99.0), echo=True)
    update = change("Lead", lead_id(1), ChangeType.UPDATE, {"Title": "CTO"})
    append(stack, prefix, "sf.cdc.Lead", [*facts, echoed, update])
    append_raw(stack, prefix + "sf.cdc.Lead", lead_id(5).encode(), b"\x00not an event")

    worker = spawn(
        "worker",
        "--role",
        "leads",
        SFE_LEAD_EINSTEIN_WEIGHT="1.0",
        SFE_LEAD_SENIOR_AE_QUEUE=",".join(AES),
    )
    decisions = read_events(stack, prefix, "decisions.leads", lambda e: len(e) >= 3, settle=3)
    assert worker.process.poll() is None, worker.output()

    scored = {d.subject: d for d in decisions if isinstance(d, LeadScored)}
    assert len(decisions) == 3 and set(scored) == {lead_id(i) for i in routes}
    for index, (einstein, route) in routes.items():
        decision = scored[lead_id(index)]
        assert decision.route is route
        assert decision.enhanced_score == einstein
        assert decision.model.name == "lead" and decision.model.version == "1"
        assert decision.features and decision.factors
        assert decision.enrichment["provider"] == "local"

    commands = read_events(stack, prefix, "commands.salesforce", lambda e: len(e) >= 4)
    updates = {
        c.subject: c
        for c in commands
        if isinstance(c, SalesforceWriteRequested) and c.operation is SalesforceOperation.UPDATE
    }
    creates = [
        c
        for c in commands
        if isinstance(c, SalesforceWriteRequested) and c.operation is SalesforceOperation.CREATE
    ]
    assert set(updates) == {lead_id(i) for i in routes}
    senior = updates[lead_id(1)].fields
    assert senior["AI_Enhanced_Score__c"] == 95.0
    assert "Einstein" in str(senior["AI_Reasoning__c"])
    assert senior["OwnerId"] in AES
    assert senior["AI_Lead_Route__c"] == "Senior AE"
    for field in ("Company_Intelligence__c", "Tech_Stack__c", "Estimated_Budget__c"):
        assert senior[field]
    assert updates[lead_id(2)].fields["AI_Lead_Route__c"] == "Nurture"
    assert updates[lead_id(3)].fields["AI_Lead_Route__c"] == "MQL"
    assert "OwnerId" not in updates[lead_id(3)].fields
    (task,) = creates
    assert task.sobject == "Task" and task.fields["WhoId"] == lead_id(1)
    assert task.fields["OwnerId"] == senior["OwnerId"]

    notes = read_events(stack, prefix, "commands.notifications", lambda e: len(e) >= 4)
    by_template = {n.template: n for n in notes if isinstance(n, NotificationRequested)}
    assert by_template["high_value_lead"].channel is NotificationChannel.SLACK
    assert by_template["high_value_lead"].recipient == "#high-value-leads"
    # The address is personal: sealed under the lead's key, it opens to the lead's e-mail.
    introduction = by_template["senior_ae_introduction"]
    assert is_sealed(introduction.recipient) and "ada1" not in introduction.recipient
    privacy = privacy_from(stack.model_copy(update={"topic_prefix": prefix}))
    assert privacy is not None
    (opened,) = privacy.unseal([introduction])
    assert opened.recipient == "ada1@engines.example.com"
    assert by_template["nurture_content_series"].subject == lead_id(2)
    assert by_template["mql_handoff"].subject == lead_id(3)
    assert len(notes) == 4

    predictions = read_events(stack, prefix, "predictions", lambda e: len(e) >= 3)
    assert {p.subject for p in predictions if isinstance(p, PredictionMade)} == set(scored)
    runs = read_events(stack, prefix, "workflow.events", lambda e: len(e) >= 3)
    assert all(isinstance(r, WorkflowAdvanced) and r.to_state == "COMPLETED" for r in runs)
    assert sorted(r.attributes["record_id"] for r in runs) == sorted(scored)

    (letter,) = read_events(stack, prefix, "dlq.ingest", lambda e: len(e) >= 1, settle=1)
    assert isinstance(letter, EventDeadLettered)
    assert letter.original_topic == prefix + "sf.cdc.Lead"
    assert letter.original_value == b"\x00not an event" and letter.reason


def test_sigkill_mid_stream_loses_nothing_and_duplicates_nothing(
    stack: Settings, prefix: str, spawn: Callable[..., WorkerProcess]
) -> None:
    total = 3000
    facts = [
        change("Lead", lead_id(i), ChangeType.CREATE, lead(i, float(i % 100))) for i in range(total)
    ]
    append(stack, prefix, "sf.cdc.Lead", facts)
    settings = {"SFE_WORKER_BATCH_SIZE": "100", "SFE_WORKER_BATCH_WAIT_MS": "50"}

    first = spawn("worker", "--role", "leads", **settings)
    partial = read_events(stack, prefix, "decisions.leads", lambda e: len(e) >= 300, timeout=90)
    first.kill()
    assert 300 <= len(partial) < total, "the worker must be killed mid-stream"

    spawn("worker", "--role", "leads", **settings)
    decisions = read_events(
        stack, prefix, "decisions.leads", lambda e: len(e) >= total, timeout=180, settle=3
    )
    ids = Counter(d.id for d in decisions)
    assert len(decisions) == total, f"{len(decisions)} committed decisions for {total} leads"
    assert len(ids) == total and max(ids.values()) == 1
    assert {d.subject for d in decisions} == {lead_id(i) for i in range(total)}


def test_the_worker_publishes_its_consumer_lag_and_its_model_inputs_drift(
    stack: Settings, prefix: str, spawn: Callable[..., WorkerProcess]
) -> None:
    total = 400
    facts = [
        change("Lead", lead_id(i), ChangeType.CREATE, lead(i, 50.0, NumberOfEmployees=10 + i))
        for i in range(total)
    ]
    append(stack, prefix, "sf.cdc.Lead", facts)
    port = free_port()
    spawn(
        "worker",
        "--role",
        "leads",
        SFE_METRICS_PORT=str(port),
        SFE_DRIFT_REPORT_SECONDS="1",
    )
    read_events(stack, prefix, "decisions.leads", lambda e: len(e) >= total, timeout=120)

    lag = wait_for_samples(
        port, "sfe_consumer_lag_records", group=f"{prefix}sfe.worker.leads", topic="sf.cdc.Lead"
    )
    assert lag and all(sample.value >= 0 for sample in lag)
    drift = {s.labels["feature"]: s.value for s in wait_for_samples(port, "sfe_feature_psi")}
    assert set(drift) == {feature.name for feature in LEAD.features}
    assert all(value >= 0 for value in drift.values())
    # Every lead says the same title, and titles of training data vary: a shift.
    assert max(drift.values()) > 0.25
