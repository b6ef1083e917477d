"""OAuth 2.0 logins against a configurable login URL, and a refreshing token cache.

OAuth 2.0 logins against a configurable login URL: JWT bearer, username-password and
refresh-token grants, returning the access token and instance URL to use.

The login URL is ``https://login.salesforce.com`` (or a My Domain) for a real org and
the simulator's URL locally; the JWT ``aud`` is the login URL, as Salesforce expects.

Which grant (:attr:`SalesforceAuthConfig.flow`): **JWT bearer is the production flow**
and wins whenever a private key is configured. ``auth_flow="auto"`` falls back to a
refresh token, then to the password flow, but the password flow only against a local
login URL (the simulator on loopback); a real org with only a password configured is
refused unless ``auth_flow="password"`` (``SFE_SF_AUTH_FLOW=password``) asks for it.

The private key is read at every assertion (file, PEM, or ``vault://`` reference), so a
rotated key is used at the next refresh without a restart. :class:`TokenCache` keeps
one access token, renews it at 90 % of the session lifetime (Salesforce's answer has no
expiry; the lifetime is the org's session timeout, ``SFE_SF_SESSION_SECONDS``) or when a
call reports ``INVALID_SESSION_ID``, one refresh at a time across threads. Tokens never
appear in a ``repr`` and errors never carry a credential.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
import requests

from sfe.logging import redact
from sfe.secrets import VAULT_SCHEME, SecretSource, SecretUnavailable, remember
from streams.salesforce.errors import LoginFailed

log = logging.getLogger(__name__)

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
FLOWS = ("auto", "jwt", "password", "refresh_token")
#: The share of the session lifetime after which a token is renewed before use.
REFRESH_AT = 0.9


def is_local_url(url: str) -> bool:
    """Whether ``url`` points at this machine (the simulator), not at a real org."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
    #: ``auto`` (JWT when a key is set), or one grant named explicitly.
    auth_flow: str = "auto"
    #: How long a session lives (the org's session timeout); renewed at 90 % of it.
    session_seconds: float = 7200.0

    @property
    def token_url(self) -> str:
        """The OAuth token endpoint."""
        return self.login_url.rstrip("/") + "/services/oauth2/token"

    @property
    def flow(self) -> str:
        """The grant this configuration uses: ``jwt``, ``refresh_token`` or ``password``.

        ``auto``: JWT bearer whenever a key is set; else a refresh token; else the password
        flow, only against a local login URL. An explicit ``auth_flow`` must have its
        credential configured.
        """
        has_key = self.private_key_file is not None or bool(self.private_key)
        if self.auth_flow not in FLOWS:
            raise LoginFailed("invalid_config", f"unknown auth flow {self.auth_flow!r}")
        if self.auth_flow == "jwt" or (self.auth_flow == "auto" and has_key):
            if not has_key:
                raise LoginFailed(
                    "invalid_config",
                    "the JWT bearer flow needs SFE_SF_PRIVATE_KEY_FILE or SFE_SF_PRIVATE_KEY",
                )
            return "jwt"
        if self.auth_flow == "refresh_token" or (self.auth_flow == "auto" and self.refresh_token):
            if not self.refresh_token:
                raise LoginFailed("invalid_config", "the refresh-token flow needs a refresh token")
            return "refresh_token"
        if self.password is None:
            raise LoginFailed(
                "invalid_config",
                "set SFE_SF_PRIVATE_KEY_FILE or SFE_SF_PRIVATE_KEY (JWT bearer, the production "
                "flow); the password flow (SFE_SF_PASSWORD) is for development",
            )
        if self.auth_flow == "auto" and not is_local_url(self.login_url):
            raise LoginFailed(
                "invalid_config",
                "a real org logs in with JWT bearer: set SFE_SF_PRIVATE_KEY_FILE (or "
                "SFE_SF_PRIVATE_KEY), or SFE_SF_AUTH_FLOW=password to use the password flow",
            )
        return "password"


@dataclass(frozen=True)
class Credentials:
    """A granted access token; ``issued_at`` is a :func:`time.monotonic` reading."""

    access_token: str = field(repr=False)
    instance_url: str
    refresh_token: str | None = field(default=None, repr=False)
    issued_at: float = field(default_factory=time.monotonic, compare=False)


