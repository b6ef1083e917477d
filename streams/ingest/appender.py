"""Exactly-once append of streaming events to Kafka, with replay-id checkpoints in the same transaction.

Salesforce says: store the replay id only after the event is safely processed. We go
one step further: each batch of facts *and* the new replay id of every channel are
written in one Kafka transaction, the checkpoints to a compacted topic. A crash
before the commit leaves neither the records nor the checkpoint visible to
``read_committed`` readers, so on restart we resubscribe from the last committed
replay id and the redelivered events are appended once. A restarted ingestor with
the same ``transactional.id`` fences its dead predecessor (``init_transactions``).
Redeliveries within a session (same replay id or EventUuid) are dropped by a
bounded window of recent delivery keys that is itself part of the checkpoint.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from schema_registry.codec import Codec
from schema_registry.events import ReplayCheckpointStored
from schema_registry.ids import derived_event_id
from sfe.kafka_security import process_properties


class AppendFailed(RuntimeError):
    """A transaction could not be committed; nothing of the batch is visible."""


class AppenderFenced(AppendFailed):
    """Another ingestor with our transactional id took over; this one must stop."""


@dataclass(frozen=True)
class OutboundRecord:
    """One Kafka record to append: topic, key, encoded value and headers."""

    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, str | bytes | None], ...] = ()


@dataclass(frozen=True)
class Checkpoint:
    """Where a channel resumes: its last committed replay id and recent delivery keys."""

    channel: str
    replay_id: int | str
    recent_deliveries: tuple[str, ...] = ()
    #: Salesforce commit time (ISO 8601) of the newest change behind ``replay_id``; the
    #: start of the window to reconcile if the replay id has expired.
    event_time: str | None = None

    def to_event(self) -> ReplayCheckpointStored:
        """The checkpoint as the event its topic holds."""
        return ReplayCheckpointStored(
            id=derived_event_id(f"{self.channel}#{self.replay_id}", "sfe.ingest", "checkpoint"),
            source="sfe.ingest",
            subject=self.channel,
            time=datetime.now(UTC),
            channel=self.channel,
            replay_id=str(self.replay_id),
            recent_deliveries=self.recent_deliveries,
            event_time=self.event_time,
        )

    @classmethod
    def from_event(cls, event: ReplayCheckpointStored) -> Checkpoint:
        """The checkpoint an event of the checkpoint topic records."""
        raw = event.replay_id
        replay_id: int | str = int(raw) if raw.lstrip("-").isdigit() else raw
        return cls(event.channel, replay_id, tuple(event.recent_deliveries), event.event_time)


@dataclass
class DeliveryWindow:
    """Recent delivery keys of one channel, bounded, to drop redelivered events."""

    capacity: int = 4096
    _order: deque[str] = field(default_factory=deque)
    _keys: set[str] = field(default_factory=set)

    def seen(self, key: str) -> bool:
        """True when ``key`` was delivered recently."""
        return key in self._keys

    def add(self, key: str) -> None:
        """Remember ``key``, forgetting the oldest beyond capacity."""
        if key in self._keys:
            return
        self._order.append(key)
        self._keys.add(key)
        while len(self._order) > self.capacity:
            self._keys.discard(self._order.popleft())

    def snapshot(self, limit: int = 256) -> tuple[str, ...]:
        """The newest ``limit`` keys in delivery order, carried by the checkpoint."""
        return tuple(self._order)[-limit:]

    @classmethod
    def restore(cls, keys: Iterable[str], capacity: int = 4096) -> DeliveryWindow:
        """A window pre-filled from a checkpoint."""
        window = cls(capacity)
        for key in keys:
            window.add(key)
        return window


class TransactionalAppender:
    """Appends batches of records and channel checkpoints atomically."""

    def __init__(
        self,
        bootstrap: str,
        transactional_id: str,
        checkpoint_topic: str,
        codec: Codec | None = None,
        timeout_s: float = 30.0,
        *,
        client_config: Mapping[str, str | int | float | bool] | None = None,
    ) -> None:
        """Configure an idempotent, transactional producer (acks=all).

        ``codec`` encodes the checkpoints; its topic prefix must match ``checkpoint_topic``.
        ``client_config`` holds the connection's security properties
        (``sfe.kafka_security.kafka_client_config``); ``bootstrap`` wins over its servers.
        """
        self.bootstrap = bootstrap
        self.client_config = dict(client_config or {})
        self.checkpoint_topic = checkpoint_topic
        self.codec = codec or Codec()
        self.timeout_s = timeout_s
        self._producer = Producer(
            {
                **process_properties(),
                **self.client_config,
                "bootstrap.servers": bootstrap,
                "transactional.id": transactional_id,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "compression.type": "lz4",
                "transaction.timeout.ms": 60_000,
            }
        )
        self._started = False

    def init(self) -> None:
        """Fence any predecessor with our transactional id (needed once before appending)."""
        if not self._started:
            self._producer.init_transactions(self.timeout_s)
            self._started = True

    def start(self) -> dict[str, Checkpoint]:
        """Fence any predecessor and return the last committed checkpoint of every channel."""
        self.init()
        return load_checkpoints(
            self.bootstrap,
            self.checkpoint_topic,
            self.codec,
            self.timeout_s,
            client_config=self.client_config,
        )

    def append(self, records: Sequence[OutboundRecord], checkpoints: Iterable[Checkpoint]) -> None:
        """Write ``records`` and ``checkpoints`` in one transaction, or nothing at all."""
        if not self._started:
            raise AppendFailed("call start() before append()")
        try:
            self._producer.begin_transaction()
            for record in records:
                self._produce(record.topic, record.key, record.value, list(record.headers))
            for checkpoint in checkpoints:
                encoded = self.codec.encode(self.checkpoint_topic, checkpoint.to_event())
                self._produce(
                    self.checkpoint_topic,
                    checkpoint.channel.encode(),
                    encoded.value,
                    encoded.headers,
                )
            self._producer.commit_transaction(self.timeout_s)
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if error.fatal() or error.code() == KafkaError._FENCED:
                raise AppenderFenced(str(error)) from None
            # Whatever failed (a record the broker refuses, say), the transaction must
            # not stay open: the next append's begin_transaction would fail forever.
            self._abort_open_transaction()
            raise AppendFailed(str(error)) from None

    def _abort_open_transaction(self) -> None:
        """Abort the current transaction, if any (an abort with none open is ignored)."""
        try:
            self._producer.abort_transaction(self.timeout_s)
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if error.fatal():
                raise AppenderFenced(str(error)) from None

    def close(self) -> None:
        """Flush whatever the producer still holds (nothing, between transactions)."""
        self._producer.flush(self.timeout_s)

    def _produce(
        self,
        topic: str,
        key: bytes,
        value: bytes,
        headers: Sequence[tuple[str, str | bytes | None]],
    ) -> None:
        while True:
            try:
                self._producer.produce(topic, key=key, value=value, headers=list(headers))
                return
            except BufferError:  # local queue full: let deliveries drain, then retry
                self._producer.poll(0.05)


def load_checkpoints(
    bootstrap: str,
    topic: str,
    codec: Codec,
    timeout_s: float = 30.0,
    *,
    client_config: Mapping[str, str | int | float | bool] | None = None,
) -> dict[str, Checkpoint]:
    """Read the compacted checkpoint topic to its end (committed records only).

    ``client_config``: the connection's security properties, as for the appender.
    """
    consumer = Consumer(
        {
            **process_properties(),
            **(client_config or {}),
            "bootstrap.servers": bootstrap,
            "group.id": "sfe-ingest-checkpoint-reader",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=timeout_s)
        topic_metadata = metadata.topics.get(topic)
        if topic_metadata is None or topic_metadata.error is not None:
            raise AppendFailed(
                f"checkpoint topic {topic!r} does not exist (run: sfe topics ensure)"
            )
        partitions = [TopicPartition(topic, p, 0) for p in topic_metadata.partitions]
        consumer.assign(partitions)
        pending = {p.partition for p in partitions}
        checkpoints: dict[str, Checkpoint] = {}
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    pending.discard(message.partition())
                    continue
                raise KafkaException(error)
            value = message.value()
            if value is not None:
                event = codec.decode(topic, value, message_headers(message))
                if not isinstance(event, ReplayCheckpointStored):
                    raise AppendFailed(f"{topic} holds {event.type}, not checkpoints")
                checkpoints[event.channel] = Checkpoint.from_event(event)
        if pending:
            raise AppendFailed(f"could not read {topic!r} to its end within {timeout_s:.0f} s")
        return checkpoints
    finally:
        consumer.close()


def message_headers(message: Message) -> list[tuple[str, bytes]]:
    """A consumed record's headers as (name, bytes) pairs."""
    raw = message.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return [
        (str(name), value if isinstance(value, bytes) else str(value or "").encode())
        for name, value in pairs
    ]


def windows_from(
    checkpoints: Mapping[str, Checkpoint], capacity: int = 4096
) -> dict[str, DeliveryWindow]:
    """Delivery windows per channel, restored from checkpoints."""
    return {
        channel: DeliveryWindow.restore(checkpoint.recent_deliveries, capacity)
        for channel, checkpoint in checkpoints.items()
    }
