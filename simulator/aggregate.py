"""Aggregate SOQL: ``COUNT(Id)``, ``SUM(Amount) total ... GROUP BY StageName``.

Groups the matched records and computes ``AggregateResult`` rows as the REST API returns them.
"""

from __future__ import annotations

from typing import Any

from simulator.errors import SalesforceError
from simulator.org import Org
from simulator.schema import SObject
from simulator.soql import Aggregate, Query


def _lower(path: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(part.lower() for part in path)


def check(query: Query) -> None:
    """Every plain field of an aggregate query must be grouped (MALFORMED_QUERY otherwise)."""
    grouped = {_lower(path) for path in query.group_by}
    for path in query.fields:
        if _lower(path) not in grouped:
            raise SalesforceError(
                "MALFORMED_QUERY", f"Field must be grouped or aggregated: {'.'.join(path)}"
            )
    if query.group_by and not query.aggregates and not query.fields:
        raise SalesforceError("MALFORMED_QUERY", "GROUP BY needs selected fields or aggregates")


def _compute(aggregate: Aggregate, found: list[Any]) -> Any:
    present = [v for v in found if v is not None]
    function = aggregate.function
    if function == "count":
        return len(present)
    if function == "count_distinct":
        return len({v.lower() if isinstance(v, str) else v for v in present})
    if not present:
        return None
    if function == "sum":
        return sum(present)
    if function == "avg":
        return sum(present) / len(present)
    return min(present) if function == "min" else max(present)


def rows(
    org: Org, obj: SObject, query: Query, records: list[dict[str, Any]], resolve: Any
) -> list[dict[str, Any]]:
    """The ``AggregateResult`` records of ``query`` over the matched ``records``."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for record in records:
        key = tuple(resolve(org, record, obj, path) for path in query.group_by)
        groups.setdefault(key, []).append(record)
    if not query.group_by:
        groups = {(): records}
    selected = {_lower(path) for path in query.fields}
    results = []
    for key, members in groups.items():
        row: dict[str, Any] = {"attributes": {"type": "AggregateResult"}}
        for path, value in zip(query.group_by, key, strict=True):
            if _lower(path) in selected:
                row[path[-1]] = value
        for aggregate in query.aggregates:
            row[aggregate.alias] = _compute(
                aggregate, [resolve(org, m, obj, aggregate.path) for m in members]
            )
        results.append(row)
    return results
