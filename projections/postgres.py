"""The PostgreSQL projection: command results, predictions and workflow runs as read models.

Three event types become rows; every other record is ignored (its position is still
stored by :class:`~projections.runner.ProjectionRunner`):

- ``CommandExecuted`` of a Salesforce write → one ``sync_log`` row: the sObject of
  the result's ``target`` (``Lead/00Q...``, ``Task/new``), the record id Salesforce
  reported or else the target's (none for a failed create), ``operation``
  (``update``/``create``, schema v3), the outcome as ``status`` and Salesforce's
  errors as ``error_message``. Results of other commands are ignored;
- ``PredictionMade`` → one ``ml_predictions`` row: the probability in percent with two
  decimals, the factors as JSONB, the model version;
- ``WorkflowAdvanced`` → one ``workflow_executions`` row **per run**, keyed by the
  instance id (``subject``, stored in ``event_id``). Transitions of a run share a
  partition and are applied in log order; the upsert keeps the earliest start, never
  lowers ``steps_completed`` and never reopens a finished run, so re-applying any
  transition leaves the row as it was.

Rows take ``created_at`` from the event's time, so a rebuild yields identical rows.
A record that cannot be decoded, or whose values do not fit the columns, is
dead-lettered to ``dlq.ingest`` (flushed before the batch commits) and skipped.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from functools import cache
from typing import Any

from confluent_kafka import Message, Producer
from sqlalchemy import Connection, MetaData, Table, case, func, select
from sqlalchemy.dialects.postgresql import insert

from projections import tables
from schema_registry.codec import Codec
from schema_registry.dead_letters import coordinates, dead_letter
from schema_registry.errors import UndecodableEvent
from schema_registry.events import (
    CommandExecuted,
    PredictionMade,
    SalesforceWriteRequested,
    WorkflowAdvanced,
)
from schema_registry.wire import ReadHeaders
from sfe import metrics

log = logging.getLogger(__name__)

NAME = "postgres"
DLQ_TOPIC = "dlq.ingest"
SOURCE_TOPICS = ("command.results", "predictions", "workflow.events")
#: ``to_state`` values that end a workflow run (compared case-insensitively).
TERMINAL_STATES = frozenset({"completed", "failed", "cancelled", "timed_out"})
_CENT = Decimal("0.01")
#: A Salesforce record id, 15 or 18 characters (a create's target is ``Task/new``).
_RECORD_ID = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")
#: The read models of SPEC.md this projection writes.
READ_MODELS = (tables.sync_log, tables.ml_predictions, tables.workflow_executions)

Row = dict[str, Any]


@dataclass
class Rows:
    """The rows of a batch of records, per table, in log order (runs not yet merged)."""

    syncs: list[Row]
    predictions: list[Row]
    runs: list[Row]
    #: Time of the newest event read (seconds since the epoch), None if none was.
    newest: float | None = None


class Unprojectable(ValueError):
    """A decoded event whose values cannot become a row (a field too long, out of range)."""


@cache
def _lengths(table: Table) -> dict[str, int | None]:
    """The length limit of each column of ``table`` (None: unlimited)."""
    return {column.name: getattr(column.type, "length", None) for column in table.columns}


def _fit(value: str | None, column: str, table: Table) -> str | None:
    if value is not None:
        length = _lengths(table)[column]
        if length is not None and len(value) > length:
            raise Unprojectable(f"{table.name}.{column} holds {length} characters: {value!r}")
    return value


def _naive_utc(moment: datetime) -> datetime:
    if moment.tzinfo is UTC:  # as decoded: nothing to convert
        return moment.replace(tzinfo=None)
    return moment.astimezone(UTC).replace(tzinfo=None)


def sync_log_row(event: CommandExecuted, table: Table = tables.sync_log) -> Row:
    """The ``sync_log`` row of a Salesforce write's result."""
    sobject, _, target_id = event.target.partition("/")
    errors = "; ".join(
        f"{error.status_code}: {error.message}"
        + (f" (fields: {', '.join(error.fields)})" if error.fields else "")
        for error in event.errors
    )
    return {
        "event_id": _fit(event.id, "event_id", table),
        "sf_object": _fit(sobject or None, "sf_object", table),
        "sf_record_id": next(
            (ref for ref in (event.salesforce_id, target_id) if ref and _RECORD_ID.match(ref)),
            None,
        ),
        "operation": _fit(event.operation.lower() if event.operation else None, "operation", table),
        "status": _fit(event.outcome.value.lower(), "status", table),
        "error_message": errors or None,
        "created_at": _naive_utc(event.time),
    }


