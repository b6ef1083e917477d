"""A simple-salesforce client built from the project's configuration.

The HTTP session trusts the configured CA bundle through ``session.verify`` with
``trust_env`` off (otherwise ``REQUESTS_CA_BUNDLE`` would silently win), names the
integration in ``Sforce-Call-Options`` so its own changes are recognisable in CDC
``changeOrigin``, and takes its access token from a :class:`TokenCache`: renewed before
the session times out, and again by itself when a call answers ``INVALID_SESSION_ID``.
"""

from __future__ import annotations

import threading
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import requests
from simple_salesforce import Salesforce

from sfe.settings import Settings
from streams.salesforce.auth import SalesforceAuthConfig, TokenCache


def auth_config(settings: Settings, refresh_token: str | None = None) -> SalesforceAuthConfig:
    """The login configuration of ``settings`` (``SFE_SF_*``)."""
    return SalesforceAuthConfig(
        login_url=settings.sf_login_url,
        client_id=settings.sf_client_id,
        username=settings.sf_username,
        api_version=settings.sf_api_version,
        client_secret=settings.sf_client_secret.get_secret_value()
        if settings.sf_client_secret
        else None,
        password=settings.sf_password.get_secret_value() if settings.sf_password else None,
        private_key_file=settings.sf_private_key_file,
        private_key=settings.sf_private_key.get_secret_value() if settings.sf_private_key else None,
        jwt_audience=settings.sf_jwt_audience,
        refresh_token=refresh_token,
        ca_bundle=settings.sf_ca_bundle,
        call_options_client=settings.sf_call_options_client,
        auth_flow=settings.sf_auth_flow,
        session_seconds=settings.sf_session_seconds,
    )


def http_session(config: SalesforceAuthConfig) -> requests.Session:
    """A requests session that trusts the configured CA bundle and names the client."""
    session = requests.Session()
    session.trust_env = False
    if config.ca_bundle is not None:
        session.verify = str(config.ca_bundle)
    if config.call_options_client:
        session.headers["Sforce-Call-Options"] = f"client={config.call_options_client}"
    return session


class RefreshingSalesforce(Salesforce):
    """A simple-salesforce client whose session id always comes from a :class:`TokenCache`.

    Every read of ``session_id`` (the REST calls, ``sf.<Object>``, ``sf.bulk2``) asks the
    cache, which renews an expiring token first. When a call answers
    ``INVALID_SESSION_ID``, simple-salesforce calls ``_refresh_session``: the token this
    thread last used is invalidated, so threads sharing the client log in once.
    """

    def __init__(self, tokens: TokenCache, **kwargs: Any) -> None:
        """A client over ``tokens``; ``kwargs`` go to :class:`simple_salesforce.Salesforce`."""
        self.tokens = tokens
        self._used = threading.local()
        self._headers: dict[str, str] = {}
        credentials = tokens.credentials()
        super().__init__(
            instance_url=credentials.instance_url,
            session_id=credentials.access_token,
            session=tokens.session,
            **kwargs,
        )
        self._salesforce_login_partial = partial(self._relogin)

    def __repr__(self) -> str:
        return f"RefreshingSalesforce({self.sf_instance!r})"

    @property
    def session_id(self) -> str:
        """The current access token (renewed first when it is about to expire)."""
        token = self.tokens.credentials().access_token
        self._used.token = token
        return token

    @session_id.setter
    def session_id(self, value: str) -> None:
        # simple-salesforce assigns it; the cache stays the source of truth.
        pass

    @property
    def headers(self) -> dict[str, str]:
        """The REST headers with the current token."""
        return {**self._headers, "Authorization": "Bearer " + self.session_id}

    @headers.setter
    def headers(self, value: dict[str, str]) -> None:
        self._headers = {k: v for k, v in value.items() if k != "Authorization"}

    def _relogin(self) -> tuple[str, str]:
        fresh = self.tokens.invalidate(getattr(self._used, "token", None))
        return fresh.access_token, urlsplit(fresh.instance_url).netloc


def connect(
    config: SalesforceAuthConfig, session: requests.Session | None = None
) -> RefreshingSalesforce:
    """A logged-in simple-salesforce client that renews its token before and after expiry."""
    tokens = TokenCache(config, session or http_session(config))
    return RefreshingSalesforce(tokens, version=config.api_version)
