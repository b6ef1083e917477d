"""Rebuild the PostgreSQL projection from the log and swap it in while the live one serves.

A rebuild creates empty staging tables shaped like the live ones
(``CREATE TABLE x__rebuild (LIKE x INCLUDING ALL)``), reads the source topics with a
plain confluent-kafka consumer (no group, large batches) from the earliest offset or
from a point in time up to the end of each partition, and projects them with the
same code as the live projection. It then swaps the tables in **one transaction**:
it locks the live tables (waiting for the live projection's batch in flight), catches
up with whatever the live projection applied meanwhile, renames the staging tables
into place (keeping the live index, constraint and sequence names) and stores the
positions. An interrupted rebuild drops its staging tables and leaves the live
ones untouched.

:func:`content_hash` digests the read models row by row in ``event_id`` order,
without the surrogate ``id``, so a rebuild and the live projection can be compared.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import partial
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message
from confluent_kafka import TopicPartition as Partition
from sqlalchemy import Connection, Engine, Table, text

from projections.postgres import READ_MODELS, PostgresProjection
from projections.runner import store_positions, stored_positions
from sfe import metrics
from streams.topic_admin import while_leaders_settle

STAGING_SUFFIX = "__rebuild"
#: How long the swap waits to read what the live projection applied during the rebuild.
CATCH_UP_TIMEOUT_S = 60.0
_INDEX = re.compile(r"^CREATE (UNIQUE )?INDEX (\S+) ON (\S+) (.*)$")

Positions = dict[tuple[str, int], int]


class ReplayInterrupted(Exception):
    """The rebuild was stopped before the swap; the live tables are unchanged."""


@dataclass(frozen=True)
class ReplayResult:
    """What a rebuild did: records read, rows per table after the swap, the content hash."""

    consumed: int
    rows: dict[str, int]
    digest: str


def content_hash(connection: Connection, suffix: str = "") -> tuple[str, dict[str, int]]:
    """SHA-256 of every read model's rows (ordered by ``event_id``, without ``id``), and counts."""
    digest = hashlib.sha256()
    counts: dict[str, int] = {}
    for table in READ_MODELS:
        name = table.name + suffix
        columns = [column.name for column in table.columns if column.name != "id"]
        digest.update(json.dumps([table.name, columns]).encode())
        result = connection.execution_options(yield_per=10_000).execute(
            text(f"SELECT {', '.join(columns)} FROM {name} ORDER BY event_id")
        )
        counts[table.name] = 0
        for row in result:
            digest.update(json.dumps(list(row), default=_canonical, sort_keys=True).encode())
            digest.update(b"\n")
            counts[table.name] += 1
    return "sha256:" + digest.hexdigest(), counts


def snapshot_hash(engine: Engine) -> tuple[str, dict[str, int]]:
    """:func:`content_hash` of the live tables, read in one consistent snapshot."""
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as connection:
        return content_hash(connection)


def _canonical(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"cannot hash a {type(value).__name__}")


