"""The PostgreSQL projection against the real broker and a scratch database.

Each test gets its own topic prefix (the whole catalogue created under it), its own
projection name and a fresh, migrated database, so nothing it writes or swaps can
touch the tables other tests use.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from confluent_kafka import Producer
from pydantic import SecretStr
from sqlalchemy import Engine, create_engine, text

from projections.postgres import DLQ_TOPIC, PostgresProjection
from projections.runner import ProjectionRunner, stored_positions
from schema_registry.codec import Codec
from schema_registry.events import (
    CommandExecuted,
    CommandOutcome,
    Event,
    EventDeadLettered,
    Factor,
    ModelRef,
    PredictionMade,
    SalesforceError,
    WorkflowAdvanced,
)
from sfe.settings import Settings
from streams.topic_admin import TopicAdmin
from streams.topics import catalogue
from tests.databases import scratch_database
from tests.kafka_helpers import consume_records, delete_topics_with_prefix

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
TASK = "00T000000000004AAA"


@dataclass
class Env:
    """One test's isolated world: settings (scratch database, topic prefix), name, engine."""

    settings: Settings
    name: str
    engine: Engine
    codec: Codec

    def topic(self, name: str) -> str:
        return self.settings.topic_prefix + name

    def projection(self, suffix: str = "") -> PostgresProjection:
        producer = Producer({"bootstrap.servers": self.settings.kafka_bootstrap})
        return PostgresProjection(self.codec, producer, name=self.name, table_suffix=suffix)

    def runner(self, batch_size: int = 500) -> ProjectionRunner:
        return ProjectionRunner(
            self.settings.kafka_bootstrap, self.engine, self.projection(), batch_size=batch_size
        )

    def cli_env(self) -> dict[str, str]:
        return {
            **os.environ,
            "SFE_DATABASE_URL": self.settings.sqlalchemy_url(),
            "SFE_TOPIC_PREFIX": self.settings.topic_prefix,
            "SFE_METRICS_PORT": "0",
        }


@pytest.fixture
def env(stack: Settings) -> Iterator[Env]:
    suffix = uuid.uuid4().hex[:8]
    with scratch_database(stack, suffix) as url:
        prefix = f"test.{suffix}."
        settings = stack.model_copy(update={"database_url": SecretStr(url), "topic_prefix": prefix})
        TopicAdmin(stack.kafka_bootstrap).ensure(catalogue(prefix))
        engine = create_engine(url)
        try:
            yield Env(settings, f"test-{suffix}", engine, Codec(topic_prefix=prefix))
        finally:
            engine.dispose()
            delete_topics_with_prefix(stack, prefix)


def result(n: int, outcome: CommandOutcome = CommandOutcome.APPLIED, **extra: object) -> Event:
    fields: dict[str, object] = {
        "id": f"result-{n}",
        "source": "projections.salesforce",
        "subject": f"00Q{n:015d}",
        "time": T0 + timedelta(seconds=n),
        "causation_id": f"command-{n}",
        "command_type": "SalesforceWriteRequested",
        "target": f"Lead/00Q{n:015d}",
        "outcome": outcome,
        "operation": "UPDATE",
        **extra,
    }
    return CommandExecuted(**fields)  # type: ignore[arg-type]


def prediction(n: int, score: float = 0.87654) -> Event:
    return PredictionMade(
        id=f"prediction-{n}",
        source="agents.lead_qualification",
        subject=f"00Q{n:015d}",
        time=T0 + timedelta(seconds=n),
        purpose="lead_score",
        entity="Lead",
        model=ModelRef(name="lead_conversion", version="2026.11.1"),
        score=score,
        factors=(
            Factor(name="industry", contribution=0.25),
            Factor(name="size", contribution=-0.1),
        ),
    )


