"""OAuth 2.0 logins against a configurable login URL.

OAuth 2.0 logins against a configurable login URL: JWT bearer, username-password and
refresh-token grants, returning the access token and instance URL to use.

The login URL is ``https://login.salesforce.com`` (or a My Domain) for a real org and
the simulator's URL locally; the JWT ``aud`` is the login URL, as Salesforce expects.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import requests

from streams.salesforce.errors import LoginFailed

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


@dataclass(frozen=True)
class SalesforceAuthConfig:
    """How to reach and log in to an org."""

    login_url: str
    client_id: str
    username: str
    api_version: str = "62.0"
    client_secret: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    private_key_file: Path | None = None
    #: The JWT signing key itself (PEM), e.g. from an environment variable or a vault.
    private_key: str | None = field(default=None, repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    ca_bundle: Path | None = None
    call_options_client: str | None = None
    #: The JWT ``aud`` claim: the login URL unless set (a real org wants
    #: https://login.salesforce.com, or https://test.salesforce.com for a sandbox).
    jwt_audience: str | None = None

    @property
    def token_url(self) -> str:
        """The OAuth token endpoint."""
        return self.login_url.rstrip("/") + "/services/oauth2/token"

    @property
    def flow(self) -> str:
        """The grant this configuration uses: ``jwt``, ``refresh_token`` or ``password``."""
        if self.private_key_file is not None or self.private_key:
            return "jwt"
        if self.refresh_token:
            return "refresh_token"
        if self.password is not None:
            return "password"
        raise LoginFailed("invalid_config", "set a private key file, a refresh token or a password")


@dataclass(frozen=True)
class Credentials:
    """A granted access token."""

    access_token: str
    instance_url: str
    refresh_token: str | None = None


def jwt_assertion(config: SalesforceAuthConfig, lifetime_seconds: int = 180) -> str:
    """A signed RS256 assertion for the JWT bearer grant."""
    if config.private_key:
        key = config.private_key.encode()
    elif config.private_key_file is not None:
        key = config.private_key_file.read_bytes()
    else:
        raise LoginFailed("invalid_config", "the JWT bearer flow needs a private key")
    claims = {
        "iss": config.client_id,
        "sub": config.username,
        "aud": (config.jwt_audience or config.login_url).rstrip("/"),
        "exp": int(time.time()) + lifetime_seconds,
    }
    return jwt.encode(claims, key, algorithm="RS256")


def token_request(config: SalesforceAuthConfig) -> dict[str, Any]:
    """The form body of the token request for the configured flow."""
    flow = config.flow
    if flow == "jwt":
        return {"grant_type": JWT_GRANT, "assertion": jwt_assertion(config)}
    common = {"client_id": config.client_id, "client_secret": config.client_secret or ""}
    if flow == "refresh_token":
        return {"grant_type": "refresh_token", "refresh_token": config.refresh_token, **common}
    return {
        "grant_type": "password",
        "username": config.username,
        "password": config.password,
        **common,
    }


def login(config: SalesforceAuthConfig, session: requests.Session) -> Credentials:
    """Obtain an access token, or raise :class:`LoginFailed` with Salesforce's error."""
    response = session.post(config.token_url, data=token_request(config), timeout=30)
    try:
        body = response.json()
    except ValueError:
        raise LoginFailed(str(response.status_code), response.text[:200]) from None
    if response.status_code != 200:
        raise LoginFailed(str(body.get("error")), str(body.get("error_description")))
    return Credentials(body["access_token"], body["instance_url"], body.get("refresh_token"))
