"""Rebuild the PostgreSQL projection from the log and swap it in while the live one serves.

A rebuild creates empty, unlogged staging tables shaped like the live ones
(``CREATE UNLOGGED TABLE x__rebuild (LIKE x INCLUDING ALL)``), reads the source topics
with a plain confluent-kafka consumer (no group, large batches) from the earliest offset
or from a point in time up to the end of each partition, and turns them into rows with
the same code as the live projection (:meth:`PostgresProjection.rows`). A reader thread
polls and decodes while the calling thread loads the previous batch with ``COPY``
(:class:`StagingWriter`, to the same effect as the live projection's statements). The
staging tables are then made durable (``SET LOGGED``) and swapped in **one transaction**:
it locks the live tables (waiting for the live projection's batch in flight), catches
up with whatever the live projection applied meanwhile, renames the staging tables
into place (keeping the live index, constraint and sequence names) and stores the
positions. An interrupted rebuild drops its staging tables and leaves the live
ones untouched.

:func:`content_hash` digests the read models row by row in ``event_id`` order,
without the surrogate ``id``, so a rebuild and the live projection can be compared.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import partial
from typing import Any

import psycopg
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message
from confluent_kafka import TopicPartition as Partition
from sqlalchemy import Column, Connection, Engine, MetaData, Table, text
from sqlalchemy.dialects.postgresql import JSONB

from projections.postgres import READ_MODELS, PostgresProjection, Row, Rows, merge_runs
from projections.runner import store_positions, stored_positions
from sfe import metrics
from streams.topic_admin import while_leaders_settle

STAGING_SUFFIX = "__rebuild"
#: How long the swap waits to read what the live projection applied during the rebuild.
CATCH_UP_TIMEOUT_S = 60.0
#: ``json.dumps`` (as SQLAlchemy writes JSONB) without the check for circular values.
_JSON_TEXT = json.JSONEncoder(check_circular=False).encode
#: Rows hashed per round trip.
_HASH_CHUNK = 10_000
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
    # As json.dumps(row, default=_canonical, sort_keys=True); rows cannot be circular.
    encode = json.JSONEncoder(default=_canonical, sort_keys=True, check_circular=False).encode
    raw = connection.connection.driver_connection
    for table in READ_MODELS:
        name = table.name + suffix
        columns = [column.name for column in table.columns if column.name != "id"]
        digest.update(json.dumps([table.name, columns]).encode())
        counts[table.name] = 0
        # A server-side cursor read in chunks; json.dumps(..., ensure_ascii=True) is ASCII.
        with raw.cursor(name=f"content_hash_{table.name}") as cursor:  # type: ignore[union-attr]
            cursor.execute(f"SELECT {', '.join(columns)} FROM {name} ORDER BY event_id")
            while chunk := cursor.fetchmany(_HASH_CHUNK):
                digest.update("".join([encode(list(row)) + "\n" for row in chunk]).encode())
                counts[table.name] += len(chunk)
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
        #: Seconds spent per phase of :meth:`run`.
        self.timings: dict[str, float] = {}
        self._abandon = threading.Event()
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
            started = time.perf_counter()
            with self.engine.begin() as connection:
                for table in READ_MODELS:
                    connection.execute(text(f"ALTER TABLE {table.name}{STAGING_SUFFIX} SET LOGGED"))
            self.timings["set logged"] = time.perf_counter() - started
            started = time.perf_counter()
            with self.engine.begin() as connection:
                consumed += self._catch_up_and_swap(connection, stop)
            self.timings["swap"] = time.perf_counter() - started
            # Hashed after the swap's commit: readers and the live projection wait for the
            # swap only, not for the hash.
            digest, rows = snapshot_hash(self.engine)
            self.timings["hash"] = time.perf_counter() - started - self.timings["swap"]
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
            # Unlogged while it is filled (no WAL per row); made durable before the swap.
            connection.execute(
                text(f"CREATE UNLOGGED TABLE {staging} (LIKE {table.name} INCLUDING ALL)")
            )

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
        """Read every source partition to its end into the staging tables.

        A reader thread polls and decodes batch after batch while this thread copies the
        previous one into the staging tables, each batch in its own transaction.
        """
        partitions, total = self._assign()
        pending = {(p.topic, p.partition) for p in partitions}
        batches: queue.Queue[tuple[int, Rows] | BaseException | None] = queue.Queue(maxsize=2)
        reader = threading.Thread(
            target=self._read, args=(pending, stop, batches), name="rebuild-reader", daemon=True
        )
        writer = StagingWriter(self.projection)
        consumed, written = 0, 0.0
        reader.start()
        try:
            while (item := batches.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                count, rows = item
                started = time.perf_counter()
                with self.engine.begin() as connection:
                    writer.write(connection, rows)
                    self.projection.flush_dead_letters()
                    committing = time.perf_counter()
                writer.took("commit", committing)
                written += time.perf_counter() - started
                consumed += count
                self.progress(consumed, total)
        finally:
            self._abandon.set()  # the reader stops at its next batch if this one failed
            while reader.is_alive():
                with contextlib.suppress(queue.Empty):
                    batches.get(timeout=0.1)
            reader.join()
        self.timings["write (COPY into staging)"] = written
        self.timings.update({f"  {step}": seconds for step, seconds in writer.timings.items()})
        return consumed

    def _read(
        self,
        pending: set[tuple[str, int]],
        stop: threading.Event,
        batches: queue.Queue[tuple[int, Rows] | BaseException | None],
    ) -> None:
        """Poll and decode until every partition is at its end; hand the rows to ``batches``."""
        cpu, started = time.thread_time(), time.perf_counter()
        try:
            while pending:
                if stop.is_set():
                    raise ReplayInterrupted("stopped before the swap")
                if self._abandon.is_set():
                    return
                records = self._poll(pending)
                if records:
                    batches.put((len(records), self.projection.rows(records)))
            batches.put(None)
        except BaseException as exc:  # handed to the writer, which raises it
            batches.put(exc)
        finally:
            self.timings["consume+decode (reader thread, wall)"] = time.perf_counter() - started
            self.timings["consume+decode (reader thread, CPU)"] = time.thread_time() - cpu

    def _poll(self, pending: set[tuple[str, int]]) -> list[Message]:
        records = []
        newest: Positions = {}  # the highest offset read per partition in this batch
        for message in self._consumer.consume(self.batch_size, 1.0):
            error = message.error()
            where = (str(message.topic()), message.partition() or 0)
            if error is None:
                records.append(message)
                offset = message.offset() or 0
                if offset > newest.get(where, -1):
                    newest[where] = offset
            elif error.code() == KafkaError._PARTITION_EOF:
                pending.discard(where)
            else:
                raise KafkaException(error)
        for where, offset in newest.items():
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


class StagingWriter:
    """Writes rows into a rebuild's staging tables with COPY, as the projection's statements would.

    ``sync_log`` and ``ml_predictions`` keep the first row of an ``event_id``
    (``ON CONFLICT DO NOTHING``): the batch's rows, first of each id, are copied straight
    into the table, and only if one of them is already there (a record read twice) is
    the batch copied into a temporary table and inserted from it with the projection's
    conflict rule. The runs of ``workflow_executions``, folded per batch with
    :func:`~projections.postgres.merge_runs`, are copied into a temporary table and
    upserted from it with the projection's own upsert.
    """

    def __init__(self, projection: PostgresProjection) -> None:
        """Write into ``projection``'s tables (the staging tables)."""
        self.projection = projection
        #: Seconds spent per step, over every :meth:`write`.
        self.timings: dict[str, float] = {}

    def took(self, step: str, started: float) -> float:
        """Add the seconds since ``started`` to ``step``'s; return now (``perf_counter``)."""
        now = time.perf_counter()
        self.timings[step] = self.timings.get(step, 0.0) + now - started
        return now

    def write(self, connection: Connection, rows: Rows) -> None:
        """Write ``rows`` in ``connection``'s transaction."""
        raw = connection.connection.driver_connection
        started = time.perf_counter()
        with raw.cursor() as cursor:  # type: ignore[union-attr]
            self._insert_new(cursor, self.projection.sync_log, rows.syncs)
            started = self.took("COPY sync_log", started)
            self._insert_new(cursor, self.projection.ml_predictions, rows.predictions)
            started = self.took("COPY ml_predictions", started)
            if rows.runs:
                runs = self.projection.workflow_executions
                batch = _temporary(cursor, runs)
                _copy(cursor, batch, _values(batch, merge_runs(rows.runs)))
                connection.execute(self.projection._upsert_runs(batch))
                cursor.execute(f"DROP TABLE {batch.name}")
                self.took("upsert workflow_executions", started)

    def _insert_new(self, cursor: psycopg.Cursor[Any], table: Table, rows: list[Row]) -> None:
        if not rows:
            return
        first: dict[str, Row] = {}
        for row in rows:
            first.setdefault(row["event_id"], row)
        columns = _columns(table)
        values = _values(columns, first.values())
        cursor.execute("SAVEPOINT rebuild_copy")
        try:
            _copy(cursor, columns, values)
        except psycopg.errors.UniqueViolation:
            cursor.execute("ROLLBACK TO SAVEPOINT rebuild_copy")
            batch = _temporary(cursor, table)
            _copy(cursor, batch, values)
            names = ", ".join(column.name for column in batch.columns)
            cursor.execute(
                f"INSERT INTO {table.name} ({names}) SELECT {names} FROM {batch.name} "
                "ON CONFLICT (event_id) DO NOTHING"
            )
            cursor.execute(f"DROP TABLE {batch.name}")
        else:
            cursor.execute("RELEASE SAVEPOINT rebuild_copy")


