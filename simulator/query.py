"""Running SOQL against the org: field resolution, filtering, ordering, paging with cursors.

Relationship paths (``Account.Name``, ``Owner.Email``) follow reference fields by their
relationship names. Results are built page by page from a cursor holding the matched
record ids, which backs ``nextRecordsUrl`` for the REST API and ``Sforce-Locator`` for
Bulk API 2.0 query jobs.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from simulator import aggregate, ids, values
from simulator.errors import SalesforceError
from simulator.org import Org
from simulator.schema import BY_PREFIX, OBJECTS, Field, SObject, sobject
from simulator.soql import BoolOp, Comparison, DateRange, Query, parse

_cursor_numbers = itertools.count(1)


def _invalid_field(obj: SObject, name: str) -> SalesforceError:
    return SalesforceError(
        "INVALID_FIELD",
        f"No such column '{name}' on entity '{obj.name}'. If you are attempting to use a custom "
        "field, be sure to append the '__c' after the custom field name. Please reference your "
        "WSDL or the describe call for the appropriate names.",
    )


def check_path(obj: SObject, path: tuple[str, ...]) -> Field:
    """The field ``path`` names from ``obj``, or ``INVALID_FIELD``."""
    current = obj
    for part in path[:-1]:
        reference = current.relationship(part)
        if reference is None:
            raise _invalid_field(current, ".".join(path))
        current = sobject(reference.reference_to[0]) or current
    found = current.field(path[-1])
    if found is None:
        raise _invalid_field(current, path[-1])
    return found


def _id_literal(value: Any) -> Any:
    try:
        return ids.normalize(value) if isinstance(value, str) else value
    except ids.MalformedId:
        return value


def resolve(org: Org, record: dict[str, Any] | None, obj: SObject, path: tuple[str, ...]) -> Any:
    """The value at ``path`` starting from ``record`` (``None`` through empty references)."""
    for part in path[:-1]:
        if record is None:
            return None
        reference = obj.relationship(part)
        target_id = record.get(reference.name) if reference else None
        if not target_id:
            return None
        obj = BY_PREFIX[target_id[:3]]
        record = org.records[obj.name].get(target_id)
    if record is None:
        return None
    field = obj.field(path[-1])
    return record.get(field.name) if field else None


def _comparable(value: Any, literal: Any) -> tuple[Any, Any]:
    if isinstance(literal, datetime):
        return values.parse_datetime(value) if isinstance(value, str) else value, literal
    if isinstance(value, str) and isinstance(literal, str):
        return value.lower(), literal.lower()
    return value, literal


def _range_bounds(value: Any, literal: DateRange) -> tuple[Any, Any, Any]:
    if isinstance(value, str) and "T" in value:
        start = datetime.combine(literal.start, datetime.min.time(), UTC)
        end = datetime.combine(literal.end, datetime.min.time(), UTC)
        return values.parse_datetime(value), start, end
    return date.fromisoformat(str(value)[:10]), literal.start, literal.end


def _compare(value: Any, op: str, literal: Any) -> bool:
    if op in ("in", "not in"):
        hit = any(_compare(value, "=", item) for item in literal)
        return hit if op == "in" else not hit
    if literal is None or value is None:
        return (
            (value is None) == (literal is None)
            if op == "="
            else ((value is None) != (literal is None) if op == "!=" else False)
        )
    if op == "like":
        pattern = re.escape(str(literal).lower()).replace("%", ".*").replace("_", ".")
        return re.fullmatch(pattern, str(value).lower(), re.DOTALL) is not None
    if isinstance(literal, DateRange):
        current, start, end = _range_bounds(value, literal)
        return {
            "=": start <= current < end, "!=": not start <= current < end, "<": current < start,
            "<=": current < end, ">": current >= end, ">=": current >= start,
        }[op]  # fmt: skip
    if isinstance(literal, bool) or isinstance(value, bool):
        return {"=": value == literal, "!=": value != literal}.get(op, False)
    try:
        left, right = _comparable(value, literal)
        return {
            "=": left == right, "!=": left != right, "<": left < right,
            "<=": left <= right, ">": left > right, ">=": left >= right,
        }[op]  # fmt: skip
    except TypeError:
        return False


def matches(org: Org, obj: SObject, record: dict[str, Any], condition: Any) -> bool:
    """Whether ``record`` satisfies the WHERE ``condition``."""
    if condition is None:
        return True
    if isinstance(condition, BoolOp):
        if condition.op == "not":
            return not matches(org, obj, record, condition.operands[0])
        results = (matches(org, obj, record, part) for part in condition.operands)
        return all(results) if condition.op == "and" else any(results)
    assert isinstance(condition, Comparison)
    return _compare(resolve(org, record, obj, condition.path), condition.op, condition.value)


def _checked(obj: SObject, condition: Any) -> Any:
    """``condition`` with its paths validated and 15-character id literals made 18 long."""
    if isinstance(condition, BoolOp):
        return BoolOp(condition.op, tuple(_checked(obj, part) for part in condition.operands))
    if isinstance(condition, Comparison):
        field = check_path(obj, condition.path)
        if field.type in ("id", "reference") and condition.op != "like":
            value = condition.value
            value = (
                [_id_literal(v) for v in value] if isinstance(value, list) else _id_literal(value)
            )
            return Comparison(condition.path, condition.op, value)
    return condition


@dataclass
class Cursor:
    """The matched records of one query, read page by page."""

    locator: str
    query: Query
    sobject: SObject
    ids: list[str]
    position: int = 0
    rows: list[dict[str, Any]] | None = None

    @property
    def size(self) -> int:
        """How many result records the query has (its ``totalSize``)."""
        return len(self.rows) if self.rows is not None else len(self.ids)


def _unknown_object(text: str, name: str) -> SalesforceError:
    return SalesforceError(
        "INVALID_TYPE",
        f"\n{text[:60]}\n^\nERROR at Row:1:Column:1\nsObject type '{name}' is not supported. "
        "If you are attempting to use a custom object, be sure to append the '__c' after the "
        "entity name. Please reference your WSDL or the describe call for the appropriate names.",
    )


def _validate(obj: SObject, query: Query) -> None:
    for path in query.fields:
        check_path(obj, path)
    for path, _, _ in query.order_by:
        check_path(obj, path)
    query.where = _checked(obj, query.where)


def child_relationship(obj: SObject, name: str) -> tuple[SObject, str, str]:
    """``(child object, lookup field, relationship name)`` of a sub-query's FROM."""
    found = obj.children().get(name.lower())
    if found is None:
        raise SalesforceError(
            "INVALID_TYPE",
            f"Didn't understand relationship '{name}' in FROM part of query call. If you are "
            "attempting to use a custom relationship, be sure to append the '__r' after the custom "
            "relationship name. Please reference your WSDL or the describe call for the appropriate names.",
        )
    child, lookup, relationship = found
    return OBJECTS[child], lookup, relationship


