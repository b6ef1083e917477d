"""A simple-salesforce client built from the project's configuration.

The HTTP session trusts the configured CA bundle through ``session.verify`` with
``trust_env`` off (otherwise ``REQUESTS_CA_BUNDLE`` would silently win), names the
integration in ``Sforce-Call-Options`` so its own changes are recognisable in CDC
``changeOrigin``, and logs in again by itself when a token expires
(``INVALID_SESSION_ID``).
"""

from __future__ import annotations

from functools import partial
from urllib.parse import urlsplit

import requests
from simple_salesforce import Salesforce

from sfe.settings import Settings
from streams.salesforce.auth import SalesforceAuthConfig, login


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


def connect(config: SalesforceAuthConfig, session: requests.Session | None = None) -> Salesforce:
    """A logged-in simple-salesforce client that re-authenticates on expired sessions."""
    session = session or http_session(config)
    credentials = login(config, session)
    client = Salesforce(
        instance_url=credentials.instance_url,
        session_id=credentials.access_token,
        version=config.api_version,
        session=session,
    )
    # simple-salesforce calls this hook when a response says INVALID_SESSION_ID.
    client._salesforce_login_partial = partial(_relogin, config, session)
    return client


def _relogin(config: SalesforceAuthConfig, session: requests.Session) -> tuple[str, str]:
    fresh = login(config, session)
    return fresh.access_token, urlsplit(fresh.instance_url).netloc
