"""Keyed state of a batch processor, kept in a compacted topic and changed in its transactions.

A stateful agent on the transactional batch path (:mod:`streams.worker.batch`) keeps
what it knows per key (an opportunity's snapshot, folded from CDC changes that carry
only the fields that changed) in a :class:`ChangelogState`. The state is partitioned
like the agent's input: the value of a key read from input partition *p* lives in
partition *p* of the state's compacted topic, and only the process that owns input
partition *p* reads or writes it.

Changes are **staged** while the handler decides on a batch. The processor appends the
staged values to the state topic inside the batch's transaction, with the batch's
output and its consumed offsets, and applies them to memory only once that transaction
is committed; an aborted batch discards them. So the state, the output and the input
offsets move together: a crash at any point leaves the state as of the last committed
offsets, and the batch read again decides from exactly the state it was first decided
from.

When the group gives this process a partition, its state is read from the state topic
(``read_committed``, up to the last stable offset) before any of its input is decided,
once the partition's committed offset is stable (the processor waits out a transaction
the previous owner may still be committing); a partition taken away is forgotten. Values are kept in memory as their JSON round trip,
so a value decides alike whether it was just staged or restored after a restart.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from sfe import metrics
from sfe.kafka_security import client_config

log = logging.getLogger(__name__)


class StateRestoreError(RuntimeError):
    """A state partition could not be read back (its topic is missing or does not answer)."""


class ChangelogState:
    """JSON values by (partition, key), restored from and appended to one compacted topic."""

    def __init__(
        self,
        *,
        name: str,
        bootstrap: str,
        topic: str,
        partitions: int,
        restore_timeout_seconds: float = 120.0,
    ) -> None:
        """State ``name`` in ``topic`` (the full, prefixed name) of ``partitions`` partitions."""
        self.name = name
        self.bootstrap = bootstrap
        self.topic = topic
        self.partitions = partitions
        self.restore_timeout_seconds = restore_timeout_seconds
        self._committed: dict[int, dict[str, Any]] = {}
        self._staged: dict[tuple[int, str], tuple[bytes, Any]] = {}

    # -- the topic ---------------------------------------------------------------------

    def ensure_topic(self) -> None:
        """Create the compacted state topic if it is missing; refuse one with too few partitions."""
        admin = AdminClient(client_config(self.bootstrap))
        found = admin.list_topics(self.topic, timeout=30).topics.get(self.topic)
        if found is not None and found.error is None:
            if len(found.partitions) < self.partitions:
                raise StateRestoreError(
                    f"state topic {self.topic} has {len(found.partitions)} partitions, its input "
                    f"{self.partitions}; delete it and restart (it is rebuilt from the input) "
                    f"or add partitions: kafka-topics --alter --topic {self.topic} "
                    f"--partitions {self.partitions}"
                )
            return
        futures = admin.create_topics(
            [
                NewTopic(
                    self.topic,
                    self.partitions,
                    1,
                    config={"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"},
                )
            ]
        )
        try:
            futures[self.topic].result(timeout=30)
        except Exception as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise

    # -- ownership ---------------------------------------------------------------------

    @property
    def owned(self) -> frozenset[int]:
        """The partitions whose state this process holds."""
        return frozenset(self._committed)

    def restore(self, partitions: Iterable[int]) -> None:
        """Read the state of ``partitions`` (those not held yet) from the start of the topic."""
        wanted = sorted(set(partitions) - set(self._committed))
        if not wanted:
            return
        began = time.monotonic()
        values: dict[int, dict[str, Any]] = {partition: {} for partition in wanted}
        reader = Consumer(
            {
                **client_config(self.bootstrap),
                "group.id": f"{self.topic}.restore",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
            }
        )
        try:
            reader.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in wanted])
            remaining = set(wanted)
            deadline = began + self.restore_timeout_seconds
            while remaining:
                if time.monotonic() > deadline:
                    raise StateRestoreError(
                        f"state partitions {sorted(remaining)} of {self.topic} were not read "
                        f"to their end in {self.restore_timeout_seconds:.0f} s"
                    )
                for message in reader.consume(10_000, 0.5):
                    partition = int(message.partition() or 0)
                    error = message.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            remaining.discard(partition)
                            continue
                        raise StateRestoreError(f"reading {self.topic}[{partition}]: {error}")
                    key = (message.key() or b"").decode()
                    raw = message.value()
                    if raw is None:
                        values[partition].pop(key, None)
                    else:
                        values[partition][key] = json.loads(raw)
        finally:
            reader.close()
        self._committed.update(values)
        seconds = time.monotonic() - began
        metrics.STATE_RESTORE.labels(self.name).observe(seconds)
        metrics.STATE_PARTITIONS.labels(self.name).set(len(self._committed))
        log.info(
            "state restored",
            extra={
                "topic": self.topic,
                "partitions": wanted,
                "keys": sum(len(v) for v in values.values()),
                "seconds": round(seconds, 3),
            },
        )

    def release(self, partitions: Iterable[int]) -> None:
        """Forget the state of ``partitions`` (another process owns them now)."""
        for partition in partitions:
            self._committed.pop(partition, None)
            for staged in [k for k in self._staged if k[0] == partition]:
                del self._staged[staged]
        metrics.STATE_PARTITIONS.labels(self.name).set(len(self._committed))

    # -- reading and staging -----------------------------------------------------------

    def get(self, partition: int, key: str) -> Any | None:
        """The value of ``key`` in ``partition``: the staged one if any, else the committed one."""
        staged = self._staged.get((partition, key))
        if staged is not None:
            return staged[1]
        held = self._committed.get(partition)
        if held is None:
            raise StateRestoreError(
                f"state partition {partition} of {self.topic} is not held by this process"
            )
        return held.get(key)

    def put(self, partition: int, key: str, value: Any) -> None:
        """Stage ``value`` for ``key``; it is written with the batch and applied on commit."""
        encoded = json.dumps(value, separators=(",", ":"), sort_keys=True).encode()
        self._staged[(partition, key)] = (encoded, json.loads(encoded))

    def staged(self) -> Iterator[tuple[int, bytes, bytes]]:
        """The staged values as (partition, key, value) records of the state topic."""
        for (partition, key), (encoded, _value) in self._staged.items():
            yield partition, key.encode(), encoded

    def produce_staged(self, producer: Producer) -> int:
        """Append the staged values with ``producer`` (inside its open transaction)."""
        count = 0
        for partition, key, value in self.staged():
            while True:
                try:
                    producer.produce(self.topic, key=key, value=value, partition=partition)
                    break
                except BufferError:
                    producer.poll(0.05)
            count += 1
        return count

    def apply_staged(self) -> None:
        """The batch was committed: the staged values become the state."""
        for (partition, key), (_encoded, value) in self._staged.items():
            held = self._committed.get(partition)
            if held is not None:
                held[key] = value
        self._staged.clear()

    def discard_staged(self) -> None:
        """The batch was rolled back: forget what it staged."""
        self._staged.clear()
