"""Helpers for tests that talk to the real broker: create topics, read them back."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from confluent_kafka import Consumer, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from sfe.settings import Settings

Headers = list[tuple[str, bytes]]


def create_topic(settings: Settings, name: str, partitions: int = 1, **config: str) -> None:
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    futures = admin.create_topics([NewTopic(name, partitions, 1, config=config)])
    futures[name].result(timeout=30)


def consume_all(
    settings: Settings,
    topic: str,
    expected: int,
    isolation: str = "read_uncommitted",
    timeout: float = 30.0,
) -> list[tuple[bytes | None, bytes | None]]:
    """Read a topic from the beginning until ``expected`` records arrive or the time is up."""
    records = consume_records(settings, topic, expected, isolation, timeout)
    return [(key, value) for key, value, _ in records]


def consume_records(
    settings: Settings,
    topic: str,
    expected: int,
    isolation: str = "read_committed",
    timeout: float = 30.0,
) -> list[tuple[bytes | None, bytes | None, Headers]]:
    """Like :func:`consume_all`, with each record's headers."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"test-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": isolation,
        }
    )
    consumer.subscribe([topic])
    records: list[tuple[bytes | None, bytes | None, Headers]] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and len(records) < expected:
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error():
                raise KafkaException(message.error())
            headers = [(k, v or b"") for k, v in (message.headers() or [])]
            records.append((message.key(), message.value(), headers))
    finally:
        consumer.close()
    return records


def delete_topics_with_prefix(settings: Settings, prefix: str) -> None:
    """Delete every topic whose name starts with ``prefix`` (a test's own topics).

    A broker keeps file handles open per partition; tests that each create the whole
    catalogue must give their topics back, or a long run exhausts the broker's limit.
    """
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    names = [name for name in admin.list_topics(timeout=30).topics if name.startswith(prefix)]
    if names:
        for future in admin.delete_topics(names, operation_timeout=30).values():
            future.result(timeout=60)


@contextmanager
def catalogue_topics(settings: Settings, namespace: str = "test") -> Iterator[str]:
    """Every catalogue topic under a fresh prefix (as `sfe topics ensure --prefix`), deleted afterwards."""
    from streams.topic_admin import TopicAdmin
    from streams.topics import catalogue

    prefix = f"{namespace}.{uuid.uuid4().hex[:8]}."
    TopicAdmin(settings.kafka_bootstrap).ensure(catalogue(prefix))
    try:
        yield prefix
    finally:
        delete_topics_with_prefix(settings, prefix)
