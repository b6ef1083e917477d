"""`sfe reconcile` against the real broker, PostgreSQL, the org simulator and the real sink.

A person changes an AI field in the org by hand; reconcile must report exactly that
record and field, and ``--apply`` must put the log's value back through
``commands.salesforce`` and the Salesforce sink.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from confluent_kafka import Producer
from pydantic import SecretStr
from simple_salesforce import Salesforce
from sqlalchemy import Engine, create_engine, text

from projections.reconcile import AGENT, LogReader, Report, reconcile
from projections.reconcile_cli import reconcile_command
from schema_registry.codec import Codec
from schema_registry.events import CommandExecuted, CommandOutcome, SalesforceWriteRequested
from schema_registry.ids import derived_event_id
from sfe import metrics
from sfe.settings import Settings
from simulator.app import RunningSimulator, start_in_thread
from simulator.config import SimConfig
from streams.salesforce.rest import connect
from tests.kafka_helpers import catalogue_topics
from tests.projections.test_salesforce_sink import (
    RunningSink,
    create_leads,
    lead_field,
    read,
    results,
    send,
    update,
)

pytestmark = pytest.mark.integration

DIFF_LINE = re.compile(r"^DIFF Lead (\S+) (\S+): salesforce=(.*) expected=(.*) \(command (\S+)\)$")


@pytest.fixture
def prefix(stack: Settings) -> Iterator[str]:
    with catalogue_topics(stack) as prefix:
        yield prefix


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[RunningSimulator]:
    running = start_in_thread(SimConfig(state_dir=tmp_path, port=0))
    yield running
    running.stop()


@pytest.fixture
def engine(stack: Settings) -> Iterator[Engine]:
    engine = create_engine(stack.sqlalchemy_url())
    yield engine
    engine.dispose()


def cli_settings(stack: Settings, sim: RunningSimulator, prefix: str) -> Settings:
    """The settings `sfe reconcile` would read from SFE_* for this test's topics and org."""
    config = sim.client_config()
    return stack.model_copy(
        update={
            "topic_prefix": prefix,
            "sf_login_url": config.login_url,
            "sf_client_id": config.client_id,
            "sf_client_secret": SecretStr(str(config.client_secret)),
            "sf_username": config.username,
            "sf_password": SecretStr(str(config.password)),
            "sf_private_key_file": None,
            "sf_private_key": None,
            "sf_api_version": config.api_version,
            "sf_ca_bundle": config.ca_bundle,
            "sink_name": f"test-{prefix}",  # RunningSink's name
        }
    )


def run_cli(settings: Settings, *args: str) -> list[str]:
    outcome = CliRunner().invoke(reconcile_command, list(args), obj=settings)
    assert outcome.exit_code == 0, outcome.output
    return outcome.stdout.splitlines()


def run(
    stack: Settings, sim: RunningSimulator, prefix: str, since: datetime | None = None
) -> Report:
    reader = LogReader(stack.kafka_bootstrap, Codec(topic_prefix=prefix))
    try:
        return reconcile(reader, connect(sim.client_config()), "Lead", since)
    finally:
        reader.close()


def by_hand(sf: Salesforce, lead_id: str, fields: dict[str, object] | None = None) -> None:
    """A person edits (or, without fields, deletes) a lead in the org."""
    if fields is None:
        sf.restful(f"sobjects/Lead/{lead_id}", method="DELETE")
    else:
        sf.restful(f"sobjects/Lead/{lead_id}", method="PATCH", json=fields)


def differences_total() -> float:
    value = metrics.REGISTRY.get_sample_value("sfe_reconcile_differences_total", {"object": "Lead"})
    return value or 0.0


