"""`sfe replay --rescore --model lead:2` against the real broker and the real lead worker.

Lead facts are appended, ``sfe worker --role leads`` (with lead:1) makes the live
decisions, then history is rescored with lead:2 (trained with another seed) and with
lead:1 itself, through the command line, into a separate topic namespace.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from confluent_kafka import Consumer
from confluent_kafka import TopicPartition as Partition
from confluent_kafka.admin import AdminClient

from agents.lead_qualification import LeadConfig
from ml.registry import Registry
from projections.rescore import LeadFlow, Rescore, build_flow, resolve_model
from schema_registry.events import (
    ChangeType,
    Event,
    LeadScored,
    OpportunityInsightsComputed,
    PlatformEventPublished,
)
from sfe.cli import main
from sfe.settings import Settings
from tests.conftest import SMALL_ROWS
from tests.kafka_helpers import catalogue_topics
from tests.workers.support import WorkerProcess, append, change, read_events

pytestmark = pytest.mark.integration

LEADS = 14
PLATFORM_ONLY = 2


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry of its own: lead:1 (promoted), lead:2 (another seed) and win:1."""
    from ml.training.pipeline import synthetic_training_data, train
    from tests.ml.helpers import SMALL

    root = tmp_path_factory.mktemp("rescore-registry")
    registry = Registry(root)
    train("lead", synthetic_training_data("lead", SMALL_ROWS, seed=3), registry, hp=SMALL)
    other = replace(SMALL, seed=29)
    train(
        "lead",
        synthetic_training_data("lead", SMALL_ROWS, seed=17),
        registry,
        hp=other,
        promote=False,
    )
    train("win", synthetic_training_data("win", SMALL_ROWS, seed=3), registry, hp=SMALL)
    assert registry.versions("lead") == [1, 2] and registry.promoted("lead") == 1
    return root


@pytest.fixture
def prefix(stack: Settings) -> Iterator[str]:
    """The catalogue under a fresh prefix; its rescore namespaces go with it."""
    with catalogue_topics(stack, "rs") as prefix:
        yield prefix


def lead_fields(index: int) -> dict[str, object]:
    return {
        "FirstName": "Grace",
        "LastName": f"Hopper-{index}",
        "Company": f"Compilers {index}",
        "Email": f"grace{index}@compilers.example.com",
        "Title": ("VP Engineering", "Analyst", "CTO", "Developer")[index % 4],
        "LeadSource": ("Web", "Partner Referral", "Trade Show")[index % 3],
        "Industry": ("Technology", "Finance", "Retail")[index % 3],
        "NumberOfEmployees": 20 + 180 * index,
        "AnnualRevenue": 1_000_000.0 * (1 + index * 3),
        "Country": "United States",
        "Status": "Open - Not Contacted",
        "Einstein_Lead_Score__c": float(5 + index * 7),
    }


def lead_id(index: int) -> str:
    return f"00Q{index:015d}"


def new_lead_event(index: int) -> PlatformEventPublished:
    now = datetime.now(UTC)
    return PlatformEventPublished(
        id=str(uuid.uuid4()),
        source="test",
        subject=lead_id(index),
        time=now,
        event_name="New_Lead__e",
        replay_id="7",
        event_uuid=str(uuid.uuid4()),
        created_date=now,
        created_by_id="005000000000USRAAA",
        fields={
            "Lead_Id__c": lead_id(index),
            "Email__c": f"pe{index}@example.com",
            "Company__c": f"Platform {index}",
            "Source__c": "Web",
        },
    )


