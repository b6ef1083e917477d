"""Change Data Capture: turning the changes of one committed transaction into change events.

Changes of the same type, to records of the same object, with the same new values,
are merged into one event whose ``recordIds`` lists them all, as Salesforce does.
UPDATE events carry only the changed fields (``LastModifiedDate`` included); a
transaction with more changes than the overflow threshold yields GAP_OVERFLOW events.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from simulator.events import EventBus

OVERFLOW_RECORD_ID = "000000000000000AAA"
_SCHEMA_IDS: dict[str, str] = {}


@dataclass
class Change:
    """One record's change inside a transaction."""

    entity: str
    change_type: str
    record_id: str
    values: dict[str, Any] = field(default_factory=dict)
    changed_fields: list[str] = field(default_factory=list)
    nulled_fields: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CommitInfo:
    """Who committed a transaction, when, through which API and client."""

    user_id: str
    origin: str
    commit_number: int
    commit_timestamp: int
    transaction_key: str = field(default_factory=lambda: str(uuid.uuid4()))


_NAME_PARTS = ("Salutation", "FirstName", "LastName")
_REST_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+0000$")


def _event_time(value: Any) -> Any:
    """Change events write date-times as ``2026-01-31T09:30:00.000Z`` (REST says ``+0000``)."""
    if isinstance(value, str) and _REST_TIME.match(value):
        return value[:-5] + "Z"
    return value


def compound_name(values: dict[str, Any], changed: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Nest ``Salutation``/``FirstName``/``LastName`` under the compound ``Name`` as CDC does.

    ``changedFields`` then names the components (``Name.LastName``); the derived
    full name itself is not a field of the event.
    """
    parts = {k: values[k] for k in _NAME_PARTS if k in values}
    nested = {k: v for k, v in values.items() if k not in (*_NAME_PARTS, "Name")}
    if parts:
        nested["Name"] = parts
    fields = [f"Name.{f}" if f in _NAME_PARTS else f for f in changed if f != "Name"]
    return nested, fields


def channel_for(entity: str) -> str:
    """The per-object change event channel (``/data/LeadChangeEvent``)."""
    return f"/data/{entity}ChangeEvent"


def schema_id(entity: str) -> str:
    """A stable, opaque schema id per change event type."""
    return _SCHEMA_IDS.setdefault(entity, uuid.uuid5(uuid.NAMESPACE_URL, entity).hex[:22])


def header(
    info: CommitInfo, entity: str, change_type: str, record_ids: list[str], sequence: int
) -> dict[str, Any]:
    """A ``ChangeEventHeader`` with empty field lists."""
    return {
        "entityName": entity,
        "recordIds": record_ids,
        "changeType": change_type,
        "changeOrigin": info.origin,
        "transactionKey": info.transaction_key,
        "sequenceNumber": sequence,
        "commitTimestamp": info.commit_timestamp,
        "commitNumber": info.commit_number,
        "commitUser": info.user_id,
        "changedFields": [],
        "nulledFields": [],
        "diffFields": [],
    }


def _group(changes: list[Change]) -> list[list[Change]]:
    groups: dict[tuple[str, str, str, str], list[Change]] = {}
    for change in changes:
        key = (
            change.entity,
            change.change_type,
            json.dumps(change.values, sort_keys=True, default=str),
            ",".join(change.changed_fields),
        )
        groups.setdefault(key, []).append(change)
    return list(groups.values())


def publish_changes(
    bus: EventBus, info: CommitInfo, changes: list[Change], overflow_threshold: int
) -> int:
    """Publish the change events of one transaction; returns how many were published."""
    if not changes:
        return 0
    if len(changes) > overflow_threshold:
        entities = sorted({c.entity for c in changes})
        for sequence, entity in enumerate(entities, start=1):
            overflow = {
                "ChangeEventHeader": header(
                    info, entity, "GAP_OVERFLOW", [OVERFLOW_RECORD_ID], sequence
                )
            }
            bus.publish(channel_for(entity), overflow, schema_id(entity))
        return len(entities)
    groups = _group(changes)
    for sequence, group in enumerate(groups, start=1):
        first = group[0]
        event_header = header(
            info, first.entity, first.change_type, [c.record_id for c in group], sequence
        )
        event_header["changedFields"] = list(first.changed_fields)
        event_header["nulledFields"] = list(first.nulled_fields)
        values = {k: _event_time(v) for k, v in first.values.items()}
        payload: dict[str, Any] = {"ChangeEventHeader": event_header, **values}
        bus.publish(channel_for(first.entity), payload, schema_id(first.entity))
    return len(groups)


def publish_gap(
    bus: EventBus, info: CommitInfo, entity: str, change_type: str, record_ids: list[str]
) -> None:
    """Publish a GAP_* event (or GAP_OVERFLOW) that carries no field values."""
    if change_type == "GAP_OVERFLOW":
        record_ids = [OVERFLOW_RECORD_ID]
    payload = {"ChangeEventHeader": header(info, entity, change_type, record_ids, 1)}
    bus.publish(channel_for(entity), payload, schema_id(entity))