def test_a_score_changed_by_hand_is_reported_and_put_back(
    stack: Settings, engine: Engine, sim: RunningSimulator, prefix: str
) -> None:
    sf = connect(sim.client_config())
    leads = create_leads(sf, 40)
    commands = [
        update(
            lead,
            {
                "AI_Enhanced_Score__c": float(10 + i),
                "AI_Reasoning__c": f"reason {i}\nsecond line",
                "AI_Lead_Route__c": "Nurture",
                "Tech_Stack__c": "AWS;Kafka",
                "Estimated_Budget__c": 1234.5,
            },
        )
        for i, lead in enumerate(leads)
    ]
    send(stack, prefix, commands)
    with RunningSink(stack, engine, sim, prefix):
        assert len(results(stack, prefix, len(commands))) == len(commands)
    settings = cli_settings(stack, sim, prefix)

    # Nothing drifted yet: the value-aware comparison finds no difference.
    quiet = run_cli(settings, "--object", "Lead")
    assert not [line for line in quiet if line.startswith(("DIFF", "MISSING"))]
    assert quiet[-1] == (
        "Lead: 40 commands (0 rejected), 40 records in scope, 40 compared, "
        "0 differ (0 fields), 0 missing, 0 pending"
    )

    # A person changes one lead's score in the org.
    target = leads[17]
    by_hand(sf, target, {"AI_Enhanced_Score__c": 99.0})
    assert lead_field(sim, target, "AI_Enhanced_Score__c") == 99.0
    before = differences_total()

    dry = run_cli(settings, "--object", "Lead")
    diffs = [DIFF_LINE.match(line) for line in dry if line.startswith("DIFF")]
    assert len(diffs) == 1 and diffs[0] is not None
    assert diffs[0].groups() == (
        target,
        "AI_Enhanced_Score__c",
        "99.0",
        "27.0",
        commands[17].id,
    )
    assert "1 differ (1 fields)" in dry[-2]
    assert dry[-1] == "dry run: nothing written (--apply appends the corrections)"
    assert differences_total() - before == 1
    assert len(read(stack, prefix, "commands.salesforce", 41, timeout=5)) == 40  # none appended

    with engine.connect() as connection:
        audited = connection.execute(text("SELECT coalesce(max(seq), 0) FROM audit_log")).scalar()
    applied = run_cli(settings, "--object", "Lead", "--apply")
    key = applied[-1].split("(run ")[1].rstrip(")")
    assert applied[-1].startswith("1 corrections appended to commands.salesforce")
    log = read(stack, prefix, "commands.salesforce", 41)
    assert len(log) == 41
    fix = next(c for c in log if c.source == AGENT)
    assert isinstance(fix, SalesforceWriteRequested)
    assert fix.id == derived_event_id(key, AGENT, f"correct:Lead/{target}")
    assert (fix.sobject, fix.record_id, dict(fix.fields)) == (
        "Lead",
        target,
        {"AI_Enhanced_Score__c": 27.0},
    )
    assert fix.causation_id == commands[17].id
    with engine.connect() as connection:
        entry = connection.execute(
            text(
                "SELECT subject, details FROM audit_log "
                "WHERE action = 'reconcile.apply' AND details->>'run' = :run AND seq > :audited"
            ),
            {"run": key, "audited": audited},
        ).one()
    assert entry.subject == "Lead" and entry.details["corrections"] == 1

    # The normal sink applies the correction (its memory said 27.0 was written).
    used = sim.state.budget.used
    with RunningSink(stack, engine, sim, prefix):
        outcome = [r for r in results(stack, prefix, 41) if r.causation_id == fix.id]
    assert [r.outcome for r in outcome] == [CommandOutcome.APPLIED]
    assert lead_field(sim, target, "AI_Enhanced_Score__c") == 27.0
    assert sim.state.budget.used - used >= 1

    after = run_cli(settings, "--object", "Lead")
    assert not [line for line in after if line.startswith("DIFF")]
    assert "41 commands (0 rejected), 40 records in scope, 40 compared, 0 differ" in after[-1]