def _columns(table: Table) -> Table:
    """``table`` without its surrogate ``id`` (the columns a COPY fills)."""
    return Table(
        table.name,
        MetaData(),
        *(Column(column.name, column.type) for column in table.columns if column.name != "id"),
    )


def _temporary(cursor: psycopg.Cursor[Any], table: Table) -> Table:
    """A temporary table with ``table``'s columns but ``id``, dropped at commit at the latest."""
    columns = _columns(table)
    batch = Table(
        table.name + "__batch", MetaData(), *(Column(c.name, c.type) for c in columns.columns)
    )
    names = ", ".join(column.name for column in batch.columns)
    cursor.execute(
        f"CREATE TEMPORARY TABLE {batch.name} ON COMMIT DROP AS "
        f"SELECT {names} FROM {table.name} WITH NO DATA"
    )
    return batch


def _values(columns: Table, rows: Iterable[Row]) -> list[tuple[Any, ...]]:
    """The rows as tuples in the order of ``columns``; JSONB values as JSON text."""
    names = [column.name for column in columns.columns]
    documents = [n for n, c in enumerate(columns.columns) if isinstance(c.type, JSONB)]
    if not documents:
        return [tuple([row[name] for name in names]) for row in rows]
    values = []
    dumps = _JSON_TEXT
    for row in rows:
        value = [row[name] for name in names]
        for n in documents:
            if value[n] is not None:
                value[n] = dumps(value[n])
        values.append(tuple(value))
    return values


def _copy(cursor: psycopg.Cursor[Any], table: Table, values: list[tuple[Any, ...]]) -> None:
    names = ", ".join(column.name for column in table.columns)
    with cursor.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:
        for row in values:
            copy.write_row(row)


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
