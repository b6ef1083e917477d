"""The onboarding saga: trigger, fan-out, results, retries, time-outs and completion."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agents import onboarding
from agents.base import Decision
from agents.onboarding import (
    PROVISIONING_GROUPS,
    PROVISIONING_PLAN,
    OnboardingConfig,
    SagaState,
    in_flight,
    next_deadline,
    on_result,
    on_tick,
    start,
    state_from_plan,
    triggers,
)
from agents.snapshots import evolve
from schema_registry.codec import Codec
from schema_registry.events import (
    ChangeEventHeader,
    ChangeType,
    NotificationChannel,
    NotificationRequested,
    OnboardingPlanned,
    ProvisioningFinished,
    ProvisioningRequested,
    ProvisioningStatus,
    RecordChanged,
    SalesforceOperation,
    SalesforceWriteRequested,
    WorkflowAdvanced,
)
from schema_registry.ids import derived_event_id
from simulator import ecosystem

T0 = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
OPP = "006000000000001AAA"
ACCOUNT = "001000000000001AAA"
OWNER = "005000000000001AAA"
CONFIG = OnboardingConfig()
N = len(PROVISIONING_PLAN)


def change(
    change_type: ChangeType = ChangeType.UPDATE,
    fields: dict[str, Any] | None = None,
    changed: tuple[str, ...] = ("StageName",),
    *,
    entity: str = "Opportunity",
    echo: bool = False,
    snapshot: bool = False,
    event_id: str = "change-1",
) -> RecordChanged:
    return RecordChanged(
        id=event_id,
        source="sfe.ingest",
        subject=OPP,
        time=T0,
        header=ChangeEventHeader(
            entity_name=entity,
            record_ids=(OPP,),
            change_type=change_type,
            change_origin="com/salesforce/api/soap/61.0;client=web",
            transaction_key="tx-1",
            sequence_number=1,
            commit_timestamp=T0,
            commit_number=100,
            commit_user=OWNER,
            changed_fields=changed,
        ),
        replay_id="1",
        event_uuid="uuid-1",
        fields={"StageName": "Closed Won"} if fields is None else fields,
        is_echo=echo,
        is_snapshot=snapshot,
    )


def opportunity_snapshot(**fields: Any) -> dict[str, Any]:
    created = change(
        ChangeType.CREATE,
        {
            "Name": "Acme - Platform",
            "StageName": "Negotiation",
            "AccountId": ACCOUNT,
            "OwnerId": OWNER,
            **fields,
        },
        (),
        event_id="create-1",
    )
    return evolve(None, created)


def started(config: OnboardingConfig = CONFIG) -> tuple[RecordChanged, SagaState, Decision]:
    closed_won = change()
    snapshot = evolve(opportunity_snapshot(), closed_won)
    state, decision = start(closed_won, snapshot, config)
    return closed_won, state, decision


def requests(decision: Decision) -> list[ProvisioningRequested]:
    found = decision.events("commands.provisioning")
    assert all(isinstance(e, ProvisioningRequested) for e in found)
    return found  # type: ignore[return-value]


def workflow_events(decision: Decision) -> list[WorkflowAdvanced]:
    return decision.events("workflow.events")  # type: ignore[return-value]


def succeed_all(
    state: SagaState, reqs: list[ProvisioningRequested]
) -> tuple[SagaState, list[Decision]]:
    decisions = []
    for request in reqs:
        state, decision = on_result(state, ecosystem.respond(request), CONFIG)
        decisions.append(decision)
    return state, decisions


def result_of(
    request: ProvisioningRequested, status: ProvisioningStatus, time: datetime, detail: str = "x"
) -> ProvisioningFinished:
    return replace(
        ecosystem.respond(request),
        status=status,
        time=time,
        detail=detail,
        resource_url=None if status is ProvisioningStatus.FAILED else "https://r/1",
    )


# --- the plan and the trigger ---------------------------------------------------------


def test_the_plan_has_five_groups_of_ten_distinct_tasks_in_a_fixed_order() -> None:
    assert list(PROVISIONING_GROUPS) == [
        "Core Infrastructure",
        "AI/ML Platforms",
        "Business Systems",
        "Integration & APIs",
        "Data & Security",
    ]
    assert [len(tasks) for tasks in PROVISIONING_GROUPS.values()] == [10] * 5
    assert N == 50 and len(set(PROVISIONING_PLAN)) == 50
    assert PROVISIONING_PLAN[0] == ("autohelix", "create_workspace")
    assert PROVISIONING_PLAN[1] == ("apex_os", "provision_access")
    assert ("nwu_protocol", "allocate_credits") in PROVISIONING_PLAN


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (change(), True),
        (change(ChangeType.CREATE, {"StageName": "Closed Won", "AccountId": ACCOUNT}, ()), True),
        (change(echo=True), False),
        (change(snapshot=True), False),
        (change(fields={"StageName": "Closed Lost"}), False),
        (change(fields={"StageName": "Closed Won"}, changed=("Amount",)), False),
        (change(ChangeType.CREATE, {"StageName": "Prospecting"}, ()), False),
        (change(ChangeType.UNDELETE), False),
        (change(ChangeType.GAP_UPDATE), False),
        (change(entity="Account"), False),
    ],
)
def test_only_a_real_change_to_closed_won_triggers(event: RecordChanged, expected: bool) -> None:
    assert triggers(event, evolve(opportunity_snapshot(), event)) is expected


def test_a_snapshot_showing_a_deal_won_while_its_changes_were_missed_triggers() -> None:
    # Re-read after a gap or an expired replay id: the agent knew the deal in another stage.
    reread = change(ChangeType.UPDATE, {"StageName": "Closed Won", "AccountId": ACCOUNT}, ())
    reread = replace(reread, is_snapshot=True)
    known = opportunity_snapshot()
    assert triggers(reread, evolve(known, reread), known) is True
    # Never seen before (a backfill of old deals), or already Closed Won: nothing starts.
    assert triggers(reread, evolve(None, reread), None) is False
    won = evolve(known, change())
    assert triggers(reread, evolve(won, reread), won) is False
    lost = replace(reread, fields={"StageName": "Closed Lost"})
    assert triggers(lost, evolve(known, lost), known) is False


def test_a_deleted_opportunity_does_not_trigger() -> None:
    snapshot = {**opportunity_snapshot(), "deleted": True}
    assert triggers(change(), snapshot) is False


# --- start ----------------------------------------------------------------------------


def test_start_plans_fans_out_and_records_the_run() -> None:
    _, state, decision = started()
    onboarding_id = derived_event_id("change-1", "agents.onboarding", "run")

    assert len(decision.emissions) == 1 + N + 1
    assert [e.topic for e in decision.emissions] == (
        ["decisions.onboarding"] + ["commands.provisioning"] * N + ["workflow.events"]
    )
    assert [e.key for e in decision.emissions] == [ACCOUNT] * (N + 1) + [onboarding_id]

    planned = decision.emissions[0].event
    assert isinstance(planned, OnboardingPlanned)
    assert planned.opportunity_id == OPP and planned.account_id == ACCOUNT
    assert [(t.system, t.action) for t in planned.tasks] == list(PROVISIONING_PLAN)
    assert planned.deadline_seconds == 120
    assert planned.time == T0 and planned.causation_id == "change-1"

    reqs = requests(decision)
    assert [(r.system, r.action) for r in reqs] == list(PROVISIONING_PLAN)
    first = reqs[0]
    assert first.id == derived_event_id(
        onboarding_id, "agents.onboarding", "provision:autohelix/create_workspace#1"
    )
    assert first.onboarding_id == onboarding_id
    assert first.account_id == ACCOUNT and first.subject == ACCOUNT
    assert first.deadline == T0 + timedelta(seconds=120)
    assert first.causation_id == "change-1" and first.correlation_id == "change-1"
    assert first.parameters == {
        "account_id": ACCOUNT,
        "opportunity_id": OPP,
        "portal_subdomain": state["portal_subdomain"],
        "group": "Core Infrastructure",
        "idempotency_key": f"{onboarding_id}/autohelix/create_workspace",
    }
    assert len({r.id for r in reqs}) == N

    (begun,) = workflow_events(decision)
    assert begun.subject == onboarding_id and begun.workflow == "onboarding"
    assert begun.from_state is None and begun.to_state == "STARTED"
    assert begun.attributes["record_id"] == OPP
    assert begun.attributes["steps_completed"] == "0"
    assert begun.attributes["total_steps"] == "50"

    assert state["status"] == "RUNNING" and in_flight(state)
    assert state["onboarding_id"] == onboarding_id
    assert state["opportunity_id"] == OPP and state["account_id"] == ACCOUNT
    assert state["owner_id"] == OWNER
    assert state["started"] == "2026-11-25T09:30:00+00:00"
    assert state["portal_subdomain"].startswith("acct-") and len(state["portal_subdomain"]) == 17
    step = state["steps"]["autohelix/create_workspace"]
    assert step == {
        "system": "autohelix",
        "action": "create_workspace",
        "request_id": first.id,
        "status": "PENDING",
        "attempts": 1,
        "requested": "2026-11-25T09:30:00+00:00",
        "deadline": "2026-11-25T09:32:00+00:00",
        "resource_url": None,
        "detail": "",
    }
    assert next_deadline(state) == T0 + timedelta(seconds=120)


def test_starting_twice_on_the_same_change_yields_the_same_events() -> None:
    _, state_a, a = started()
    _, state_b, b = started()
    assert a == b and state_a == state_b


def test_an_opportunity_without_account_is_keyed_by_its_own_id() -> None:
    closed_won = change()
    snapshot = evolve(opportunity_snapshot(AccountId=None), closed_won)
    state, decision = start(closed_won, snapshot, CONFIG)
    assert state["account_id"] == OPP
    assert {e.key for e in decision.emissions if e.topic != "workflow.events"} == {OPP}


def test_the_state_is_json_ready() -> None:
    _, state, _ = started()
    assert json.loads(json.dumps(state)) == state


def test_every_emitted_event_fits_its_topic_schema() -> None:
    _, state, decision = started()
    reqs = requests(decision)
    codec = Codec()
    emitted = list(decision.emissions)
    state, results = succeed_all(state, reqs)
    for d in results:
        emitted.extend(d.emissions)
    _, fresh, _ = started()
    for minutes in (5, 10, 20):
        fresh, tick = on_tick(fresh, T0 + timedelta(minutes=minutes), CONFIG)
        emitted.extend(tick.emissions)
    assert fresh["status"] == "FAILED"
    for emission in emitted:
        codec.encode(emission.topic, emission.event)
    for request in reqs[:3]:
        codec.encode(ecosystem.RESULT_TOPIC, ecosystem.respond(request))


# --- results and completion -----------------------------------------------------------


def test_every_step_succeeding_completes_the_onboarding() -> None:
    _, state, decision = started()
    reqs = requests(decision)
    done_at = T0 + timedelta(minutes=1, seconds=30)
    final_results = [replace(ecosystem.respond(r), time=done_at) for r in reqs]

    decisions = []
    for result in final_results:
        state, d = on_result(state, result, CONFIG)
        decisions.append(d)

    # Each step but the last: one STEP_COMPLETED with the running count.
    for count, d in enumerate(decisions[:-1], start=1):
        (advanced,) = d.emissions
        assert advanced.topic == "workflow.events"
        assert isinstance(advanced.event, WorkflowAdvanced)
        assert advanced.event.to_state == "STEP_COMPLETED"
        assert advanced.event.attributes["steps_completed"] == str(count)
    assert workflow_events(decisions[0])[0].detail == "autohelix/create_workspace"
    assert state["status"] == "COMPLETED" and not in_flight(state)
    assert state["finished"] == "2026-11-25T09:31:30+00:00"
    assert next_deadline(state) is None

    last = decisions[-1]
    assert last.outcome == "completed"
    assert [e.topic for e in last.emissions] == [
        "workflow.events",
        "commands.salesforce",
        "commands.notifications",
        "commands.salesforce",
        "workflow.events",
    ]
    url = f"https://{state['portal_subdomain']}.portal.example.com"
    update = last.emissions[1].event
    assert isinstance(update, SalesforceWriteRequested)
    assert last.emissions[1].key == OPP
    assert update.operation is SalesforceOperation.UPDATE
    assert update.sobject == "Opportunity" and update.record_id == OPP
    assert update.fields == {
        "Provisioning_Status__c": "Complete",
        "Portal_URL__c": url,
        "Onboarding_Date__c": "2026-11-25",
    }
    assert update.time == done_at and update.causation_id == final_results[-1].id

    welcome = last.emissions[2].event
    assert isinstance(welcome, NotificationRequested)
    assert welcome.channel is NotificationChannel.EMAIL
    assert welcome.template == "onboarding_welcome"
    assert welcome.recipient == OWNER
    assert url in welcome.body
    assert f"{url}/getting-started" in welcome.body
    assert f"{url}/training" in welcome.body
    assert "success@example.com" in welcome.body
    assert welcome.data["portal_url"] == url

    kickoff = last.emissions[3].event
    assert isinstance(kickoff, SalesforceWriteRequested)
    assert kickoff.operation is SalesforceOperation.CREATE and kickoff.sobject == "Task"
    assert kickoff.record_id is None and last.emissions[3].key == OPP
    assert kickoff.fields["Subject"] == "Success manager kickoff"
    assert kickoff.fields["ActivityDate"] == "2026-11-27"
    assert kickoff.fields["WhatId"] == OPP
    assert kickoff.fields["Priority"] == "High"
    assert kickoff.fields["OwnerId"] == OWNER

    completed = last.emissions[4].event
    assert isinstance(completed, WorkflowAdvanced)
    assert completed.to_state == "COMPLETED"
    assert completed.attributes["steps_completed"] == "50"
    assert completed.attributes["total_steps"] == "50"
    assert completed.id == derived_event_id(
        state["onboarding_id"], "agents.onboarding", "workflow:completed"
    )


def test_a_result_reported_twice_changes_nothing() -> None:
    _, state, decision = started()
    reqs = requests(decision)
    result = ecosystem.respond(reqs[0])
    once, first = on_result(state, result, CONFIG)
    again, second = on_result(once, result, CONFIG)
    assert len(first.emissions) == 1
    assert second.emissions == () and again == once


def test_deciding_on_the_same_result_twice_gives_equal_events() -> None:
    _, state, decision = started()
    result = ecosystem.respond(requests(decision)[5])
    assert on_result(state, result, CONFIG) == on_result(state, result, CONFIG)


def test_results_after_completion_and_of_other_sagas_are_ignored() -> None:
    _, state, decision = started()
    reqs = requests(decision)
    finished, _ = succeed_all(state, reqs)
    late = ecosystem.respond(reqs[0])
    same, nothing = on_result(finished, late, CONFIG)
    assert same == finished and nothing.emissions == ()
    foreign = replace(late, onboarding_id="another")
    assert on_result(state, foreign, CONFIG)[1].emissions == ()
    unknown = replace(late, system="nowhere")
    assert on_result(state, unknown, CONFIG)[0] == state


def test_on_result_does_not_modify_its_argument() -> None:
    _, state, decision = started()
    before = json.dumps(state, sort_keys=True)
    on_result(state, ecosystem.respond(requests(decision)[0]), CONFIG)
    assert json.dumps(state, sort_keys=True) == before


# --- time-outs and retries ------------------------------------------------------------


def test_a_tick_with_nothing_due_emits_nothing() -> None:
    _, state, _ = started()
    same, decision = on_tick(state, T0 + timedelta(seconds=119), CONFIG)
    assert same == state and decision.emissions == ()


def test_a_timed_out_step_is_retried_with_a_new_id_then_fails_after_max_attempts() -> None:
    _, state, decision = started()
    original = requests(decision)
    # Every step but the first succeeds.
    for request in original[1:]:
        state, _ = on_result(state, ecosystem.respond(request), CONFIG)
    assert in_flight(state)

    tick1 = T0 + timedelta(seconds=121)
    state, retry1 = on_tick(state, tick1, CONFIG)
    (again,) = requests(retry1)
    assert again.id != original[0].id
    assert again.id == derived_event_id(
        state["onboarding_id"], "agents.onboarding", "provision:autohelix/create_workspace#2"
    )
    assert (again.system, again.action, again.parameters) == (
        original[0].system,
        original[0].action,
        original[0].parameters,
    )
    assert again.causation_id == original[0].id
    assert again.deadline == tick1 + timedelta(seconds=120 + 5)
    assert again.time == tick1
    (retried,) = workflow_events(retry1)
    assert retried.to_state == "STEP_RETRIED"
    assert state["steps"]["autohelix/create_workspace"]["attempts"] == 2

    tick2 = tick1 + timedelta(seconds=126)
    state, retry2 = on_tick(state, tick2, CONFIG)
    (third,) = requests(retry2)
    assert third.deadline == tick2 + timedelta(seconds=120 + 10)
    assert state["steps"]["autohelix/create_workspace"]["attempts"] == 3

    state, nothing = on_tick(state, tick2 + timedelta(seconds=129), CONFIG)
    assert nothing.emissions == ()

    tick3 = tick2 + timedelta(seconds=131)
    state, gave_up = on_tick(state, tick3, CONFIG)
    assert state["status"] == "FAILED" and not in_flight(state)
    assert state["steps"]["autohelix/create_workspace"]["status"] == "FAILED"
    assert gave_up.outcome == "failed"
    assert requests(gave_up) == []
    assert [w.to_state for w in workflow_events(gave_up)] == ["STEP_FAILED", "FAILED"]
    (update,) = gave_up.events("commands.salesforce")
    assert isinstance(update, SalesforceWriteRequested)
    assert update.record_id == OPP
    assert update.fields == {"Provisioning_Status__c": "Failed: 1 of 50 steps"}
    (alert,) = gave_up.events("commands.notifications")
    assert isinstance(alert, NotificationRequested)
    assert alert.channel is NotificationChannel.SLACK
    assert alert.recipient == "#onboarding-alerts"
    assert "autohelix/create_workspace" in alert.body
    assert alert.data["failed_steps"] == "autohelix/create_workspace"
    assert workflow_events(gave_up)[-1].attributes["steps_completed"] == "49"

    # A late success of a given-up step changes nothing.
    late = ecosystem.respond(third)
    assert on_result(state, late, CONFIG)[1].emissions == ()


def test_two_ticks_at_the_same_or_another_time_derive_the_same_ids() -> None:
    _, state, _ = started()
    now = T0 + timedelta(minutes=3)
    a_state, a = on_tick(state, now, CONFIG)
    b_state, b = on_tick(state, now, CONFIG)
    assert a == b and a_state == b_state
    assert len(requests(a)) == N
    _, later = on_tick(state, now + timedelta(seconds=7), CONFIG)
    assert [e.event.id for e in later.emissions] == [e.event.id for e in a.emissions]


def test_everything_timing_out_ends_with_one_summary_alert() -> None:
    _, state, _ = started()
    now = T0
    for _ in range(3):
        now += timedelta(minutes=10)
        state, decision = on_tick(state, now, CONFIG)
    assert state["status"] == "FAILED"
    alerts = decision.events("commands.notifications")
    assert len(alerts) == 1
    (update,) = decision.events("commands.salesforce")
    assert update.fields == {"Provisioning_Status__c": "Failed: 50 of 50 steps"}  # type: ignore[attr-defined]
    counts = Counter(w.to_state for w in workflow_events(decision))
    assert counts == {"STEP_FAILED": 50, "FAILED": 1}


def test_a_step_failing_while_others_run_is_alerted_on_its_own() -> None:
    config = OnboardingConfig(max_attempts=1)
    _, state, decision = started(config)
    reqs = requests(decision)
    failed = result_of(reqs[3], ProvisioningStatus.FAILED, T0 + timedelta(seconds=10), "quota")
    state, d = on_result(state, failed, config)
    assert in_flight(state) and d.outcome == "step_failed"
    (alert,) = d.events("commands.notifications")
    assert isinstance(alert, NotificationRequested)
    assert alert.recipient == "#onboarding-alerts" and alert.template == "onboarding_step_failed"
    assert "enterprise_automation/setup_automation" in alert.body and "quota" in alert.body
    # The rest succeeding ends the saga FAILED, naming the one failed step.
    for request in reqs[:3] + reqs[4:]:
        state, d = on_result(state, ecosystem.respond(request), config)
    assert state["status"] == "FAILED" and d.outcome == "failed"
    (update,) = d.events("commands.salesforce")
    assert update.fields == {"Provisioning_Status__c": "Failed: 1 of 50 steps"}  # type: ignore[attr-defined]


def test_a_failed_result_is_retried_after_the_backoff() -> None:
    _, state, decision = started()
    reqs = requests(decision)
    failed_at = T0 + timedelta(seconds=10)
    failure = result_of(reqs[0], ProvisioningStatus.FAILED, failed_at, "busy")

    state, d = on_result(state, failure, CONFIG)
    assert d.emissions == () and d.outcome == "retry_scheduled"
    step = state["steps"]["autohelix/create_workspace"]
    assert step["status"] == "PENDING" and step["attempts"] == 1
    assert step["deadline"] == "2026-11-25T09:30:15+00:00"
    assert "busy" in step["detail"]
    # Reported twice: the same state.
    assert on_result(state, failure, CONFIG) == (state, d)

    state, retry = on_tick(state, failed_at + timedelta(seconds=5), CONFIG)
    (second,) = requests(retry)
    assert second.causation_id == reqs[0].id
    assert "busy" in workflow_events(retry)[0].detail

    # The first attempt's failure arriving again is stale: attempt 2 is in flight.
    assert on_result(state, failure, CONFIG)[0] == state
    # The first attempt's success still counts.
    state, done = on_result(state, ecosystem.respond(reqs[0]), CONFIG)
    assert state["steps"]["autohelix/create_workspace"]["status"] == "SUCCEEDED"
    assert done.outcome == "step_done"


def test_a_failed_result_on_the_last_attempt_fails_the_step() -> None:
    config = OnboardingConfig(max_attempts=2)
    _, state, decision = started(config)
    request = requests(decision)[0]
    state, _ = on_result(state, result_of(request, ProvisioningStatus.FAILED, T0, "boom"), config)
    state, retry = on_tick(state, T0 + timedelta(seconds=5), config)
    (second,) = requests(retry)
    state, d = on_result(
        state, result_of(second, ProvisioningStatus.FAILED, T0 + timedelta(seconds=6)), config
    )
    assert state["steps"]["autohelix/create_workspace"]["status"] == "FAILED"
    assert d.outcome == "step_failed"
    assert [w.to_state for w in workflow_events(d)] == ["STEP_FAILED"]


def test_ticks_on_a_finished_saga_do_nothing() -> None:
    _, state, decision = started()
    finished, _ = succeed_all(state, requests(decision))
    assert on_tick(finished, T0 + timedelta(days=1), CONFIG)[1].emissions == ()


def test_a_naive_clock_is_refused() -> None:
    _, state, _ = started()
    with pytest.raises(ValueError, match="timezone-aware"):
        on_tick(state, datetime(2026, 11, 25, 12, 0), CONFIG)


def test_config_backoff_is_exponential() -> None:
    assert [CONFIG.backoff_seconds(n) for n in (1, 2, 3)] == [5.0, 10.0, 20.0]
    assert onboarding.portal_subdomain(ACCOUNT, CONFIG) == onboarding.portal_subdomain(
        ACCOUNT, CONFIG
    )
    assert onboarding.portal_subdomain(ACCOUNT, CONFIG) != onboarding.portal_subdomain(
        "001000000000002AAA", CONFIG
    )


def test_the_state_rebuilt_from_the_plan_is_the_state_start_returned() -> None:
    _, state, decision = started()
    planned = decision.emissions[0].event
    assert isinstance(planned, OnboardingPlanned)

    rebuilt = state_from_plan(planned, OnboardingConfig())

    assert rebuilt == {**state, "owner_id": None}
