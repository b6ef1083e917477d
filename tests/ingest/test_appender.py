"""Transactional append against the real broker: atomic batches, checkpoints, crash and fencing."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from schema_registry.codec import Codec
from sfe.settings import Settings
from streams.ingest.appender import (
    Checkpoint,
    DeliveryWindow,
    OutboundRecord,
    TransactionalAppender,
    load_checkpoints,
)
from tests.kafka_helpers import consume_all, delete_topics_with_prefix

pytestmark = pytest.mark.integration


@pytest.fixture
def topics(stack: Settings) -> Iterator[tuple[str, str]]:
    suffix = uuid.uuid4().hex[:10]
    data, checkpoints = f"test.{suffix}.data", f"test.{suffix}.sfe.ingest.checkpoints"
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    futures = admin.create_topics(
        [NewTopic(data, 3, 1), NewTopic(checkpoints, 1, 1, config={"cleanup.policy": "compact"})]
    )
    for future in futures.values():
        future.result(timeout=30)
    yield data, checkpoints
    delete_topics_with_prefix(stack, f"test.{suffix}.")


def codec_for(checkpoint_topic: str) -> Codec:
    return Codec(topic_prefix=checkpoint_topic.removesuffix("sfe.ingest.checkpoints"))


def records(topic: str, start: int, stop: int) -> list[OutboundRecord]:
    return [
        OutboundRecord(topic, f"00Q{i % 7}".encode(), f"event-{i}".encode())
        for i in range(start, stop)
    ]


def test_batch_and_checkpoint_commit_together(stack: Settings, topics: tuple[str, str]) -> None:
    data, checkpoint_topic = topics
    appender = TransactionalAppender(
        stack.kafka_bootstrap, f"tx-{data}", checkpoint_topic, codec_for(checkpoint_topic)
    )
    assert appender.start() == {}
    appender.append(records(data, 0, 50), [Checkpoint("/data/LeadChangeEvent", 50, ("a", "b"))])
    appender.append(records(data, 50, 80), [Checkpoint("/data/LeadChangeEvent", 80, ("c",))])
    appender.close()

    assert load_checkpoints(
        stack.kafka_bootstrap, checkpoint_topic, codec_for(checkpoint_topic)
    ) == {"/data/LeadChangeEvent": Checkpoint("/data/LeadChangeEvent", 80, ("c",))}
    values = sorted(value for _, value in consume_all(stack, data, 80, isolation="read_committed"))
    assert values == sorted(f"event-{i}".encode() for i in range(80))


CRASHING_APPENDER = textwrap.dedent(
    """
    import sys, time
    from confluent_kafka import Producer
    bootstrap, txid, topic = sys.argv[1:4]
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": txid, "acks": "all"})
    producer.init_transactions(30)
    producer.begin_transaction()
    for i in range(50, 90):
        producer.produce(topic, key=b"00Q1", value=f"event-{i}".encode())
    producer.flush(30)
    print("in-flight", flush=True)
    time.sleep(600)
    """
)


def test_killed_mid_transaction_restart_appends_each_event_once(
    stack: Settings, topics: tuple[str, str]
) -> None:
    data, checkpoint_topic = topics
    txid = f"tx-{data}"
    first = TransactionalAppender(
        stack.kafka_bootstrap, txid, checkpoint_topic, codec_for(checkpoint_topic)
    )
    first.start()
    first.append(records(data, 0, 50), [Checkpoint("/data/LeadChangeEvent", 50)])
    first.close()

    # A second incarnation writes events 50..89 and dies (SIGKILL) before committing.
    crashing = subprocess.Popen(
        [sys.executable, "-c", CRASHING_APPENDER, stack.kafka_bootstrap, txid, data],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert crashing.stdout is not None and crashing.stdout.readline().strip() == "in-flight"
    finally:
        crashing.kill()
        crashing.wait()

    # The restart fences the dead transaction and resumes from the committed checkpoint.
    restarted = TransactionalAppender(
        stack.kafka_bootstrap, txid, checkpoint_topic, codec_for(checkpoint_topic)
    )
    checkpoints = restarted.start()
    assert checkpoints["/data/LeadChangeEvent"].replay_id == 50
    restarted.append(records(data, 50, 90), [Checkpoint("/data/LeadChangeEvent", 90)])
    restarted.close()

    committed = [
        value for _, value in consume_all(stack, data, 90, isolation="read_committed", timeout=20)
    ]
    assert sorted(committed) == sorted(f"event-{i}".encode() for i in range(90))
    assert len(committed) == len(set(committed)) == 90
    # The dead incarnation's records are in the log, but aborted: only uncommitted readers see them.
    everything = consume_all(stack, data, 130, isolation="read_uncommitted", timeout=20)
    assert len(everything) == 130


def test_delivery_window_forgets_the_oldest_and_restores_from_a_checkpoint() -> None:
    window = DeliveryWindow(capacity=3)
    for key in ("a", "b", "c", "d"):
        window.add(key)
    assert not window.seen("a") and window.seen("d")
    restored = DeliveryWindow.restore(window.snapshot(limit=2), capacity=3)
    assert restored.snapshot() == ("c", "d")