def _select(
    org: Org, obj: SObject, query: Query, records: Iterable[dict[str, Any]], include_deleted: bool
) -> list[dict[str, Any]]:
    found = [
        r for r in records
        if (include_deleted or not r["IsDeleted"]) and matches(org, obj, r, query.where)
    ]  # fmt: skip
    for path, descending, nulls_last in reversed(query.order_by):
        keyed = [(resolve(org, r, obj, path), r) for r in found]
        present = [pair for pair in keyed if pair[0] is not None]
        absent = [r for value, r in keyed if value is None]
        present.sort(key=lambda pair: _sort_key(pair[0]), reverse=descending)
        ordered = [r for _, r in present]
        found = ordered + absent if nulls_last else absent + ordered
    found = found[query.offset :]
    return found if query.limit is None else found[: query.limit]


def run(org: Org, text: str, include_deleted: bool = False) -> Cursor:
    """Parse, validate and evaluate a query; returns a cursor over the matches."""
    query = parse(text)
    obj = sobject(query.sobject)
    if obj is None:
        raise _unknown_object(text, query.sobject)
    _validate(obj, query)
    for sub in query.subqueries:
        _validate(child_relationship(obj, sub.sobject)[0], sub)
    locator = f"01g8d{next(_cursor_numbers):010d}"
    if query.aggregates or query.group_by:
        return Cursor(locator, query, obj, [], rows=_aggregate(org, obj, query, include_deleted))
    found = _select(org, obj, query, org.records[obj.name].values(), include_deleted)
    return Cursor(locator, query, obj, [r["Id"] for r in found])


