"""Run a projection from Kafka into PostgreSQL with an exactly-once effect.

Each batch of consumed records is projected and the consumed positions are stored
in ``projection_offsets`` **in the same database transaction**. When partitions are
assigned, the runner seeks each one to its stored offset + 1, so a crash at any
point neither loses nor re-applies an event: the database, not Kafka's group
offsets, is the source of truth for where the projection stands. Positions are
recorded for every consumed record, including the ones a projection ignores.
Kafka offsets are committed too, after the database, only so that lag is visible
to operators.

While PostgreSQL is unreachable (a restart, a fail-over) :meth:`ProjectionRunner.run`
waits and applies the failed batch again, from its first records, for up to
``database_wait_seconds``; only a longer outage ends the run with the error.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from sqlalchemy import Connection, Engine, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import InterfaceError, OperationalError

from projections.tables import projection_offsets
from sfe.kafka_security import client_config
from streams.lag import ConfluentLag

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Errors of an unreachable database (refused, reset, shut down), worth waiting out.
UNREACHABLE = (OperationalError, InterfaceError)


class Projection(Protocol):
    """A read model fed by Kafka records; ``project`` must be deterministic and idempotent."""

    name: str
    topics: Sequence[str]

    def project(self, connection: Connection, messages: Sequence[Message]) -> None:
        """Write the rows for ``messages`` using ``connection`` (inside the runner's transaction)."""


@dataclass(frozen=True)
class BatchResult:
    """What one batch did: records consumed, and the highest offset per partition stored."""

    consumed: int
    positions: dict[tuple[str, int], int]


def stored_positions(connection: Connection, projection: str) -> dict[tuple[str, int], int]:
    """Last projected offset per (topic, partition) of ``projection``."""
    rows = connection.execute(
        select(
            projection_offsets.c.topic, projection_offsets.c.partition, projection_offsets.c.offset
        ).where(projection_offsets.c.projection == projection)
    )
    return {(topic, partition): offset for topic, partition, offset in rows}


def store_positions(
    connection: Connection, projection: str, positions: dict[tuple[str, int], int]
) -> None:
    """Upsert the consumed positions; never moves a position backwards."""
    if not positions:
        return
    statement = insert(projection_offsets).values(
        [
            {"projection": projection, "topic": topic, "partition": partition, "offset": offset}
            for (topic, partition), offset in sorted(positions.items())
        ]
    )
    statement = statement.on_conflict_do_update(
        constraint="projection_offsets_pkey",
        set_={"offset": statement.excluded.offset, "updated_at": statement.excluded.updated_at},
        where=projection_offsets.c.offset < statement.excluded.offset,
    )
    connection.execute(statement)


class ProjectionRunner:
    """Consumes a projection's topics in batches and applies them transactionally."""

    def __init__(
        self,
        bootstrap: str,
        engine: Engine,
        projection: Projection,
        batch_size: int = 1000,
        poll_timeout_s: float = 0.5,
        database_wait_seconds: float = 120.0,
    ) -> None:
        """Create the consumer (read_committed, no auto-commit) for ``projection``."""
        self.database_wait_seconds = database_wait_seconds
        self.engine = engine
        self.projection = projection
        self.batch_size = batch_size
        self.poll_timeout_s = poll_timeout_s
        group = f"sfe-projection-{projection.name}"
        self._consumer = Consumer(
            {
                **client_config(bootstrap),
                "group.id": group,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "isolation.level": "read_committed",
                "auto.offset.reset": "earliest",
                # A killed runner's partitions move to its successor after 10 s, not 45 s.
                "session.timeout.ms": 10_000,
                "heartbeat.interval.ms": 2_000,
            }
        )
        self._consumer.subscribe(list(projection.topics), on_assign=self._on_assign)
        self._lag = ConfluentLag(self._consumer, group)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        def read() -> dict[tuple[str, int], int]:
            with self.engine.connect() as connection:
                return stored_positions(connection, self.projection.name)

        positions = self.waiting_for_the_database(read, threading.Event())
        for partition in partitions:
            stored = positions.get((partition.topic, partition.partition))
            partition.offset = OFFSET_BEGINNING if stored is None else stored + 1
        consumer.assign(partitions)
        log.info(
            "partitions assigned",
            extra={
                "projection": self.projection.name,
                "positions": {f"{p.topic}[{p.partition}]": p.offset for p in partitions},
            },
        )

    def process_batch(self) -> BatchResult:
        """Consume up to ``batch_size`` records and apply them with their positions in one transaction."""
        messages = self._consumer.consume(self.batch_size, self.poll_timeout_s)
        self._lag.maybe_report()
        records: list[Message] = []
        for message in messages:
            error = message.error()
            if error is None:
                records.append(message)
            elif error.code() != KafkaError._PARTITION_EOF:
                raise KafkaException(error)
        if not records:
            return BatchResult(0, {})
        positions: dict[tuple[str, int], int] = {}
        for record in records:
            key = (str(record.topic()), int(record.partition() or 0))
            positions[key] = max(positions.get(key, -1), int(record.offset() or 0))
        try:
            with self.engine.begin() as connection:
                self.projection.project(connection, records)
                store_positions(connection, self.projection.name, positions)
        except UNREACHABLE:
            self._rewind(records)
            raise
        self._consumer.commit(
            offsets=[TopicPartition(t, p, o + 1) for (t, p), o in positions.items()],
            asynchronous=True,
        )
        return BatchResult(len(records), positions)

    def _rewind(self, records: Sequence[Message]) -> None:
        """Seek back to the first of ``records`` per partition: the batch is read again."""
        first: dict[tuple[str, int], int] = {}
        for record in records:
            first.setdefault(
                (str(record.topic()), int(record.partition() or 0)), int(record.offset() or 0)
            )
        for (topic, partition), offset in first.items():
            self._consumer.seek(TopicPartition(topic, partition, offset))

    def waiting_for_the_database(self, call: Callable[[], T], stop: threading.Event) -> T:
        """``call``, again with backoff while PostgreSQL is unreachable, up to the wait time."""
        deadline = time.monotonic() + self.database_wait_seconds
        wait = 0.5
        while True:
            try:
                return call()
            except UNREACHABLE as exc:
                if time.monotonic() + wait > deadline or stop.is_set():
                    raise
                log.warning(
                    "PostgreSQL is unreachable; the batch will be applied again",
                    extra={
                        "projection": self.projection.name,
                        "error": str(exc).splitlines()[0][:200],
                        "wait_s": wait,
                    },
                )
                stop.wait(wait)
                wait = min(wait * 2, 8.0)

    def run(self, stop: threading.Event) -> None:
        """Process batches until ``stop`` is set; a database outage is waited out."""
        while not stop.is_set():
            self.waiting_for_the_database(self.process_batch, stop)

    def close(self) -> None:
        """Leave the consumer group."""
        self._consumer.close()