def signing_key(config: SalesforceAuthConfig) -> bytes:
    """The JWT signing key as it is now: a file re-read, a PEM, or a Vault reference read."""
    try:
        if config.private_key_file is not None:
            source = SecretSource("SFE_SF_PRIVATE_KEY", file=config.private_key_file)
            return source.require().encode()
        if config.private_key:
            if config.private_key.startswith(VAULT_SCHEME):
                return SecretSource("SFE_SF_PRIVATE_KEY", config.private_key).require().encode()
            return remember(config.private_key).encode()
    except SecretUnavailable as exc:
        raise LoginFailed("invalid_config", str(exc)) from None
    raise LoginFailed("invalid_config", "the JWT bearer flow needs a private key")


def jwt_assertion(config: SalesforceAuthConfig, lifetime_seconds: int = 180) -> str:
    """A signed RS256 assertion for the JWT bearer grant."""
    key = signing_key(config)
    claims = {
        "iss": config.client_id,
        "sub": config.username,
        "aud": (config.jwt_audience or config.login_url).rstrip("/"),
        "exp": int(time.time()) + lifetime_seconds,
    }
    try:
        return jwt.encode(claims, key, algorithm="RS256")
    except (ValueError, TypeError, jwt.PyJWTError) as exc:
        # The library's message could quote the key material: keep only the type.
        raise LoginFailed(
            "invalid_config", f"unusable private key ({type(exc).__name__})"
        ) from None


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
    flow = config.flow
    # Network errors propagate as requests raises them (callers retry those); their
    # messages name the URL, never the form body that carries the credentials.
    response = session.post(config.token_url, data=token_request(config), timeout=30)
    try:
        body = response.json()
    except ValueError:
        raise LoginFailed(str(response.status_code), redact(response.text[:200])) from None
    if response.status_code != 200 or not isinstance(body, dict) or "access_token" not in body:
        error = body.get("error") if isinstance(body, dict) else None
        description = body.get("error_description") if isinstance(body, dict) else None
        raise LoginFailed(redact(str(error)), redact(str(description)))
    credentials = Credentials(
        remember(body["access_token"]), body["instance_url"], body.get("refresh_token")
    )
    if credentials.refresh_token:
        remember(credentials.refresh_token)
    log.debug("logged in to %s with the %s flow", credentials.instance_url, flow)
    return credentials


class TokenCache:
    """One access token for a configuration, renewed before it expires; thread-safe.

    :meth:`credentials` returns the cached token, logging in first when there is none or
    when it is older than ``REFRESH_AT`` of the session lifetime. :meth:`invalidate`
    (after ``INVALID_SESSION_ID``) renews it unless another thread already has; only one
    login runs at a time.
    """

    def __init__(
        self,
        config: SalesforceAuthConfig,
        session: requests.Session,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Log in with ``config`` over ``session``; ``clock`` is monotonic seconds."""
        self.config = config
        self.session = session
        self.clock = clock
        self.logins = 0
        self._lock = threading.Lock()
        self._current: Credentials | None = None

    def __repr__(self) -> str:
        return f"TokenCache({self.config.login_url!r}, logins={self.logins})"

    @property
    def refresh_after(self) -> float:
        """Seconds after issue at which the token is renewed before use."""
        return self.config.session_seconds * REFRESH_AT

    def credentials(self) -> Credentials:
        """A token that is fresh enough to use now."""
        current = self._current
        if current is not None and self.clock() - current.issued_at < self.refresh_after:
            return current
        with self._lock:
            current = self._current
            if current is None or self.clock() - current.issued_at >= self.refresh_after:
                current = self._login("expiring" if current else "first use")
            return current

    def invalidate(self, stale_token: str | None) -> Credentials:
        """Renew after ``stale_token`` was refused, unless it was already replaced."""
        with self._lock:
            current = self._current
            if current is None or stale_token is None or current.access_token == stale_token:
                current = self._login("session refused")
            return current

    def _login(self, reason: str) -> Credentials:
        fresh = login(self.config, self.session)
        self._current = Credentials(
            fresh.access_token, fresh.instance_url, fresh.refresh_token, self.clock()
        )
        self.logins += 1
        log.info("salesforce token renewed", extra={"reason": reason, "logins": self.logins})
        return self._current
