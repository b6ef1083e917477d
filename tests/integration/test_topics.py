"""`sfe topics ensure` against the real broker: creation, idempotence, drift and its repair.

Every test works under its own topic-name prefix and deletes its topics afterwards,
so it never touches the catalogue's real topics or another test's.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from sqlalchemy import create_engine

from schema_registry.codec import Codec
from schema_registry.events import ChangeEventHeader, ChangeType, RecordChanged
from sfe import audit
from sfe.cli import main
from sfe.settings import Settings
from streams.topic_admin import Drift, TopicAdmin, TopicReport, TopicState
from streams.topics import DAY_MS, Topic, catalogue, topic

pytestmark = pytest.mark.integration


@pytest.fixture
def prefix(stack: Settings) -> Iterator[str]:
    """A fresh topic-name prefix; every topic under it is deleted afterwards."""
    value = f"test.{uuid.uuid4().hex[:10]}."
    yield value
    delete_topics_under(stack, value)


def delete_topics_under(settings: Settings, prefix: str) -> None:
    """Delete every topic under ``prefix``, including ones the metadata does not list yet."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    listed = {name for name in admin.list_topics(timeout=30).topics if name.startswith(prefix)}
    names = sorted(listed | {entry.name for entry in catalogue(prefix)})
    for future in admin.delete_topics(names, operation_timeout=30).values():
        try:
            future.result(timeout=30)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise


def test_ensure_creates_the_catalogue_then_is_a_no_op(stack: Settings, prefix: str) -> None:
    admin = TopicAdmin(stack.kafka_bootstrap)
    topics = catalogue(prefix)

    first = admin.ensure(topics)
    assert {report.state for report in first} == {TopicState.CREATED}
    assert len(first) == len(topics)

    existing = admin.existing()
    configs = admin.configs(t.name for t in topics)
    for entry in topics:
        assert existing[entry.name] == (entry.partitions, 1)
        for key, value in entry.config().items():
            assert configs[entry.name][key] == value

    second = admin.ensure(topics)
    assert [(r.topic, r.state, r.drift) for r in second] == [
        (entry.name, TopicState.OK, ()) for entry in topics
    ]


def test_drift_is_reported_and_settings_are_fixed(stack: Settings, prefix: str) -> None:
    notifications = topic("commands.notifications").prefixed(prefix)  # 3 partitions, 30 days
    checkpoints = topic("sfe.ingest.checkpoints").prefixed(prefix)  # compacted
    raw = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    wrong = [
        NewTopic(notifications.name, 2, 1, config={"retention.ms": str(DAY_MS)}),
        NewTopic(checkpoints.name, 1, 1, config={"cleanup.policy": "delete"}),
    ]
    for future in raw.create_topics(wrong).values():
        future.result(timeout=30)
    admin = TopicAdmin(stack.kafka_bootstrap)

    reported = {r.topic: r for r in admin.ensure([notifications, checkpoints])}
    assert reported[notifications.name].state is TopicState.DRIFT
    assert set(reported[notifications.name].drift) == {
        Drift("partitions", "3", "2", fixable=False),
        Drift("retention.ms", str(30 * DAY_MS), str(DAY_MS), fixable=True),
    }
    assert reported[checkpoints.name].drift == (Drift("cleanup.policy", "compact", "delete", True),)

    fixed = {r.topic: r.state for r in admin.ensure([notifications, checkpoints], fix=True)}
    assert fixed == {notifications.name: TopicState.DRIFT, checkpoints.name: TopicState.FIXED}

    after = {r.topic: r for r in _settled(admin, [notifications, checkpoints])}
    assert after[checkpoints.name].state is TopicState.OK
    assert after[notifications.name].drift == (Drift("partitions", "3", "2", fixable=False),)


