"""The CometD streaming client, made to reconnect and resume.

The CometD streaming client: aiosfstream-ng, pointed at a configurable org, made to
reconnect and resume.

aiosfstream-ng 0.7.5 has three gaps this module closes:

* its authenticators post to ``login.salesforce.com``; ours use the configured token
  URL (a My Domain or the simulator) and trust the configured CA bundle;
* its CometD URL carries API version 45.0; ours uses the configured version;
* ``Client._wait_connection_timeout`` passes ``loop=`` to ``asyncio.wait_for``, which
  fails on Python 3.10+ and turned every lost connection into an immediate
  ``TransportTimeoutError``. The override waits properly, so the transport's own
  reconnect (and re-handshake on ``403::Unknown client``) gets its chance and the
  client resubscribes from the replay ids it stored.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import MutableMapping
from typing import Any

from aiocometd_ng.constants import TransportState
from aiohttp import ClientSession, TCPConnector
from aiosfstream_ng import Client, ReplayMarker, ReplayOption
from aiosfstream_ng.auth import AuthenticatorBase
from aiosfstream_ng.replay import DefaultMappingStorage

from sfe.secrets import remember
from streams.salesforce.auth import SalesforceAuthConfig, TokenCache, token_request
from streams.salesforce.errors import LoginFailed

COMETD_PATH = "cometd"


def ssl_context(config: SalesforceAuthConfig) -> ssl.SSLContext:
    """A client TLS context trusting the configured CA bundle (or the system store)."""
    context = ssl.create_default_context()
    if config.ca_bundle is not None:
        context.load_verify_locations(cafile=str(config.ca_bundle))
    return context


class ConfiguredAuthenticator(AuthenticatorBase):
    """Authenticates with the configured flow (JWT, refresh token or password) and token URL.

    Given the REST client's :class:`~streams.salesforce.auth.TokenCache`, the streaming
    connection uses the same token: no login of its own, and a token the server refused
    is renewed once for both (unless the REST side already has). Without one it logs
    in by itself. Either way the token is known to the log filter.
    """

    def __init__(self, config: SalesforceAuthConfig, tokens: TokenCache | None = None) -> None:
        super().__init__()
        self.config = config
        self.tokens = tokens
        self._ssl = ssl_context(config)

    @property
    def _token_url(self) -> str:
        return self.config.token_url

    async def _authenticate(self) -> tuple[int, dict[str, Any]]:
        if self.tokens is not None:
            return await self._from_cache(self.tokens)
        connector = TCPConnector(ssl=self._ssl)
        async with ClientSession(connector=connector) as session:
            response = await session.post(self._token_url, data=token_request(self.config))
            body: dict[str, Any] = await response.json(loads=self.json_loads)
        if isinstance(body, dict) and isinstance(body.get("access_token"), str):
            remember(body["access_token"])
        return response.status, body

    async def _from_cache(self, tokens: TokenCache) -> tuple[int, dict[str, Any]]:
        stale = self.access_token  # None at the first authentication, refused afterwards
        try:
            if stale is None:
                credentials = await asyncio.to_thread(tokens.credentials)
            else:
                credentials = await asyncio.to_thread(tokens.invalidate, stale)
        except LoginFailed as exc:
            return 400, {"error": exc.error, "error_description": exc.description}
        return 200, {
            "access_token": credentials.access_token,
            "instance_url": credentials.instance_url,
            "token_type": "Bearer",
        }


class StreamingClient(Client):
    """An aiosfstream-ng client for one org that survives dropped connections.

    ``replay`` is a mapping of channel to :class:`ReplayMarker`; pass a persistent mapping
    to resume across process restarts. Without a stored id a channel starts from
    ``default_replay`` (-1 new events, -2 everything retained).
    """

    def __init__(
        self,
        config: SalesforceAuthConfig,
        replay: MutableMapping[str, ReplayMarker] | None = None,
        default_replay: ReplayOption = ReplayOption.NEW_EVENTS,
        replay_fallback: ReplayOption | None = None,
        connection_timeout: float = 30.0,
        tokens: TokenCache | None = None,
    ) -> None:
        """Stream from the org of ``config``; ``tokens``: share the REST client's token."""
        self.config = config
        self.replay_markers: MutableMapping[str, ReplayMarker] = (
            replay if replay is not None else {}
        )
        storage = DefaultMappingStorage(self.replay_markers, default_replay)
        super().__init__(
            ConfiguredAuthenticator(config, tokens),
            replay=storage,
            replay_fallback=replay_fallback,
            connection_timeout=connection_timeout,
        )
        self.ssl = ssl_context(config)

    async def close(self) -> None:
        """Disconnect; the pending long-poll is cancelled without a stray callback error."""
        transport: Any = self._transport
        task = getattr(transport, "_connect_task", None)
        if task is not None and not task.done():
            task.remove_done_callback(transport._connect_done)
        await super().close()

    def get_cometd_url(self, instance_url: str) -> str:  # type: ignore[override]
        """The CometD endpoint of the org at the configured API version."""
        return "/".join((instance_url.rstrip("/"), COMETD_PATH, self.config.api_version))

    async def _wait_connection_timeout(self, timeout: float) -> None:
        """Return once the transport has failed to reconnect for ``timeout`` seconds."""
        assert self._transport is not None
        while True:
            await self._transport.wait_for_state(TransportState.CONNECTING)
            try:
                await asyncio.wait_for(
                    self._transport.wait_for_state(TransportState.CONNECTED), timeout
                )
            except TimeoutError:
                return
