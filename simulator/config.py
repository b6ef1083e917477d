"""Configuration of one simulator instance, built from settings or directly in tests."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


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
    #: Bearer token the admin endpoint ``/_sim`` requires (None: no token, loopback only).
    admin_token: str | None = None

    def check_exposure(self) -> None:
        """Refuse to serve ``/_sim`` without a token on anything but loopback."""
        if self.admin_token is None and not is_loopback(self.host):
            raise ValueError(
                f"the simulator would serve its admin endpoint /_sim on {self.host} without "
                "a token: set SFE_SIM_ADMIN_TOKEN, or keep SFE_SIM_HOST on 127.0.0.1"
            )

    @property
    def base_url(self) -> str:
        """The instance URL clients see (``https://127.0.0.1:8443``)."""
        return f"https://{self.host}:{self.port}"
