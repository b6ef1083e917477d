"""Persistence of the org: an in-memory recorder (the default) and a SQLite file recorder.

Both implement :class:`Recorder`; the org writes every committed record and every
published event through it and loads them back at start, so with a SQLite file the
records, the commit counter and the retained events survive a restart.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any, Protocol

from simulator.events import BusEvent


class Recorder(Protocol):
    """Where the org keeps its state between runs."""

    def load_records(self) -> list[dict[str, Any]]:
        """Every stored record."""
        ...

    def load_commit_number(self) -> int:
        """The last commit number handed out."""
        ...

    def save_records(
        self, records: list[dict[str, Any]], removed: list[str], commit_number: int
    ) -> None:
        """Store changed records, forget removed ones, remember the commit number."""
        ...

    def load_events(self) -> list[BusEvent]:
        """Retained events, oldest first per stream."""
        ...

    def load_purge_positions(self) -> dict[str, int]:
        """Per stream, the highest replay id already purged."""
        ...

    def save_event(self, event: BusEvent) -> None:
        """Store one published event."""
        ...

    def purge_events(self, stream: str, through: int) -> None:
        """Forget events of ``stream`` up to replay id ``through``."""
        ...


class MemoryRecorder:
    """Keeps nothing: state lives only in the process."""

    def load_records(self) -> list[dict[str, Any]]:
        """Nothing is stored."""
        return []

    def load_commit_number(self) -> int:
        """Counting starts at zero."""
        return 0

    def save_records(
        self, records: list[dict[str, Any]], removed: list[str], commit_number: int
    ) -> None:
        """Nothing to do."""

    def load_events(self) -> list[BusEvent]:
        """Nothing is stored."""
        return []

    def load_purge_positions(self) -> dict[str, int]:
        """Nothing is stored."""
        return {}

    def save_event(self, event: BusEvent) -> None:
        """Nothing to do."""

    def purge_events(self, stream: str, through: int) -> None:
        """Nothing to do."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (id TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
  stream TEXT NOT NULL, replay_id INTEGER NOT NULL, channel TEXT NOT NULL,
  created REAL NOT NULL, schema TEXT NOT NULL, payload TEXT NOT NULL,
  PRIMARY KEY (stream, replay_id)
);
"""


class SqliteRecorder:
    """Stores records, the commit counter and retained events in one SQLite file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def load_records(self) -> list[dict[str, Any]]:
        """Every stored record."""
        return [json.loads(body) for (body,) in self._db.execute("SELECT body FROM records")]

    def load_commit_number(self) -> int:
        """The last commit number handed out."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'commit_number'").fetchone()
        return int(row[0]) if row else 0

    def save_records(
        self, records: list[dict[str, Any]], removed: list[str], commit_number: int
    ) -> None:
        """Store changed records in one SQLite transaction."""
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR REPLACE INTO records (id, body) VALUES (?, ?)",
                [(r["Id"], json.dumps(r)) for r in records],
            )
            self._db.executemany("DELETE FROM records WHERE id = ?", [(i,) for i in removed])
            self._db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('commit_number', ?)",
                (str(commit_number),),
            )
            self._db.execute("COMMIT")

    def load_events(self) -> list[BusEvent]:
        """Retained events, oldest first per stream."""
        rows = self._db.execute(
            "SELECT stream, replay_id, channel, created, schema, payload FROM events "
            "ORDER BY stream, replay_id"
        )
        return [BusEvent(s, r, c, t, json.loads(p), sc) for s, r, c, t, sc, p in rows]

    def load_purge_positions(self) -> dict[str, int]:
        """Per stream, the highest replay id already purged."""
        rows = self._db.execute("SELECT key, value FROM meta WHERE key LIKE 'purged:%'")
        return {key.removeprefix("purged:"): int(value) for key, value in rows}

    def save_event(self, event: BusEvent) -> None:
        """Store one published event."""
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO events VALUES (?, ?, ?, ?, ?, ?)",
                (event.stream, event.replay_id, event.channel, event.created, event.schema,
                 json.dumps(event.payload)),
            )  # fmt: skip

    def purge_events(self, stream: str, through: int) -> None:
        """Forget events of ``stream`` up to ``through`` and remember the position."""
        with self._lock:
            self._db.execute(
                "DELETE FROM events WHERE stream = ? AND replay_id <= ?", (stream, through)
            )
            self._db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                (f"purged:{stream}", str(through)),
            )

    def close(self) -> None:
        """Close the database file."""
        self._db.close()
