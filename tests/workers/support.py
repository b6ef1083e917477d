"""Helpers of the worker tests: facts to append, events to read back, worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from schema_registry.codec import Codec
from schema_registry.events import ChangeEventHeader, ChangeType, Event, RecordChanged
from sfe.settings import Settings

INTEGRATION_USER = "005000000000INTAAA"
SALES_USER = "005000000000USRAAA"
_commit_numbers = iter(range(1, 10**9))


def change(
    entity: str,
    record_id: str,
    change_type: ChangeType,
    fields: dict[str, Any],
    changed: Sequence[str] | None = None,
    *,
    echo: bool = False,
) -> RecordChanged:
    """A CDC change as the ingestor appends it (a fresh event uuid each time)."""
    now = datetime.now(UTC)
    event_uuid = str(uuid.uuid4())
    return RecordChanged(
        id=str(uuid.uuid4()),
        source="test",
        subject=record_id,
        time=now,
        header=ChangeEventHeader(
            entity_name=entity,
            record_ids=(record_id,),
            change_type=change_type,
            change_origin="com/salesforce/api/rest/62.0" + (";client=sfe-pipeline" if echo else ""),
            transaction_key=event_uuid,
            sequence_number=1,
            commit_timestamp=now,
            commit_number=next(_commit_numbers),
            commit_user=INTEGRATION_USER if echo else SALES_USER,
            changed_fields=tuple(changed if changed is not None else fields),
        ),
        replay_id="1",
        event_uuid=event_uuid,
        fields=fields,
        is_echo=echo,
    )


def append(
    settings: Settings,
    prefix: str,
    topic: str,
    events: Iterable[Event],
    *,
    transactional_abort: bool = False,
) -> None:
    """Append ``events`` (keyed by subject) to the prefixed ``topic``.

    With ``transactional_abort`` they are written in a transaction that is then aborted:
    physically in the log, invisible to ``read_committed`` readers.
    """
    codec = Codec(topic_prefix=prefix)
    config: dict[str, Any] = {"bootstrap.servers": settings.kafka_bootstrap, "linger.ms": 5}
    if transactional_abort:
        config["transactional.id"] = f"test-abort-{uuid.uuid4()}"
    producer = Producer(config)
    if transactional_abort:
        producer.init_transactions(30)
        producer.begin_transaction()
    for event in events:
        encoded = codec.encode(prefix + topic, event)
        producer.produce(
            prefix + topic,
            key=event.subject.encode(),
            value=encoded.value,
            headers=list(encoded.headers),
        )
    if transactional_abort:
        producer.flush(30)
        producer.abort_transaction(30)
    else:
        assert producer.flush(30) == 0


def append_raw(settings: Settings, topic: str, key: bytes, value: bytes) -> None:
    """Append bytes that are no event at all."""
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0


def read_events(
    settings: Settings,
    prefix: str,
    topic: str,
    until: Callable[[list[Event]], bool] = lambda events: False,
    timeout: float = 60.0,
    settle: float = 0.0,
) -> list[Event]:
    """Committed events of the prefixed ``topic``, read until ``until`` holds or time is up.

    ``settle`` keeps reading that many seconds after ``until`` first holds, so a test can
    see that nothing more (a duplicate) arrives.
    """
    codec = Codec(topic_prefix=prefix)
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"test-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe([prefix + topic])
    events: list[Event] = []
    deadline = time.monotonic() + timeout
    settled_at: float | None = None
    try:
        while time.monotonic() < deadline:
            if settled_at is None and until(events):
                settled_at = time.monotonic() + settle
            if settled_at is not None and time.monotonic() >= settled_at:
                break
            for message in consumer.consume(1000, 0.5):
                if message.error() is None:
                    events.append(
                        codec.decode(str(message.topic()), message.value(), message.headers())
                    )
    finally:
        consumer.close()
    return events


class WorkerProcess:
    """``sfe worker`` (or another ``sfe`` command) as a child process of the test."""

    def __init__(self, args: Sequence[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._file = log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sfe.cli", *args],
            env={**os.environ, **env},
            stdout=self._file,
            stderr=subprocess.STDOUT,
        )

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, no commit."""
        self.process.kill()
        self.process.wait(30)

    def stop(self) -> int:
        """SIGTERM, then wait for a clean exit (killed after 30 s)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)
        self._file.close()
        return int(self.process.returncode)

    def output(self) -> str:
        """What the process printed so far."""
        self._file.flush()
        return self.log.read_text(errors="replace")


def wait_for_samples(port: int, family: str, timeout: float = 30, **labels: str) -> list[Sample]:
    """The samples of metric ``family`` with ``labels`` that a process on ``port`` serves.

    Asks ``/metrics`` once a second until some appear or ``timeout`` passes (then the
    empty list); a process still starting (refusing connections) is waited for too.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
                body = reply.read().decode()
        except urllib.error.URLError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
            continue
        found = [
            sample
            for metric in text_string_to_metric_families(body)
            if metric.name == family
            for sample in metric.samples
            if all(sample.labels.get(name) == value for name, value in labels.items())
        ]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(1)
