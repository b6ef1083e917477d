"""OAuth 2.0 as the org's authorization server: grants, access and refresh tokens, JWT checks.

Access tokens expire after the configured time and can be revoked or expired on
demand (a fault). The JWT bearer grant verifies the RS256 signature against the
connected app's certificates and checks ``iss`` (the client id), ``sub`` (a user),
``aud`` (a login URL of this org) and ``exp``. Like a real connected app during a key
rotation, the app can hold several certificates at once (``SimConfig.jwt_extra_cert_files``
or :meth:`Authority.add_jwt_certificate`); an assertion signed for any of them is accepted.
Every access token issued is remembered in ``issued_tokens`` (tests check logs for them).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509

from simulator.config import SimConfig

ORG_ID = "00D8d0000000001AAA"
_AUDIENCES = ("https://login.salesforce.com", "https://test.salesforce.com")


class OAuthError(Exception):
    """A refused grant: ``error`` and ``error_description`` as Salesforce sends them."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status

    def body(self) -> dict[str, str]:
        """The JSON body of the refusal."""
        return {"error": self.error, "error_description": self.description}


@dataclass
class Session:
    """A live access token and who it belongs to."""

    token: str
    user_id: str
    expires_at: float


class Authority:
    """Issues, checks, refreshes and revokes tokens for one org."""

    def __init__(self, config: SimConfig, users: dict[str, str], jwt_cert_file: Path) -> None:
        self.config = config
        self.users = users
        self.sessions: dict[str, Session] = {}
        self.refresh_tokens: dict[str, str] = {}
        #: Every access token issued, newest last (bounded).
        self.issued_tokens: deque[str] = deque(maxlen=10_000)
        self._jwt_keys: list[Any] = []
        for cert_file in (jwt_cert_file, *config.jwt_extra_cert_files):
            self.add_jwt_certificate(cert_file.read_bytes())

    def add_jwt_certificate(self, pem: bytes) -> None:
        """Upload another certificate to the connected app (both valid during a rotation)."""
        self._jwt_keys.append(x509.load_pem_x509_certificate(pem).public_key())

    def remove_jwt_certificate(self, pem: bytes) -> bool:
        """Remove a certificate from the connected app (a rotation's last step).

        Returns whether it was there.
        """
        key = x509.load_pem_x509_certificate(pem).public_key()
        before = len(self._jwt_keys)
        self._jwt_keys = [k for k in self._jwt_keys if k != key]
        return len(self._jwt_keys) < before

    def _client(self, form: dict[str, str]) -> None:
        app = self.config.app
        if form.get("client_id") != app.client_id:
            raise OAuthError("invalid_client_id", "client identifier invalid")
        if form.get("client_secret") != app.client_secret:
            raise OAuthError("invalid_client", "invalid client credentials")

    def grant(self, form: dict[str, str], authorization: str | None) -> dict[str, Any]:
        """Answer a ``/services/oauth2/token`` request or raise :class:`OAuthError`."""
        kind = form.get("grant_type", "")
        if kind == "password":
            self._client(form)
            user_id = self.users.get(form.get("username", ""))
            if user_id is None or form.get("password") != self.config.password:
                raise OAuthError("invalid_grant", "authentication failure")
            return self.issue(user_id, with_refresh=True)
        if kind == "refresh_token":
            self._client(form)
            user_id = self.refresh_tokens.get(form.get("refresh_token", ""))
            if user_id is None:
                raise OAuthError("invalid_grant", "expired access/refresh token")
            return self.issue(user_id, with_refresh=False)
        if kind == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return self.issue(self._verify_assertion(form.get("assertion", "")), with_refresh=False)
        if kind == "client_credentials":
            self._basic_client(form, authorization)
            return self.issue(next(iter(self.users.values())), with_refresh=False)
        raise OAuthError("unsupported_grant_type", "grant type not supported")

    def _basic_client(self, form: dict[str, str], authorization: str | None) -> None:
        if authorization and authorization.lower().startswith("basic "):
            decoded = base64.b64decode(authorization[6:]).decode()
            client_id, _, secret = decoded.partition(":")
            form = {**form, "client_id": client_id, "client_secret": secret}
        self._client(form)

    def _verify_assertion(self, assertion: str) -> str:
        audiences = [*_AUDIENCES, self.config.base_url]
        claims: dict[str, Any] | None = None
        for key in self._jwt_keys:
            try:
                claims = jwt.decode(
                    assertion,
                    key,
                    algorithms=["RS256"],
                    options={"require": ["iss", "sub", "aud", "exp"], "verify_aud": False},
                )
                break
            except jwt.InvalidSignatureError:
                continue
            except jwt.ExpiredSignatureError:
                raise OAuthError("invalid_grant", "expired authorization code") from None
            except jwt.PyJWTError:
                raise OAuthError("invalid_grant", "invalid assertion") from None
        if claims is None:
            raise OAuthError("invalid_grant", "invalid assertion")
        audience = str(claims["aud"]).rstrip("/")
        if not (
            audience in audiences
            or audience.endswith(".salesforce.com")
            or audience.startswith(self.config.base_url)
        ):
            raise OAuthError("invalid_grant", "audience is invalid")
        if claims["iss"] != self.config.app.client_id:
            raise OAuthError("invalid_client_id", "client identifier invalid")
        user_id = self.users.get(str(claims["sub"]))
        if user_id is None:
            raise OAuthError("invalid_grant", "invalid assertion")
        return user_id

    def issue(self, user_id: str, with_refresh: bool = False) -> dict[str, Any]:
        """A new access token (and refresh token) for ``user_id``, as the token endpoint answers."""
        token = f"{ORG_ID[:15]}!{secrets.token_urlsafe(40)}"
        self.sessions[token] = Session(token, user_id, time.time() + self.config.token_ttl_seconds)
        self.issued_tokens.append(token)
        issued_at = str(int(time.time() * 1000))
        identity = f"{self.config.base_url}/id/{ORG_ID}/{user_id}"
        signature = hmac.new(
            self.config.app.client_secret.encode(), (identity + issued_at).encode(), hashlib.sha256
        ).digest()
        response = {
            "access_token": token,
            "instance_url": self.config.base_url,
            "id": identity,
            "token_type": "Bearer",
            "issued_at": issued_at,
            "signature": base64.b64encode(signature).decode(),
            "scope": "api refresh_token",
        }
        if with_refresh:
            refresh = f"5Aep8{secrets.token_urlsafe(48)}"
            self.refresh_tokens[refresh] = user_id
            response["refresh_token"] = refresh
        return response

    def session(self, authorization: str | None) -> Session | None:
        """The live session of an ``Authorization: Bearer|OAuth <token>`` header."""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() not in ("bearer", "oauth"):
            return None
        found = self.sessions.get(token.strip())
        if found is None or found.expires_at < time.time():
            self.sessions.pop(token.strip(), None)
            return None
        return found

    def revoke(self, token: str) -> bool:
        """Revoke an access or refresh token; whether it existed."""
        return (
            self.sessions.pop(token, None) is not None
            or self.refresh_tokens.pop(token, None) is not None
        )

    def expire_all(self) -> int:
        """Expire every access token (refresh tokens stay valid); returns how many."""
        count = len(self.sessions)
        self.sessions.clear()
        return count