def end_offsets(settings: Settings, prefix: str) -> dict[tuple[str, int], int]:
    """The end offset of every partition of the live topics (the namespace's excluded)."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": "unused"})
    try:
        names = [
            name
            for name in consumer.list_topics(timeout=30).topics
            if name.startswith(prefix) and not name.startswith(prefix + "rescore.")
        ]
        found = {}
        for name in names:
            for number in consumer.list_topics(name, timeout=30).topics[name].partitions:
                _low, high = consumer.get_watermark_offsets(Partition(name, number), 10)
                found[(name, number)] = high
        return found
    finally:
        consumer.close()


def namespace_topics(settings: Settings, namespace: str) -> list[str]:
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    return sorted(t for t in admin.list_topics(timeout=30).topics if t.startswith(namespace))


def rescore_cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    outcome = CliRunner().invoke(main, ["replay", "--rescore", *args], env=env)
    return outcome.exit_code, outcome.stdout, outcome.stderr


def test_rescoring_leads_with_another_version_writes_a_namespace_and_compares(
    stack: Settings, prefix: str, models: Path, tmp_path: Path
) -> None:
    env = {
        "SFE_TOPIC_PREFIX": prefix,
        "SFE_MODEL_DIR": str(models),
        "SFE_STATE_DIR": str(tmp_path / "state"),
        "SFE_METRICS_PORT": "0",
        "SFE_LOG_LEVEL": "WARNING",
        "SFE_LEAD_TRIGGERS": "both",
    }
    creates = [change("Lead", lead_id(i), ChangeType.CREATE, lead_fields(i)) for i in range(LEADS)]
    ignored = [
        change("Lead", lead_id(90), ChangeType.CREATE, lead_fields(90), echo=True),
        change("Lead", lead_id(1), ChangeType.UPDATE, {"Title": "CEO"}),
    ]
    announced = [new_lead_event(100 + i) for i in range(PLATFORM_ONLY)]
    append(stack, prefix, "sf.cdc.Lead", [*creates, *ignored])
    append(stack, prefix, "sf.events.New_Lead__e", announced)
    facts = {event.id: event.subject for event in [*creates, *announced]}

    worker = WorkerProcess(["worker", "--role", "leads"], env, tmp_path / "worker.log")
    try:
        live_events = read_events(
            stack, prefix, "decisions.leads", lambda e: len(e) >= len(facts), settle=2
        )
    finally:
        assert worker.stop() == 0, worker.output()
    live = {e.causation_id: e for e in live_events if isinstance(e, LeadScored)}
    assert set(live) == set(facts), worker.output()
    assert {e.model.version for e in live.values()} == {"1"}
    before_offsets = end_offsets(stack, prefix)

    code, out, err = rescore_cli(env, "--model", "lead:2", "--json", "--top", "5")
    assert code == 0, err
    report = json.loads(out)
    namespace = report["namespace"]
    assert namespace.startswith(f"{prefix}rescore.lead-v2.")
    assert "rescore-lead-v2:" in err and "ETA" in err  # progress on stderr
    assert f"sfe replay --rescore --drop {namespace}" in err

    # The live topics received nothing; the namespace holds decisions, never commands.
    assert end_offsets(stack, prefix) == before_offsets
    assert namespace_topics(stack, namespace) == [
        namespace + name for name in ("decisions.leads", "predictions", "workflow.events")
    ]
    rescored_events = read_events(
        stack, namespace, "decisions.leads", lambda e: len(e) >= len(facts), settle=2
    )
    rescored = {e.causation_id: e for e in rescored_events if isinstance(e, LeadScored)}
    assert len(rescored_events) == len(rescored) == len(facts)
    assert {cause: e.subject for cause, e in rescored.items()} == facts
    assert {e.model.version for e in rescored.values()} == {"2"}
    # Re-decided with the enrichment the live decisions recorded.
    assert all(rescored[c].enrichment == live[c].enrichment for c in facts)
    predictions = read_events(stack, namespace, "predictions", lambda e: len(e) >= len(facts))
    assert len(predictions) == len(facts)

    # The printed counts are those of the events.
    before = Counter(live[c].route.value for c in facts)
    after = Counter(rescored[c].route.value for c in facts)
    transitions = Counter((live[c].route.value, rescored[c].route.value) for c in facts)
    assert report["matched"] == len(facts) and report["facts"] == len(facts)
    assert report["only_rescored"] == 0 and report["only_live"] == 0
    assert report["live_models"] == {"lead:1": len(facts)}
    assert {b: n for b, n in report["before"].items() if n} == dict(before)
    assert {b: n for b, n in report["after"].items() if n} == dict(after)
    assert {(t["from"], t["to"]): t["count"] for t in report["transitions"]} == dict(transitions)
    changes = {c: rescored[c].enhanced_score - live[c].enhanced_score for c in facts}
    assert report["mean_score_change"] == pytest.approx(
        sum(changes.values()) / len(facts), abs=1e-3
    )
    # Largest absolute change first; ties by record id, then cause id.
    movers = sorted(
        changes.items(), key=lambda item: (-abs(round(item[1], 4)), facts[item[0]], item[0])
    )[:5]
    assert any(value != 0 for _, value in movers)  # another seed moves some leads
    assert [m["cause_id"] for m in report["movers"]] == [cause for cause, _ in movers]
    first = report["movers"][0]
    assert first["old_score"] == live[first["cause_id"]].enhanced_score
    assert first["new_score"] == rescored[first["cause_id"]].enhanced_score
    assert first["record_id"] == facts[first["cause_id"]]

    # The text report prints the same counts.
    code, text, err = rescore_cli(env, "--model", "lead:2", "--no-keep")
    assert code == 0, err
    for band in ("SENIOR_AE", "NURTURE", "MQL"):
        row = next(line for line in text.splitlines() if line.startswith(band + " "))
        assert row.split()[1:3] == [str(before[band]), str(after[band])]
    assert "biggest movers (top" in text
    second = text.split("namespace: ")[1].split()[0]
    assert second != namespace and namespace_topics(stack, second) == []

    # The same version as the live decisions: nothing moves.
    code, out, err = rescore_cli(env, "--model", "lead:1", "--json", "--no-keep")
    assert code == 0, err
    same = json.loads(out)
    assert same["matched"] == len(facts)
    assert same["movers"] == [] and same["mean_abs_score_change"] == 0.0
    assert {(t["from"], t["to"]): t["count"] for t in same["transitions"]} == {
        (band, band): count for band, count in before.items()
    }
    assert end_offsets(stack, prefix) == before_offsets

    # --drop deletes the kept namespace, and refuses anything that is not one.
    code, _, err = rescore_cli(env, "--drop", prefix)
    assert code == 2 and "not a rescore namespace" in err
    code, _, err = rescore_cli(env, "--drop", namespace)
    assert code == 0, err
    assert namespace_topics(stack, namespace) == []
    assert end_offsets(stack, prefix) == before_offsets


def test_a_stopped_rescore_reports_what_it_did_and_keeps_its_namespace(
    stack: Settings, prefix: str, models: Path
) -> None:
    append(
        stack,
        prefix,
        "sf.cdc.Lead",
        [change("Lead", lead_id(i), ChangeType.CREATE, lead_fields(i)) for i in range(3)],
    )
    settings = stack.model_copy(update={"topic_prefix": prefix, "model_dir": models})
    model = resolve_model(Registry(models), "lead:2")
    run = Rescore(settings, model, LeadFlow(model, LeadConfig(), "cdc"))
    stop = threading.Event()
    stop.set()
    report = run.run(stop)  # the namespace is under the test's prefix: deleted with it
    assert report.interrupted and report.facts == 0 and report.only_live == 0
    assert namespace_topics(stack, run.namespace) == list(run.topics)


def test_rescoring_opportunities_folds_snapshots_as_the_live_agent_does(
    stack: Settings, prefix: str, models: Path, tmp_path: Path
) -> None:
    opportunity = "006000000000000001"
    history = [
        change(
            "Opportunity",
            opportunity,
            ChangeType.CREATE,
            {"Name": "Big deal", "StageName": "Prospecting", "Amount": 50_000.0},
        ),
        change("Opportunity", opportunity, ChangeType.UPDATE, {"Amount": 60_000.0}),
        change("Opportunity", opportunity, ChangeType.UPDATE, {"StageName": "Qualification"}),
        change("Opportunity", opportunity, ChangeType.UPDATE, {"StageName": "Proposal"}, echo=True),
        change("Opportunity", opportunity, ChangeType.UPDATE, {"StageName": "Closed Won"}),
    ]
    append(stack, prefix, "sf.cdc.Opportunity", history)
    env = {
        "SFE_TOPIC_PREFIX": prefix,
        "SFE_MODEL_DIR": str(models),
        "SFE_STATE_DIR": str(tmp_path / "state"),
        "SFE_METRICS_PORT": "0",
        "SFE_LOG_LEVEL": "WARNING",
    }
    worker = WorkerProcess(["worker", "--role", "opportunities"], env, tmp_path / "worker.log")
    try:
        live = read_events(
            stack, prefix, "decisions.opportunities", lambda e: len(e) >= 2, timeout=120, settle=2
        )
    finally:
        worker.stop()
    assert [e.causation_id for e in live] == [history[0].id, history[2].id], worker.output()

    settings = stack.model_copy(update={"topic_prefix": prefix, "model_dir": models})
    model = resolve_model(Registry(models), "win:1")
    run = Rescore(settings, model, build_flow(settings, model))
    report = run.run(threading.Event())  # the namespace is under the test's prefix
    decided: list[Event] = read_events(
        stack, run.namespace, "decisions.opportunities", lambda e: len(e) >= 2, settle=1
    )
    # The CREATE and the stage change; not the amount, the echo nor Closed Won (onboarding's).
    assert [e.causation_id for e in decided] == [history[0].id, history[2].id]
    insights = [e for e in decided if isinstance(e, OpportunityInsightsComputed)]
    assert len(insights) == 2
    assert [e.win_probability for e in insights] == [
        e.win_probability for e in live if isinstance(e, OpportunityInsightsComputed)
    ]
    assert report.facts == 2 and report.matched == 2 and report.only_rescored == 0
    assert report.movers == () and report.mean_abs_change == 0.0
    assert report.commands_withheld >= 2  # the write-backs were never emitted


def test_an_interrupted_rescore_resumes_without_deciding_a_fact_twice(
    stack: Settings, prefix: str, models: Path, tmp_path: Path
) -> None:
    leads = [change("Lead", lead_id(i), ChangeType.CREATE, lead_fields(i)) for i in range(12)]
    append(stack, prefix, "sf.cdc.Lead", leads)
    settings = stack.model_copy(update={"topic_prefix": prefix, "model_dir": models})
    model = resolve_model(Registry(models), "lead:2")
    stop = threading.Event()
    first = Rescore(
        settings,
        model,
        LeadFlow(model, LeadConfig(), "cdc"),
        batch_size=3,
        progress=lambda done, total: stop.set(),  # after the first committed batch
    )
    partial = first.run(stop)
    assert partial.interrupted and 0 < partial.facts < len(leads)

    env = {
        "SFE_TOPIC_PREFIX": prefix,
        "SFE_MODEL_DIR": str(models),
        "SFE_STATE_DIR": str(tmp_path / "state"),
        "SFE_METRICS_PORT": "0",
        "SFE_LOG_LEVEL": "WARNING",
        "SFE_LEAD_TRIGGERS": "cdc",
    }
    code, _, err = rescore_cli(env, "--model", "lead:1", "--resume")
    assert code == 2 and "no rescore run of lead:1 to resume" in err
    code, out, err = rescore_cli(env, "--model", "lead:2", "--resume", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["namespace"] == first.namespace and report["run_id"] == first.run_id
    assert report["facts"] == len(leads) and report["resumed_facts"] == partial.facts
    assert report["records_read"] == len(leads) - partial.facts  # only what was left
    decided = read_events(
        stack, first.namespace, "decisions.leads", lambda e: len(e) >= len(leads), settle=2
    )
    assert sorted(e.causation_id for e in decided) == sorted(e.id for e in leads)
    predictions = read_events(
        stack, first.namespace, "predictions", lambda e: len(e) >= len(leads), settle=1
    )
    assert len(predictions) == len({e.id for e in predictions}) == len(leads)


def test_a_resumed_opportunity_rescore_refolds_but_decides_only_the_rest(
    stack: Settings, prefix: str, models: Path
) -> None:
    history = []
    for n in range(4):
        opportunity = f"006{n:015d}"
        history += [
            change(
                "Opportunity",
                opportunity,
                ChangeType.CREATE,
                {"Name": f"Deal {n}", "StageName": "Prospecting", "Amount": 10_000.0 * (n + 1)},
            ),
            change("Opportunity", opportunity, ChangeType.UPDATE, {"StageName": "Qualification"}),
        ]
    append(stack, prefix, "sf.cdc.Opportunity", history)
    settings = stack.model_copy(update={"topic_prefix": prefix, "model_dir": models})
    model = resolve_model(Registry(models), "win:1")
    whole = Rescore(settings, model, build_flow(settings, model)).run(threading.Event())
    expected = read_events(stack, whole.namespace, "decisions.opportunities", lambda e: len(e) >= 8)

    stop = threading.Event()
    first = Rescore(
        settings,
        model,
        build_flow(settings, model),
        batch_size=3,
        progress=lambda done, total: stop.set(),
    )
    assert first.run(stop).interrupted
    resumed = Rescore(
        settings, model, build_flow(settings, model), run_id=first.run_id, resume=True
    ).run(threading.Event())
    assert not resumed.interrupted and resumed.facts == 8
    decided = read_events(
        stack, first.namespace, "decisions.opportunities", lambda e: len(e) >= 8, settle=2
    )
    assert len(decided) == 8, "no decision twice"
    by_cause = {e.causation_id: e for e in expected}
    assert {e.causation_id for e in decided} == set(by_cause)
    # Decided on the refolded snapshots: the same probabilities as the uninterrupted run.
    assert {
        e.causation_id: e.win_probability
        for e in decided
        if isinstance(e, OpportunityInsightsComputed)
    } == {
        c: e.win_probability
        for c, e in by_cause.items()
        if isinstance(e, OpportunityInsightsComputed)
    }
