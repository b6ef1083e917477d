"""The admin endpoint ``/_sim``: arm faults, emit gap events, inspect the simulator.

``POST /_sim/faults`` takes ``{"action": ..., ...}`` with one of the actions of
:data:`ACTIONS`; ``GET /_sim/status`` reports counters. It is meant for tests and demos.
With ``SFE_SIM_ADMIN_TOKEN`` set, both need ``Authorization: Bearer <token>`` (401
otherwise); without one the simulator refuses to listen beyond loopback
(:meth:`SimConfig.check_exposure`).
"""

from __future__ import annotations

import hmac
import time
from typing import Any

from aiohttp import web

from simulator import cdc
from simulator.errors import SalesforceError
from simulator.http.common import reply, sim
from simulator.state import Simulator

ACTIONS = (
    "drop_connections", "forget_clients", "expire_sessions", "fail_next", "request_limit",
    "latency", "gap", "clear", "purge_events", "lock_rows",
)  # fmt: skip


def apply_fault(state: Simulator, body: dict[str, Any]) -> dict[str, Any]:
    """Carry out one admin action; returns what it did."""
    action = body.get("action")
    faults = state.faults
    if action == "drop_connections":
        return {"dropped": state.streaming.drop_connections()}
    if action == "forget_clients":
        dropped = state.streaming.drop_connections() if body.get("drop", True) else 0
        return {"forgotten": state.streaming.forget_clients(), "dropped": dropped}
    if action == "expire_sessions":
        return {"expired": state.authority.expire_all()}
    if action == "fail_next":
        faults.fail_next, faults.fail_status = (
            int(body.get("count", 1)),
            int(body.get("status", 503)),
        )
        client = body.get("client")
        faults.fail_client = str(client) if client else None
        armed: dict[str, Any] = {"fail_next": faults.fail_next, "status": faults.fail_status}
        if faults.fail_client is not None:
            armed["client"] = faults.fail_client
        return armed
    if action == "request_limit":
        if "used" in body:
            state.budget.used = int(body["used"])
        if "limit" in body:
            state.budget.limit = int(body["limit"])
        return {"used": state.budget.used, "limit": state.budget.limit}
    if action == "lock_rows":
        faults.locked_rows = int(body.get("count", 1))
        return {"locked_rows": faults.locked_rows}
    if action == "latency":
        faults.latency_seconds = float(body.get("ms", 0)) / 1000
        return {"latency_ms": faults.latency_seconds * 1000}
    if action == "gap":
        return _gap(state, body)
    if action == "purge_events":
        older = body.get("older_than_seconds")
        state.bus.purge(None if older is None else float(older))
        return {"purged": True}
    if action == "clear":
        faults.fail_next, faults.latency_seconds, faults.locked_rows = 0, 0.0, 0
        faults.fail_client = None
        return {"cleared": True}
    raise SalesforceError(
        "INVALID_INPUT", f"unknown action {action!r}; one of {', '.join(ACTIONS)}"
    )


def _gap(state: Simulator, body: dict[str, Any]) -> dict[str, Any]:
    entity = str(body.get("entity", "Lead"))
    change_type = str(body.get("change_type", "GAP_UPDATE"))
    if change_type not in (
        "GAP_CREATE",
        "GAP_UPDATE",
        "GAP_DELETE",
        "GAP_UNDELETE",
        "GAP_OVERFLOW",
    ):
        raise SalesforceError("INVALID_INPUT", f"not a gap change type: {change_type}")
    record_ids = [str(i) for i in body.get("record_ids", [])]
    state.org.commit_number += 1
    info = cdc.CommitInfo(state.user_id(), "", state.org.commit_number, int(time.time() * 1000))
    cdc.publish_gap(state.bus, info, entity, change_type, record_ids)
    return {"published": change_type, "entity": entity, "recordIds": record_ids}


def _authorized(request: web.Request) -> bool:
    token = sim(request).config.admin_token
    if token is None:
        return True
    given = request.headers.get("Authorization", "")
    return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())


def _unauthorized() -> web.Response:
    return reply([{"errorCode": "INVALID_AUTH_HEADER", "message": "admin token required"}], 401)


async def faults(request: web.Request) -> web.Response:
    """Apply one admin action."""
    if not _authorized(request):
        return _unauthorized()
    body = await request.json()
    try:
        return reply(apply_fault(sim(request), body))
    except SalesforceError as error:
        return reply(error.body(), 400)


async def status(request: web.Request) -> web.Response:
    """Counters for tests and operators."""
    if not _authorized(request):
        return _unauthorized()
    state = sim(request)
    return reply(
        {
            "records": {name: len(records) for name, records in state.org.records.items()},
            "api_usage": {"used": state.budget.used, "limit": state.budget.limit},
            "streaming_clients": len(state.streaming.clients),
            "commit_number": state.org.commit_number,
            "record_writes": {
                origin: dict(counts) for origin, counts in state.org.record_writes.items()
            },
            "fail_next": state.faults.fail_next,
            "ca_file": str(state.tls_files.ca_cert),
        }
    )


def routes() -> list[web.RouteDef]:
    """The admin routes."""
    return [web.post("/_sim/faults", faults), web.get("/_sim/status", status)]