def _settled(admin: TopicAdmin, topics: Sequence[Topic]) -> list[TopicReport]:
    """Reports once config changes are visible (the broker applies them asynchronously)."""
    deadline = time.monotonic() + 15
    while True:
        reports = admin.ensure(topics)
        if time.monotonic() > deadline or all(not any(d.fixable for d in r.drift) for r in reports):
            return reports
        time.sleep(0.3)


def test_the_cli_twice_creates_then_reports_no_change(stack: Settings, prefix: str) -> None:
    runner = CliRunner()
    first = runner.invoke(main, ["topics", "ensure", "--prefix", prefix])
    assert first.exit_code == 0, first.output
    total = len(catalogue())
    assert f"{total} created, 0 ok, 0 fixed, 0 drift" in first.output

    second = runner.invoke(main, ["topics", "ensure", "--prefix", prefix])
    assert second.exit_code == 0, second.output
    assert f"0 created, {total} ok, 0 fixed, 0 drift" in second.output


def test_the_cli_fix_is_audited(stack: Settings, prefix: str) -> None:
    raw = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    name = f"{prefix}sfe.ingest.checkpoints"
    raw.create_topics([NewTopic(name, 1, 1, config={"cleanup.policy": "delete"})])[name].result(
        timeout=30
    )
    result = CliRunner().invoke(main, ["topics", "ensure", "--prefix", prefix, "--fix"])
    assert result.exit_code == 0, result.output
    engine = create_engine(stack.sqlalchemy_url())
    with engine.connect() as connection:
        (entry,) = audit.entries(connection, limit=1, action="topics.fix")
    engine.dispose()
    assert entry.subject == prefix and entry.details["topics"] == [name]
    assert entry.details["drift"][name] == ["cleanup.policy: expected compact, found delete"]


def test_the_cli_exits_1_on_drift(stack: Settings, prefix: str) -> None:
    raw = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    name = f"{prefix}dlq.ingest"
    raw.create_topics([NewTopic(name, 4, 1)])[name].result(timeout=30)

    result = CliRunner().invoke(main, ["topics", "ensure", "--prefix", prefix])
    assert result.exit_code == 1
    assert "partitions: expected 1, found 4 (not changed automatically)" in result.output


def test_encoded_events_cross_the_broker_with_their_headers(stack: Settings, prefix: str) -> None:
    lead = topic("sf.cdc.Lead").prefixed(prefix)
    TopicAdmin(stack.kafka_bootstrap).ensure([lead])
    now = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
    event = RecordChanged(
        id="4c1f0d2e-0000-5000-8000-000000000001",
        source="sfe.ingest",
        subject="00Q000000000001AAA",
        time=now,
        header=ChangeEventHeader(
            entity_name="Lead",
            record_ids=("00Q000000000001AAA",),
            change_type=ChangeType.UPDATE,
            change_origin="com/salesforce/api/soap/62.0;client=web",
            transaction_key="tx-1",
            sequence_number=1,
            commit_timestamp=now,
            commit_number=42,
            commit_user="005000000000001AAA",
            changed_fields=("Status",),
        ),
        replay_id="1001",
        event_uuid="uuid-1",
        fields={"Status": "Working - Contacted"},
    )
    codec = Codec.from_settings(stack, topic_prefix=prefix)
    encoded = codec.encode(lead.name, event)
    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap, "acks": "all"})
    headers: list[tuple[str, str | bytes | None]] = list(encoded.headers)
    producer.produce(lead.name, key=event.subject.encode(), value=encoded.value, headers=headers)
    assert producer.flush(30) == 0

    consumer = Consumer(
        {
            "bootstrap.servers": stack.kafka_bootstrap,
            "group.id": f"test-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([lead.name])
    try:
        deadline = time.monotonic() + 30
        message = None
        while message is None and time.monotonic() < deadline:
            message = consumer.poll(0.5)
        assert message is not None and message.error() is None
        received = message.headers()
        assert isinstance(received, list)
        assert codec.decode(lead.name, message.value(), received) == event
    finally:
        consumer.close()
