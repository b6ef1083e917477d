"""The ingestor: streaming messages in, events appended to Kafka exactly once, recoveries counted.

:meth:`Ingestor.handle` takes one CometD message as Salesforce sends it. It splits
the message into per-record facts, drops redeliveries, turns gap and overflow events
into snapshots read back from Salesforce, encodes everything with the codec and
buffers it; :meth:`Ingestor.flush` appends the buffer together with the replay id of
every channel it covers in one Kafka transaction. A message that cannot be read
goes to ``dlq.ingest`` with the raw bytes and the reason, inside the same
transaction, so the checkpoint moves past it and nothing is lost or retried forever.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from schema_registry.codec import Codec
from schema_registry.errors import SchemaError
from schema_registry.events import (
    Event,
    PlatformEventPublished,
    RecordChanged,
)
from sfe import metrics
from streams.ingest.appender import (
    Checkpoint,
    DeliveryWindow,
    OutboundRecord,
    TransactionalAppender,
    windows_from,
)
from streams.ingest.changes import (
    EchoPolicy,
    IngestedFact,
    MalformedStreamingMessage,
    split_message,
)
from streams.ingest.events import (
    change_event,
    dead_letter,
    platform_event,
    recovery_cause,
    snapshot_event,
)

log = logging.getLogger(__name__)

DLQ_TOPIC = "dlq.ingest"


class RecordReader(Protocol):
    """Reads records back from Salesforce after a gap or overflow event."""

    async def read_records(
        self, entity: str, record_ids: Sequence[str]
    ) -> dict[str, Mapping[str, Any] | None]:
        """Current values of ``record_ids`` (``None`` for a deleted or missing record)."""

    async def read_changed_since(self, entity: str, since: datetime) -> list[Mapping[str, Any]]:
        """Every record of ``entity`` modified at or after ``since``, deleted ones included."""


@dataclass(frozen=True)
class IngestSettings:
    """Batching and naming of one ingestor."""

    batch_max_records: int = 500
    topic_prefix: str = ""


class Ingestor:
    """Turns streaming messages into Kafka records, appended exactly once."""

    def __init__(
        self,
        appender: TransactionalAppender,
        codec: Codec,
        echo_policy: EchoPolicy,
        reader: RecordReader | None = None,
        config: IngestSettings | None = None,
    ) -> None:
        """Wire the ingestor; call :meth:`start` before handling messages."""
        self.appender = appender
        self.codec = codec
        self.echo_policy = echo_policy
        self.reader = reader
        self.config = config or IngestSettings()
        self.checkpoints: dict[str, Checkpoint] = {}
        self._windows: dict[str, DeliveryWindow] = {}
        self._pending: list[OutboundRecord] = []
        self._pending_channels: dict[str, int | str] = {}
        self._event_times: dict[str, str] = {}
        self._flush_lock = asyncio.Lock()

    def start(self) -> dict[str, Checkpoint]:
        """Fence a dead predecessor and return the replay id to resume each channel from."""
        self.checkpoints = self.appender.start()
        self._windows = windows_from(self.checkpoints)
        return dict(self.checkpoints)

    def reset_to_committed(self) -> None:
        """Forget everything not committed (after a failed append): buffer, windows, times."""
        self._pending, self._pending_channels, self._event_times = [], {}, {}
        self._windows = windows_from(self.checkpoints)

    def replay_id_for(self, channel: str, default: int = -1) -> int | str:
        """Where to subscribe ``channel``: its committed replay id, else ``default`` (-1 new, -2 all)."""
        checkpoint = self.checkpoints.get(channel)
        return default if checkpoint is None else checkpoint.replay_id

    async def handle(self, message: Mapping[str, Any]) -> None:
        """Process one streaming message; flush when the batch is full."""
        channel = str(message.get("channel", "?"))
        replay_id = _replay_id(message)
        try:
            facts = split_message(message, self.echo_policy)
            events = await self._events_for(facts)
            encoded = [
                self._encode(_topic_of(event, self.config.topic_prefix), event) for event in events
            ]
        except (MalformedStreamingMessage, SchemaError, ValueError, KeyError, TypeError) as exc:
            self._dead_letter(channel, message, exc, replay_id)
        else:
            self._pending.extend(encoded)
        if replay_id is not None:
            self._pending_channels[channel] = replay_id
        if len(self._pending) >= self.config.batch_max_records:
            await self.flush()

    async def append_delivery(
        self, channel: str, delivery_id: str, events: Sequence[Event]
    ) -> bool:
        """Append the events of one push delivery (Outbound Message, webhook) and commit at once.

        ``delivery_id`` identifies the delivery (Salesforce retries an Outbound Message
        with the same notification id): a repeat is acknowledged without appending
        again. Returns False for such a repeat. The caller acknowledges the sender only
        after this returns, so an unacknowledged delivery is retried, never lost.
        """
        window = self._window(channel)
        if window.seen(delivery_id):
            metrics.INGEST_DUPLICATES.labels(channel=channel).inc()
            return False
        encoded = [
            self._encode(_topic_of(event, self.config.topic_prefix), event) for event in events
        ]
        async with self._flush_lock:
            recent = (*window.snapshot(limit=255), delivery_id)
            checkpoint = Checkpoint(channel, delivery_id, recent)
            await asyncio.to_thread(self.appender.append, encoded, [checkpoint])
            window.add(delivery_id)  # only once committed: a failed append is retried
            self.checkpoints[channel] = checkpoint
        metrics.INGESTED.labels(channel=channel).inc(len(events))
        for record in encoded:
            metrics.EVENTS_PRODUCED.labels(topic=record.topic).inc()
        return True

    async def dead_letter_delivery(
        self, channel: str, raw: bytes, reason: str, error_type: str
    ) -> None:
        """Keep an unreadable push delivery in ``dlq.ingest`` with the reason, committed at once."""
        metrics.DEAD_LETTERS.labels(topic=DLQ_TOPIC, reason=error_type).inc()
        event = dead_letter(channel, raw, reason, error_type, None)
        record = self._encode(self.config.topic_prefix + DLQ_TOPIC, event)
        async with self._flush_lock:
            await asyncio.to_thread(self.appender.append, [record], [])

    async def flush(self) -> int:
        """Append the buffer and the channels' replay ids in one transaction; return records written."""
        async with self._flush_lock:
            if not self._pending and not self._pending_channels:
                return 0
            records, channels = self._pending, self._pending_channels
            self._pending, self._pending_channels = [], {}
            checkpoints = [
                Checkpoint(
                    channel,
                    replay_id,
                    self._window(channel).snapshot(),
                    self._event_times.get(channel) or self._previous_event_time(channel),
                )
                for channel, replay_id in channels.items()
            ]
            await asyncio.to_thread(self.appender.append, records, checkpoints)
            for checkpoint in checkpoints:
                self.checkpoints[checkpoint.channel] = checkpoint
            for record in records:
                metrics.EVENTS_PRODUCED.labels(topic=record.topic).inc()
            return len(records)

    def _previous_event_time(self, channel: str) -> str | None:
        previous = self.checkpoints.get(channel)
        return previous.event_time if previous else None

    async def reconcile_since(self, channel: str, entity: str, since: datetime) -> int:
        """Publish snapshots of every ``entity`` record changed since ``since`` (after a lost window)."""
        if self.reader is None:
            raise ValueError("reconciling a missed window needs a record reader")
        metrics.INGEST_RECOVERIES.labels(kind="replay_expired").inc()
        records = await self.reader.read_changed_since(entity, since)
        identity = f"{channel}@{since.isoformat()}"
        marker = recovery_cause(entity, since, identity, "sfe.ingest.recovery")
        topic = _topic_of(marker, self.config.topic_prefix)
        snapshots = [snapshot_event(marker, str(record["Id"]), record) for record in records]
        self._pending.extend(self._encode(topic, event) for event in snapshots)
        await self.flush()
        return len(snapshots)

    async def _events_for(self, facts: list[IngestedFact]) -> list[Event]:
        events: list[Event] = []
        for fact in facts:
            window = self._window(fact.channel)
            if window.seen(fact.delivery_key):
                metrics.INGEST_DUPLICATES.labels(channel=fact.channel).inc()
                continue
            window.add(fact.delivery_key)
            metrics.INGESTED.labels(channel=fact.channel).inc()
            if fact.kind == "platform_event":
                events.append(platform_event(fact))
                continue
            event = change_event(fact)
            events.append(event)
            if fact.is_overflow:
                events.extend(await self._reconcile_entity(fact.channel, event))
            elif fact.is_gap:
                events.extend(await self._reread(event))
        return events

    async def _reread(self, gap: RecordChanged) -> list[RecordChanged]:
        """After a gap event: the record as it is now, read over REST."""
        metrics.INGEST_RECOVERIES.labels(kind="gap").inc()
        if self.reader is None:
            raise ValueError("a gap event needs a record reader to re-read the record")
        found = await self.reader.read_records(gap.header.entity_name, [gap.subject])
        return [snapshot_event(gap, gap.subject, found.get(gap.subject))]

    async def _reconcile_entity(self, channel: str, overflow: RecordChanged) -> list[RecordChanged]:
        """After an overflow event: every record of the entity changed since the last change we had.

        The overflowing transaction's changes were committed before its overflow event
        and after the previous change of the channel, so that is where the query starts
        (a minute before the overflow when the channel has no history yet).
        """
        metrics.INGEST_RECOVERIES.labels(kind="overflow").inc()
        if self.reader is None:
            raise ValueError("an overflow event needs a record reader to reconcile the entity")
        previous = self._event_times.get(channel) or self._previous_event_time(channel)
        since = (
            datetime.fromisoformat(previous)
            if previous
            else overflow.header.commit_timestamp - timedelta(minutes=1)
        )
        records = await self.reader.read_changed_since(overflow.header.entity_name, since)
        return [snapshot_event(overflow, str(record["Id"]), record) for record in records]

    def _encode(self, topic: str, event: Event) -> OutboundRecord:
        encoded = self.codec.encode(topic, event)
        return OutboundRecord(topic, event.subject.encode(), encoded.value, tuple(encoded.headers))

    def _dead_letter(
        self, channel: str, message: Mapping[str, Any], exc: Exception, replay_id: object
    ) -> None:
        raw = json.dumps(message, default=str, sort_keys=True).encode()
        reason = str(exc) or type(exc).__name__
        log.warning(
            "streaming message dead-lettered",
            extra={"channel": channel, "replay_id": replay_id, "reason": reason},
        )
        metrics.DEAD_LETTERS.labels(topic=DLQ_TOPIC, reason=type(exc).__name__).inc()
        event = dead_letter(channel, raw, reason, type(exc).__name__, replay_id)
        self._pending.append(self._encode(self.config.topic_prefix + DLQ_TOPIC, event))

    def _window(self, channel: str) -> DeliveryWindow:
        return self._windows.setdefault(channel, DeliveryWindow())


def _replay_id(message: Mapping[str, Any]) -> int | str | None:
    data = message.get("data")
    event = data.get("event") if isinstance(data, Mapping) else None
    replay_id = event.get("replayId") if isinstance(event, Mapping) else None
    return replay_id if isinstance(replay_id, int | str) else None


def _topic_of(event: Event, prefix: str) -> str:
    """``sf.cdc.<Object>`` for changes and snapshots, ``sf.events.<Name>`` for platform events."""
    if isinstance(event, RecordChanged):
        return f"{prefix}sf.cdc.{event.header.entity_name}"
    if isinstance(event, PlatformEventPublished):
        return f"{prefix}sf.events.{event.event_name}"
    raise TypeError(f"the ingestor does not publish {type(event).__name__} events")
