"""Cross-cutting handling of every ``/services/data`` request.

Cross-cutting request handling for ``/services/data``: faults, sessions, the API budget,
``Sforce-Limit-Info`` on every response, and translation of errors to Salesforce bodies.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from simulator.errors import SalesforceError, invalid_session, not_found
from simulator.http.common import CALLER, Caller, client_of, error_reply, sim

LOGGER = logging.getLogger(__name__)
_API_PREFIX = "/services/data/v"


@web.middleware
async def salesforce_api(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate, count and fault-inject API calls; always report API usage."""
    state = sim(request)
    if state.faults.latency_seconds and not request.path.startswith("/_sim"):
        await asyncio.sleep(state.faults.latency_seconds)
    if not request.path.startswith(_API_PREFIX):
        plain = await handler(request)
        if not plain.prepared:
            plain.headers["Sforce-Limit-Info"] = state.budget.header()
        return plain
    try:
        session = state.authority.session(request.headers.get("Authorization"))
        if session is None:
            raise invalid_session()
        failure = state.faults.next_failure(
            state.budget.limit, client_of(request.headers.get("Sforce-Call-Options"))
        )
        if failure:
            raise failure
        state.budget.spend()
        request[CALLER] = Caller(
            session.user_id,
            request.match_info.get("version", state.config.api_version),
            client_of(request.headers.get("Sforce-Call-Options")),
        )
        response = await handler(request)
    except SalesforceError as error:
        response = error_reply(error)
    except web.HTTPNotFound:
        response = error_reply(not_found())
    except web.HTTPMethodNotAllowed as exc:
        response = error_reply(
            SalesforceError("METHOD_NOT_ALLOWED", f"HTTP Method '{exc.method}' not allowed.", 405)
        )
    except Exception:
        LOGGER.exception("unhandled error", extra={"path": request.path})
        response = error_reply(
            SalesforceError("UNKNOWN_EXCEPTION", "An unexpected error occurred.", 500)
        )
    response.headers["Sforce-Limit-Info"] = state.budget.header()
    return response