def transition(run: str, n: int, to_state: str, steps: int, from_state: str | None) -> Event:
    return WorkflowAdvanced(
        id=f"{run}-t{n}",
        source="agents.onboarding",
        subject=run,
        time=T0 + timedelta(minutes=n),
        workflow="onboarding",
        from_state=from_state,
        to_state=to_state,
        detail=f"step {n}",
        attributes={
            "record_id": "001000000000001AAA",
            "steps_completed": str(steps),
            "total_steps": "3",
        },
    )


def produce(env: Env, items: Sequence[tuple[str, Event | bytes]]) -> None:
    """Send events (encoded with the codec) or raw bytes to the prefixed topics."""
    producer = Producer({"bootstrap.servers": env.settings.kafka_bootstrap, "linger.ms": 20})
    for topic, item in items:
        full = env.topic(topic)
        if isinstance(item, Event):
            encoded = env.codec.encode(full, item)
            producer.produce(
                full, key=item.subject.encode(), value=encoded.value, headers=list(encoded.headers)
            )
        else:
            producer.produce(full, key=b"garbage", value=item)
    assert producer.flush(30) == 0


def drain(runner: ProjectionRunner, expected: int, timeout: float = 40) -> int:
    consumed, deadline = 0, time.monotonic() + timeout
    while consumed < expected and time.monotonic() < deadline:
        consumed += runner.process_batch().consumed
    return consumed


def rows(engine: Engine, query: str) -> list[tuple[object, ...]]:
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(text(query))]


def recorded(env: Env) -> int:
    """Records whose position is stored (offsets start at 0 in these fresh topics)."""
    with env.engine.connect() as connection:
        return sum(offset + 1 for offset in stored_positions(connection, env.name).values())


TABLES = ("sync_log", "ml_predictions", "workflow_executions")

RUN = [
    ("workflow.events", transition("onb-1", 0, "provisioning", 0, None)),
    ("workflow.events", transition("onb-1", 1, "provisioning", 2, "provisioning")),
    ("workflow.events", transition("onb-1", 2, "completed", 3, "provisioning")),
    ("workflow.events", transition("onb-2", 0, "provisioning", 1, None)),
]


def test_each_event_type_becomes_its_row_and_every_position_is_stored(env: Env) -> None:
    rejected = result(
        2,
        CommandOutcome.REJECTED,
        errors=(SalesforceError(status_code="INVALID_FIELD", message="bad", fields=("Foo__c",)),),
    )
    items: list[tuple[str, Event | bytes]] = [
        ("command.results", result(1)),
        ("command.results", rejected),
        ("command.results", result(3, command_type="NotificationRequested", target="slack/#x")),
        ("command.results", result(4, target="Task/new", operation="CREATE", salesforce_id=TASK)),
        ("predictions", prediction(1)),
        ("predictions", b"\x00not avro at all"),
        ("predictions", prediction(2, score=1.7)),
        *RUN,
    ]
    produce(env, items)
    runner = env.runner()
    try:
        assert drain(runner, len(items)) == len(items)
    finally:
        runner.close()

    assert rows(
        env.engine,
        "SELECT sf_object, sf_record_id, operation, status, error_message, "
        "created_at FROM sync_log ORDER BY event_id",
    ) == [
        ("Lead", "00Q000000000000001", "update", "applied", None, datetime(2026, 11, 2, 9, 30, 1)),
        (
            "Lead",
            "00Q000000000000002",
            "update",
            "rejected",
            "INVALID_FIELD: bad (fields: Foo__c)",
            datetime(2026, 11, 2, 9, 30, 2),
        ),
        ("Task", TASK, "create", "applied", None, datetime(2026, 11, 2, 9, 30, 4)),
    ]
    assert rows(
        env.engine,
        "SELECT account_id, prediction_type, probability, factors, "
        "model_version FROM ml_predictions",
    ) == [
        (
            "00Q000000000000001",
            "lead_score",
            Decimal("87.65"),
            [{"name": "industry", "contribution": 0.25}, {"name": "size", "contribution": -0.1}],
            "2026.11.1",
        )
    ]
    assert rows(
        env.engine,
        "SELECT event_id, workflow_name, record_id, status, steps_completed, "
        "total_steps, started_at, completed_at FROM workflow_executions ORDER BY 1",
    ) == [
        (
            "onb-1",
            "onboarding",
            "001000000000001AAA",
            "completed",
            3,
            3,
            datetime(2026, 11, 2, 9, 30),
            datetime(2026, 11, 2, 9, 32),
        ),
        (
            "onb-2",
            "onboarding",
            "001000000000001AAA",
            "provisioning",
            1,
            3,
            datetime(2026, 11, 2, 9, 30),
            None,
        ),
    ]
    # The ignored notification result and the undecodable record have their positions too.
    assert recorded(env) == len(items)
    letters = [
        env.codec.decode(env.topic(DLQ_TOPIC), value, headers)
        for _, value, headers in consume_records(env.settings, env.topic(DLQ_TOPIC), 2)
    ]
    assert all(isinstance(letter, EventDeadLettered) for letter in letters)
    assert sorted(
        (letter.original_topic, letter.error_type)
        for letter in letters
        if isinstance(letter, EventDeadLettered)
    ) == [
        (env.topic("predictions"), "UndecodableEvent"),
        (env.topic("predictions"), "Unprojectable"),
    ]
    assert any("is not a probability" in str(letter) for letter in letters)


