"""Configuration of one simulator instance, built from settings or directly in tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ConnectedApp:
    """The connected app clients authenticate as."""

    client_id: str = "sfe-local-client"
    client_secret: str = "sfe-local-secret"


@dataclass(frozen=True)
class SimConfig:
    """Everything a running simulator needs to know."""

    state_dir: Path
    host: str = "127.0.0.1"
    port: int = 8443
    api_version: str = "62.0"
    username: str = "integration@sfe.local"
    password: str = "sfe-local-password"
    app: ConnectedApp = field(default_factory=ConnectedApp)
    jwt_cert_file: Path | None = None
    #: More certificates the connected app accepts JWT assertions for (a key rotation).
    jwt_extra_cert_files: tuple[Path, ...] = ()
    token_ttl_seconds: float = 7200.0
    daily_api_limit: int = 100_000
    event_retention_seconds: float = 72 * 3600.0
    sqlite_file: Path | None = None
    long_poll_seconds: float = 110.0
    overflow_threshold: int = 100_000
    bulk_batch_size: int = 200

    @property
    def base_url(self) -> str:
        """The instance URL clients see (``https://127.0.0.1:8443``)."""
        return f"https://{self.host}:{self.port}"
