"""The org's data: records of every object, and transactions that change them and emit CDC.

A :class:`Transaction` applies each change at once and keeps an undo log, so a failed
all-or-none request rolls back cleanly; on commit it stamps the commit information,
hands the changes to :mod:`simulator.cdc` and to the recorder for persistence.
Derived fields (``Name``, ``IsClosed``, ``CaseNumber``, the Einstein lead score) are
computed here, as the platform would.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from simulator import cdc, einstein, ids, values
from simulator.errors import SalesforceError, not_found
from simulator.events import EventBus
from simulator.schema import BY_PREFIX, OBJECTS, SObject, sobject
from simulator.storage import Recorder

_SYSTEM_FIELDS = ("Id", "IsDeleted", "CreatedDate", "CreatedById", "SystemModstamp")


class Org:
    """All records of the simulated org, by object name and id."""

    def __init__(
        self, bus: EventBus, recorder: Recorder, overflow_threshold: int = 100_000
    ) -> None:
        self.bus = bus
        self.recorder = recorder
        self.overflow_threshold = overflow_threshold
        self.records: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in OBJECTS}
        self.ids = ids.IdAllocator()
        self.commit_number = 0
        #: Record writes committed per change origin: ``created``, ``changed`` and
        #: ``unchanged`` (an update that set every field to the value it already held).
        self.record_writes: dict[str, Counter[str]] = {}
        for record in recorder.load_records():
            self.records[BY_PREFIX[record["Id"][:3]].name][record["Id"]] = record
            self.ids.advance_past(record["Id"])
        self.commit_number = recorder.load_commit_number()

    def object_of(self, record_id: str) -> SObject:
        """The object type an id belongs to, or ``NOT_FOUND``."""
        found = BY_PREFIX.get(record_id[:3])
        if found is None:
            raise not_found()
        return found

    def get(
        self, sobject_name: str, record_id: str, include_deleted: bool = False
    ) -> dict[str, Any]:
        """The record, or the Salesforce error for a malformed or unknown id."""
        try:
            key = ids.normalize(record_id)
        except ids.MalformedId:
            raise SalesforceError(
                "NOT_FOUND",
                f"Provided external ID field does not exist or is not accessible: {record_id}",
                404,
            ) from None
        record = self.records.get(sobject_name, {}).get(key)
        if record is None:
            raise not_found()
        if record["IsDeleted"] and not include_deleted:
            raise SalesforceError("ENTITY_IS_DELETED", "entity is deleted", 404)
        return record

    def find_by_external_id(self, obj: SObject, field: str, value: Any) -> list[str]:
        """Ids of the live records of ``obj`` whose External ID ``field`` holds ``value``."""
        return [
            record_id
            for record_id, record in self.records[obj.name].items()
            if record.get(field) == value and not record["IsDeleted"]
        ]

    def user_ids(self) -> list[str]:
        """Ids of every user of the org."""
        return list(self.records["User"])

    @contextmanager
    def transaction(self, user_id: str, origin: str) -> Iterator[Transaction]:
        """A unit of work that commits when the block ends and rolls back on error."""
        tx = Transaction(self, user_id, origin)
        try:
            yield tx
        except BaseException:
            tx.rollback()
            raise
        tx.commit()


class Transaction:
    """Changes applied immediately, undone on rollback, published on commit."""

    def __init__(self, org: Org, user_id: str, origin: str) -> None:
        self.org = org
        self.user_id = user_id
        self.origin = origin
        self.now = datetime.now(UTC)
        self.changes: list[cdc.Change] = []
        self._undo: list[tuple[str, str, dict[str, Any] | None]] = []
        self.writes: Counter[str] = Counter()

    def _stamp(self) -> str:
        return values.format_datetime(self.now)

    def _check_references(self, obj: SObject, data: dict[str, Any]) -> None:
        for name, value in data.items():
            field = obj.fields[name]
            if field.type != "reference" or value is None:
                continue
            target = BY_PREFIX.get(value[:3])
            if (
                target is None
                or target.name not in field.reference_to
                or value not in self.org.records[target.name]
            ):
                raise SalesforceError(
                    "INVALID_CROSS_REFERENCE_KEY",
                    "invalid cross reference id",
                    fields=[name],
                )

    def _check_unique(self, obj: SObject, data: dict[str, Any], record_id: str | None) -> None:
        for field in obj.fields.values():
            value = data.get(field.name)
            if not field.external_id or value is None:
                continue
            holders = [
                h for h in self.org.find_by_external_id(obj, field.name, value) if h != record_id
            ]
            if holders:
                raise SalesforceError(
                    "DUPLICATE_VALUE",
                    f"duplicate value found: {field.name} duplicates value on record with id: "
                    f"{holders[0]}",
                    fields=[field.name],
                )

    def create(self, sobject_name: str, body: dict[str, Any]) -> str:
        """Insert a record; returns its id."""
        obj = sobject(sobject_name)
        if obj is None:
            raise SalesforceError("NOT_FOUND", "The requested resource does not exist", 404)
        data = values.validate_input(obj, body, creating=True)
        self._check_unique(obj, data, None)
        for field in obj.fields.values():
            if field.default is not None and data.get(field.name) is None and field.createable:
                data[field.name] = field.default
        problem = values.missing_required(obj, data)
        if problem:
            raise problem
        if "OwnerId" in obj.fields:
            data.setdefault("OwnerId", self.user_id)
        self._check_references(obj, data)
        record_id = self.org.ids.next(obj.key_prefix)
        stamp = self._stamp()
        record: dict[str, Any] = {f: None for f in obj.fields}
        record.update(data)
        record.update(
            Id=record_id, IsDeleted=False, CreatedDate=stamp, CreatedById=self.user_id,
            LastModifiedDate=stamp, LastModifiedById=self.user_id, SystemModstamp=stamp,
        )  # fmt: skip
        _derive(obj, record, len(self.org.records[obj.name]) + 1)
        self.org.records[obj.name][record_id] = record
        self._undo.append((obj.name, record_id, None))
        change_values = {
            k: v for k, v in record.items() if v is not None and k not in ("Id", "IsDeleted")
        }
        if "FirstName" in obj.fields:
            change_values, _ = cdc.compound_name(change_values, [])
        self.changes.append(cdc.Change(obj.name, "CREATE", record_id, change_values))
        self.writes["created"] += 1
        return record_id

    def update(self, sobject_name: str, record_id: str, body: dict[str, Any]) -> None:
        """Change fields of a record; only real changes reach the change event."""
        obj = sobject(sobject_name) or self.org.object_of(record_id)
        key = _record_key(obj, record_id)
        record = self.org.get(obj.name, key)
        data = values.validate_input(obj, body, creating=False)
        self._check_references(obj, data)
        self._check_unique(obj, data, key)
        before = dict(record)
        changed = [name for name, value in data.items() if record.get(name) != value]
        record.update(data)
        _derive(obj, record, 0)
        changed += [
            n
            for n in ("Name", "IsClosed", "IsWon")
            if n in obj.fields and before.get(n) != record.get(n) and n not in changed
        ]
        if not changed:
            self.writes["unchanged"] += 1
            return
        self.writes["changed"] += 1
        stamp = self._stamp()
        record.update(LastModifiedDate=stamp, LastModifiedById=self.user_id, SystemModstamp=stamp)
        self._undo.append((obj.name, key, before))
        changed_fields = [*changed, "LastModifiedDate"]
        if before["LastModifiedById"] != self.user_id:
            changed_fields.append("LastModifiedById")
        change_values = {name: record[name] for name in changed_fields}
        nulled = [name for name in changed if record[name] is None]
        if "FirstName" in obj.fields:
            change_values, changed_fields = cdc.compound_name(change_values, changed_fields)
            _, nulled = cdc.compound_name({}, nulled)
        self.changes.append(
            cdc.Change(obj.name, "UPDATE", key, change_values, changed_fields, nulled)
        )

    def delete(self, sobject_name: str | None, record_id: str) -> None:
        """Move a record to the recycle bin."""
        obj = sobject(sobject_name or "") or BY_PREFIX.get(str(record_id)[:3])
        if obj is None:
            raise SalesforceError("MALFORMED_ID", f"malformed id {record_id}", fields=["Id"])
        key = _record_key(obj, record_id)
        record = self.org.records[obj.name].get(key)
        if record is None or record["IsDeleted"]:
            raise (
                SalesforceError("ENTITY_IS_DELETED", "entity is deleted", 404)
                if record
                else not_found()
            )
        self._undo.append((obj.name, key, dict(record)))
        stamp = self._stamp()
        record.update(
            IsDeleted=True,
            LastModifiedDate=stamp,
            LastModifiedById=self.user_id,
            SystemModstamp=stamp,
        )
        self.changes.append(cdc.Change(obj.name, "DELETE", key))

    def rollback(self) -> None:
        """Undo every change of this transaction, newest first."""
        for name, key, before in reversed(self._undo):
            if before is None:
                self.org.records[name].pop(key, None)
            else:
                self.org.records[name][key] = before
        self._undo.clear()
        self.changes.clear()
        self.writes.clear()

    def commit(self) -> None:
        """Persist the changed records and publish their change events."""
        if self.writes:
            self.org.record_writes.setdefault(self.origin, Counter()).update(self.writes)
            self.writes.clear()
        if not self._undo:
            return
        self.org.commit_number += 1
        info = cdc.CommitInfo(
            self.user_id, self.origin, self.org.commit_number, int(time.time() * 1000)
        )
        touched = {(name, key) for name, key, _ in self._undo}
        self.org.recorder.save_records(
            [self.org.records[name][key] for name, key in touched if key in self.org.records[name]],
            [key for name, key in touched if key not in self.org.records[name]],
            self.org.commit_number,
        )
        cdc.publish_changes(self.org.bus, info, self.changes, self.org.overflow_threshold)
        self._undo.clear()


def _record_key(obj: SObject, record_id: str) -> str:
    """The 18-character id of a record of ``obj``, or ``MALFORMED_ID``."""
    try:
        key = ids.normalize(record_id)
    except ids.MalformedId:
        key = ""
    if key[:3] != obj.key_prefix:
        raise SalesforceError(
            "MALFORMED_ID", f"{obj.name} ID: id value of incorrect type: {record_id}", fields=["Id"]
        )
    return key


def _derive(obj: SObject, record: dict[str, Any], serial: int) -> None:
    """Compute the fields the platform maintains itself."""
    if "FirstName" in obj.fields and "Name" in obj.fields:
        record["Name"] = " ".join(p for p in (record.get("FirstName"), record.get("LastName")) if p)
    if obj.name == "Opportunity":
        stage = record.get("StageName") or ""
        record["IsClosed"] = stage.startswith("Closed")
        record["IsWon"] = stage == "Closed Won"
    if obj.name == "Case":
        record["IsClosed"] = record.get("Status") == "Closed"
    if obj.name == "Case" and serial:
        record["CaseNumber"] = f"{serial:08d}"
    if obj.name == "Lead" and record.get("Einstein_Lead_Score__c") is None:
        record["Einstein_Lead_Score__c"] = float(einstein.lead_score(record))
