"""Composite subrequests run inside the composite request's transaction.

Composite subrequests: the record and query resources a ``/composite`` call may address,
executed inside the composite request's transaction.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiohttp import web

from simulator import query
from simulator.errors import SalesforceError, not_found
from simulator.org import Transaction
from simulator.schema import sobject
from simulator.state import Simulator

_RECORD = re.compile(r"^/services/data/v(\d+\.\d)/sobjects/(\w+)(?:/(\w+))?/?$")
_QUERY = re.compile(r"^/services/data/v(\d+\.\d)/query/?$")


def run_subrequest(
    state: Simulator, tx: Transaction, request: web.Request, method: str, url: str, body: Any
) -> tuple[int, Any]:
    """``(status, body)`` of one subrequest."""
    parts = urlsplit(url)
    method = method.upper()
    match = _RECORD.match(parts.path)
    if match:
        version, name, record_id = match.groups()
        obj = sobject(name)
        if obj is None:
            raise not_found()
        if method == "POST" and record_id is None:
            if not isinstance(body, dict):
                raise SalesforceError("JSON_PARSER_ERROR", "Expected a JSON object")
            return 201, {"id": tx.create(obj.name, body), "success": True, "errors": []}
        if record_id is None:
            raise not_found()
        if method == "GET":
            found = state.org.get(obj.name, record_id)
            wanted = parse_qs(parts.query).get("fields", [""])[0]
            names = [n.strip() for n in wanted.split(",") if n.strip()] or list(obj.fields)
            names += [] if "Id" in names else ["Id"]
            paths: list[tuple[str, ...]] = [(n,) for n in names]
            for path in paths:
                query.check_path(obj, path)
            return 200, query.build_record(state.org, obj, found, paths, version)
        if method == "PATCH":
            if not isinstance(body, dict):
                raise SalesforceError("JSON_PARSER_ERROR", "Expected a JSON object")
            tx.update(obj.name, record_id, body)
            return 204, None
        if method == "DELETE":
            tx.delete(obj.name, record_id)
            return 204, None
    match = _QUERY.match(parts.path)
    if match and method == "GET":
        text = parse_qs(parts.query).get("q", [""])[0]
        cursor = query.run(state.org, text)
        records, _ = query.page(state.org, cursor, 2000, match.group(1))
        return 200, {"totalSize": cursor.size, "done": True, "records": records}
    raise SalesforceError(
        "NOT_FOUND", f"The requested resource does not exist: {method} {parts.path}", 404
    )
