"""Dead letters of Kafka records: what a consumer publishes when it cannot process one.

Every consumer that decodes (agents, projections, replay) turns a record it cannot
use into an :class:`EventDeadLettered` the same way: the raw key, value and headers
exactly as read, the record's coordinates ``topic[partition]@offset``, and the reason
(the :class:`UndecodableEvent` reason, or the error's text). The id is derived from
the coordinates and the consumer, so reprocessing the same record after a restart
dead-letters it under the same id, and the dead-letter topic can be deduplicated.
"""

from __future__ import annotations

from datetime import datetime

from schema_registry.errors import UndecodableEvent
from schema_registry.events import EventDeadLettered
from schema_registry.ids import derived_event_id
from schema_registry.wire import ReadHeaders


def coordinates(topic: str, partition: int, offset: int) -> str:
    """``topic[partition]@offset``, as logs and dead letters name a record."""
    return f"{topic}[{partition}]@{offset}"


def dead_letter(
    *,
    consumer: str,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    headers: ReadHeaders | None,
    error: Exception,
    time: datetime,
) -> EventDeadLettered:
    """The dead letter ``consumer`` publishes for the record it could not process.

    ``time`` should be the record's own timestamp, so a replay produces an identical
    dead letter. Headers with no value are kept as empty bytes; when a key repeats,
    the last value is kept.
    """
    where = coordinates(topic, partition, offset)
    reason = error.reason if isinstance(error, UndecodableEvent) else str(error)
    kept_headers = {
        name: raw.encode() if isinstance(raw, str) else (raw or b"") for name, raw in headers or ()
    }
    return EventDeadLettered(
        id=derived_event_id(where, consumer, "dead-letter"),
        source=consumer,
        subject=key.decode("utf-8", "replace") if key else where,
        time=time,
        original_topic=topic,
        original_partition=partition,
        original_offset=offset,
        original_key=key,
        original_value=value,
        original_headers=kept_headers,
        reason=reason or type(error).__name__,
        error_type=type(error).__name__,
    )
