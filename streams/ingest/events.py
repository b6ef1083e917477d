"""Facts from the streaming API (and records read back over REST) as domain events.

Every event id is deterministic (ARCHITECTURE.md, principle 3): a change is
identified by its Salesforce event (transaction key and sequence number, or
EventUuid) and the record it is about, a snapshot by the event that caused the
re-read. Compound field values (``Name``, ``Address``) are flattened to dotted
names, as the schemas expect.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from schema_registry.events import (
    ChangeEventHeader,
    ChangeType,
    Event,
    EventDeadLettered,
    FieldValue,
    PlatformEventPublished,
    RecordChanged,
)
from schema_registry.ids import derived_event_id
from streams.ingest.changes import IngestedFact, MalformedStreamingMessage, label

SOURCE = "sfe.ingest"
#: Compound fields nest one or two levels (``Name.FirstName``); deeper is not Salesforce.
MAX_FIELD_DEPTH = 16
_RECORD_ID = re.compile(r"^[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?$")


def flatten_fields(
    values: Mapping[str, Any], prefix: str = "", depth: int = 0
) -> dict[str, FieldValue]:
    """Salesforce field values with compound ones flattened (``Name.LastName``); ``attributes`` dropped.

    Raises :class:`ValueError` for values nested deeper than :data:`MAX_FIELD_DEPTH`
    (hostile input must not exhaust the interpreter's recursion limit).
    """
    if depth > MAX_FIELD_DEPTH:
        raise ValueError(
            f"field {prefix.rstrip('.')[:80]!r} is nested deeper than {MAX_FIELD_DEPTH}"
        )
    flat: dict[str, FieldValue] = {}
    for name, value in values.items():
        if name == "attributes":
            continue
        key = f"{prefix}{name}"
        if isinstance(value, Mapping):
            flat.update(flatten_fields(value, prefix=f"{key}.", depth=depth + 1))
        elif isinstance(value, list):
            flat[key] = ";".join(str(item) for item in value)
        elif value is None or isinstance(value, bool | int | float | str):
            flat[key] = value
        else:
            flat[key] = str(value)
    return flat


def _millis(value: Any) -> datetime:
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(value / 1000, UTC)
        except (OverflowError, OSError) as exc:  # far outside the years datetime can hold
            raise ValueError(f"timestamp {value!r} is out of range: {exc}") from None
    if isinstance(value, str):
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return datetime.now(UTC)


def header_of(fact: IngestedFact) -> ChangeEventHeader:
    """The typed ``ChangeEventHeader`` of a change fact."""
    raw = fact.header
    return ChangeEventHeader(
        entity_name=str(raw["entityName"]),
        record_ids=tuple(str(r) for r in raw["recordIds"]),
        change_type=ChangeType(str(raw["changeType"])),
        change_origin=str(raw.get("changeOrigin") or ""),
        transaction_key=str(raw.get("transactionKey") or ""),
        sequence_number=int(raw.get("sequenceNumber") or 0),
        commit_timestamp=_millis(raw.get("commitTimestamp")),
        commit_number=int(raw.get("commitNumber") or 0),
        commit_user=str(raw.get("commitUser") or ""),
        changed_fields=_names(raw, "changedFields"),
        nulled_fields=_names(raw, "nulledFields"),
        diff_fields=_names(raw, "diffFields"),
    )


def _names(header: Mapping[str, Any], key: str) -> tuple[str, ...]:
    """A header's list of field names (absent: none); ``ValueError`` if it is anything else."""
    names = header.get(key) or ()
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{key} is not a list of field names")
    return tuple(names)


def change_event(fact: IngestedFact) -> RecordChanged:
    """One record's share of a change event."""
    header = header_of(fact)
    record_id = fact.record_id or ""
    return RecordChanged(
        id=derived_event_id(fact.source_identity, "salesforce.cdc", f"record:{record_id}"),
        source=SOURCE,
        subject=record_id,
        time=header.commit_timestamp,
        header=header,
        replay_id=str(fact.replay_id),
        event_uuid=fact.event_uuid,
        fields=flatten_fields(fact.fields),
        is_echo=fact.echo,
    )


def event_of(fact: IngestedFact) -> Event:
    """The event of one fact; :class:`MalformedStreamingMessage` (with the reason) if it has none.

    This is the only error it raises, whatever the message held: wrong types, numbers
    out of range, an unknown ``changeType``, a record id that is not a Salesforce id,
    fields nested too deeply. The ingestor dead-letters the message with that reason.
    """
    where = f"{label(fact.channel)}@{label(fact.replay_id)}"
    try:
        if fact.kind == "platform_event":
            return platform_event(fact)
        if not _RECORD_ID.match(fact.record_id or ""):
            raise ValueError(f"not a Salesforce record id: {label(fact.record_id)!r}")
        return change_event(fact)
    except MalformedStreamingMessage:
        raise
    except (ValueError, TypeError, KeyError, ArithmeticError, OSError, RecursionError) as exc:
        reason = str(exc)[:300] or type(exc).__name__
        raise MalformedStreamingMessage(f"{where}: {type(exc).__name__}: {reason}") from None


def recovery_cause(entity: str, moment: datetime, identity: str, agent: str) -> RecordChanged:
    """A synthetic overflow-type cause for snapshots read outside the stream.

    Backfills and reconciliations of a missed window re-read many records; each
    snapshot names this event as its cause, so their ids are stable for a given
    ``identity`` (the run) and never collide with streamed changes.
    """
    return RecordChanged(
        id=derived_event_id(identity, agent, "run"),
        source=SOURCE,
        subject=entity,
        time=moment,
        header=ChangeEventHeader(
            entity_name=entity,
            record_ids=(),
            change_type=ChangeType.GAP_OVERFLOW,
            change_origin="",
            transaction_key="",
            sequence_number=0,
            commit_timestamp=moment,
            commit_number=0,
            commit_user="",
        ),
        replay_id=None,
        event_uuid=None,
    )


def snapshot_event(
    cause: RecordChanged, record_id: str, record: Mapping[str, Any] | None
) -> RecordChanged:
    """The full record as read back after a gap or overflow event (``None``: it is deleted)."""
    deleted = record is None or bool(record.get("IsDeleted"))
    change_type = ChangeType.DELETE if deleted else ChangeType.UPDATE
    header = ChangeEventHeader(
        entity_name=cause.header.entity_name,
        record_ids=(record_id,),
        change_type=change_type,
        change_origin=cause.header.change_origin,
        transaction_key=cause.header.transaction_key,
        sequence_number=cause.header.sequence_number,
        commit_timestamp=cause.header.commit_timestamp,
        commit_number=cause.header.commit_number,
        commit_user=cause.header.commit_user,
    )
    return RecordChanged(
        id=derived_event_id(cause.id, "sfe.ingest.recovery", f"snapshot:{record_id}"),
        source=SOURCE,
        subject=record_id,
        time=cause.time,
        causation_id=cause.id,
        correlation_id=cause.correlation_id or cause.id,
        header=header,
        replay_id=None,
        event_uuid=None,
        fields={} if record is None else flatten_fields(record),
        is_snapshot=True,
        is_echo=False,
    )


def platform_event(fact: IngestedFact) -> PlatformEventPublished:
    """A platform event such as ``New_Lead__e``."""
    fields = flatten_fields(fact.fields)
    subject = fact.record_id or fact.source_identity
    return PlatformEventPublished(
        id=derived_event_id(fact.source_identity, "salesforce.platform_event", fact.entity),
        source=SOURCE,
        subject=subject,
        time=_millis(fact.fields.get("CreatedDate")),
        event_name=fact.entity,
        replay_id=str(fact.replay_id),
        event_uuid=fact.event_uuid,
        created_date=_millis(fact.fields.get("CreatedDate")),
        created_by_id=str(fact.fields.get("CreatedById") or ""),
        fields=fields,
    )


def dead_letter(
    channel: str, raw: bytes, reason: str, error_type: str, replay_id: object
) -> EventDeadLettered:
    """A streaming message that could not be turned into events, kept with the reason."""
    identity = f"{channel}#{replay_id}#{hashlib.sha256(raw).hexdigest()}"
    return EventDeadLettered(
        id=derived_event_id(identity, "sfe.ingest", "dead-letter"),
        source=SOURCE,
        subject=channel,
        time=datetime.now(UTC),
        original_topic=channel,
        original_partition=-1,
        original_offset=-1,
        original_key=None,
        original_value=raw,
        reason=reason,
        error_type=error_type,
    )
