"""Reading records back from Salesforce after gap and overflow events, without SOQL injection.

Field lists come from ``describe`` (cached per object), record ids are checked against
the Salesforce id format before they appear in a query, and timestamps are formatted
by us: no value taken from an event is ever pasted into SOQL as it came.
``queryAll`` is used so deleted records come back too (``IsDeleted = true``).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from simple_salesforce import Salesforce

_RECORD_ID = re.compile(r"^[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?$")
_OBJECT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,79}$")
_IDS_PER_QUERY = 200


class UnsafeQueryValue(ValueError):
    """A value from an event is not a valid Salesforce id or object name; it is never queried."""


def soql_datetime(moment: datetime) -> str:
    """A SOQL datetime literal (UTC, second precision)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def checked_record_id(value: str) -> str:
    """``value`` if it is a 15- or 18-character Salesforce id; else :class:`UnsafeQueryValue`."""
    if not _RECORD_ID.match(value):
        raise UnsafeQueryValue(f"not a Salesforce record id: {value!r}")
    return value


def checked_object_name(value: str) -> str:
    """``value`` if it is a valid sObject API name; else :class:`UnsafeQueryValue`."""
    if not _OBJECT_NAME.match(value):
        raise UnsafeQueryValue(f"not an sObject name: {value!r}")
    return value


class SalesforceRecordReader:
    """A :class:`streams.ingest.ingestor.RecordReader` over simple-salesforce."""

    def __init__(self, client: Salesforce) -> None:
        """Read through ``client`` (already logged in)."""
        self.client = client
        self._fields: dict[str, list[str]] = {}

    async def read_records(
        self, entity: str, record_ids: Sequence[str]
    ) -> dict[str, Mapping[str, Any] | None]:
        """Current values of ``record_ids``; ``None`` for records that no longer exist."""
        ids = [checked_record_id(record_id) for record_id in record_ids]
        found: dict[str, Mapping[str, Any] | None] = dict.fromkeys(ids)
        for start in range(0, len(ids), _IDS_PER_QUERY):
            chunk = ids[start : start + _IDS_PER_QUERY]
            id_list = ", ".join(f"'{record_id}'" for record_id in chunk)
            soql = f"SELECT {await self._field_list(entity)} FROM {checked_object_name(entity)} WHERE Id IN ({id_list})"
            requested = {record_id[:15]: record_id for record_id in chunk}  # 15- or 18-char ids
            for record in await self._query_all(soql):
                record_id = requested.get(str(record["Id"])[:15], str(record["Id"]))
                found[record_id] = None if record.get("IsDeleted") else record
        return found

    async def read_changed_since(self, entity: str, since: datetime) -> list[Mapping[str, Any]]:
        """Every record of ``entity`` with ``SystemModstamp >= since``, deleted ones included."""
        soql = (
            f"SELECT {await self._field_list(entity)} FROM {checked_object_name(entity)} "
            f"WHERE SystemModstamp >= {soql_datetime(since)} ORDER BY SystemModstamp, Id"
        )
        return await self._query_all(soql)

    async def _field_list(self, entity: str) -> str:
        name = checked_object_name(entity)
        if name not in self._fields:
            description = await asyncio.to_thread(lambda: getattr(self.client, name).describe())
            names = [
                str(field["name"])
                for field in description["fields"]
                if field.get("type") != "address"
            ]
            if "IsDeleted" not in names:
                names.append("IsDeleted")
            self._fields[name] = names
        return ", ".join(self._fields[name])

    async def _query_all(self, soql: str) -> list[Mapping[str, Any]]:
        result = await asyncio.to_thread(self.client.query_all, soql, include_deleted=True)
        return [dict(record) for record in result["records"]]