def prediction_row(event: PredictionMade, table: Table = tables.ml_predictions) -> Row:
    """The ``ml_predictions`` row of a score (a probability between 0 and 1)."""
    if not 0.0 <= event.score <= 1.0:
        raise Unprojectable(f"score {event.score} of {event.id} is not a probability")
    return {
        "event_id": _fit(event.id, "event_id", table),
        "account_id": _fit(event.subject, "account_id", table),
        "prediction_type": _fit(event.purpose, "prediction_type", table),
        "probability": (Decimal(repr(event.score)) * 100).quantize(_CENT, ROUND_HALF_UP),
        "factors": [{"name": f.name, "contribution": f.contribution} for f in event.factors],
        "model_version": _fit(event.model.version, "model_version", table),
        "created_at": _naive_utc(event.time),
    }


def _count(attributes: Mapping[str, str], name: str) -> int | None:
    raw = attributes.get(name)
    if raw is None:
        return None
    if not raw.isdigit():
        raise Unprojectable(f"attribute {name}={raw!r} is not a count")
    return int(raw)


def workflow_row(event: WorkflowAdvanced, table: Table = tables.workflow_executions) -> Row:
    """The state of a run after ``event``; counts and record id come from its attributes."""
    finished = event.to_state.lower() in TERMINAL_STATES
    return {
        "event_id": _fit(event.subject, "event_id", table),
        "workflow_name": _fit(event.workflow, "workflow_name", table),
        "record_id": _fit(event.attributes.get("record_id"), "record_id", table),
        "status": _fit(event.to_state, "status", table),
        "steps_completed": _count(event.attributes, "steps_completed") or 0,
        "total_steps": _count(event.attributes, "total_steps"),
        "started_at": _naive_utc(event.time),
        "completed_at": _naive_utc(event.time) if finished else None,
    }


def merge_runs(rows: Sequence[Row]) -> list[Row]:
    """Fold the rows of one batch per run, in log order, exactly as the upsert merges them."""
    merged: dict[str, Row] = {}
    for row in rows:
        old = merged.get(row["event_id"])
        if old is None:
            merged[row["event_id"]] = dict(row)
            continue
        still_open = old["completed_at"] is None or row["completed_at"] is not None
        latest = row if still_open else old
        merged[row["event_id"]] = {
            **old,
            "record_id": _coalesce(row["record_id"], old["record_id"]),
            "total_steps": _coalesce(row["total_steps"], old["total_steps"]),
            "started_at": min(old["started_at"], row["started_at"]),
            "steps_completed": max(old["steps_completed"], row["steps_completed"]),
            "status": latest["status"],
            "completed_at": latest["completed_at"],
        }
    return list(merged.values())


def _coalesce(first: Any, second: Any) -> Any:
    return first if first is not None else second


