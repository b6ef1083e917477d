"""sObject Collections, Composite and Composite Batch.

sObject Collections (``/composite/sobjects``, up to 200 records) and ``/composite``
(up to 25 subrequests, ``@{ref.id}`` references, ``allOrNone``).

A collection call is one transaction: with ``allOrNone`` any failure rolls back every
record and reports ``ALL_OR_NONE_OPERATION_ROLLED_BACK`` for the others; without it
valid records commit and failures are reported per record.
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from simulator.errors import SalesforceError
from simulator.http.common import caller, json_body, reply, sim
from simulator.http.rest import publish_event
from simulator.http.subrequest import run_subrequest
from simulator.org import Transaction
from simulator.schema import sobject

MAX_RECORDS = 200
MAX_SUBREQUESTS = 25
_PREFIX = "/services/data/v{version:\\d+\\.\\d}"
_ROLLED_BACK = SalesforceError(
    "ALL_OR_NONE_OPERATION_ROLLED_BACK",
    "Record rolled back because not all records were valid and the request was using AllOrNone header",
)


class _RollBack(Exception):
    """Raised inside a transaction to undo it after per-record failures."""


def _apply(
    request: web.Request, tx: Transaction, method: str, item: Any, external: str | None
) -> tuple[str | None, bool]:
    if method == "DELETE":
        tx.delete(None, str(item))
        return str(item), False
    if not isinstance(item, dict) or not isinstance(item.get("attributes"), dict):
        raise SalesforceError("INVALID_INPUT", "Each record must have attributes with a type")
    name = str(item["attributes"].get("type", ""))
    if name.endswith("__e") and method == "POST":
        body = {k: v for k, v in item.items() if k != "attributes"}
        return str(publish_event(request, name, body)["id"]), True
    if sobject(name) is None:
        raise SalesforceError("INVALID_TYPE", f"sObject type '{name}' is not supported.")
    # Field names are case-insensitive in Salesforce; the docs' own examples write "id".
    body = {("Id" if k.lower() == "id" else k): v for k, v in item.items() if k != "attributes"}
    if method == "POST":
        if "Id" in body:
            raise SalesforceError(
                "INVALID_FIELD", "cannot specify Id in an insert call", fields=["Id"]
            )
        return tx.create(name, body), True
    if method == "PATCH" and external is None:
        if not body.get("Id"):
            raise SalesforceError(
                "MISSING_ARGUMENT", "Id not specified in an update call", fields=["Id"]
            )
        record_id = str(body.pop("Id"))
        tx.update(name, record_id, body)
        return record_id, False
    obj = sobject(name)
    key = obj.field(external or "") if obj is not None and external != "Id" else None
    if key is not None and key.external_id:
        return _upsert_by_external_id(tx, name, key.name, body)
    if external != "Id":
        raise SalesforceError(
            "INVALID_FIELD",
            f"Field name provided, {external} is not an External ID or indexed field for {name}",
        )
    if body.get("Id"):
        record_id = str(body.pop("Id"))
        tx.update(name, record_id, body)
        return record_id, False
    return tx.create(name, body), True


def _upsert_by_external_id(
    tx: Transaction, name: str, field: str, body: dict[str, Any]
) -> tuple[str, bool]:
    """Update the one record whose ``field`` holds the body's value, or create it."""
    value = body.get(field)
    if value in (None, ""):
        raise SalesforceError(
            "MISSING_ARGUMENT", f"{field} not specified in an upsert call", fields=[field]
        )
    obj = sobject(name)
    assert obj is not None
    matches = tx.org.find_by_external_id(obj, field, value)
    if len(matches) > 1:
        raise SalesforceError(
            "DUPLICATE_EXTERNAL_ID",
            f"{field}: more than one record found for external id field: {matches}",
            fields=[field],
        )
    if matches:
        tx.update(name, matches[0], {k: v for k, v in body.items() if k != "Id"})
        return matches[0], False
    return tx.create(name, body), True


def _describe(item: Any) -> str:
    if isinstance(item, dict):
        return str(item.get("Id") or item.get("id") or "new record")
    return str(item)


async def collections(request: web.Request) -> web.Response:
    """Create, update, upsert or delete up to 200 records in one transaction."""
    state, who = sim(request), caller(request)
    method = request.method
    external = request.match_info.get("external")
    if method == "DELETE":
        items: list[Any] = [i for i in request.query.get("ids", "").split(",") if i]
        all_or_none = request.query.get("allOrNone", "false").lower() == "true"
    elif method == "GET":
        return await _retrieve(request)
    else:
        body = await json_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("records"), list):
            raise SalesforceError("JSON_PARSER_ERROR", 'Expected {"records": [...]}')
        items = body["records"]
        all_or_none = bool(body.get("allOrNone", False))
    if len(items) > MAX_RECORDS:
        raise SalesforceError(
            "EXCEEDED_ID_LIMIT",
            f"record limit reached. cannot submit more than {MAX_RECORDS} records into this call",
        )
    results: list[dict[str, Any]] = []
    failed = False
    try:
        with state.org.transaction(who.user_id, who.origin) as tx:
            for item in items:
                try:
                    locked = state.faults.row_lock(_describe(item)) if method != "GET" else None
                    if locked is not None:
                        raise locked
                    record_id, created = _apply(request, tx, method, item, external)
                    result: dict[str, Any] = {"id": record_id, "success": True, "errors": []}
                    if external is not None:
                        result["created"] = created
                except SalesforceError as error:
                    failed = True
                    result = {"success": False, "errors": [error.record_error()]}
                    if method == "DELETE":
                        result["id"] = item
                results.append(result)
            if failed and all_or_none:
                raise _RollBack
    except _RollBack:
        results = [
            r
            if not r["success"]
            else {"id": None, "success": False, "errors": [_ROLLED_BACK.record_error()]}
            for r in results
        ]
    return reply(results)


