"""Secrets: a masked value type, and sources that read from env, mounted files or Vault.

A secret named ``X`` comes from, in this order:

1. ``SFE_X_FILE``: a mounted file (Kubernetes/Docker secret). It is re-read whenever its
   modification time or size changes, so replacing the file rotates the secret without
   a restart. Trailing newlines are stripped (PEM keys keep their body).
2. ``SFE_X``: the value itself, or a Vault reference ``vault://<mount>/<path>#<key>``
   read from HashiCorp Vault's KV version 2 engine at ``$VAULT_ADDR`` with
   ``$VAULT_TOKEN`` (``GET /v1/<mount>/data/<path>``, answer
   ``{"data": {"data": {...}, "metadata": {...}}}``); the value is cached for
   ``cache_seconds`` and read again afterwards.

:class:`Secret` is the type of every secret setting: its ``repr`` and ``str`` are
``Secret('****')`` and ``****``. Resolved values are registered with
:func:`known_secrets` so the logging filter (:mod:`sfe.logging`) can redact them
wherever they would appear. Errors name the variable or the reference, never the value.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests
from pydantic import SecretStr

VAULT_SCHEME = "vault://"
_VAULT_REF = re.compile(r"^vault://(?P<mount>[^/#\s]+)/(?P<path>[^#\s]+)#(?P<key>[^#\s]+)$")
_MASK = "****"
# Shorter values are too common to redact by literal match (they would mangle log text).
_MIN_REDACTED_LENGTH = 8
# The most values kept for redaction (oldest forgotten first: expired access tokens).
_MAX_KNOWN = 1024
_known: dict[str, None] = {}
_known_frozen: frozenset[str] = frozenset()
_known_lock = threading.Lock()


class Secret(SecretStr):
    """A secret string whose ``repr``/``str`` never show the value: ``Secret('****')``."""

    def _display(self) -> str:
        return _MASK


class SecretUnavailable(RuntimeError):
    """A secret could not be read; the message names where it was looked for, not the value."""


def remember(value: str) -> str:
    """Register ``value`` (and each of its lines) for redaction from logs; returns it."""
    global _known_frozen
    parts = {p.strip() for p in (value, *value.splitlines())}
    fresh = [
        part
        for part in parts
        if len(part) >= _MIN_REDACTED_LENGTH and not part.startswith("-----") and part not in _known
    ]
    if fresh:
        with _known_lock:
            for part in fresh:
                _known[part] = None
            while len(_known) > _MAX_KNOWN:
                del _known[next(iter(_known))]
            _known_frozen = frozenset(_known)
    return value


def known_secrets() -> frozenset[str]:
    """The secret values this process has resolved (for the log redaction filter)."""
    return _known_frozen


@dataclass(frozen=True)
class VaultRef:
    """A ``vault://<mount>/<path>#<key>`` reference to one key of a KV v2 secret."""

    mount: str
    path: str
    key: str

    @classmethod
    def parse(cls, reference: str) -> VaultRef:
        """Parse ``vault://mount/path#key``; raises :class:`SecretUnavailable` if malformed."""
        match = _VAULT_REF.match(reference.strip())
        if not match:
            raise SecretUnavailable(
                "expected a Vault reference vault://<mount>/<path>#<key>, got a malformed one"
            )
        return cls(match["mount"], match["path"].strip("/"), match["key"])

    def __str__(self) -> str:
        return f"vault://{self.mount}/{self.path}#{self.key}"


class VaultClient:
    """A minimal HashiCorp Vault KV v2 reader over plain HTTP (``requests``)."""

    def __init__(
        self,
        address: str,
        token: str,
        ca_bundle: str | None = None,
        namespace: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        """Read from the Vault at ``address`` (``VAULT_ADDR``) with ``token``."""
        self.address = address.rstrip("/")
        self._token = Secret(token)
        self._session = requests.Session()
        self._session.trust_env = False
        if ca_bundle:
            self._session.verify = ca_bundle
        self._namespace = namespace
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"VaultClient({self.address!r})"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> VaultClient:
        """A client from ``VAULT_ADDR``, ``VAULT_TOKEN`` (or ``VAULT_TOKEN_FILE``), ``VAULT_CACERT``.

        ``VAULT_NAMESPACE`` (Vault Enterprise) is sent when set.
        """
        env = os.environ if environ is None else environ
        address = env.get("VAULT_ADDR", "")
        token = env.get("VAULT_TOKEN", "")
        if not token and env.get("VAULT_TOKEN_FILE"):
            token = Path(env["VAULT_TOKEN_FILE"]).read_text().strip()
        if not address or not token:
            raise SecretUnavailable("a vault:// secret needs VAULT_ADDR and VAULT_TOKEN")
        remember(token)
        return cls(address, token, env.get("VAULT_CACERT"), env.get("VAULT_NAMESPACE"))

    def call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        what: str | None = None,
    ) -> Any:
        """The JSON answer of ``method`` on ``/v1/<path>``; :class:`SecretUnavailable` otherwise.

        The error names ``what`` (default: the path) and the HTTP status, never the token
        or the body.
        """
        what = what or path
        url = f"{self.address}/v1/{path}"
        headers = {"X-Vault-Token": self._token.get_secret_value()}
        if self._namespace:
            headers["X-Vault-Namespace"] = self._namespace
        try:
            response = self._session.request(
                method, url, headers=headers, json=body, timeout=self.timeout
            )
        except requests.RequestException as exc:
            raise SecretUnavailable(f"{what}: Vault unreachable ({type(exc).__name__})") from None
        if response.status_code != 200:
            raise SecretUnavailable(f"{what}: Vault answered HTTP {response.status_code}")
        try:
            return response.json()
        except ValueError:
            raise SecretUnavailable(f"{what}: Vault's answer is not JSON") from None

    def read(self, ref: VaultRef) -> str:
        """The value of ``ref``'s key in the latest version of its KV v2 secret."""
        answer = self.call("GET", f"{quote(ref.mount)}/data/{quote(ref.path)}", what=str(ref))
        try:
            data: Any = answer["data"]["data"]
        except (ValueError, KeyError, TypeError):
            raise SecretUnavailable(f"{ref}: not a KV version 2 answer") from None
        if not isinstance(data, dict) or not isinstance(data.get(ref.key), str):
            raise SecretUnavailable(f"{ref}: the secret has no string key {ref.key!r}")
        return remember(data[ref.key])


