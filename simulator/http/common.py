"""What every handler shares: the simulator key, the request's caller, JSON and error replies."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from simulator.errors import SalesforceError
from simulator.state import Simulator

STATE: web.AppKey[Simulator] = web.AppKey("simulator", Simulator)
_CLIENT = re.compile(r"(?:^|[,;\s])client=([^,;\s]+)")


@dataclass(frozen=True)
class Caller:
    """Who makes a request: user, API version, and the client named in Sforce-Call-Options."""

    user_id: str
    version: str
    client: str | None

    @property
    def origin(self) -> str:
        """The ``changeOrigin`` of changes this caller makes."""
        base = f"com/salesforce/api/rest/{self.version}"
        return f"{base};client={self.client}" if self.client else base


CALLER: web.RequestKey[Caller] = web.RequestKey("sfe.caller", Caller)


def sim(request: web.Request) -> Simulator:
    """The simulator serving ``request``."""
    return request.app[STATE]


def caller(request: web.Request) -> Caller:
    """The authenticated caller (set by the middleware)."""
    found = request.get(CALLER)
    assert isinstance(found, Caller)
    return found


def client_of(header: str | None) -> str | None:
    """The ``client=`` option of a ``Sforce-Call-Options`` header."""
    match = _CLIENT.search(header or "")
    return match.group(1) if match else None


def reply(body: Any, status: int = 200) -> web.Response:
    """A JSON response in Salesforce's style."""
    return web.Response(
        text=json.dumps(body), status=status, content_type="application/json", charset="UTF-8"
    )


def error_reply(error: SalesforceError) -> web.Response:
    """The JSON error array of ``error``."""
    return reply(error.body(), error.status)


async def json_body(request: web.Request) -> Any:
    """The request's JSON body or ``JSON_PARSER_ERROR``."""
    try:
        return json.loads(await request.text() or "null")
    except json.JSONDecodeError as exc:
        raise SalesforceError(
            "JSON_PARSER_ERROR", f"Unexpected character at [line:{exc.lineno}, column:{exc.colno}]"
        ) from None


def version_of(request: web.Request) -> str:
    """The API version in the URL (``62.0``)."""
    return request.match_info.get("version", sim(request).config.api_version)
