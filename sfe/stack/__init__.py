"""The local stack without Docker: a real Kafka broker and a real PostgreSQL cluster on loopback.

``up`` starts what is not running and leaves what is; ``down`` stops exactly what
``up`` started, by PID; ``status`` reports each service with its PID and URL. State
and logs live in one folder (``SFE_STATE_DIR``, ``.stack/`` by default).
"""

from __future__ import annotations

from sfe.privacy.setup import ensure_local_master_key
from sfe.settings import Settings
from sfe.stack.kafka import KafkaBroker
from sfe.stack.postgres import PostgresCluster
from sfe.stack.process import ServiceStatus, StackError

__all__ = [
    "KafkaBroker",
    "PostgresCluster",
    "ServiceStatus",
    "StackError",
    "down",
    "services",
    "status",
    "up",
]


def services(settings: Settings) -> list[KafkaBroker | PostgresCluster]:
    """The services of the stack, in start order."""
    return [PostgresCluster(settings), KafkaBroker(settings)]


def up(settings: Settings) -> list[tuple[ServiceStatus, bool]]:
    """Start every service that is not running; return each status and whether it was started now."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    if settings.privacy_encryption and settings.privacy_master_key is None:
        ensure_local_master_key(settings)
    results = []
    for service in services(settings):
        started = service.start()
        results.append((service.status(), started))
    return results


def down(settings: Settings) -> list[tuple[str, bool]]:
    """Stop our services by PID, in reverse start order; return which ones were running."""
    return [(service.name, service.stop()) for service in reversed(services(settings))]


def status(settings: Settings) -> list[ServiceStatus]:
    """Status of every service."""
    return [service.status() for service in services(settings)]