class SecretSource:
    """One secret, read lazily from a file, a literal value or Vault, and kept fresh.

    ``get()`` returns the current value (``None`` when nothing is configured). A file is
    re-read when its mtime or size changes; a Vault value is re-read after
    ``cache_seconds``. Thread-safe.
    """

    def __init__(
        self,
        name: str,
        value: str | SecretStr | None = None,
        file: Path | None = None,
        vault: Callable[[], VaultClient] = VaultClient.from_env,
        cache_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``name`` is the variable named in errors (``SFE_INGRESS_SECRET``)."""
        self.name = name
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        self._value = Secret(raw) if raw else None
        self.file = file
        self._vault = vault
        self.cache_seconds = cache_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: str | None = None
        self._file_stamp: tuple[int, int, int] | None = None
        self._fetched_at: float | None = None
        if raw and not raw.startswith(VAULT_SCHEME):
            remember(raw)

    def __repr__(self) -> str:
        where = f"file={str(self.file)!r}" if self.file else "value=Secret('****')"
        return f"SecretSource({self.name!r}, {where})"

    @property
    def configured(self) -> bool:
        """Whether a file or a value is configured."""
        return self.file is not None or self._value is not None

    @classmethod
    def from_env(cls, name: str, environ: Mapping[str, str] | None = None) -> SecretSource:
        """The source of ``name`` (``SFE_X``) from ``SFE_X_FILE`` or ``SFE_X``."""
        env = os.environ if environ is None else environ
        file = env.get(name + "_FILE")
        return cls(name, env.get(name), Path(file) if file else None)

    def get(self) -> str | None:
        """The current value, re-read if the file changed or the Vault cache expired."""
        with self._lock:
            if self.file is not None:
                return self._from_file(self.file)
            if self._value is None:
                return None
            raw = self._value.get_secret_value()
            if not raw.startswith(VAULT_SCHEME):
                return raw
            now = self._clock()
            if (
                self._cached is None
                or self._fetched_at is None
                or now - self._fetched_at >= self.cache_seconds
            ):
                ref = VaultRef.parse(raw)
                try:
                    self._cached = self._vault().read(ref)
                except SecretUnavailable as exc:
                    raise SecretUnavailable(f"{self.name}: {exc}") from None
                self._fetched_at = now
            return self._cached

    def require(self) -> str:
        """The current value; raises :class:`SecretUnavailable` naming the variable if unset."""
        value = self.get()
        if not value:
            raise SecretUnavailable(f"{self.name} (or {self.name}_FILE) is not set")
        return value

    def _from_file(self, file: Path) -> str:
        try:
            status = file.stat()
            stamp = (status.st_mtime_ns, status.st_size, status.st_ino)
            if self._cached is None or stamp != self._file_stamp:
                self._cached = remember(file.read_text().rstrip("\r\n"))
                self._file_stamp = stamp
        except OSError as exc:
            raise SecretUnavailable(
                f"{self.name}_FILE: cannot read {file} ({exc.strerror or type(exc).__name__})"
            ) from None
        return self._cached


class SecretSet:
    """The values accepted during a rotation: the current secret and, optionally, the previous."""

    def __init__(self, *sources: SecretSource) -> None:
        """Accept any configured value of ``sources`` (current first)."""
        self.sources = sources

    def __repr__(self) -> str:
        return f"SecretSet({', '.join(s.name for s in self.sources)})"

    def values(self) -> tuple[bytes, ...]:
        """The non-empty values, current first."""
        found = (source.get() for source in self.sources)
        return tuple(value.encode() for value in found if value)


def resolve(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The value of secret ``name`` (``SFE_X``) from ``SFE_X_FILE``, ``SFE_X`` or Vault, now."""
    return SecretSource.from_env(name, environ).get()
