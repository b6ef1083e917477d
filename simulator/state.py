"""One simulator instance: the org, its event bus, tokens, budget, faults and open jobs.

:func:`build` wires the parts from a :class:`~simulator.config.SimConfig`, restoring
records and retained events from SQLite when a file is configured, and seeding the
integration user on first start.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulator import tls
from simulator.auth import Authority
from simulator.config import SimConfig
from simulator.events import EventBus
from simulator.limits import DailyBudget, Faults
from simulator.org import Org
from simulator.query import Cursor
from simulator.storage import MemoryRecorder, Recorder, SqliteRecorder


@dataclass
class Simulator:
    """Everything the HTTP handlers share."""

    config: SimConfig
    org: Org
    bus: EventBus
    authority: Authority
    budget: DailyBudget
    recorder: Recorder
    tls_files: tls.TlsFiles
    jwt_key_file: Path | None
    faults: Faults = field(default_factory=Faults)
    cursors: dict[str, Cursor] = field(default_factory=dict)
    jobs: dict[str, Any] = field(default_factory=dict)
    streaming: Any = None

    def user_id(self) -> str:
        """The integration user's id."""
        return self.authority.users[self.config.username]


def _seed_user(org: Org, config: SimConfig) -> str:
    for record in org.records["User"].values():
        if record["Username"] == config.username:
            return str(record["Id"])
    with org.transaction("", "") as tx:
        user_id = tx.create(
            "User",
            {"Username": config.username, "LastName": "Integration", "FirstName": "SFE",
             "Email": "integration@sfe.local", "Alias": "sfeint"},
        )  # fmt: skip
        tx.changes.clear()
    org.records["User"][user_id].update(CreatedById=user_id, LastModifiedById=user_id, OwnerId=None)
    return user_id


def build(config: SimConfig) -> Simulator:
    """A ready simulator for ``config`` (certificates created in its state folder)."""
    files = tls.ensure_tls(config.state_dir, config.host)
    jwt_key: Path | None = None
    cert = config.jwt_cert_file
    if cert is None:
        jwt_key, cert = tls.ensure_jwt_pair(config.state_dir)
    recorder: Recorder = (
        SqliteRecorder(config.sqlite_file) if config.sqlite_file else MemoryRecorder()
    )
    bus = EventBus(config.event_retention_seconds)
    for stream, through in recorder.load_purge_positions().items():
        bus.set_purged_through(stream, through)
    for event in recorder.load_events():
        bus.restore(event)
    bus.on_append = recorder.save_event
    bus.on_purge = recorder.purge_events
    org = Org(bus, recorder, config.overflow_threshold)
    user_id = _seed_user(org, config)
    authority = Authority(config, {config.username: user_id}, cert)
    budget = DailyBudget(config.daily_api_limit)
    return Simulator(config, org, bus, authority, budget, recorder, files, jwt_key)