async def _retrieve(request: web.Request) -> web.Response:
    state = sim(request)
    name = request.match_info.get("sobject") or ""
    obj = sobject(name)
    if obj is None:
        raise SalesforceError("NOT_FOUND", "The requested resource does not exist", 404)
    fields = [f for f in request.query.get("fields", "Id").split(",") if f]
    found: list[dict[str, Any] | None] = []
    for record_id in request.query.get("ids", "").split(","):
        try:
            found.append(
                {
                    "attributes": {"type": obj.name},
                    **{f: state.org.get(obj.name, record_id).get(f) for f in fields},
                }
            )
        except SalesforceError:
            found.append(None)
    return reply(found)


def _substitute(value: Any, results: dict[str, Any]) -> Any:
    text = json.dumps(value)

    def lookup(match: re.Match[str]) -> str:
        current: Any = results.get(match.group(1))
        for part in match.group(2).split("."):
            current = current.get(part) if isinstance(current, dict) else None
        if current is None:
            raise SalesforceError(
                "INVALID_REFERENCE", f"Invalid reference specified: {match.group(0)}"
            )
        return str(current)

    return json.loads(re.sub(r"@\{(\w+)\.([\w.]+)\}", lookup, text))


async def composite(request: web.Request) -> web.Response:
    """Run up to 25 subrequests in order, passing results by reference."""
    state = sim(request)
    body = await json_body(request)
    subrequests = body.get("compositeRequest") if isinstance(body, dict) else None
    if not isinstance(subrequests, list):
        raise SalesforceError("JSON_PARSER_ERROR", "Expected compositeRequest")
    if len(subrequests) > MAX_SUBREQUESTS:
        raise SalesforceError(
            "INVALID_INPUT", f"Composite request limit of {MAX_SUBREQUESTS} subrequests exceeded"
        )
    all_or_none = bool(body.get("allOrNone", False))
    answers: list[dict[str, Any]] = []
    results: dict[str, Any] = {}
    who = caller(request)
    failed = False
    with state.org.transaction(who.user_id, who.origin) as tx:
        for sub in subrequests:
            ref = str(sub.get("referenceId", ""))
            if failed and all_or_none:
                answers.append({"body": [{"errorCode": "PROCESSING_HALTED", "message": "The transaction was rolled back since another operation in the same transaction failed."}],
                                "httpHeaders": {}, "httpStatusCode": 400, "referenceId": ref})  # fmt: skip
                continue
            try:
                url = _substitute(sub.get("url", ""), results)
                sub_body = _substitute(sub.get("body"), results)
                status, answer = run_subrequest(
                    state, tx, request, str(sub.get("method", "GET")), url, sub_body
                )
            except SalesforceError as error:
                status, answer = error.status, error.body()
            if status >= 400:
                failed = True
            else:
                results[ref] = answer
            answers.append(
                {"body": answer, "httpHeaders": {}, "httpStatusCode": status, "referenceId": ref}
            )
        if failed and all_or_none:
            tx.rollback()
    return reply({"compositeResponse": answers})


async def batch(request: web.Request) -> web.Response:
    """``/composite/batch``: up to 25 independent subrequests, each in its own transaction."""
    state, who = sim(request), caller(request)
    body = await json_body(request)
    subrequests = body.get("batchRequests") if isinstance(body, dict) else None
    if not isinstance(subrequests, list) or len(subrequests) > MAX_SUBREQUESTS:
        raise SalesforceError(
            "INVALID_INPUT", f"batchRequests must list at most {MAX_SUBREQUESTS} subrequests"
        )
    halt = bool(body.get("haltOnError", False))
    results: list[dict[str, Any]] = []
    failed = False
    for sub in subrequests:
        if failed and halt:
            results.append({"statusCode": 412, "result": [{"errorCode": "BATCH_PROCESSING_HALTED",
                            "message": "Batch processing halted per request"}]})  # fmt: skip
            continue
        url = "/services/data/" + str(sub.get("url", "")).lstrip("/").removeprefix("services/data/")
        try:
            with state.org.transaction(who.user_id, who.origin) as tx:
                status, answer = run_subrequest(
                    state, tx, request, str(sub.get("method", "GET")), url, sub.get("richInput")
                )
        except SalesforceError as error:
            status, answer = error.status, error.body()
        failed = failed or status >= 400
        results.append({"statusCode": status, "result": answer})
    return reply({"hasErrors": failed, "results": results})


def routes() -> list[web.RouteDef]:
    """The composite routes."""
    return [
        web.route("*", _PREFIX + "/composite/sobjects", collections),
        web.route("GET", _PREFIX + "/composite/sobjects/{sobject}", collections),
        web.route("PATCH", _PREFIX + "/composite/sobjects/{sobject}/{external}", collections),
        web.post(_PREFIX + "/composite/batch", batch),
        web.post(_PREFIX + "/composite", composite),
        web.post(_PREFIX + "/composite/", composite),
    ]
