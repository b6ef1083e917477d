"""The real Kafka broker of the local stack: plain, asyncio, transactional and compacted topics."""

from __future__ import annotations

import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from confluent_kafka import Producer

from sfe.settings import Settings
from tests.kafka_helpers import consume_all, create_topic

pytestmark = pytest.mark.integration


def test_confluent_kafka_round_trip_keeps_per_key_order(stack: Settings, topic_name: str) -> None:
    create_topic(stack, topic_name, partitions=3)
    producer = Producer(
        {"bootstrap.servers": stack.kafka_bootstrap, "enable.idempotence": True, "acks": "all"}
    )
    sent = [(f"k{i % 5}".encode(), f"v{i}".encode()) for i in range(200)]
    for key, value in sent:
        producer.produce(topic_name, key=key, value=value)
    assert producer.flush(30) == 0

    received = consume_all(stack, topic_name, expected=len(sent))
    assert sorted(received) == sorted(sent)
    for key in {key for key, _ in sent}:
        assert [v for k, v in received if k == key] == [v for k, v in sent if k == key]


async def test_aiokafka_round_trip(stack: Settings, topic_name: str) -> None:
    create_topic(stack, topic_name)
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(50):
            await producer.send_and_wait(topic_name, key=b"lead", value=f"event-{i}".encode())
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic_name,
        bootstrap_servers=stack.kafka_bootstrap,
        group_id=f"test-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        values: list[bytes] = []
        while len(values) < 50:
            batch = await consumer.getmany(timeout_ms=10_000)
            assert batch, "no records within 10 s"
            for records in batch.values():
                values.extend(record.value for record in records if record.value is not None)
    finally:
        await consumer.stop()
    assert values == [f"event-{i}".encode() for i in range(50)]


def test_aborted_transaction_is_invisible_to_read_committed(
    stack: Settings, topic_name: str
) -> None:
    create_topic(stack, topic_name)
    producer = Producer(
        {"bootstrap.servers": stack.kafka_bootstrap, "transactional.id": f"tx-{topic_name}"}
    )
    producer.init_transactions(30)

    producer.begin_transaction()
    producer.produce(topic_name, key=b"a", value=b"committed-1")
    producer.produce(topic_name, key=b"a", value=b"committed-2")
    producer.commit_transaction(30)

    producer.begin_transaction()
    producer.produce(topic_name, key=b"a", value=b"aborted")
    producer.flush(30)  # the aborted records reach the log, then get an abort marker
    producer.abort_transaction(30)

    producer.begin_transaction()
    producer.produce(topic_name, key=b"a", value=b"committed-3")
    producer.commit_transaction(30)

    committed = consume_all(stack, topic_name, expected=3, isolation="read_committed")
    assert [value for _, value in committed] == [b"committed-1", b"committed-2", b"committed-3"]

    # The aborted record is physically in the log: read_uncommitted sees it.
    everything = consume_all(stack, topic_name, expected=4, isolation="read_uncommitted")
    assert b"aborted" in [value for _, value in everything]


def test_compacted_topic_keeps_the_latest_value_per_key(stack: Settings, topic_name: str) -> None:
    create_topic(
        stack,
        topic_name,
        **{
            "cleanup.policy": "compact",
            "segment.ms": "100",
            "min.cleanable.dirty.ratio": "0.01",
            "delete.retention.ms": "100",
            "min.compaction.lag.ms": "0",
        },
    )
    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap, "linger.ms": 0})
    for round_ in range(5):
        for key in ("x", "y", "z"):
            producer.produce(topic_name, key=key.encode(), value=f"{key}{round_}".encode())
        producer.flush(30)
        time.sleep(0.2)  # let segments roll so older ones become cleanable
    producer.produce(topic_name, key=b"y", value=None)  # tombstone deletes y
    producer.flush(30)

    latest = {b"x": b"x4", b"z": b"z4"}
    deadline = time.monotonic() + 90
    records: list[tuple[bytes | None, bytes | None]] = []
    while time.monotonic() < deadline:
        # A later write rolls the active segment, so everything before it can be cleaned.
        producer.produce(topic_name, key=b"tick", value=b"t")
        producer.flush(30)
        records = consume_all(stack, topic_name, expected=10**6, timeout=3)
        payload = [(k, v) for k, v in records if k != b"tick"]
        if dict(payload) == latest and len(payload) == len(latest):
            break
        time.sleep(1)
    payload = [(k, v) for k, v in records if k != b"tick"]
    assert dict(payload) == latest
    assert len(payload) == len(latest), f"not compacted: {payload}"
