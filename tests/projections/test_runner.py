"""The projection runner against the real broker and PostgreSQL: exactly-once effect, crash and resume."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from sqlalchemy import Engine, create_engine, make_url, text

from projections.runner import ProjectionRunner, stored_positions
from sfe.settings import Settings
from tests.kafka_helpers import delete_topics_with_prefix
from tests.ports import free_port
from tests.projections.support import RecordingProjection

pytestmark = pytest.mark.integration


@pytest.fixture
def engine(stack: Settings) -> Iterator[Engine]:
    engine = create_engine(stack.sqlalchemy_url())
    yield engine
    engine.dispose()


@pytest.fixture
def projection(stack: Settings, engine: Engine) -> Iterator[RecordingProjection]:
    suffix = uuid.uuid4().hex[:10]
    topic = f"test.projection.{suffix}"
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    admin.create_topics([NewTopic(topic, 3, 1)])[topic].result(timeout=30)
    projection = RecordingProjection(f"test-{suffix}", [topic], f"test_rows_{suffix}")
    with engine.begin() as connection:
        projection.create_table(connection)
    yield projection
    with engine.begin() as connection:
        connection.execute(text(f"DROP TABLE {projection.table}"))
        connection.execute(
            text("DELETE FROM projection_offsets WHERE projection = :p"), {"p": projection.name}
        )
    delete_topics_with_prefix(stack, topic)


def produce(stack: Settings, topic: str, values: list[str]) -> None:
    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap, "enable.idempotence": True})
    for i, value in enumerate(values):
        producer.produce(topic, key=f"k{i % 11}".encode(), value=value.encode())
    assert producer.flush(30) == 0


def drain(runner: ProjectionRunner, expected: int, timeout: float = 60) -> int:
    consumed, deadline = 0, time.monotonic() + timeout
    while consumed < expected and time.monotonic() < deadline:
        consumed += runner.process_batch().consumed
    return consumed


def row_values(engine: Engine, table: str) -> list[str]:
    with engine.connect() as connection:
        return [row[0] for row in connection.execute(text(f"SELECT value FROM {table}"))]


def test_rows_and_positions_including_ignored_records(
    stack: Settings, engine: Engine, projection: RecordingProjection
) -> None:
    values = [f"ignore-{i}" if i % 10 == 0 else f"event-{i}" for i in range(300)]
    produce(stack, projection.topics[0], values)
    runner = ProjectionRunner(stack.kafka_bootstrap, engine, projection, batch_size=64)
    try:
        assert drain(runner, 300) == 300
    finally:
        runner.close()
    assert sorted(row_values(engine, projection.table)) == sorted(
        v for v in values if v.startswith("event")
    )
    with engine.connect() as connection:
        positions = stored_positions(connection, projection.name)
    # Every record's position is stored, ignored ones too: offsets end at count - 1 per partition.
    with engine.connect() as connection:
        per_partition = dict(
            connection.execute(
                text(f"SELECT part, max(off) FROM {projection.table} GROUP BY part")
            ).all()
        )
    assert sum(offset + 1 for offset in positions.values()) == 300
    for (_, partition), offset in positions.items():
        assert offset >= per_partition.get(partition, -1)


def test_a_new_runner_resumes_from_the_database_not_from_kafka(
    stack: Settings, engine: Engine, projection: RecordingProjection
) -> None:
    produce(stack, projection.topics[0], [f"event-{i}" for i in range(100)])
    first = ProjectionRunner(stack.kafka_bootstrap, engine, projection, batch_size=40)
    assert drain(first, 100) == 100
    first.close()
    produce(stack, projection.topics[0], [f"event-{i}" for i in range(100, 150)])
    # Forget Kafka's group offsets entirely: only projection_offsets says where we are.
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    admin.delete_consumer_groups([f"sfe-projection-{projection.name}"])[
        f"sfe-projection-{projection.name}"
    ].result(timeout=30)
    second = ProjectionRunner(stack.kafka_bootstrap, engine, projection, batch_size=40)
    try:
        assert drain(second, 50) == 50
        assert second.process_batch().consumed == 0
    finally:
        second.close()
    values = row_values(engine, projection.table)
    assert sorted(values) == sorted(f"event-{i}" for i in range(150))


def test_sigkill_mid_stream_then_restart_applies_every_event_exactly_once(
    stack: Settings, engine: Engine, projection: RecordingProjection
) -> None:
    total = 2000
    produce(stack, projection.topics[0], [f"event-{i}" for i in range(total)])
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.projections.support",
            stack.kafka_bootstrap,
            stack.sqlalchemy_url(),
            projection.name,
            projection.topics[0],
            projection.table,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stdout is not None and worker.stdout.readline().strip() == "running"
        deadline = time.monotonic() + 60
        while (
            len(row_values(engine, projection.table)) < total // 3 and time.monotonic() < deadline
        ):
            time.sleep(0.05)
    finally:
        worker.kill()
        worker.wait()
    applied_before_kill = len(row_values(engine, projection.table))
    assert 0 < applied_before_kill < total

    restarted = ProjectionRunner(stack.kafka_bootstrap, engine, projection, batch_size=500)
    try:
        drain(restarted, total - applied_before_kill)
    finally:
        restarted.close()
    values = row_values(engine, projection.table)
    assert len(values) == total
    assert len(set(values)) == total


def test_a_database_outage_is_waited_out_and_the_failed_batch_applied_again(
    stack: Settings,
    engine: Engine,
    projection: RecordingProjection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    topic = projection.topics[0]
    produce(stack, topic, [f"event-{i}" for i in range(100)])
    runner = ProjectionRunner(stack.kafka_bootstrap, engine, projection, batch_size=40)
    assert drain(runner, 100) == 100  # assigned, positions stored
    # PostgreSQL goes away: nothing listens where the runner now connects.
    unreachable = create_engine(
        make_url(stack.sqlalchemy_url()).set(port=free_port()), connect_args={"connect_timeout": 2}
    )
    runner.engine = unreachable
    produce(stack, topic, [f"event-{i}" for i in range(100, 250)])
    stop = threading.Event()
    running = threading.Thread(target=runner.run, args=(stop,))
    with caplog.at_level(logging.WARNING, logger="projections.runner"):
        running.start()
        try:
            deadline = time.monotonic() + 60
            while "PostgreSQL is unreachable" not in caplog.text and time.monotonic() < deadline:
                time.sleep(0.2)
            assert "PostgreSQL is unreachable" in caplog.text
            runner.engine = engine  # back again
            while len(row_values(engine, projection.table)) < 250 and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            stop.set()
            running.join(30)
            runner.close()
            unreachable.dispose()
    assert not running.is_alive()
    # The batches read during the outage were applied once it ended: none skipped, none twice.
    assert sorted(row_values(engine, projection.table)) == sorted(f"event-{i}" for i in range(250))
