"""Reader processes of a rebuild: consume, decode and encode rows as ``COPY`` text.

Turning a million records into rows is Python work (decoding Avro, building rows),
and in one process it shares one interpreter lock with the thread that loads them.
A rebuild therefore splits the source partitions between reader processes
(:func:`split`); each consumes its partitions to their end, turns every batch into rows
with the live projection's own code (:meth:`PostgresProjection.rows`), delivers the
batch's dead letters, and hands the loading process a :class:`CopyPayload`: the rows
already in PostgreSQL's ``COPY`` text format, plus the batch's positions. The loading
process only streams bytes into ``COPY`` and commits.

Every record of a partition is read by one reader, in order, and the loading process
writes one reader's batches in the order they come, so "the first row of an
``event_id`` wins" and the folding of a workflow run (both within one partition, as
they share a key) are exactly those of a single reader.

A reader ignores SIGINT and SIGTERM (the loading process decides when to stop, and
ends its readers) and dies with the loading process, even when that one is killed
(``PR_SET_PDEATHSIG`` on Linux; elsewhere it exits at its next hand-over).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import logging
import os
import signal
import time
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.queues import Queue
from queue import Full
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException
from confluent_kafka import TopicPartition as Partition
from sqlalchemy import Table
from sqlalchemy.dialects.postgresql import JSONB

from projections.postgres import PostgresProjection, Row, Rows, merge_runs
from sfe.kafka_security import client_config, use_properties

log = logging.getLogger(__name__)

Positions = dict[tuple[str, int], int]

#: ``json.dumps`` (as SQLAlchemy writes JSONB) without the check for circular values.
_JSON_TEXT = json.JSONEncoder(check_circular=False).encode
#: The characters COPY's text format escapes inside a value.
_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"})
_NULL = "\\N"


@dataclass(frozen=True)
class CopyPayload:
    """One batch's rows as COPY text per table, and the batch's record count and positions.

    ``syncs`` and ``predictions`` hold the first row of each ``event_id`` in the batch;
    ``runs`` holds the batch's workflow runs folded with
    :func:`~projections.postgres.merge_runs`.
    """

    count: int
    newest: Positions
    syncs: bytes = b""
    predictions: bytes = b""
    runs: bytes = b""


def copy_columns(table: Table) -> list[str]:
    """The columns a COPY of ``table`` fills: all but the surrogate ``id``."""
    return [column.name for column in table.columns if column.name != "id"]


def copy_text(table: Table, rows: Iterable[Row]) -> bytes:
    r"""``rows`` in COPY's text format, columns in :func:`copy_columns` order.

    Strings are escaped as the format requires (backslash, newline, carriage return,
    tab), ``None`` is ``\N``, naive timestamps are ISO, JSONB values are JSON text.
    """
    names = copy_columns(table)
    documents = {column.name for column in table.columns if isinstance(column.type, JSONB)}
    encoders = [_json_field if name in documents else _field for name in names]
    pairs = list(zip(names, encoders, strict=True))
    lines = ["\t".join([encode(row[name]) for name, encode in pairs]) for row in rows]
    if not lines:
        return b""
    return ("\n".join(lines) + "\n").encode()


def _field(value: Any) -> str:
    if value is None:
        return _NULL
    if isinstance(value, str):
        return value.translate(_ESCAPES)
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, bool):
        return "t" if value else "f"
    return str(value)


def _json_field(value: Any) -> str:
    return _NULL if value is None else _JSON_TEXT(value).translate(_ESCAPES)


def first_of_each_id(rows: Sequence[Row]) -> list[Row]:
    """The first row of every ``event_id``, in order (a record read twice keeps its first)."""
    first: dict[str, Row] = {}
    for row in rows:
        first.setdefault(row["event_id"], row)
    return list(first.values())


def copy_payload(
    projection: PostgresProjection, rows: Rows, count: int, newest: Positions
) -> CopyPayload:
    """The :class:`CopyPayload` of a batch's ``rows`` for ``projection``'s tables."""
    return CopyPayload(
        count,
        newest,
        copy_text(projection.sync_log, first_of_each_id(rows.syncs)),
        copy_text(projection.ml_predictions, first_of_each_id(rows.predictions)),
        copy_text(projection.workflow_executions, merge_runs(rows.runs)),
    )


def split(
    partitions: Sequence[Partition], sizes: dict[tuple[str, int], int], readers: int
) -> list[list[Partition]]:
    """``partitions`` shared between ``readers`` so that each has about as many records.

    ``sizes`` holds the records left per partition; empty shares are dropped.
    """
    shares: list[list[Partition]] = [[] for _ in range(max(1, readers))]
    loads = [0] * len(shares)
    ordered = sorted(partitions, key=lambda p: -sizes.get((p.topic, p.partition), 0))
    for partition in ordered:
        lightest = loads.index(min(loads))
        shares[lightest].append(partition)
        loads[lightest] += sizes.get((partition.topic, partition.partition), 0)
    return [share for share in shares if share]


@dataclass(frozen=True)
class ReaderSpec:
    """What a reader process needs: where to read, how to decode, for which projection."""

    bootstrap: str
    #: (topic, partition, first offset) to read to the end.
    partitions: tuple[tuple[str, int, int], ...]
    batch_size: int
    topic_prefix: str
    projection_name: str
    table_suffix: str
    #: The schema registry client's configuration (``registry_config``), when one is used.
    schema_registry: dict[str, str] | None = None
    #: The loading process: a reader started after it died exits at once.
    parent_pid: int = 0
    #: The loading process's Kafka security properties (:mod:`sfe.kafka_security`).
    security: dict[str, str | int | float | bool] = field(default_factory=dict)


@dataclass(frozen=True)
class ReaderDone:
    """A reader's last message: it read every partition to its end, with these CPU seconds."""

    cpu_seconds: float
    wall_seconds: float


