"""A Kafka broker and a PostgreSQL cluster of the soak's own, which it may restart at will.

The shared stack (``sfe stack up``: 127.0.0.1:9092 and 127.0.0.1:55432) is never
touched. :class:`PrivateStack` starts :class:`~sfe.stack.KafkaBroker` and
:class:`~sfe.stack.PostgresCluster` from a :class:`~sfe.settings.Settings` whose
state folder is a temporary directory and whose ports are free ones, stops and
starts them again on demand (the broker and PostgreSQL restart faults), and at the
end stops both by PID and removes the directory.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from pydantic import SecretStr

from sfe import db
from sfe.demo.processes import free_port
from sfe.settings import Settings
from sfe.stack import KafkaBroker, PostgresCluster

#: Heap of the soak's broker (the shared one has its own; the machine is small).
BROKER_HEAP = "512m"


class PrivateStack:
    """The soak's own broker and cluster, in a temporary folder on free loopback ports."""

    def __init__(self, base: Settings, root: Path | None = None) -> None:
        """Derive the private settings from ``base`` (models, versions, binaries)."""
        self.root = Path(root or tempfile.mkdtemp(prefix="sfe-soak-stack-"))
        # PostgreSQL runs as the unprivileged postgres account when we are root: it must
        # be able to enter the folder, or its data would go to /var/tmp instead.
        os.chmod(self.root, 0o755)
        kafka_port, controller_port, pg_port = free_port(), free_port(), free_port()
        self.settings = base.model_copy(
            update={
                "state_dir": self.root,
                "kafka_bootstrap": f"127.0.0.1:{kafka_port}",
                "kafka_controller_port": controller_port,
                "kafka_heap": BROKER_HEAP,
                "database_url": SecretStr(
                    f"postgresql+psycopg://sfe:sfe-soak@127.0.0.1:{pg_port}/sfe"
                ),
                "model_dir": base.models_path.resolve(),
                # Every process on a port of its own choosing (restarts included).
                "metrics_port": 0,
            }
        )
        self.broker = KafkaBroker(self.settings)
        self.cluster = PostgresCluster(self.settings)
        self._reuse_classpath(KafkaBroker(base))

    def _reuse_classpath(self, shared: KafkaBroker) -> None:
        """Copy the shared broker's resolved classpath: no Maven run for a temporary broker."""
        if shared.classpath_file.exists():
            self.broker.home.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shared.classpath_file, self.broker.classpath_file)

    def start(self) -> None:
        """Start PostgreSQL (migrated) and the broker."""
        self.cluster.start()
        db.upgrade(self.settings)
        self.broker.start()

    def restart_broker(self, down_seconds: float) -> None:
        """Stop the broker (controlled shutdown), leave it down ``down_seconds``, start it."""
        self.broker.stop()
        time.sleep(down_seconds)
        self.broker.start()

    def restart_postgres(self, down_seconds: float) -> None:
        """Stop PostgreSQL (fast shutdown), leave it down ``down_seconds``, start it."""
        self.cluster.stop()
        time.sleep(down_seconds)
        self.cluster.start()

    def pids(self) -> dict[str, int | None]:
        """The broker's and the postmaster's PIDs (``None`` when not running)."""
        return {
            "kafka": self.broker.status().pid if self.broker.status().running else None,
            "postgres": self.cluster.status().pid if self.cluster.status().running else None,
        }

    def stop(self, remove: bool = True) -> None:
        """Stop both by PID (the broker first) and remove the folder unless asked not to."""
        try:
            self.broker.stop()
        finally:
            try:
                self.cluster.stop()
            finally:
                if remove:
                    shutil.rmtree(self.root, ignore_errors=True)