class PostgresProjection:
    """A :class:`~projections.runner.Projection` writing the three read models of SPEC.md."""

    def __init__(
        self,
        codec: Codec,
        producer: Producer,
        name: str = NAME,
        table_suffix: str = "",
    ) -> None:
        """Project the prefixed source topics into the tables named ``<table><table_suffix>``."""
        self.codec = codec
        self.producer = producer
        self.name = name
        prefix = codec.topic_prefix
        self.topics: Sequence[str] = [prefix + topic for topic in SOURCE_TOPICS]
        self.dlq_topic = prefix + DLQ_TOPIC
        self.sync_log, self.ml_predictions, self.workflow_executions = (
            renamed(table, table_suffix) for table in READ_MODELS
        )

    def project(self, connection: Connection, messages: Sequence[Message]) -> None:
        """Write the rows of ``messages``; dead-letter what cannot be read, before commit."""
        rows = self.rows(messages)
        # executemany: psycopg sends each statement's rows in one pipeline.
        if rows.syncs:
            connection.execute(self._insert(self.sync_log), rows.syncs)
        if rows.predictions:
            connection.execute(self._insert(self.ml_predictions), rows.predictions)
        if rows.runs:
            connection.execute(self._upsert_runs(), merge_runs(rows.runs))
        self.flush_dead_letters()
        if rows.newest is not None:
            metrics.SYNC_LAG.labels(projection=self.name).set(max(0.0, time.time() - rows.newest))

    def rows(self, messages: Sequence[Message]) -> Rows:
        """Decode ``messages`` into rows (in log order); dead-letter what cannot be read.

        The dead letters are produced, not flushed: call :meth:`flush_dead_letters`
        before the rows' transaction commits.
        """
        rows = Rows([], [], [])
        syncs, predictions, runs = rows.syncs, rows.predictions, rows.runs
        newest: float | None = None
        decode, write_type = self.codec.decode, SalesforceWriteRequested.type
        consumed: dict[str, int] = {}
        for message in messages:
            topic = str(message.topic())
            consumed[topic] = consumed.get(topic, 0) + 1
            try:
                event = decode(topic, message.value(), headers_of(message))
                if isinstance(event, CommandExecuted):
                    if event.command_type == write_type:
                        syncs.append(sync_log_row(event, self.sync_log))
                elif isinstance(event, PredictionMade):
                    predictions.append(prediction_row(event, self.ml_predictions))
                elif isinstance(event, WorkflowAdvanced):
                    runs.append(workflow_row(event, self.workflow_executions))
            except (UndecodableEvent, Unprojectable) as exc:
                self._dead_letter(message, exc)
                continue
            newest = max(newest or 0.0, event.time.timestamp())
        for topic, count in consumed.items():
            metrics.EVENTS_CONSUMED.labels(topic=topic).inc(count)
        rows.newest = newest
        return rows

    def flush_dead_letters(self) -> None:
        """Wait until the dead letters produced so far are delivered (before a commit)."""
        if self.producer.flush(30) != 0:
            raise RuntimeError(f"dead letters to {self.dlq_topic} were not delivered")

    def _insert(self, table: Table) -> Any:
        return insert(table).on_conflict_do_nothing(index_elements=["event_id"])

    def _upsert_runs(self, source: Table | None = None) -> Any:
        """The upsert of runs: of the statement's parameters, or of ``source``'s rows."""
        table = self.workflow_executions
        statement = insert(table)
        if source is not None:
            statement = statement.from_select([c.name for c in source.columns], select(source))
        new = statement.excluded
        open_run = table.c.completed_at.is_(None) | new.completed_at.is_not(None)
        keep = {
            column: func.coalesce(new[column], table.c[column])
            for column in ("record_id", "total_steps")
        }
        return statement.on_conflict_do_update(
            index_elements=["event_id"],
            set_={
                **keep,
                "started_at": func.least(table.c.started_at, new.started_at),
                "steps_completed": func.greatest(table.c.steps_completed, new.steps_completed),
                "status": case((open_run, new.status), else_=table.c.status),
                "completed_at": case((open_run, new.completed_at), else_=table.c.completed_at),
            },
        )

    def _dead_letter(self, message: Message, error: Exception) -> None:
        topic, partition, offset = str(message.topic()), message.partition(), message.offset()
        _, stamp = message.timestamp()
        letter = dead_letter(
            consumer=f"projections.{self.name}",
            topic=topic,
            partition=int(partition or 0),
            offset=int(offset or 0),
            key=message.key(),
            value=message.value(),
            headers=headers_of(message),
            error=error,
            time=datetime.fromtimestamp(max(stamp, 0) / 1000, UTC),
        )
        encoded = self.codec.encode(self.dlq_topic, letter)
        self.producer.produce(
            self.dlq_topic, value=encoded.value, key=message.key(), headers=list(encoded.headers)
        )
        metrics.DEAD_LETTERS.labels(topic=DLQ_TOPIC, reason=type(error).__name__).inc()
        log.warning(
            "record dead-lettered",
            extra={
                "where": coordinates(topic, int(partition or 0), int(offset or 0)),
                "reason": str(error),
            },
        )


def renamed(table: Table, suffix: str) -> Table:
    """``table`` itself, or a copy named ``<name><suffix>`` (a staging table of a rebuild)."""
    return table if not suffix else table.to_metadata(MetaData(), name=table.name + suffix)


def headers_of(message: Message) -> ReadHeaders:
    """A record's headers as the codec reads them (a list of name, value pairs)."""
    headers = message.headers() or []
    return list(headers.items()) if isinstance(headers, dict) else headers
