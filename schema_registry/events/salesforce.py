"""Facts that come from Salesforce: CDC changes, platform events, and ingest checkpoints.

A :class:`RecordChanged` is one record's share of a Change Data Capture event: an
event whose ``recordIds`` names several records becomes one :class:`RecordChanged`
per record, all with the same header (transaction key, sequence number). ``fields``
holds the changed values (UPDATE carries only changed fields) or, when
``is_snapshot`` is true, the whole record as read over REST or by query after a gap
or overflow event, or by a backfill. ``is_echo`` marks changes made by this
integration itself, which agents must ignore.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from schema_registry.events.envelope import Event, FieldValue


class ChangeType(StrEnum):
    """``ChangeEventHeader.changeType``, including the gap and overflow types."""

    CREATE = "CREATE"
    UPDATE = "UPDATE"
    DELETE = "DELETE"
    UNDELETE = "UNDELETE"
    GAP_CREATE = "GAP_CREATE"
    GAP_UPDATE = "GAP_UPDATE"
    GAP_DELETE = "GAP_DELETE"
    GAP_UNDELETE = "GAP_UNDELETE"
    GAP_OVERFLOW = "GAP_OVERFLOW"


@dataclass(frozen=True, kw_only=True)
class ChangeEventHeader:
    """Salesforce's ``ChangeEventHeader``, field for field (snake_case)."""

    entity_name: str
    record_ids: tuple[str, ...]
    change_type: ChangeType
    change_origin: str
    transaction_key: str
    sequence_number: int
    commit_timestamp: datetime
    commit_number: int
    commit_user: str
    changed_fields: tuple[str, ...] = ()
    nulled_fields: tuple[str, ...] = ()
    diff_fields: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class RecordChanged(Event):
    """A Salesforce record was created, updated, deleted or undeleted (or re-read)."""

    schema_version = 1

    header: ChangeEventHeader
    replay_id: str | None
    event_uuid: str | None
    fields: Mapping[str, FieldValue] = field(default_factory=dict)
    is_snapshot: bool = False
    is_echo: bool = False


@dataclass(frozen=True, kw_only=True)
class PlatformEventPublished(Event):
    """A Salesforce platform event (such as ``New_Lead__e``) was published."""

    schema_version = 1

    event_name: str
    replay_id: str | None
    event_uuid: str | None
    created_date: datetime
    created_by_id: str
    fields: Mapping[str, FieldValue] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class ReplayCheckpointStored(Event):
    """The ingestor committed events up to a replay id, in the same transaction as this checkpoint.

    ``subject`` is the channel (``/data/LeadChangeEvent``); the checkpoint topic is
    compacted on it, so the latest checkpoint per channel is kept forever.
    """

    schema_version = 1

    channel: str
    replay_id: str
    recent_deliveries: tuple[str, ...] = ()
    event_time: str | None = None