def test_a_redelivered_event_changes_nothing(env: Env) -> None:
    first = [("command.results", result(1)), ("predictions", prediction(1)), *RUN]
    produce(env, first)
    runner = env.runner()
    try:
        assert drain(runner, len(first)) == len(first)
        before = {t: rows(env.engine, f"SELECT * FROM {t} ORDER BY id") for t in TABLES}
        # The same events again, as a producer retry or an upstream replay delivers them,
        # and a late duplicate of the run's first transition after it completed.
        again = [*first, ("workflow.events", RUN[0][1])]
        produce(env, again)
        assert drain(runner, len(again)) == len(again)
    finally:
        runner.close()
    assert {t: rows(env.engine, f"SELECT * FROM {t} ORDER BY id") for t in TABLES} == before


def test_sigkill_mid_stream_then_restart_projects_each_event_exactly_once(env: Env) -> None:
    total = 6000
    produce(env, [("predictions", prediction(n, score=(n % 100) / 100)) for n in range(total)])
    command = [
        sys.executable,
        "-m",
        "sfe.cli",
        "projection",
        "run",
        "--name",
        env.name,
        "--batch-size",
        "20",
    ]
    worker = subprocess.Popen(command, env=env.cli_env(), stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while recorded(env) < total // 4 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    before = recorded(env)
    assert 0 < before < total
    assert rows(env.engine, "SELECT count(*) FROM ml_predictions") == [(before,)]

    restarted = env.runner()
    try:
        # Exactly the records after the stored positions are consumed again, no more.
        assert drain(restarted, total - before) == total - before
        assert restarted.process_batch().consumed == 0
    finally:
        restarted.close()
    assert rows(env.engine, "SELECT count(*), count(DISTINCT event_id) FROM ml_predictions") == [
        (total, total)
    ]


def test_sigterm_stops_the_projection_cleanly(env: Env) -> None:
    produce(env, [("predictions", prediction(n)) for n in range(50)])
    command = [sys.executable, "-m", "sfe.cli", "projection", "run", "--name", env.name]
    worker = subprocess.Popen(command, env=env.cli_env(), stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while recorded(env) < 50 and time.monotonic() < deadline:
            time.sleep(0.05)
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=30)
    finally:
        worker.kill()
    assert worker.returncode == 0, stderr
    assert f"projection {env.name}: stopped" in stderr
    assert rows(env.engine, "SELECT count(*) FROM ml_predictions") == [(50,)]