class Rebuild:
    """One rebuild of ``projection`` (a :class:`PostgresProjection` on the staging tables)."""

    def __init__(
        self,
        engine: Engine,
        bootstrap: str,
        projection: PostgresProjection,
        start: datetime | None = None,
        batch_size: int = 20_000,
        progress: Callable[[int, int], None] = lambda done, total: None,
    ) -> None:
        """Read from ``start`` (None: the earliest retained record) with ``batch_size`` records per batch."""
        self.engine = engine
        self.projection = projection
        self.start = start
        self.batch_size = batch_size
        self.progress = progress
        #: Last offset projected, and next offset to read, per (topic, partition).
        self.positions: Positions = {}
        self.next_offsets: Positions = {}
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"sfe-replay-{projection.name}-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
                "fetch.max.bytes": 64 * 1024 * 1024,
            }
        )

    def run(self, stop: threading.Event) -> ReplayResult:
        """Rebuild into staging tables, swap them in, and return the new tables' hash."""
        try:
            with self.engine.begin() as connection:
                self._create_staging(connection)
            consumed = self._consume_to_end(stop)
            with self.engine.begin() as connection:
                consumed += self._catch_up_and_swap(connection, stop)
            # Hashed after the swap's commit: readers and the live projection wait for the
            # swap only, not for the hash.
            digest, rows = snapshot_hash(self.engine)
            return ReplayResult(consumed, rows, digest)
        finally:
            self._consumer.close()
            with self.engine.begin() as connection:
                for table in READ_MODELS:
                    connection.execute(text(f"DROP TABLE IF EXISTS {table.name}{STAGING_SUFFIX}"))

    def _create_staging(self, connection: Connection) -> None:
        for table in READ_MODELS:
            table.create(connection, checkfirst=True)  # a dropped live table comes back empty
            staging = table.name + STAGING_SUFFIX
            connection.execute(text(f"DROP TABLE IF EXISTS {staging}"))
            connection.execute(text(f"CREATE TABLE {staging} (LIKE {table.name} INCLUDING ALL)"))

    def _assign(self) -> tuple[list[Partition], int]:
        partitions = [
            Partition(topic, number)
            for topic in self.projection.topics
            for number in sorted(self._consumer.list_topics(topic, 30).topics[topic].partitions)
        ]
        if self.start is not None:
            stamp = int(self.start.timestamp() * 1000)
            wanted = [Partition(p.topic, p.partition, stamp) for p in partitions]
            partitions = while_leaders_settle(lambda: self._consumer.offsets_for_times(wanted, 10))
        total = 0
        for partition in partitions:
            low, high = while_leaders_settle(
                partial(self._consumer.get_watermark_offsets, partition, 10)
            )
            if partition.offset < 0:
                partition.offset = OFFSET_BEGINNING if self.start is None else high
            first = max(low, partition.offset)
            self.next_offsets[(partition.topic, partition.partition)] = first
            total += high - first
        self._consumer.assign(partitions)
        return partitions, total

    def _consume_to_end(self, stop: threading.Event) -> int:
        partitions, total = self._assign()
        pending = {(p.topic, p.partition) for p in partitions}
        consumed = 0
        while pending:
            if stop.is_set():
                raise ReplayInterrupted("stopped before the swap")
            records = self._poll(pending)
            if records:
                with self.engine.begin() as connection:
                    self.projection.project(connection, records)
                consumed += len(records)
                self.progress(consumed, total)
        return consumed

    def _poll(self, pending: set[tuple[str, int]]) -> list[Message]:
        records = []
        for message in self._consumer.consume(self.batch_size, 1.0):
            error = message.error()
            where = (str(message.topic()), int(message.partition() or 0))
            offset = int(message.offset() or 0)
            if error is not None and error.code() == KafkaError._PARTITION_EOF:
                pending.discard(where)
            elif error is not None:
                raise KafkaException(error)
            else:
                records.append(message)
                self.positions[where] = max(self.positions.get(where, -1), offset)
                self.next_offsets[where] = max(self.next_offsets.get(where, 0), offset + 1)
        metrics.REPLAY_EVENTS.labels(task=f"replay-{self.projection.name}").inc(len(records))
        return records

    def _catch_up_and_swap(self, connection: Connection, stop: threading.Event) -> int:
        names = ", ".join(table.name for table in READ_MODELS)
        connection.execute(text(f"LOCK TABLE {names} IN ACCESS EXCLUSIVE MODE"))
        live = stored_positions(connection, self.projection.name)
        consumed, deadline = 0, time.monotonic() + CATCH_UP_TIMEOUT_S
        while behind := {
            where
            for where, offset in live.items()
            if where in self.next_offsets and self.next_offsets[where] <= offset
        }:
            if stop.is_set() or time.monotonic() > deadline:
                raise ReplayInterrupted("stopped while catching up with the live projection")
            records = self._poll(set(behind))
            self.projection.project(connection, records)
            consumed += len(records)
        for table in READ_MODELS:
            _swap(connection, table)
        store_positions(connection, self.projection.name, self.positions)
        return consumed


def _indexes(connection: Connection, table: str) -> dict[tuple[bool, str], str]:
    """Index name by (unique, definition without names) of ``table``."""
    rows = connection.execute(
        text(
            "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) "
            "FROM pg_index WHERE indrelid = CAST(:table AS regclass)"
        ),
        {"table": table},
    )
    found = {}
    for name, definition in rows:
        match = _INDEX.match(definition)
        if match:
            found[(bool(match[1]), match[4])] = name
    return found


def _swap(connection: Connection, table: Table) -> None:
    """Put ``<table>__rebuild`` in the place of ``table`` with the live names of everything."""
    live, staging, retired = table.name, table.name + STAGING_SUFFIX, table.name + "__retired"
    live_indexes = _indexes(connection, live)
    staging_indexes = _indexes(connection, staging)
    sequences = [
        (column.name, sequence)
        for column in table.columns
        if (
            sequence := connection.execute(
                text("SELECT pg_get_serial_sequence(:table, :column)"),
                {"table": live, "column": column.name},
            ).scalar_one()
        )
    ]
    connection.execute(text(f"ALTER TABLE {live} RENAME TO {retired}"))
    connection.execute(text(f"ALTER TABLE {staging} RENAME TO {live}"))
    for column, sequence in sequences:
        connection.execute(text(f"ALTER SEQUENCE {sequence} OWNED BY {live}.{column}"))
    connection.execute(text(f"DROP TABLE {retired}"))
    for shape, name in staging_indexes.items():
        if shape in live_indexes and live_indexes[shape] != name:
            connection.execute(text(f"ALTER INDEX {name} RENAME TO {live_indexes[shape]}"))


class Progress:
    """Rate and ETA of a long run, at most once per ``interval`` seconds, to ``write``."""

    def __init__(self, task: str, write: Callable[[str], None], interval: float = 1.0) -> None:
        """Report for ``task`` (also the label of ``sfe_replay_progress_ratio``)."""
        self.task = task
        self.write = write
        self.interval = interval
        self._started = time.monotonic()
        self._last = 0.0

    def __call__(self, done: int, total: int) -> None:
        """Report ``done`` of ``total`` records (when the interval has passed)."""
        now = time.monotonic()
        ratio = min(1.0, done / total) if total else 1.0
        metrics.REPLAY_PROGRESS.labels(task=self.task).set(ratio)
        if now - self._last < self.interval and done < total:
            return
        self._last = now
        rate = done / max(now - self._started, 1e-6)
        eta = (total - done) / rate if rate and total > done else 0.0
        self.write(
            f"{self.task}: {done:,}/{total:,} records ({ratio:.1%}), {rate:,.0f}/s, ETA {eta:.0f}s"
        )
