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
positions.

**Interrupted rebuilds resume.** Each batch commits its staging rows together with the
positions it read (``projection_rebuild_offsets``) and the run's progress
(``projection_rebuilds``: where it started and how many records it holds), so a rebuild
stopped by a signal, an error or a crash leaves the live tables untouched and can be
continued (``resume=True``) from the record after the last committed batch, as if it
had never stopped. A new rebuild refuses to start over an interrupted one unless told
to discard it. These two bookkeeping tables are UNLOGGED like the staging tables: a
PostgreSQL crash empties all of them together (never positions without their rows),
after which there is nothing to resume and the rebuild starts again. One rebuild per
projection runs at a time (a session advisory lock).

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


class RebuildConflict(Exception):
    """A rebuild cannot start: another is running, or there is nothing to resume."""


class RebuildPending(RebuildConflict):
    """An interrupted rebuild holds the staging tables: resume it or discard it."""


@dataclass(frozen=True)
class PendingRebuild:
    """An interrupted rebuild of a projection: where it started and what it holds."""

    projection: str
    start: datetime | None
    started_at: datetime
    records: int
    positions: Positions


#: Interrupted rebuilds (one row per projection) and the positions their staging holds.
_REBUILDS = "projection_rebuilds"
_REBUILD_OFFSETS = "projection_rebuild_offsets"


def _create_bookkeeping(connection: Connection) -> None:
    connection.execute(
        text(
            f"CREATE UNLOGGED TABLE IF NOT EXISTS {_REBUILDS} ("
            "projection varchar(100) PRIMARY KEY, start timestamptz, "
            "started_at timestamptz NOT NULL DEFAULT now(), records bigint NOT NULL DEFAULT 0)"
        )
    )
    connection.execute(
        text(
            f"CREATE UNLOGGED TABLE IF NOT EXISTS {_REBUILD_OFFSETS} ("
            "projection varchar(100) NOT NULL, topic varchar(249) NOT NULL, "
            'partition integer NOT NULL, "offset" bigint NOT NULL, '
            "PRIMARY KEY (projection, topic, partition))"
        )
    )


def pending_rebuild(connection: Connection) -> PendingRebuild | None:
    """The interrupted rebuild that :class:`Rebuild` can resume, if any.

    The staging tables are shared by every projection name, so there is at most one.
    """
    if connection.execute(text("SELECT to_regclass(:t)"), {"t": _REBUILDS}).scalar() is None:
        return None
    row = connection.execute(
        text(f"SELECT projection, start, started_at, records FROM {_REBUILDS}")
    ).first()
    if row is None:
        return None
    positions = connection.execute(
        text(f'SELECT topic, partition, "offset" FROM {_REBUILD_OFFSETS} WHERE projection = :p'),
        {"p": row.projection},
    )
    return PendingRebuild(
        row.projection,
        row.start,
        row.started_at,
        row.records,
        {(t, p): o for t, p, o in positions},
    )


def discard_rebuild(connection: Connection) -> None:
    """Drop the staging tables and the bookkeeping of an interrupted rebuild."""
    for table in READ_MODELS:
        connection.execute(text(f"DROP TABLE IF EXISTS {table.name}{STAGING_SUFFIX}"))
    if connection.execute(text("SELECT to_regclass(:t)"), {"t": _REBUILDS}).scalar() is not None:
        connection.execute(text(f"DELETE FROM {_REBUILDS}"))
        connection.execute(text(f"DELETE FROM {_REBUILD_OFFSETS}"))


#: The session advisory lock a rebuild holds while it runs (the staging tables are shared).
REBUILD_LOCK_KEY = int.from_bytes(hashlib.sha256(b"sfe-rebuild").digest()[:8], "big", signed=True)


