"""The current state of a Salesforce record, folded from its change events.

CDC UPDATE events carry only the fields that changed (and name the fields set to
null), so an agent that needs the whole record keeps a snapshot per record id and
evolves it with each change. Snapshots are plain JSON-ready dicts so they can live in
a Faust table whose changelog restores them after a restart.

``evolve`` is idempotent and order-safe: applying the same change twice leaves the
snapshot as it was, and a change older (by ``commitNumber``) than the last one
applied is ignored, so at-least-once delivery and changelog replays cannot regress it.
"""

from __future__ import annotations

from typing import Any

from schema_registry.events import ChangeType, FieldValue, RecordChanged

Snapshot = dict[str, Any]

_DELETES = frozenset({ChangeType.DELETE, ChangeType.GAP_DELETE})
_UNDELETES = frozenset({ChangeType.UNDELETE, ChangeType.GAP_UNDELETE})


def empty(entity: str) -> Snapshot:
    """A snapshot of a record nothing is known about yet."""
    return {"entity": entity, "fields": {}, "deleted": False, "commit_number": 0}


def evolve(snapshot: Snapshot | None, change: RecordChanged) -> Snapshot:
    """The snapshot after ``change`` (a new dict; ``snapshot`` is not modified)."""
    current = snapshot or empty(change.header.entity_name)
    header = change.header
    last = int(current.get("commit_number") or 0)
    if header.commit_number and last and header.commit_number < last:
        return current
    fields: dict[str, FieldValue] = dict(current.get("fields") or {})
    if change.is_snapshot or header.change_type in (ChangeType.CREATE, ChangeType.GAP_CREATE):
        if change.is_snapshot:
            fields = {}
        fields.update(change.fields)
    else:
        fields.update(change.fields)
        for name in header.nulled_fields:
            fields[name] = None
    deleted = bool(current.get("deleted"))
    if header.change_type in _DELETES:
        deleted = True
    elif header.change_type in _UNDELETES or change.is_snapshot:
        deleted = False
    return {
        "entity": header.entity_name,
        "fields": fields,
        "deleted": deleted,
        "commit_number": max(last, header.commit_number or 0),
    }


def value(snapshot: Snapshot | None, name: str) -> FieldValue:
    """The value of field ``name`` in ``snapshot`` (None when unknown)."""
    if not snapshot:
        return None
    result: FieldValue = (snapshot.get("fields") or {}).get(name)
    return result