@dataclass(frozen=True)
class ReaderFailed:
    """A reader's last message when it failed: the error, formatted."""

    error: str


def run_reader(spec: ReaderSpec, out: Queue[Any]) -> None:
    """Entry point of a reader process: read ``spec``'s partitions, put payloads on ``out``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    parent = spec.parent_pid
    _die_with_parent()
    if os.getppid() != parent:  # the loading process died before the line above took hold
        return
    cpu, started = time.process_time(), time.perf_counter()
    try:
        use_properties(spec.security)
        projection = _projection(spec)
        consumer = Consumer(
            {
                **client_config(spec.bootstrap),
                "group.id": f"sfe-replay-{spec.projection_name}-reader",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
                "fetch.max.bytes": 64 * 1024 * 1024,
            }
        )
        try:
            consumer.assign([Partition(t, p, o) for t, p, o in spec.partitions])
            pending = {(t, p) for t, p, _ in spec.partitions}
            while pending:
                records, newest = poll(consumer, spec.batch_size, pending)
                if not records:
                    continue
                rows = projection.rows(records)
                projection.flush_dead_letters()  # delivered before the batch can commit
                payload = copy_payload(projection, rows, len(records), newest)
                _put(out, payload, parent)
        finally:
            consumer.close()
        _put(out, ReaderDone(time.process_time() - cpu, time.perf_counter() - started), parent)
    except _Orphaned:
        out.cancel_join_thread()  # nobody reads the queue: do not wait to flush it at exit
        return
    except BaseException:
        _put(out, ReaderFailed(traceback.format_exc()), parent)


def _projection(spec: ReaderSpec) -> PostgresProjection:
    from confluent_kafka import Producer

    from schema_registry.codec import Codec

    if spec.schema_registry is None:
        codec = Codec(topic_prefix=spec.topic_prefix)
    else:
        from confluent_kafka.schema_registry import SchemaRegistryClient

        from schema_registry.wire import ConfluentFormat

        client = SchemaRegistryClient(spec.schema_registry)
        codec = Codec(ConfluentFormat(client), spec.topic_prefix)
    producer = Producer({**client_config(spec.bootstrap), "enable.idempotence": True})
    return PostgresProjection(codec, producer, spec.projection_name, spec.table_suffix)


def poll(
    consumer: Consumer, batch_size: int, pending: set[tuple[str, int]]
) -> tuple[list[Any], Positions]:
    """Up to ``batch_size`` records, and the highest offset among them per partition.

    A partition at its end is removed from ``pending``; any other error is raised.
    """
    records = []
    newest: Positions = {}
    for message in consumer.consume(batch_size, 1.0):
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
    return records, newest


def _die_with_parent() -> None:
    """Have Linux kill this process when the loading process dies (even by SIGKILL)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the orphan check of _put remains
        pass


_PR_SET_PDEATHSIG = 1


class _Orphaned(Exception):
    """The loading process is gone: nobody will read what this reader produces."""


def _put(out: Queue[Any], item: object, parent: int) -> None:
    while True:
        try:
            out.put(item, timeout=1.0)
            return
        except Full:
            if os.getppid() != parent:
                raise _Orphaned from None
