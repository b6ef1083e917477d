"""Rebuild the PostgreSQL projection from the log and swap it in while the live one serves.

A rebuild creates empty, unlogged staging tables shaped like the live ones
(``CREATE UNLOGGED TABLE x__rebuild (LIKE x INCLUDING ALL)``), reads the source topics
with plain confluent-kafka consumers (no group, large batches) from the earliest offset
or from a point in time up to the end of each partition, and turns them into rows with
the same code as the live projection (:meth:`PostgresProjection.rows`). Reader
processes (:mod:`projections.rebuild_readers`, partitions split between them) consume,
decode and encode the rows as ``COPY`` text, while the calling process loads each
batch with ``COPY`` (:class:`StagingWriter`, to the same effect as the live
projection's statements). The staging tables are then made durable (``SET LOGGED``) and swapped in **one transaction**:
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

import hashlib
import json
import multiprocessing
import os
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

import psycopg
from confluent_kafka import Consumer, Message
from confluent_kafka import TopicPartition as Partition
from sqlalchemy import Column, Connection, Engine, MetaData, Table, text

from projections.postgres import READ_MODELS, PostgresProjection, Rows
from projections.rebuild_readers import (
    CopyPayload,
    ReaderDone,
    ReaderFailed,
    ReaderSpec,
    copy_columns,
    copy_payload,
    poll,
    run_reader,
    split,
)
from projections.runner import store_positions, stored_positions
from schema_registry.wire import SelfDescribingFormat
from sfe import audit, metrics
from sfe.kafka_security import client_config, process_properties
from streams.topic_admin import while_leaders_settle

STAGING_SUFFIX = "__rebuild"
#: How long the swap waits to read what the live projection applied during the rebuild.
CATCH_UP_TIMEOUT_S = 60.0
#: ``json.dumps`` (as SQLAlchemy writes JSONB) without the check for circular values.
_JSON_TEXT = json.JSONEncoder(check_circular=False).encode
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
    """SHA-256 of every read model's rows (ordered by ``event_id``, without ``id``), and counts.

    The rows are digested as PostgreSQL writes them with ``COPY ... TO STDOUT`` (text
    format), with the output settings that format depends on pinned for the
    transaction, so equal rows give equal bytes whoever computes the hash.
    """
    digest = hashlib.sha256()
    counts: dict[str, int] = {}
    raw = connection.connection.driver_connection
    with raw.cursor() as cursor:  # type: ignore[union-attr]
        for setting, value in _HASH_OUTPUT_SETTINGS:
            cursor.execute(f"SELECT set_config('{setting}', '{value}', true)")
        for table in READ_MODELS:
            columns = [column.name for column in table.columns if column.name != "id"]
            digest.update(json.dumps([table.name, columns]).encode())
            lines = 0
            query = f"SELECT {', '.join(columns)} FROM {table.name}{suffix} ORDER BY event_id"
            with cursor.copy(f"COPY ({query}) TO STDOUT") as copy:
                for block in copy:
                    digest.update(block)
                    lines += bytes(block).count(b"\n")
            counts[table.name] = lines
    return "sha256:" + digest.hexdigest(), counts


#: The settings ``COPY``'s text output depends on, pinned while hashing.
_HASH_OUTPUT_SETTINGS = (
    ("DateStyle", "ISO, YMD"),
    ("TimeZone", "UTC"),
    ("IntervalStyle", "postgres"),
    ("extra_float_digits", "1"),
    ("bytea_output", "hex"),
)


def snapshot_hash(engine: Engine) -> tuple[str, dict[str, int]]:
    """:func:`content_hash` of the live tables, read in one consistent snapshot."""
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as connection:
        return content_hash(connection)


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
        readers: int = 2,
        schema_registry: dict[str, str] | None = None,
    ) -> None:
        """Read from ``start`` (None: the earliest retained record) with ``batch_size`` records per batch.

        With ``resume`` continue the interrupted rebuild instead (its own start applies);
        with ``discard`` drop an interrupted rebuild and start afresh. Without either, an
        interrupted rebuild makes :meth:`run` raise :class:`RebuildConflict`. ``readers``
        processes consume and decode (the projection's codec, with the schema registry
        configured by ``schema_registry`` (:func:`~schema_registry.codec.registry_config`)
        when it reads the Confluent wire format).
        """
        if resume and discard:
            raise ValueError("resume or discard an interrupted rebuild, not both")
        if schema_registry is None and type(projection.codec.wire) is not SelfDescribingFormat:
            raise ValueError("the readers decode as the projection does: pass its registry")
        self.engine = engine
        self.bootstrap = bootstrap
        self.readers = max(1, readers)
        self.schema_registry = schema_registry
        self.projection = projection
        self.start = start
        self.batch_size = batch_size
        self.progress = progress
        self.resume = resume
        self.discard = discard
        #: Records the interrupted rebuild had committed when this run resumed it, and
        #: the records this run copied into the staging tables.
        self.resumed = 0
        self.consumed = 0
        #: Last offset projected, and next offset to read, per (topic, partition).
        self.positions: Positions = {}
        self.next_offsets: Positions = {}
        #: Seconds spent per phase of :meth:`run`.
        self.timings: dict[str, float] = {}
        self._consumer = Consumer(
            {
                **client_config(bootstrap),
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
            consumed = self.consumed = self._consume_to_end(stop)
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

    def _assign(self) -> tuple[list[Partition], dict[tuple[str, int], int]]:
        """Every source partition with the offset to read from, and the records left in each."""
        partitions = [
            Partition(topic, number)
            for topic in self.projection.topics
            for number in sorted(self._consumer.list_topics(topic, 30).topics[topic].partitions)
        ]
        if self.start is not None:
            stamp = int(self.start.timestamp() * 1000)
            wanted = [Partition(p.topic, p.partition, stamp) for p in partitions]
            partitions = while_leaders_settle(lambda: self._consumer.offsets_for_times(wanted, 10))
        sizes = {}
        for partition in partitions:
            low, high = while_leaders_settle(
                partial(self._consumer.get_watermark_offsets, partition, 10)
            )
            where = (partition.topic, partition.partition)
            if where in self.next_offsets:  # resumed: after the last committed batch
                partition.offset = self.next_offsets[where]
            elif partition.offset < 0:
                partition.offset = low if self.start is None else high
            partition.offset = max(low, partition.offset)
            self.next_offsets[where] = partition.offset
            sizes[where] = max(0, high - partition.offset)
        return partitions, sizes

    def _consume_to_end(self, stop: threading.Event) -> int:
        """Read every source partition to its end into the staging tables.

        Reader processes (:mod:`projections.rebuild_readers`) consume, decode and encode
        the rows while this process copies each batch they hand over into the staging
        tables, in its own transaction with the positions it read.
        """
        partitions, sizes = self._assign()
        total = sum(sizes.values())
        shares = split(partitions, sizes, self.readers)
        context = multiprocessing.get_context("spawn")  # this process has threads: no fork
        out: Any = context.Queue(maxsize=2 * len(shares))
        readers = [
            context.Process(
                target=run_reader,
                args=(self._reader_spec(share), out),
                name=f"rebuild-reader-{number}",
                daemon=True,
            )
            for number, share in enumerate(shares)
        ]
        for reader in readers:
            reader.start()
        writer = StagingWriter(self.projection)
        consumed, written, running = 0, 0.0, len(readers)
        cpu, wall = 0.0, 0.0
        try:
            while running:
                if stop.is_set():
                    raise ReplayInterrupted("stopped before the swap")
                try:
                    item = out.get(timeout=0.5)
                except queue.Empty:
                    failed = [r for r in readers if r.exitcode not in (None, 0)]
                    if failed:
                        raise RuntimeError(
                            f"{failed[0].name} exited with status {failed[0].exitcode}"
                        ) from None
                    continue
                if isinstance(item, ReaderFailed):
                    raise RuntimeError(f"a rebuild reader failed:\n{item.error}")
                if isinstance(item, ReaderDone):
                    running -= 1
                    cpu += item.cpu_seconds
                    wall = max(wall, item.wall_seconds)
                    continue
                started = time.perf_counter()
                with self.engine.begin() as connection:
                    writer.write_payload(connection, item)
                    _record_progress(connection, self.projection.name, item.count, item.newest)
                    committing = time.perf_counter()
                writer.took("commit", committing)
                written += time.perf_counter() - started
                self._advance(item.newest)
                consumed += item.count
                metrics.REPLAY_EVENTS.labels(task=f"replay-{self.projection.name}").inc(item.count)
                self.progress(self.resumed + consumed, self.resumed + total)
        finally:
            # A reader ignores SIGTERM (it is for the loading process to decide) and holds
            # nothing that is not also in the log: a stopped rebuild kills what is left.
            for reader in readers:
                if reader.is_alive():
                    reader.kill()
            for reader in readers:
                reader.join(30)
            out.close()
            out.cancel_join_thread()
        self.timings[f"consume+decode ({len(readers)} reader processes, wall)"] = wall
        self.timings[f"consume+decode ({len(readers)} reader processes, CPU)"] = cpu
        self.timings["write (COPY into staging)"] = written
        self.timings.update({f"  {step}": seconds for step, seconds in writer.timings.items()})
        return consumed

    def _reader_spec(self, share: list[Partition]) -> ReaderSpec:
        return ReaderSpec(
            bootstrap=self.bootstrap,
            partitions=tuple((p.topic, p.partition, p.offset) for p in share),
            batch_size=self.batch_size,
            topic_prefix=self.projection.codec.topic_prefix,
            projection_name=self.projection.name,
            table_suffix=STAGING_SUFFIX,
            schema_registry=self.schema_registry,
            parent_pid=os.getpid(),
            security=process_properties(),
        )

    def _advance(self, newest: Positions) -> None:
        for where, offset in newest.items():
            self.positions[where] = max(self.positions.get(where, -1), offset)
            self.next_offsets[where] = max(self.next_offsets.get(where, 0), offset + 1)

    def _poll(self, pending: set[tuple[str, int]]) -> tuple[list[Message], Positions]:
        """The next records of the catch-up, and the highest offset among them per partition."""
        records, newest = poll(self._consumer, self.batch_size, pending)
        self._advance(newest)
        metrics.REPLAY_EVENTS.labels(task=f"replay-{self.projection.name}").inc(len(records))
        return records, newest

    def _catch_up_and_swap(self, connection: Connection, stop: threading.Event) -> int:
        names = ", ".join(table.name for table in READ_MODELS)
        connection.execute(text(f"LOCK TABLE {names} IN ACCESS EXCLUSIVE MODE"))
        live = stored_positions(connection, self.projection.name)
        self._consumer.assign([Partition(t, p, o) for (t, p), o in self.next_offsets.items()])
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
        audit.record(
            connection,
            "replay.rebuild",
            self.projection.name,
            {
                "from": None if self.start is None else self.start.isoformat(),
                "records": self.resumed + self.consumed + consumed,
                "resumed": self.resumed,
                "caught_up": consumed,
                "partitions": len(self.positions),
            },
        )
        connection.execute(text(f"DELETE FROM {_REBUILDS}"))
        connection.execute(text(f"DELETE FROM {_REBUILD_OFFSETS}"))
        return consumed


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
    """Writes batches into a rebuild's staging tables with COPY, as the projection's statements would.

    ``sync_log`` and ``ml_predictions`` keep the first row of an ``event_id``
    (``ON CONFLICT DO NOTHING``): a batch's rows (first of each id, see
    :func:`~projections.rebuild_readers.copy_payload`) are copied straight into the
    table, and only if one of them is already there (a record read twice) is the batch
    copied into a temporary table and inserted from it with the projection's conflict
    rule. The folded runs of ``workflow_executions`` are copied into a temporary table
    and upserted from it with the projection's own upsert.
    """

    def __init__(self, projection: PostgresProjection) -> None:
        """Write into ``projection``'s tables (the staging tables)."""
        self.projection = projection
        #: Seconds spent per step, over every write.
        self.timings: dict[str, float] = {}

    def took(self, step: str, started: float) -> float:
        """Add the seconds since ``started`` to ``step``'s; return now (``perf_counter``)."""
        now = time.perf_counter()
        self.timings[step] = self.timings.get(step, 0.0) + now - started
        return now

    def write(self, connection: Connection, rows: Rows) -> None:
        """Write ``rows`` in ``connection``'s transaction."""
        self.write_payload(connection, copy_payload(self.projection, rows, 0, {}))

    def write_payload(self, connection: Connection, payload: CopyPayload) -> None:
        """Write a batch already encoded as COPY text in ``connection``'s transaction."""
        raw = connection.connection.driver_connection
        started = time.perf_counter()
        with raw.cursor() as cursor:  # type: ignore[union-attr]
            self._insert_new(cursor, self.projection.sync_log, payload.syncs)
            started = self.took("COPY sync_log", started)
            self._insert_new(cursor, self.projection.ml_predictions, payload.predictions)
            started = self.took("COPY ml_predictions", started)
            if payload.runs:
                batch = _temporary(cursor, self.projection.workflow_executions)
                _copy(cursor, batch, payload.runs)
                connection.execute(self.projection._upsert_runs(batch))
                cursor.execute(f"DROP TABLE {batch.name}")
                self.took("upsert workflow_executions", started)

    def _insert_new(self, cursor: psycopg.Cursor[Any], table: Table, text_rows: bytes) -> None:
        if not text_rows:
            return
        cursor.execute("SAVEPOINT rebuild_copy")
        try:
            _copy(cursor, table, text_rows)
        except psycopg.errors.UniqueViolation:
            cursor.execute("ROLLBACK TO SAVEPOINT rebuild_copy")
            batch = _temporary(cursor, table)
            _copy(cursor, batch, text_rows)
            names = ", ".join(copy_columns(table))
            cursor.execute(
                f"INSERT INTO {table.name} ({names}) SELECT {names} FROM {batch.name} "
                "ON CONFLICT (event_id) DO NOTHING"
            )
            cursor.execute(f"DROP TABLE {batch.name}")
        else:
            cursor.execute("RELEASE SAVEPOINT rebuild_copy")


def _temporary(cursor: psycopg.Cursor[Any], table: Table) -> Table:
    """A temporary table with ``table``'s COPY columns, dropped at commit at the latest."""
    batch = Table(
        table.name + "__batch",
        MetaData(),
        *(Column(c.name, c.type) for c in table.columns if c.name != "id"),
    )
    names = ", ".join(copy_columns(table))
    cursor.execute(
        f"CREATE TEMPORARY TABLE {batch.name} ON COMMIT DROP AS "
        f"SELECT {names} FROM {table.name} WITH NO DATA"
    )
    return batch


def _copy(cursor: psycopg.Cursor[Any], table: Table, text_rows: bytes) -> None:
    """COPY ``text_rows`` (COPY text format, :func:`copy_columns` order) into ``table``."""
    names = ", ".join(copy_columns(table))
    with cursor.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:
        copy.write(text_rows)


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