def _aggregate(org: Org, obj: SObject, query: Query, include_deleted: bool) -> list[dict[str, Any]]:
    for path in [*query.group_by, *(a.path for a in query.aggregates)]:
        check_path(obj, path)
    aggregate.check(query)
    matched = [
        r for r in org.records[obj.name].values()
        if (include_deleted or not r["IsDeleted"]) and matches(org, obj, r, query.where)
    ]  # fmt: skip
    result = aggregate.rows(org, obj, query, matched, resolve)
    for path, descending, nulls_last in reversed(query.order_by):
        key = next((a.alias for a in query.aggregates if a.path == path), path[-1])
        present = sorted(
            (r for r in result if r.get(key) is not None),
            key=lambda r: _sort_key(r[key]),
            reverse=descending,
        )
        absent = [r for r in result if r.get(key) is None]
        result = present + absent if nulls_last else absent + present
    result = result[query.offset :]
    return result if query.limit is None else result[: query.limit]


def _sort_key(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def build_record(
    org: Org,
    obj: SObject,
    record: dict[str, Any] | None,
    paths: list[tuple[str, ...]],
    version: str,
) -> dict[str, Any] | None:
    """A query result record with ``attributes`` and nested relationship objects."""
    if record is None:
        return None
    result: dict[str, Any] = {
        "attributes": {
            "type": obj.name,
            "url": f"/services/data/v{version}/sobjects/{obj.name}/{record['Id']}",
        }
    }
    nested: dict[str, list[tuple[str, ...]]] = {}
    for path in paths:
        if len(path) == 1:
            field = obj.field(path[0])
            result[field.name if field else path[0]] = record.get(field.name) if field else None
        else:
            nested.setdefault(path[0], []).append(path[1:])
    for name, inner in nested.items():
        reference = obj.relationship(name)
        assert reference is not None
        target_id = record.get(reference.name)
        target_obj = BY_PREFIX[target_id[:3]] if target_id else None
        target = org.records[target_obj.name].get(target_id) if target_obj and target_id else None
        result[reference.relationship_name or name] = (
            build_record(org, target_obj, target, inner, version) if target_obj else None
        )
    return result


def page(org: Org, cursor: Cursor, size: int, version: str) -> tuple[list[dict[str, Any]], bool]:
    """The next ``size`` result records of ``cursor`` and whether it is exhausted."""
    if cursor.rows is not None:
        rows = cursor.rows[cursor.position : cursor.position + size]
        cursor.position += len(rows)
        return rows, cursor.position >= len(cursor.rows)
    chunk = cursor.ids[cursor.position : cursor.position + size]
    cursor.position += len(chunk)
    parents = [org.records[cursor.sobject.name].get(i) for i in chunk]
    records = [
        (parent["Id"], build_record(org, cursor.sobject, parent, cursor.query.fields, version))
        for parent in parents
        if parent is not None
    ]
    for sub in cursor.query.subqueries:
        child, lookup, relationship = child_relationship(cursor.sobject, sub.sobject)
        wanted = set(chunk)
        by_parent: dict[str, list[dict[str, Any]]] = {}
        for candidate in org.records[child.name].values():
            if candidate.get(lookup) in wanted:
                by_parent.setdefault(candidate[lookup], []).append(candidate)
        for parent_id, built in records:
            kids = _select(org, child, sub, by_parent.get(parent_id, []), False)
            kid_rows = [build_record(org, child, kid, sub.fields, version) for kid in kids]
            if built is not None:
                built[relationship] = (
                    {"totalSize": len(kid_rows), "done": True, "records": kid_rows}
                    if kid_rows
                    else None
                )
    return [r for _, r in records if r is not None], cursor.position >= len(cursor.ids)