@dataclass(frozen=True)
class ReplayResult:
    """What a rebuild did: records projected, rows per table after the swap, the content hash."""

    consumed: int
    rows: dict[str, int]
    digest: str
    #: Of ``consumed``, the records an interrupted run had committed before this one resumed.
    resumed: int = 0


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
        *,
        resume: bool = False,
        discard: bool = False,
    ) -> None:
        """Read from ``start`` (None: the earliest retained record) with ``batch_size`` records per batch.

        With ``resume`` continue the interrupted rebuild instead (its own start applies);
        with ``discard`` drop an interrupted rebuild and start afresh. Without either, an
        interrupted rebuild makes :meth:`run` raise :class:`RebuildConflict`.
        """
        if resume and discard:
            raise ValueError("resume or discard an interrupted rebuild, not both")
        self.engine = engine
        self.projection = projection
        self.start = start
        self.batch_size = batch_size
        self.progress = progress
        self.resume = resume
        self.discard = discard
        #: Records the interrupted rebuild had committed when this run resumed it.
        self.resumed = 0
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
        """Rebuild into staging tables, swap them in, and return the new tables' hash.

        Stopped or failing before the swap, the staging tables and their positions stay
        for a later ``resume``; the live tables are untouched either way.
        """
        lock = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        held = False
        try:
            held = lock.execute(
                text("SELECT pg_try_advisory_lock(:k)"), {"k": REBUILD_LOCK_KEY}
            ).scalar_one()
            if not held:
                raise RebuildConflict("another rebuild is running; one runs at a time")
            with self.engine.begin() as connection:
                self._prepare(connection)
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
            return ReplayResult(self.resumed + consumed, rows, digest, self.resumed)
        finally:
            self._consumer.close()
            if held:  # the pooled session outlives this run: release its lock
                lock.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": REBUILD_LOCK_KEY})
            lock.close()

    def _prepare(self, connection: Connection) -> None:
        """Create the staging tables, or take up the interrupted rebuild's."""
        _create_bookkeeping(connection)
        pending = pending_rebuild(connection)
        if self.resume:
            if pending is None:
                raise RebuildConflict(
                    "there is no interrupted rebuild to resume (a PostgreSQL crash empties "
                    "the unlogged staging tables with their positions)"
                )
            if pending.projection != self.projection.name:
                raise RebuildConflict(
                    f"the interrupted rebuild is of projection {pending.projection!r}, "
                    f"not {self.projection.name!r}"
                )
            missing = [
                table.name
                for table in READ_MODELS
                if connection.execute(
                    text("SELECT to_regclass(:t)"), {"t": table.name + STAGING_SUFFIX}
                ).scalar()
                is None
            ]
            if missing:
                raise RebuildConflict(
                    f"the staging tables of the interrupted rebuild are gone: {missing}"
                )
            self.start = pending.start
            self.resumed = pending.records
            self.positions = dict(pending.positions)
            self.next_offsets = {where: offset + 1 for where, offset in self.positions.items()}
            return
        if pending is not None:
            if not self.discard:
                raise RebuildPending(
                    f"an interrupted rebuild of projection {pending.projection!r} holds "
                    f"{pending.records:,} records"
                )
            discard_rebuild(connection)
        self._create_staging(connection)
        connection.execute(
            text(f"INSERT INTO {_REBUILDS} (projection, start) VALUES (:p, :s)"),
            {"p": self.projection.name, "s": self.start},
        )

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
            where = (partition.topic, partition.partition)
            if where in self.next_offsets:  # resumed: after the last committed batch
                partition.offset = self.next_offsets[where]
            elif partition.offset < 0:
                partition.offset = OFFSET_BEGINNING if self.start is None else high
            first = max(low, partition.offset)
            self.next_offsets[where] = first
            total += max(0, high - first)
        self._consumer.assign(partitions)
        return partitions, total

    def _consume_to_end(self, stop: threading.Event) -> int:
        """Read every source partition to its end into the staging tables.

        A reader thread polls and decodes batch after batch while this thread copies the
        previous one into the staging tables, each batch in its own transaction with the
        positions it read.
        """
        partitions, total = self._assign()
        pending = {(p.topic, p.partition) for p in partitions}
        batches: queue.Queue[_Batch | BaseException | None] = queue.Queue(maxsize=2)
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
                started = time.perf_counter()
                with self.engine.begin() as connection:
                    writer.write(connection, item.rows)
                    _record_progress(connection, self.projection.name, item.count, item.newest)
                    self.projection.flush_dead_letters()
                    committing = time.perf_counter()
                writer.took("commit", committing)
                written += time.perf_counter() - started
                consumed += item.count
                self.progress(self.resumed + consumed, self.resumed + total)
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
        batches: queue.Queue[_Batch | BaseException | None],
    ) -> None:
        """Poll and decode until every partition is at its end; hand the rows to ``batches``."""
        cpu, started = time.thread_time(), time.perf_counter()
        try:
            while pending:
                if stop.is_set():
                    raise ReplayInterrupted("stopped before the swap")
                if self._abandon.is_set():
                    return
                records, newest = self._poll(pending)
                if records:
                    batches.put(_Batch(len(records), self.projection.rows(records), newest))
            batches.put(None)
        except BaseException as exc:  # handed to the writer, which raises it
            batches.put(exc)
        finally:
            self.timings["consume+decode (reader thread, wall)"] = time.perf_counter() - started
            self.timings["consume+decode (reader thread, CPU)"] = time.thread_time() - cpu

    def _poll(self, pending: set[tuple[str, int]]) -> tuple[list[Message], Positions]:
        """The next records, and the highest offset among them per partition."""
        records = []
        newest: Positions = {}
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
        return records, newest

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
            records, _ = self._poll(set(behind))
            self.projection.project(connection, records)
            consumed += len(records)
        for table in READ_MODELS:
            _swap(connection, table)
        store_positions(connection, self.projection.name, self.positions)
        connection.execute(text(f"DELETE FROM {_REBUILDS}"))
        connection.execute(text(f"DELETE FROM {_REBUILD_OFFSETS}"))
        return consumed


@dataclass(frozen=True)
class _Batch:
    """Rows of ``count`` consumed records and the highest offset read per partition."""

    count: int
    rows: Rows
    newest: Positions


def _record_progress(
    connection: Connection, projection: str, count: int, newest: Positions
) -> None:
    """Store a committed batch's positions and count with its staging rows."""
    connection.execute(
        text(f"UPDATE {_REBUILDS} SET records = records + :n WHERE projection = :p"),
        {"n": count, "p": projection},
    )
    if newest:
        connection.execute(
            text(
                f'INSERT INTO {_REBUILD_OFFSETS} (projection, topic, partition, "offset") '
                "VALUES (:projection, :topic, :partition, :offset) "
                "ON CONFLICT (projection, topic, partition) DO UPDATE SET "
                f'"offset" = GREATEST({_REBUILD_OFFSETS}."offset", EXCLUDED."offset")'
            ),
            [
                {"projection": projection, "topic": t, "partition": p, "offset": o}
                for (t, p), o in sorted(newest.items())
            ],
        )


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