def test_rejected_pending_missing_and_since(
    stack: Settings, engine: Engine, sim: RunningSimulator, prefix: str
) -> None:
    sf = connect(sim.client_config())
    kept, refused, deleted, old, late = create_leads(sf, 5)
    first = [
        update(kept, {"AI_Enhanced_Score__c": 10.0}),
        update(refused, {"AI_Enhanced_Score__c": 20.0}),
        update(deleted, {"AI_Enhanced_Score__c": 30.0}),
        update(old, {"AI_Enhanced_Score__c": 40.0}),
        # Salesforce refuses the whole command (restricted picklist): never expected.
        update(refused, {"AI_Enhanced_Score__c": 21.0, "AI_Lead_Route__c": "Nobody"}),
    ]
    first[3] = SalesforceWriteRequested(
        **{**first[3].__dict__, "time": datetime(2025, 1, 1, tzinfo=UTC)}
    )
    # In two sink runs: the sink merges one record's commands of a batch into one write.
    send(stack, prefix, first[:4])
    with RunningSink(stack, engine, sim, prefix):
        assert len(results(stack, prefix, 4)) == 4
        send(stack, prefix, first[4:])
        by_command = {r.causation_id: r.outcome for r in results(stack, prefix, 5)}
    assert by_command[first[4].id] is CommandOutcome.REJECTED
    assert lead_field(sim, refused, "AI_Enhanced_Score__c") == 20.0
    # Sent while the sink is down: pending, whatever the org holds.
    send(stack, prefix, [update(late, {"AI_Enhanced_Score__c": 50.0})])

    by_hand(sf, kept, {"AI_Enhanced_Score__c": 11.0})
    by_hand(sf, old, {"AI_Enhanced_Score__c": 41.0})
    by_hand(sf, deleted)

    report = run(stack, sim, prefix)
    assert report.commands == 6 and report.rejected == 1 and report.pending == 1
    assert report.missing == [deleted]
    found = {d.record_id: dict(d.fields) for d in report.differences}
    assert found == {
        kept: {"AI_Enhanced_Score__c": (10.0, 11.0)},
        old: {"AI_Enhanced_Score__c": (40.0, 41.0)},
    }
    assert [c.record_id for c in report.corrections] == sorted([kept, old])
    # Same log, same run: same correction ids.
    assert [c.id for c in run(stack, sim, prefix).corrections] == [c.id for c in report.corrections]

    recent = run(stack, sim, prefix, since=datetime(2026, 1, 1, tzinfo=UTC))
    assert [d.record_id for d in recent.differences] == [kept]
    assert recent.in_scope == 3  # kept, refused, deleted (old is before; late is pending)
    assert recent.corrections[0].id != report.corrections[0].id


def test_an_id_that_is_not_a_salesforce_id_is_skipped_and_reported(
    stack: Settings, engine: Engine, sim: RunningSimulator, prefix: str
) -> None:
    sf = connect(sim.client_config())
    [lead] = create_leads(sf, 1)
    good = update(lead, {"AI_Enhanced_Score__c": 42.0})
    send(stack, prefix, [good])
    with RunningSink(stack, engine, sim, prefix):
        assert len(results(stack, prefix, 1)) == 1
    hostile_id = "' OR Id != null --"
    hostile = update(hostile_id, {"AI_Enhanced_Score__c": 1.0})
    send(stack, prefix, [hostile])
    applied = CommandExecuted(
        id=f"result-of-{hostile.id}",
        source="projections.salesforce",
        subject=hostile_id,
        time=datetime.now(UTC),
        causation_id=hostile.id,
        command_type="SalesforceWriteRequested",
        target=f"Lead/{hostile_id}",
        outcome=CommandOutcome.APPLIED,
        operation="UPDATE",
    )
    codec = Codec(topic_prefix=prefix)
    encoded = codec.encode(prefix + "command.results", applied)
    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap})
    producer.produce(
        prefix + "command.results",
        encoded.value,
        hostile_id.encode(),
        headers=list(encoded.headers),
    )
    assert producer.flush(30) == 0

    queries_before = len(sim.state.jobs)
    lines = run_cli(cli_settings(stack, sim, prefix), "--object", "Lead", "--apply")
    assert f'INVALID Lead "{hostile_id}": not a Salesforce id; skipped' in "\n".join(lines)
    assert "1 records in scope, 1 compared, 0 differ" in lines[-2]
    assert lines[-1].startswith("0 corrections appended")
    queries = [
        str(job.info["query"])
        for job in list(sim.state.jobs.values())[queries_before:]
        if job.kind == "query"
    ]
    assert queries and all(hostile_id not in query for query in queries)
