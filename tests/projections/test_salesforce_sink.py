"""The Salesforce sink against the real broker, PostgreSQL and the org simulator.

API calls are counted by the simulator (``budget.used``), so every claim about
frugality is measured where Salesforce would bill it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from simple_salesforce import Salesforce
from sqlalchemy import Engine, create_engine, text

from projections.runner import ProjectionRunner
from projections.salesforce import memory
from projections.salesforce.plan import PROTECTED_FIELD
from projections.salesforce.writer import ApiBudget, BudgetSettings, CollectionsWriter
from projections.salesforce_sink import SalesforceSink, run_sink
from schema_registry.codec import Codec
from schema_registry.events import (
    CommandExecuted,
    CommandOutcome,
    EventDeadLettered,
    SalesforceOperation,
    SalesforceWriteRequested,
)
from sfe.settings import Settings
from simulator.app import RunningSimulator, start_in_thread
from simulator.config import SimConfig
from simulator.http.admin import apply_fault
from streams.salesforce.auth import SalesforceAuthConfig
from streams.salesforce.rest import connect
from tests.kafka_helpers import catalogue_topics, consume_records

pytestmark = pytest.mark.integration

AI_FIELDS = (
    "AI_Enhanced_Score__c",
    "AI_Reasoning__c",
    "Company_Intelligence__c",
    "Estimated_Budget__c",
    "Decision_Makers__c",
)
FAST_BUDGET = BudgetSettings(reserve=0, slowdown_window=0, probe_interval_s=0.2)


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


def auth_for(sim: RunningSimulator) -> SalesforceAuthConfig:
    """Password-flow login to the in-process simulator."""
    return sim.client_config()


def create_leads(sf: Salesforce, count: int) -> list[str]:
    ids: list[str] = []
    for start in range(0, count, 200):
        records = [
            {"attributes": {"type": "Lead"}, "LastName": f"L{i}", "Company": "Acme"}
            for i in range(start, min(count, start + 200))
        ]
        answer = sf.restful("composite/sobjects", method="POST", json={"records": records}) or []
        ids.extend(item["id"] for item in answer)
    return ids


def score_commands(lead_ids: list[str], seed: int = 0) -> list[SalesforceWriteRequested]:
    """One command per lead setting the five AI fields (5 field updates per command)."""
    return [
        update(
            lead,
            {
                "AI_Enhanced_Score__c": (i * 7 + seed) % 101,
                "AI_Reasoning__c": f"reason {i}/{seed}",
                "Company_Intelligence__c": f'{{"rank": {i}}}',
                "Estimated_Budget__c": 1000.0 * (i % 50),
                "Decision_Makers__c": f"CTO {i}",
            },
        )
        for i, lead in enumerate(lead_ids)
    ]


def update(
    record_id: str, fields: dict[str, Any], sobject: str = "Lead"
) -> SalesforceWriteRequested:
    return SalesforceWriteRequested(
        id=str(uuid.uuid4()),
        source="test",
        subject=record_id,
        time=datetime.now(UTC),
        operation=SalesforceOperation.UPDATE,
        sobject=sobject,
        record_id=record_id,
        fields=fields,
    )


def send(stack: Settings, prefix: str, commands: list[SalesforceWriteRequested]) -> None:
    codec = Codec(topic_prefix=prefix)
    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap, "linger.ms": 20})
    topic = prefix + "commands.salesforce"
    for command in commands:
        encoded = codec.encode(topic, command)
        headers: list[tuple[str, str | bytes | None]] = list(encoded.headers)
        producer.produce(topic, encoded.value, command.subject.encode(), headers=headers)
        producer.poll(0)
    assert producer.flush(30) == 0


def read(stack: Settings, prefix: str, topic: str, expected: int, timeout: float = 60) -> list[Any]:
    codec = Codec(topic_prefix=prefix)
    records = consume_records(stack, prefix + topic, expected, timeout=timeout)
    return [codec.decode(prefix + topic, value, headers) for _, value, headers in records]


def results(
    stack: Settings, prefix: str, expected: int, timeout: float = 60
) -> list[CommandExecuted]:
    return read(stack, prefix, "command.results", expected, timeout)


class RunningSink:
    """The sink on a background thread, as `sfe sink salesforce` runs it."""

    def __init__(
        self,
        stack: Settings,
        engine: Engine,
        sim: RunningSimulator,
        prefix: str,
        budget: BudgetSettings = FAST_BUDGET,
        timeout_s: float = 60.0,
        name: str | None = None,
        bulk_threshold: int = 0,
    ) -> None:
        self.stop = threading.Event()
        self.budget = ApiBudget(budget, self.stop)
        self.sf = connect(auth_for(sim))
        writer = CollectionsWriter(self.sf, self.budget, timeout_s=timeout_s, backoff_base_s=0.05)
        sink = SalesforceSink(
            name or f"test-{prefix}",
            Codec(topic_prefix=prefix),
            writer,
            bulk_threshold=bulk_threshold,
        )
        self.runner = ProjectionRunner(stack.kafka_bootstrap, engine, sink, batch_size=2000)
        producer = Producer({"bootstrap.servers": stack.kafka_bootstrap})
        self.thread = threading.Thread(
            target=run_sink, args=(self.runner, sink, engine, producer, self.stop), daemon=True
        )

    def __enter__(self) -> RunningSink:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)
        self.runner.close()
        assert not self.thread.is_alive()


def lead_field(sim: RunningSimulator, lead_id: str, name: str) -> Any:
    return sim.state.org.records["Lead"][lead_id].get(name)


def test_ten_thousand_field_updates_in_few_calls_and_none_when_current(
    stack: Settings, engine: Engine, sim: RunningSimulator, prefix: str
) -> None:
    sf = connect(auth_for(sim))
    leads = create_leads(sf, 2000)
    commands = score_commands(leads)
    send(stack, prefix, commands)
    used = sim.state.budget.used
    with RunningSink(stack, engine, sim, prefix):
        first = results(stack, prefix, len(commands))
        calls = sim.state.budget.used - used
        assert len(first) == 2000
        assert {r.outcome for r in first} == {CommandOutcome.APPLIED}
        assert calls <= 55, f"{calls} calls for 10,000 field updates"
        for i in (0, 999, 1999):
            for name, value in commands[i].fields.items():
                assert lead_field(sim, leads[i], name) == value
        # The same commands again (a redelivery or replay), then new ids with current values.
        send(stack, prefix, commands)
        again = [update(c.record_id or "", dict(c.fields)) for c in commands[:300]]
        send(stack, prefix, again)
        everything = results(stack, prefix, 2000 + 2000 + 300)
        assert sim.state.budget.used - used == calls, "current values cost no call"
    applied = [r for r in everything if r.outcome is CommandOutcome.APPLIED]
    later = [r for r in everything if r.outcome is CommandOutcome.ALREADY_APPLIED]
    assert len(everything) == 4300
    assert sorted(str(r.causation_id) for r in applied) == sorted(c.id for c in commands)
    assert len(later) == 2300
    assert {r.causation_id for r in later} == {c.id for c in commands} | {c.id for c in again}
    assert len({r.id for r in everything}) == len(everything), "one result id per execution"


def test_a_command_redelivered_within_one_batch_is_applied_once(
    stack: Settings, engine: Engine, sim: RunningSimulator, prefix: str
) -> None:
    # An agent restarted after a kill appends the same command (same id) again; both copies
    # can land in one batch of the sink.
    sf = connect(auth_for(sim))
    leads = create_leads(sf, 3)
    commands = score_commands(leads, seed=3)
    send(stack, prefix, [commands[0], commands[1], commands[0], commands[2], commands[1]])
    used = sim.state.budget.used
    with RunningSink(stack, engine, sim, prefix) as running:
        produced = results(stack, prefix, 3)
        time.sleep(2)  # a crashed batch would not commit: the thread must still be alive
        assert running.thread.is_alive()
    assert sorted(str(r.causation_id) for r in produced) == sorted(c.id for c in commands)
    assert {r.outcome for r in produced} == {CommandOutcome.APPLIED}
    assert sim.state.budget.used - used == 1, "one Collections call for the three records"
    for command, lead in zip(commands, leads, strict=True):
        assert (
            lead_field(sim, lead, "AI_Enhanced_Score__c") == command.fields["AI_Enhanced_Score__c"]
        )


def test_protected_fields_salesforce_errors_and_creates(
    stack: Settings, engine: Engine, sim: RunningSimulator, prefix: str
) -> None:
    sf = connect(auth_for(sim))
    lead, deleted = create_leads(sf, 2)
    sf.restful(f"sobjects/Lead/{deleted}", method="DELETE")
    protected = update(lead, {"Email": "new@example.com", "AI_Enhanced_Score__c": 42})
    missing = update(deleted, {"AI_Enhanced_Score__c": 1})
    task = SalesforceWriteRequested(
        id=str(uuid.uuid4()),
        source="test",
        subject=lead,
        time=datetime.now(UTC),
        operation=SalesforceOperation.CREATE,
        sobject="Task",
        record_id=None,
        fields={"Subject": "Call the lead", "WhoId": lead},
    )
    unknown = update(lead, {"No_Such_Field__c": 1})
    send(stack, prefix, [protected, missing, task, unknown])
    garbage = Producer({"bootstrap.servers": stack.kafka_bootstrap})
    garbage.produce(prefix + "commands.salesforce", b"not a command", b"junk")
    assert garbage.flush(10) == 0
    with RunningSink(stack, engine, sim, prefix):
        by_cause = {r.causation_id: r for r in results(stack, prefix, 4)}
        letters = read(stack, prefix, "dlq.salesforce", 4)
    rejected = by_cause[protected.id]
    assert rejected.outcome is CommandOutcome.REJECTED
    assert rejected.errors[0].status_code == PROTECTED_FIELD
    assert rejected.errors[0].fields == ("Email",)
    assert lead_field(sim, lead, "AI_Enhanced_Score__c") != 42, "rejected as a whole"
    assert by_cause[missing.id].outcome is CommandOutcome.REJECTED
    assert by_cause[missing.id].errors[0].status_code == "ENTITY_IS_DELETED"
    created = by_cause[task.id]
    assert created.outcome is CommandOutcome.APPLIED and created.salesforce_id
    assert sim.state.org.records["Task"][created.salesforce_id]["Subject"] == "Call the lead"
    assert all(isinstance(letter, EventDeadLettered) for letter in letters)
    assert sorted(letter.subject for letter in letters) == sorted(
        [lead, lead, missing.subject, "junk"]
    )
    (undecodable,) = [letter for letter in letters if letter.subject == "junk"]
    assert undecodable.original_value == b"not a command"
    assert by_cause[unknown.id].outcome is CommandOutcome.REJECTED
    assert by_cause[unknown.id].errors[0].status_code == "INVALID_FIELD"


def test_a_create_sent_again_after_a_lost_commit_makes_no_second_record(
    stack: Settings, engine: Engine, sim: RunningSimulator, prefix: str
) -> None:
    (lead,) = create_leads(connect(auth_for(sim)), 1)
    task = SalesforceWriteRequested(
        id=str(uuid.uuid4()),
        source="test",
        subject=lead,
        time=datetime.now(UTC),
        operation=SalesforceOperation.CREATE,
        sobject="Task",
        record_id=None,
        fields={"Subject": "Call the lead", "WhoId": lead},
    )
    send(stack, prefix, [task])
    with RunningSink(stack, engine, sim, prefix, name=f"first-{prefix}"):
        (first,) = results(stack, prefix, 1)
    # A sink that never recorded the create (its commit was lost in a crash after
    # Salesforce answered) sends it again: the upsert on the command id finds the record.
    with RunningSink(stack, engine, sim, prefix, name=f"again-{prefix}"):
        _, again = results(stack, prefix, 2)
    assert first.outcome is again.outcome is CommandOutcome.APPLIED
    assert first.salesforce_id == again.salesforce_id
    tasks = [t for t in sim.state.org.records["Task"].values() if t["WhoId"] == lead]
    assert len(tasks) == 1
    assert tasks[0]["SFE_Command_Id__c"] == task.id and tasks[0]["Subject"] == "Call the lead"


def test_server_errors_request_limit_and_expired_sessions_are_retried_without_loss(
    stack: Settings, engine: Engine, sim: RunningSimulator, prefix: str
) -> None:
    sf = connect(auth_for(sim))
    leads = create_leads(sf, 600)
    commands = score_commands(leads, seed=3)
    apply_fault(sim.state, {"action": "fail_next", "count": 3, "status": 503})
    send(stack, prefix, commands[:300])
    with RunningSink(stack, engine, sim, prefix) as sink:
        assert len(results(stack, prefix, 300)) == 300
        apply_fault(sim.state, {"action": "fail_next", "count": 3, "status": 403})
        apply_fault(sim.state, {"action": "expire_sessions"})
        token = sink.sf.session_id
        send(stack, prefix, commands[300:])
        everything = results(stack, prefix, 600)
        assert sink.sf.session_id != token, "logged in again after INVALID_SESSION_ID"
    assert len(everything) == 600
    assert {r.outcome for r in everything} == {CommandOutcome.APPLIED}
    assert sim.state.faults.fail_next == 0, "every armed failure was met and retried"
    for i in (0, 299, 300, 599):
        assert lead_field(sim, leads[i], "AI_Reasoning__c") == commands[i].fields["AI_Reasoning__c"]


def test_budget_reserve_holds_the_queue_until_budget_returns(
    stack: Settings, engine: Engine, sim: RunningSimulator, prefix: str
) -> None:
    sf = connect(auth_for(sim))
    leads = create_leads(sf, 400)
    commands = score_commands(leads, seed=5)
    apply_fault(sim.state, {"action": "request_limit", "used": 0, "limit": 1000})
    reserve = BudgetSettings(reserve=100, slowdown_window=50, max_delay_s=0.1, probe_interval_s=1.0)
    send(stack, prefix, commands[:200])
    with RunningSink(stack, engine, sim, prefix, reserve) as sink:
        assert len(results(stack, prefix, 200)) == 200
        # Others spend the budget; the sink learns it from its next response (api-usage=900/1000).
        apply_fault(sim.state, {"action": "request_limit", "used": 899})
        send(stack, prefix, commands[200:300])
        assert len(results(stack, prefix, 300)) == 300
        assert sink.budget.headroom == 0
        send(stack, prefix, commands[300:])
        time.sleep(3)
        assert len(results(stack, prefix, 400, timeout=3)) == 300, "held at the reserve"
        assert sim.state.budget.used <= 900 + 10, "only budget probes while held"
        assert sink.thread.is_alive()
        apply_fault(sim.state, {"action": "request_limit", "used": 0})
        everything = results(stack, prefix, 400)
    assert len(everything) == 400
    assert {r.outcome for r in everything} == {CommandOutcome.APPLIED}
    assert lead_field(sim, leads[399], "Decision_Makers__c") == "CTO 399"


def sink_process(stack: Settings, sim: RunningSimulator, prefix: str) -> subprocess.Popen[bytes]:
    """`sfe sink salesforce` as a separate process, configured through SFE_* variables."""
    config = sim.state.config
    env = {
        **os.environ,
        "SFE_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
        "SFE_DATABASE_URL": stack.sqlalchemy_url(),
        "SFE_TOPIC_PREFIX": prefix,
        "SFE_SF_LOGIN_URL": sim.url,
        "SFE_SF_CA_BUNDLE": str(sim.state.tls_files.ca_cert),
        "SFE_SF_CLIENT_ID": config.app.client_id,
        "SFE_SF_CLIENT_SECRET": config.app.client_secret,
        "SFE_SF_USERNAME": config.username,
        "SFE_SF_PASSWORD": config.password,
        "SFE_SF_API_VERSION": config.api_version,
        "SFE_SINK_NAME": f"test-{prefix}",
        "SFE_SINK_BATCH_SIZE": "200",
        "SFE_SINK_API_RESERVE": "0",
        "SFE_SINK_SLOWDOWN_WINDOW": "0",
        "SFE_METRICS_PORT": "0",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "sfe.cli", "sink", "salesforce"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_sigkill_mid_stream_then_restart_leaves_every_field_right_without_redundant_writes(
    stack: Settings, sim: RunningSimulator, prefix: str
) -> None:
    sf = connect(auth_for(sim))
    leads = create_leads(sf, 2000)
    commands = score_commands(leads, seed=11)
    send(stack, prefix, commands)
    used = sim.state.budget.used
    apply_fault(sim.state, {"action": "latency", "ms": 400})
    first = sink_process(stack, sim, prefix)
    deadline = time.monotonic() + 60
    while sim.state.budget.used - used < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    first.kill()
    first.wait(10)
    assert sim.state.budget.used - used < 10, "killed mid-stream"
    apply_fault(sim.state, {"action": "clear"})
    second = sink_process(stack, sim, prefix)
    try:
        everything = results(stack, prefix, 2000, timeout=60)
        assert {r.causation_id for r in everything} == {c.id for c in commands}
        everything = results(stack, prefix, 10**6, timeout=4)  # whatever else arrives
        calls = sim.state.budget.used - used
    finally:
        second.send_signal(signal.SIGTERM)
        _, stderr = second.communicate(timeout=30)
    assert second.returncode == 0, stderr.decode()[-2000:]
    assert calls <= 15, f"{calls} calls for 10,000 field updates across a SIGKILL"
    assert len({r.id for r in everything}) == 2000, (
        "one result per command (re-publishes share ids)"
    )
    assert {r.outcome for r in everything} == {CommandOutcome.APPLIED}
    for lead, command in zip(leads, commands, strict=True):
        record = sim.state.org.records["Lead"][lead]
        assert {name: record[name] for name in AI_FIELDS} == dict(command.fields)


def test_timeouts_are_retried(
    stack: Settings, engine: Engine, sim: RunningSimulator, prefix: str
) -> None:
    sf = connect(auth_for(sim))
    leads = create_leads(sf, 200)
    commands = score_commands(leads, seed=7)
    apply_fault(sim.state, {"action": "latency", "ms": 1500})
    send(stack, prefix, commands)
    with RunningSink(stack, engine, sim, prefix, timeout_s=0.5):
        time.sleep(2.5)
        assert not results(stack, prefix, 1, timeout=1), "every call timed out so far"
        apply_fault(sim.state, {"action": "clear"})
        everything = results(stack, prefix, 200)
    assert {r.outcome for r in everything} == {CommandOutcome.APPLIED}
    assert len(everything) == 200
    assert lead_field(sim, leads[-1], "AI_Reasoning__c") == commands[-1].fields["AI_Reasoning__c"]


def test_records_locked_by_another_transaction_are_written_again(
    stack: Settings, engine: Engine, sim: RunningSimulator, prefix: str
) -> None:
    leads = create_leads(connect(auth_for(sim)), 200)
    commands = score_commands(leads, seed=11)
    send(stack, prefix, commands)
    apply_fault(sim.state, {"action": "lock_rows", "count": 7})
    used = sim.state.budget.used
    with RunningSink(stack, engine, sim, prefix):
        everything = results(stack, prefix, 200)
    assert {r.outcome for r in everything} == {CommandOutcome.APPLIED}
    assert sim.state.faults.locked_rows == 0
    # One call per batch the sink took the 200 records in (one, unless the consumer
    # handed them over in pieces: the audit trail has an entry per batch), and one more
    # for the 7 that were locked.
    with engine.connect() as connection:
        batches = connection.execute(
            text(
                "SELECT count(*) FROM audit_log "
                "WHERE action = 'salesforce.write' AND subject = :sink"
            ),
            {"sink": f"test-{prefix}"},
        ).scalar_one()
    assert batches >= 1
    assert sim.state.budget.used - used == batches + 1
    for lead, command in zip(leads, commands, strict=True):
        record = sim.state.org.records["Lead"][lead]
        assert {name: record[name] for name in AI_FIELDS} == dict(command.fields)


def test_a_row_locked_for_good_is_rejected_after_the_retries(
    stack: Settings, engine: Engine, sim: RunningSimulator, prefix: str
) -> None:
    (lead,) = create_leads(connect(auth_for(sim)), 1)
    (command,) = score_commands([lead], seed=3)
    send(stack, prefix, [command])
    apply_fault(sim.state, {"action": "lock_rows", "count": 1000})
    with RunningSink(stack, engine, sim, prefix):
        (result,) = results(stack, prefix, 1)
        (letter,) = read(stack, prefix, "dlq.salesforce", 1)
    assert result.outcome is CommandOutcome.REJECTED
    assert result.errors[0].status_code == "UNABLE_TO_LOCK_ROW"
    assert 1000 - sim.state.faults.locked_rows == 6, "the first write and five retries"
    assert "UNABLE_TO_LOCK_ROW" in letter.reason


def test_large_updates_go_through_one_bulk_job(
    stack: Settings, engine: Engine, sim: RunningSimulator, prefix: str
) -> None:
    sf = connect(auth_for(sim))
    leads = create_leads(sf, 2000)
    sf.restful(f"sobjects/Lead/{leads[-1]}", method="DELETE")
    commands = score_commands(leads, seed=5)
    send(stack, prefix, commands)
    used = sim.state.budget.used
    with RunningSink(stack, engine, sim, prefix, bulk_threshold=1000):
        everything = results(stack, prefix, 2000)
    calls = sim.state.budget.used - used
    jobs = [job for job in sim.state.jobs.values() if job.kind == "ingest"]
    assert len(jobs) == 1 and jobs[0].info["operation"] == "update"
    # Create, upload, close, one poll or a few, successful and failed results:
    # 10,000 field updates where Collections would need 10 calls.
    assert calls <= 8, f"{calls} calls"
    by_cause = {r.causation_id: r for r in everything}
    deleted = by_cause[commands[-1].id]
    assert deleted.outcome is CommandOutcome.REJECTED
    assert deleted.errors[0].status_code == "ENTITY_IS_DELETED"
    for lead, command in zip(leads[:-1], commands[:-1], strict=True):
        assert by_cause[command.id].outcome is CommandOutcome.APPLIED
        record = sim.state.org.records["Lead"][lead]
        assert {name: record[name] for name in AI_FIELDS} == dict(command.fields)


def test_the_memory_answers_for_a_batch_of_the_largest_size(engine: Engine) -> None:
    """Ten thousand records of seven fields (a default batch) within PostgreSQL's limits."""
    sink = f"memory-{uuid.uuid4().hex[:8]}"
    commands = [update(f"00Q{i:015d}", {"AI_Enhanced_Score__c": i}) for i in range(10_000)]
    written = commands
    with engine.connect() as connection, connection.begin() as transaction:
        memory.store(
            connection,
            [
                {
                    "sink": sink,
                    "sobject": "Lead",
                    "record_id": c.record_id,
                    "field": field,
                    "value": c.fields["AI_Enhanced_Score__c"],
                    "command_id": c.id,
                }
                for c in written
                for field in ("AI_Enhanced_Score__c", *(f"Field_{n}__c" for n in range(6)))
            ],
            [
                {
                    "sink": sink,
                    "command_id": c.id,
                    "outcome": CommandOutcome.APPLIED.value,
                    "salesforce_id": c.record_id,
                    "errors": [],
                }
                for c in written
            ],
            [],
        )
        remembered = memory.remembered(connection, sink, commands)
        handled = memory.handled(connection, sink, [c.id for c in commands])
        transaction.rollback()
    assert len(remembered) == 70_000
    assert remembered == {
        ("Lead", str(c.record_id), field): c.fields["AI_Enhanced_Score__c"]
        for c in written
        for field in ("AI_Enhanced_Score__c", *(f"Field_{n}__c" for n in range(6)))
    }
    assert set(handled) == {c.id for c in written}
