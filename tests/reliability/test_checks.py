"""The soak's checks on hand-made inputs: each one counts losses and duplicates as it should."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

from projections.salesforce_sink import AGENT as SINK_AGENT
from schema_registry.events import (
    ChangeEventHeader,
    ChangeType,
    ChurnRiskAssessed,
    CommandExecuted,
    CommandOutcome,
    Event,
    LeadRoute,
    LeadScored,
    ModelRef,
    OnboardingPlanned,
    RecordChanged,
    SalesforceOperation,
    SalesforceWriteRequested,
)
from schema_registry.ids import derived_event_id
from sfe.reliability.checks import (
    Logged,
    check_changes,
    check_decisions,
    check_redundant_writes,
    compare,
    compare_ids,
    count,
    final_values,
    first_results,
    org_changes,
)
from sfe.reliability.faults import FAULT_KINDS, last_error, schedule

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def logged(event: Event, topic: str = "p.x", offset: int = 0) -> Logged:
    return Logged(topic, 0, offset, event)


def change(record: str, tx: str, seq: int = 1, snapshot: bool = False) -> RecordChanged:
    header = ChangeEventHeader(
        entity_name="Lead",
        record_ids=(record,),
        change_type=ChangeType.CREATE,
        change_origin="com/salesforce/api/rest/62.0;client=x",
        transaction_key=tx,
        sequence_number=seq,
        commit_timestamp=NOW,
        commit_number=1,
        commit_user="005",
    )
    return RecordChanged(
        id=f"{tx}-{record}-{snapshot}",
        source="t",
        subject=record,
        time=NOW,
        header=header,
        replay_id=None,
        event_uuid=None,
        is_snapshot=snapshot,
    )


def org_event(replay: int, tx: str, records: list[str]) -> tuple[str, int, str, str]:
    header = {"entityName": "Lead", "transactionKey": tx, "sequenceNumber": 1, "recordIds": records}
    return (
        "ChangeEvents",
        replay,
        "/data/LeadChangeEvent",
        json.dumps({"ChangeEventHeader": header}),
    )


def scored(lead: str, event_id: str) -> LeadScored:
    return LeadScored(
        id=event_id, source="t", subject=lead, time=NOW, causation_id=f"c-{lead}",
        model=ModelRef(name="lead", version="1"), einstein_score=None, model_score=0.5,
        enhanced_score=50.0, route=LeadRoute.MQL, reasoning="",
    )  # fmt: skip


def plan(opportunity: str, event_id: str, cause: str) -> OnboardingPlanned:
    return OnboardingPlanned(
        id=event_id, source="t", subject="001A", time=NOW, causation_id=cause,
        opportunity_id=opportunity, account_id="001A", tasks=(), deadline_seconds=60,
    )  # fmt: skip


def assessed(account: str, event_id: str, cause: str) -> ChurnRiskAssessed:
    return ChurnRiskAssessed(
        id=event_id, source="t", subject=account, time=NOW, causation_id=cause,
        model=ModelRef(name="churn", version="1"), as_of=NOW.date(), churn_probability=0.2,
        risk_factors=(), intervention_plan=(), high_risk=False,
    )  # fmt: skip


def test_compare_counts_lost_duplicated_and_unexpected() -> None:
    check = compare("x", {"a", "b", "c"}, ["a", "a", "a", "b", "z"])
    assert (check.expected, check.found, check.lost, check.duplicated, check.unexpected) == (
        3, 5, 1, 2, 1,
    )  # fmt: skip
    assert not check.ok and "lost c" in check.examples
    assert compare("y", {"a"}, ["a"]).ok


def test_compare_ids_reports_repeats_as_redeliveries_not_failures() -> None:
    check = compare_ids("x", {"a", "b"}, ["a", "a", "b"])
    assert check.ok and check.redelivered == 1 and check.duplicated == 0
    assert not compare_ids("x", {"a", "b"}, ["a", "a"]).ok


def test_count_is_exact_both_ways() -> None:
    assert count("n", 5, 5).ok
    assert count("n", 5, 4).lost == 1 and count("n", 5, 7).unexpected == 2


def test_changes_lost_twice_and_recovered_by_snapshot() -> None:
    published = org_changes(
        [
            org_event(1, "t1", ["00Q1", "00Q2"]),
            org_event(2, "t2", ["00Q3"]),
            org_event(3, "t3", ["00Q4"]),
        ]
    )
    assert len(published) == 4
    cdc = [logged(change("00Q1", "t1")), logged(change("00Q1", "t1")), logged(change("00Q2", "t1"))]
    check = check_changes(published, cdc, purged={})
    assert (check.lost, check.duplicated, check.unexpected) == (2, 1, 0)
    # t2 and t3 purged before they were read; only 00Q3 was re-read as a snapshot.
    purged = {k: v for k, v in published.items() if v.replay_id >= 2}
    cdc = [
        logged(change("00Q1", "t1")),
        logged(change("00Q2", "t1")),
        logged(change("00Q3", "x", snapshot=True)),
    ]
    check = check_changes(published, cdc, purged)
    assert (check.lost, check.recovered, check.duplicated) == (1, 1, 0)
    assert check.examples == [f"lost {('Lead', 't3', 1, '00Q4')}"]


def test_decisions_lead_path_repeats_fail_agent_repeats_are_redeliveries() -> None:
    leads = [
        logged(scored("00Q1", "d1"), "p.decisions.leads"),
        logged(scored("00Q2", "d2"), "p.decisions.leads"),
    ]
    agents = [
        logged(plan("006A", "o1", "c1"), "p.decisions.onboarding"),
        logged(assessed("001A", "a1", "b1"), "p.decisions.churn"),
        logged(assessed("001A", "a1", "b1"), "p.decisions.churn"),  # redelivered (Faust)
    ]
    checks = {
        c.name: c for c in check_decisions([*leads, *agents], ["00Q1", "00Q2"], [], ["006A"], 1)
    }
    assert all(c.ok for c in checks.values())
    assert checks["agent decisions: one id per cause"].redelivered == 1
    # A plan appended twice: its agent writes in transactions, so that is a duplicate.
    replanned = [*agents, logged(plan("006A", "o1", "c1"), "p.decisions.onboarding")]
    checks = {c.name: c for c in check_decisions(replanned, [], [], ["006A"], 1)}
    assert checks["decisions.onboarding: each fact once (txn)"].duplicated == 1
    # The same fact decided twice in the transactional path is a duplicate ...
    twice = [*leads, logged(scored("00Q1", "d1"), "p.decisions.leads")]
    checks = {c.name: c for c in check_decisions(twice, ["00Q1", "00Q2"], [], [], None)}
    assert checks["decisions.leads: each fact once (txn)"].duplicated == 1
    assert checks["decisions.leads: one per lead"].ok
    # ... the same decision from another fact (a recovery snapshot) is a redelivery ...
    again = [
        *leads,
        logged(replace(scored("00Q1", "d1"), causation_id="snap"), "p.decisions.leads"),
    ]
    checks = {c.name: c for c in check_decisions(again, ["00Q1", "00Q2"], [], [], None)}
    assert all(c.ok for c in checks.values())
    assert checks["decisions.leads: each fact once (txn)"].redelivered == 1
    # ... and a second decision id for one lead is a duplicate.
    other_id = [*leads, logged(scored("00Q1", "d9"), "p.decisions.leads")]
    checks = {c.name: c for c in check_decisions(other_id, ["00Q1", "00Q2"], [], [], None)}
    assert checks["decisions.leads: one per lead"].duplicated == 1
    # Two different decisions for one cause, and a deal won with no plan.
    other = [*agents, logged(plan("006A", "o2", "c1"), "p.decisions.onboarding")]
    checks = {c.name: c for c in check_decisions(other, [], [], ["006A", "006B"], None)}
    assert checks["agent decisions: one id per cause"].duplicated == 1
    assert checks["onboarding plans: one per deal won"].lost == 1


def test_redundant_writes_are_the_pipelines_unchanged_writes() -> None:
    status = {
        "record_writes": {
            "com/salesforce/api/rest/62.0;client=sfe-pipeline": {"changed": 7, "unchanged": 2},
            "com/salesforce/api/rest/62.0;client=workload": {"created": 9, "unchanged": 4},
        }
    }
    check = check_redundant_writes(status, "sfe-pipeline")
    assert (check.expected, check.found, check.duplicated) == (7, 9, 2) and not check.ok
    # After the sink was interrupted before a commit, re-sent writes are reported, not failed.
    resent = check_redundant_writes(status, "sfe-pipeline", interruptions=1)
    assert resent.ok and resent.redelivered == 2


def test_the_schedule_kills_the_worker_between_every_two_other_faults() -> None:
    steps = schedule(FAULT_KINDS)
    assert set(steps) == set(FAULT_KINDS)
    assert steps.count("worker_kill") == 4
    assert steps[0] == "worker_kill" and steps[3] == "worker_kill"
    assert schedule(["sf_5xx"]) == ["sf_5xx"] and schedule(["worker_kill"]) == ["worker_kill"]


def command(command_id: str, record: str, value: float) -> SalesforceWriteRequested:
    return SalesforceWriteRequested(
        id=command_id, source="t", subject=record, time=NOW,
        operation=SalesforceOperation.UPDATE, sobject="Lead", record_id=record,
        fields={"AI_Enhanced_Score__c": value},
    )  # fmt: skip


def result(command_id: str, purpose: str = "result") -> CommandExecuted:
    return CommandExecuted(
        id=derived_event_id(command_id, SINK_AGENT, purpose), source="t", subject="00Q1",
        time=NOW, causation_id=command_id, command_type="SalesforceWriteRequested",
        target="00Q1", outcome=CommandOutcome.APPLIED,
    )  # fmt: skip


def test_final_values_skip_a_redelivered_older_command() -> None:
    # c1 (score 10), c2 (score 20), then c1 redelivered: the sink skips the copy.
    commands = [
        command("c1", "00Q1", 10.0),
        command("c2", "00Q1", 20.0),
        command("c1", "00Q1", 10.0),
    ]
    log = {
        "commands.salesforce": [
            logged(c, "p.commands.salesforce", i) for i, c in enumerate(commands)
        ],
        "command.results": [logged(result("c1")), logged(result("c2"))],
    }
    values, creates = final_values(log)
    assert values == {("Lead", "00Q1", "AI_Enhanced_Score__c"): 20.0} and creates == {}


def test_first_results_count_repeats_apart() -> None:
    commands = [command("c1", "00Q1", 1.0), command("c2", "00Q1", 2.0)]
    check = first_results(commands, [result("c1"), result("c1", "result:repeat")])
    assert (check.lost, check.redelivered, check.unexpected) == (1, 1, 0)
    assert first_results(commands, [result("c1"), result("c2")]).ok


def test_last_error_is_the_last_exception_line_of_a_log() -> None:
    log = (
        "started\nTraceback (most recent call last):\n  File x\nKeyError: 'a'\n"
        "again\nsqlalchemy.exc.OperationalError: connection refused\n"
    )
    assert last_error(log) == "sqlalchemy.exc.OperationalError: connection refused"
    assert last_error("all good\n") == ""
