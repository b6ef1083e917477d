"""Consume, decide and produce in Kafka transactions, a whole batch at a time.

The high-volume agents (lead qualification) read their input in batches with
confluent-kafka (librdkafka), decide on the whole batch (one enrichment round trip,
one ONNX call) and append every derived event **and the consumed offsets in one Kafka
transaction** (``send_offsets_to_transaction``). A crash anywhere rolls the batch
back: it is read again and, because derived ids are deterministic, yields the same
events; consumers reading ``read_committed`` never see the aborted attempt. Input is
read ``read_committed`` too, so aborted ingest transactions never start a workflow.

Why not a Faust stream for this path: Faust dispatches every record through its own
task machinery, which on this project's 2-core reference machine delivered about 2,200
records/s to an agent doing no work at all (BENCHMARKS.md); the lead path is meant to
sustain 5,000 CDC events/s with scoring. The decision code is the same plain functions
either way.

A record that cannot be decoded goes to ``dlq.ingest`` with the reason, inside the
same transaction as the batch's other output, and is counted; it never stops the
batch. Several processes may run the same processor: they share the partitions
through the consumer group, and a fenced (zombie) instance cannot commit.

A stateful handler (the opportunity agent) keeps its per-key state in a
:class:`~streams.worker.state.ChangelogState`: the state a batch changes is appended in
the batch's transaction and applied in memory only once it commits, and a partition's
state is restored before any of its records is decided.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from agents.base import Emission
from schema_registry.codec import Codec
from schema_registry.dead_letters import dead_letter
from schema_registry.errors import UndecodableEvent
from schema_registry.events import Event, RecordChanged
from sfe import metrics
from sfe.kafka_security import client_config
from streams.ingest.appender import message_headers
from streams.lag import ConfluentLag
from streams.worker.state import ChangelogState

log = logging.getLogger(__name__)

DLQ_TOPIC = "dlq.ingest"
#: Longest wait for a previous owner's pending transaction (its timeout is 60 s).
STABLE_OFFSETS_TIMEOUT_SECONDS = 90.0


@dataclass(frozen=True)
class Consumed:
    """A decoded input record: its catalogue topic (unprefixed), coordinates and event."""

    topic: str
    partition: int
    offset: int
    event: Event


Handler = Callable[[Sequence[Consumed]], Awaitable[Sequence[Emission]]]


@dataclass(frozen=True)
class BatchStats:
    """What one batch did: records read, dead-lettered and events appended."""

    consumed: int
    dead_lettered: int
    produced: int


class TransactionalBatchProcessor:
    """Read ``topics`` in batches, run ``handler`` and append its output transactionally."""

    def __init__(
        self,
        *,
        name: str,
        bootstrap: str,
        codec: Codec,
        topics: Sequence[str],
        handler: Handler,
        topic_prefix: str = "",
        batch_size: int = 2000,
        batch_wait_seconds: float = 0.1,
        instance_id: str | None = None,
        group_id: str | None = None,
        state: ChangelogState | None = None,
    ) -> None:
        """A processor of ``topics``; ``state`` is the handler's state, if it keeps any."""
        self.name = name
        self.codec = codec
        self.prefix = topic_prefix
        self.topics = tuple(topics)
        self.handler = handler
        self.batch_size = batch_size
        self.batch_wait_seconds = batch_wait_seconds
        self.state = state
        self._assigned: set[tuple[str, int]] = set()
        self.group_id = group_id or f"{topic_prefix}sfe.worker.{name}"
        instance = instance_id or f"{socket.gethostname()}-{os.getpid()}"
        self.consumer = Consumer(
            {
                **client_config(bootstrap),
                "group.id": self.group_id,
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "partition.assignment.strategy": "cooperative-sticky",
                "fetch.min.bytes": 1,
                "queued.max.messages.kbytes": 262_144,
                # A killed worker's partitions move to the others after 10 s, not 45 s
                # (heartbeats come from librdkafka's own thread, whatever a batch takes).
                "session.timeout.ms": 10_000,
                "heartbeat.interval.ms": 2_000,
            }
        )
        self.producer = Producer(
            {
                **client_config(bootstrap),
                "transactional.id": f"{self.group_id}.{instance}",
                "linger.ms": 5,
                "batch.num.messages": 10_000,
                "queue.buffering.max.messages": 1_000_000,
                # Faust's aiokafka reads lz4 through cramjam (a dependency of this project).
                "compression.type": "lz4",
                "transaction.timeout.ms": 60_000,
            }
        )
        self._ready = False
        self._lag = ConfluentLag(self.consumer, self.group_id, topic_prefix)

    @property
    def ready(self) -> bool:
        """Whether the processor has initialised its transactions and subscribed."""
        return self._ready

    def start(self) -> None:
        """Initialise transactions (fencing older instances of this id) and subscribe."""
        if self.state is not None:
            self.state.ensure_topic()
        self.producer.init_transactions(30)
        self.consumer.subscribe(
            [self.prefix + topic for topic in self.topics],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )
        self._ready = True

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Called inside consume(), before any record of these partitions is returned.
        if self.state is not None and partitions:
            # A barrier first: a read_committed consumer's offset fetch waits while a
            # transaction of the partitions' previous owner (a member the group gave up
            # on, still committing) holds offsets pending, so the state read next holds
            # everything committed up to the offsets this process will start from.
            consumer.committed(partitions, timeout=STABLE_OFFSETS_TIMEOUT_SECONDS)
            self.state.restore(tp.partition for tp in partitions)
        self._assigned.update((tp.topic, tp.partition) for tp in partitions)

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._assigned.difference_update((tp.topic, tp.partition) for tp in partitions)
        if self.state is not None:
            still = {partition for _topic, partition in self._assigned}
            self.state.release(tp.partition for tp in partitions if tp.partition not in still)

    def close(self) -> None:
        """Leave the group and release the clients."""
        self._ready = False
        try:
            self.consumer.close()
        finally:
            self.producer.flush(10)

    async def run(self, stop: asyncio.Event) -> None:
        """Process batches until ``stop`` is set; the current batch is finished first."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.start)
        try:
            while not stop.is_set():
                messages = await loop.run_in_executor(
                    None, self.consumer.consume, self.batch_size, self.batch_wait_seconds
                )
                if messages:
                    await self.process(messages)
                self._lag.maybe_report()
        finally:
            await loop.run_in_executor(None, self.close)

    async def process(self, messages: Sequence[Message]) -> BatchStats:
        """Decide on one batch and commit its output with its offsets, or roll it back."""
        consumed: list[Consumed] = []
        dead: list[Event] = []
        first: dict[tuple[str, int], int] = {}
        last: dict[tuple[str, int], int] = {}
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(error)
            topic = str(message.topic())
            partition, offset = int(message.partition() or 0), int(message.offset() or 0)
            if (topic, partition) not in self._assigned:
                continue  # read just before its partition was revoked: its new owner decides
            first.setdefault((topic, partition), offset)
            last[(topic, partition)] = offset
            catalogue_topic = topic.removeprefix(self.prefix)
            metrics.EVENTS_CONSUMED.labels(catalogue_topic).inc()
            try:
                event = self.codec.decode(topic, message.value(), message_headers(message))
            except UndecodableEvent as exc:
                dead.append(self._dead_letter(message, exc))
                continue
            consumed.append(Consumed(catalogue_topic, partition, offset, event))
        if not last:
            return BatchStats(0, 0, 0)
        try:
            emissions = await self.handler(consumed)
        except Exception:
            metrics.OPERATIONS.labels(self.name, "error").inc(len(consumed))
            self._discard_state()
            self._rewind(first)
            raise
        try:
            self._commit(emissions, dead, last)
        except KafkaException as exc:
            metrics.OPERATIONS.labels(self.name, "error").inc(len(consumed))
            self._discard_state()
            log.warning(
                "batch rolled back; it will be read again",
                extra={"processor": self.name, "error": str(exc), "records": len(messages)},
            )
            self._rewind(first)
            return BatchStats(0, 0, 0)
        except BaseException:
            self._discard_state()
            raise
        if self.state is not None:
            self.state.apply_staged()
        now = time.time()
        for item in consumed:
            if isinstance(item.event, RecordChanged):
                committed = item.event.header.commit_timestamp.timestamp()
                metrics.PROCESSING_LATENCY.labels("decision").observe(max(0.0, now - committed))
        metrics.OPERATIONS.labels(self.name, "success").inc(len(consumed))
        return BatchStats(len(consumed), len(dead), len(emissions))

    def _discard_state(self) -> None:
        if self.state is not None:
            self.state.discard_staged()

    def _dead_letter(self, message: Message, error: UndecodableEvent) -> Event:
        _kind, millis = message.timestamp()
        moment = datetime.fromtimestamp(max(millis, 0) / 1000, UTC)
        letter = dead_letter(
            consumer=f"sfe.worker.{self.name}",
            topic=str(message.topic()),
            partition=int(message.partition() or 0),
            offset=int(message.offset() or 0),
            key=message.key(),
            value=message.value(),
            headers=message_headers(message),
            error=error,
            time=moment,
        )
        metrics.DEAD_LETTERS.labels(DLQ_TOPIC, error.reason[:60]).inc()
        log.warning(
            "undecodable record dead-lettered",
            extra={"processor": self.name, "reason": error.reason, "id": letter.id},
        )
        return letter

    def _produce(self, topic: str, key: str, event: Event) -> None:
        encoded = self.codec.encode(self.prefix + topic, event)
        while True:
            try:
                self.producer.produce(
                    self.prefix + topic,
                    key=key.encode(),
                    value=encoded.value,
                    headers=list(encoded.headers),
                )
                return
            except BufferError:
                self.producer.poll(0.05)

    def _commit(
        self,
        emissions: Sequence[Emission],
        dead: Sequence[Event],
        last: dict[tuple[str, int], int],
    ) -> None:
        self.producer.begin_transaction()
        try:
            for emission in emissions:
                self._produce(emission.topic, emission.key, emission.event)
                metrics.EVENTS_PRODUCED.labels(emission.topic).inc()
            for letter in dead:
                self._produce(DLQ_TOPIC, letter.subject, letter)
                metrics.EVENTS_PRODUCED.labels(DLQ_TOPIC).inc()
            if self.state is not None:
                self.state.produce_staged(self.producer)
            offsets = [TopicPartition(t, p, o + 1) for (t, p), o in last.items()]
            self.producer.send_offsets_to_transaction(
                offsets, self.consumer.consumer_group_metadata(), 30
            )
            self.producer.commit_transaction(60)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if isinstance(error, KafkaError) and error.fatal():
                raise RuntimeError(f"{self.name}: fatal producer error: {error}") from exc
            try:
                self.producer.abort_transaction(30)
            except KafkaException as abort_error:
                raise RuntimeError(
                    f"{self.name}: could not abort a failed transaction: {abort_error}"
                ) from exc
            raise

    def _rewind(self, first: dict[tuple[str, int], int]) -> None:
        assigned = {(tp.topic, tp.partition) for tp in self.consumer.assignment()}
        for (topic, partition), offset in first.items():
            if (topic, partition) in assigned:
                self.consumer.seek(TopicPartition(topic, partition, offset))
