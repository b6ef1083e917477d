"""sObject Tree: nested records created in one all-or-none request.

sObject Tree (``/composite/tree/<Object>``): nested records with their children, created in
one all-or-none transaction, answered with ``referenceId`` / ``id`` pairs.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from simulator.errors import SalesforceError
from simulator.http.common import caller, json_body, reply, sim
from simulator.org import Transaction
from simulator.schema import OBJECTS, SObject, sobject

MAX_RECORDS = 200


def _count(records: list[Any]) -> int:
    total = 0
    for record in records:
        total += 1
        for value in record.values() if isinstance(record, dict) else []:
            if isinstance(value, dict) and isinstance(value.get("records"), list):
                total += _count(value["records"])
    return total


def _insert(
    tx: Transaction, obj: SObject, record: Any, parent: tuple[str, str] | None,
    results: list[dict[str, Any]], errors: list[dict[str, Any]],
) -> None:  # fmt: skip
    if not isinstance(record, dict) or not isinstance(record.get("attributes"), dict):
        raise SalesforceError(
            "INVALID_INPUT", "Each record needs attributes with type and referenceId"
        )
    reference = str(record["attributes"].get("referenceId", ""))
    children = obj.children()
    body: dict[str, Any] = {}
    nested: list[tuple[str, str, list[Any]]] = []
    for key, value in record.items():
        if key == "attributes":
            continue
        if isinstance(value, dict) and "records" in value:
            if key.lower() not in children:
                raise SalesforceError(
                    "INVALID_FIELD", f"No such relationship '{key}' on {obj.name}"
                )
            child, lookup, _ = children[key.lower()]
            nested.append((child, lookup, value["records"]))
        else:
            body[key] = value
    if parent:
        body[parent[0]] = parent[1]
    try:
        record_id = tx.create(obj.name, body)
    except SalesforceError as error:
        errors.append({"referenceId": reference, "errors": [error.record_error()]})
        return
    results.append({"referenceId": reference, "id": record_id})
    for child, lookup, records in nested:
        child_obj = OBJECTS[child]
        for item in records:
            _insert(tx, child_obj, item, (lookup, record_id), results, errors)


async def tree(request: web.Request) -> web.Response:
    """Create a tree of records; any failure rolls the whole request back."""
    state, who = sim(request), caller(request)
    obj = sobject(request.match_info["sobject"])
    if obj is None:
        raise SalesforceError("NOT_FOUND", "The requested resource does not exist", 404)
    body = await json_body(request)
    records = body.get("records") if isinstance(body, dict) else None
    if not isinstance(records, list):
        raise SalesforceError("JSON_PARSER_ERROR", 'Expected {"records": [...]}')
    if _count(records) > MAX_RECORDS:
        raise SalesforceError(
            "INVALID_INPUT", f"Cannot create more than {MAX_RECORDS} records in one request"
        )
    results: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    with state.org.transaction(who.user_id, who.origin) as tx:
        for record in records:
            _insert(tx, obj, record, None, results, errors)
        if errors:
            tx.rollback()
    if errors:
        return reply({"hasErrors": True, "results": errors}, 400)
    return reply({"hasErrors": False, "results": results}, 201)


def routes() -> list[web.RouteDef]:
    """The sObject Tree route."""
    return [web.post(r"/services/data/v{version:\d+\.\d}/composite/tree/{sobject}", tree)]
