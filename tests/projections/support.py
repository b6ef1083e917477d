"""A minimal projection for testing the runner: one row per record, no unique key.

Without a unique key, any re-application of an event would show up as a duplicate
row, so these tests see exactly what the runner's offset tracking guarantees.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence

from confluent_kafka import Message
from sqlalchemy import Connection, create_engine, text

from projections.runner import ProjectionRunner


class RecordingProjection:
    """Writes (topic, partition, offset, value) of every record not marked 'ignore'."""

    def __init__(self, name: str, topics: Sequence[str], table: str) -> None:
        self.name = name
        self.topics = list(topics)
        self.table = table

    def create_table(self, connection: Connection) -> None:
        connection.execute(
            text(
                f"CREATE TABLE IF NOT EXISTS {self.table} "
                "(topic text, part int, off bigint, value text)"
            )
        )

    def project(self, connection: Connection, messages: Sequence[Message]) -> None:
        rows = [
            {
                "topic": m.topic(),
                "part": m.partition(),
                "off": m.offset(),
                "value": (m.value() or b"").decode(),
            }
            for m in messages
            if not (m.value() or b"").startswith(b"ignore")
        ]
        if rows:
            connection.execute(
                text(f"INSERT INTO {self.table} VALUES (:topic, :part, :off, :value)"), rows
            )


def main() -> None:
    """Run the projection slowly forever (a test SIGKILLs it)."""
    bootstrap, url, name, topic, table = sys.argv[1:6]
    engine = create_engine(url)
    runner = ProjectionRunner(
        bootstrap, engine, RecordingProjection(name, [topic], table), batch_size=25
    )
    print("running", flush=True)
    stop = threading.Event()
    while not stop.is_set():
        runner.process_batch()
        time.sleep(0.02)


if __name__ == "__main__":
    main()
