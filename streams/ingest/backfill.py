"""`sfe backfill`: load an object's current records into Kafka as snapshot events.

A new deployment starts with full state: a Bulk API 2.0 query job reads every record
of the object (optionally only those modified since a time), each row becomes a
snapshot :class:`RecordChanged` on ``sf.cdc.<Object>``, and batches are appended
transactionally. CSV values are typed back using the object's ``describe``. Event
ids derive from the backfill run and the record, so re-running the same backfill
(same object, same ``--since``) produces the same ids and consumers skip repeats.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from simple_salesforce import Salesforce

from schema_registry.codec import Codec
from schema_registry.events import FieldValue, RecordChanged
from sfe.privacy.service import Privacy
from streams.ingest.appender import OutboundRecord, TransactionalAppender
from streams.ingest.events import recovery_cause, snapshot_event
from streams.ingest.reader import checked_object_name, soql_datetime

_INTEGER_TYPES = {"int"}
_FLOAT_TYPES = {"double", "currency", "percent"}
_COMPOUND_TYPES = {"address", "location"}


def typed_value(raw: str, field_type: str) -> FieldValue:
    """A CSV cell converted to the field's type (empty cells are null)."""
    if raw == "":
        return None
    if field_type == "boolean":
        return raw.lower() == "true"
    if field_type in _INTEGER_TYPES:
        return int(float(raw))
    if field_type in _FLOAT_TYPES:
        return float(raw)
    return raw


def backfill_cause(entity: str, since: datetime | None, started: datetime) -> RecordChanged:
    """The event every snapshot of one backfill run names as its cause."""
    window = since.isoformat() if since else "all"
    return recovery_cause(entity, started, f"backfill:{entity}:{window}", "sfe.backfill")


def bulk_rows(client: Salesforce, entity: str, since: datetime | None) -> Iterator[dict[str, Any]]:
    """Every record of ``entity`` (modified since ``since``) as typed dicts, page by page."""
    name = checked_object_name(entity)
    description = getattr(client, name).describe()
    types = {
        str(f["name"]): str(f["type"])
        for f in description["fields"]
        if f["type"] not in _COMPOUND_TYPES
    }
    soql = f"SELECT {', '.join(types)} FROM {name}"
    if since is not None:
        soql += f" WHERE SystemModstamp >= {soql_datetime(since)}"
    for page in getattr(client.bulk2, name).query(soql, max_records=10_000, wait=1):
        reader = csv.DictReader(io.StringIO(str(page)))
        for row in reader:
            yield {
                column: typed_value(value, types.get(column, "string"))
                for column, value in row.items()
            }


def run_backfill(
    client: Salesforce,
    appender: TransactionalAppender,
    codec: Codec,
    entity: str,
    since: datetime | None = None,
    topic_prefix: str = "",
    batch_size: int = 2000,
    progress: Callable[[int], None] | None = None,
    privacy: Privacy | None = None,
) -> int:
    """Append a snapshot of every matching record; return how many were written.

    With ``privacy``, personal values are sealed (one key store query per batch).
    """
    cause = backfill_cause(checked_object_name(entity), since, datetime.now(UTC))
    topic = f"{topic_prefix}sf.cdc.{entity}"
    appender.init()
    batch: list[RecordChanged] = []
    written = 0

    def append(snapshots: list[RecordChanged]) -> int:
        if privacy is not None:
            snapshots = privacy.seal(snapshots)
        records = []
        for snapshot in snapshots:
            encoded = codec.encode(topic, snapshot)
            records.append(
                OutboundRecord(
                    topic, snapshot.subject.encode(), encoded.value, tuple(encoded.headers)
                )
            )
        return _append(appender, records, progress, written)

    for row in bulk_rows(client, entity, since):
        batch.append(snapshot_event(cause, str(row["Id"]), row))
        if len(batch) >= batch_size:
            written += append(batch)
            batch = []
    if batch:
        written += append(batch)
    appender.close()
    return written


def _append(
    appender: TransactionalAppender,
    batch: list[OutboundRecord],
    progress: Callable[[int], None] | None,
    written: int,
) -> int:
    appender.append(batch, [])
    if progress is not None:
        progress(written + len(batch))
    return len(batch)
