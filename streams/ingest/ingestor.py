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
import re
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
from sfe.privacy.service import Privacy
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
    label,
    split_message,
)
from streams.ingest.events import (
    dead_letter,
    event_of,
    recovery_cause,
    snapshot_event,
)

log = logging.getLogger(__name__)

DLQ_TOPIC = "dlq.ingest"
#: The largest event value appended; the broker refuses records over ~1 MB, and one such
#: record would abort the whole transaction (every valid event of the batch with it).
MAX_RECORD_BYTES = 900_000
#: How much of an unreadable message a dead letter keeps (the rest is cut, the reason says so).
MAX_DEAD_LETTER_BYTES = 512 * 1024
#: How deep a dead-lettered message is written out; deeper values are replaced by a marker.
_MAX_RAW_DEPTH = 64
#: Channels a checkpoint is kept for (CometD channel names), anything else is not a channel.
_CHANNEL = re.compile(r"^/[A-Za-z0-9_/]{1,200}$")


class OversizedEvent(ValueError):
    """An event encodes to more than :data:`MAX_RECORD_BYTES`; it is dead-lettered, not appended."""


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
        privacy: Privacy | None = None,
    ) -> None:
        """Wire the ingestor; call :meth:`start` before handling messages.

        With ``privacy``, personal values are sealed before anything is appended.
        """
        self.appender = appender
        self.privacy = privacy
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
        """Process one streaming message; flush when the batch is full.

        A message that cannot be turned into events, whatever it holds, is buffered as
        a dead letter with the reason instead (nothing raised, nothing of it appended).
        """
        raw_channel = message.get("channel") if isinstance(message, Mapping) else None
        channel = raw_channel if isinstance(raw_channel, str) else "?"
        replay_id = _replay_id(message)
        try:
            facts = split_message(message, self.echo_policy)
            events, fresh = await self._events_for(facts)
            events = self._sealed(events)
            encoded = [
                self._encode_checked(_topic_of(event, self.config.topic_prefix), event)
                for event in events
            ]
        except (MalformedStreamingMessage, SchemaError, ValueError, KeyError, TypeError) as exc:
            self._dead_letter(channel, message, exc, replay_id)
        else:
            self._remember(fresh)
            self._pending.extend(encoded)
        if replay_id is not None and _CHANNEL.match(channel):
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
        encoded = self.encode_delivery(events)
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

    def encode_delivery(self, events: Sequence[Event]) -> list[OutboundRecord]:
        """The records of a push delivery's events, appending nothing.

        Raises :class:`~schema_registry.errors.SchemaError` for an event that does not
        fit its topic and :class:`OversizedEvent` for one too large to append, so a
        caller can dead-letter the delivery before any of it is appended.
        """
        return [
            self._encode_checked(_topic_of(event, self.config.topic_prefix), event)
            for event in self._sealed(events)
        ]

    def _sealed(self, events: Sequence[Event]) -> list[Event]:
        return list(events) if self.privacy is None else self.privacy.seal(events)

    async def dead_letter_delivery(
        self, channel: str, raw: bytes, reason: str, error_type: str
    ) -> None:
        """Keep an unreadable push delivery in ``dlq.ingest`` with the reason, committed at once.

        A raw body over :data:`MAX_DEAD_LETTER_BYTES` is cut to that size (the reason
        says so), so the dead letter itself always fits in a Kafka record.
        """
        metrics.DEAD_LETTERS.labels(topic=DLQ_TOPIC, reason=error_type).inc()
        raw, reason = _capped(raw, _text(reason, 1000))
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

    async def _events_for(
        self, facts: list[IngestedFact]
    ) -> tuple[list[Event], list[IngestedFact]]:
        """The events of one message's facts, redeliveries left out, and the facts kept.

        Nothing is remembered here: the caller calls :meth:`_remember` with the facts
        once the whole message is encoded, so a hostile message that shares a delivery
        key with a valid one and then fails cannot make the valid one look redelivered.
        """
        converted = [(fact, event_of(fact)) for fact in facts]
        events: list[Event] = []
        fresh: list[IngestedFact] = []
        keys: set[tuple[str, str]] = set()
        for fact, event in converted:
            key = (fact.channel, fact.delivery_key)
            if key in keys or self._window(fact.channel).seen(fact.delivery_key):
                metrics.INGEST_DUPLICATES.labels(channel=fact.channel).inc()
                continue
            keys.add(key)
            fresh.append(fact)
            events.append(event)
            if isinstance(event, RecordChanged):
                if fact.is_overflow:
                    events.extend(await self._reconcile_entity(fact.channel, event))
                elif fact.is_gap:
                    events.extend(await self._reread(event))
        return events, fresh

    def _remember(self, facts: list[IngestedFact]) -> None:
        """Record the delivery keys of ``facts``, whose events are now buffered."""
        for fact in facts:
            self._window(fact.channel).add(fact.delivery_key)
            metrics.INGESTED.labels(channel=fact.channel).inc()

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

    def _encode_checked(self, topic: str, event: Event) -> OutboundRecord:
        """:meth:`_encode`, refusing what the broker would refuse (and the transaction with it)."""
        try:
            record = self._encode(topic, event)
        except UnicodeEncodeError as exc:  # lone surrogates in a string: no UTF-8 for them
            raise MalformedStreamingMessage(f"{event.type} {event.id}: {exc}") from None
        except OverflowError as exc:  # a number beyond what Avro's long and double can hold
            raise MalformedStreamingMessage(f"{event.type} {event.id}: {exc}") from None
        size = len(record.value) + len(record.key)
        if size > MAX_RECORD_BYTES:
            raise OversizedEvent(
                f"{event.type} {event.id} encodes to {size} bytes (limit {MAX_RECORD_BYTES})"
            )
        return record

    def _dead_letter(
        self, channel: str, message: Mapping[str, Any], exc: Exception, replay_id: object
    ) -> None:
        raw, reason = _capped(_raw_message(message), _text(str(exc) or type(exc).__name__, 1000))
        channel = _text(channel, 200)
        log.warning(
            "streaming message dead-lettered",
            extra={"channel": channel, "replay_id": replay_id, "reason": reason},
        )
        metrics.DEAD_LETTERS.labels(topic=DLQ_TOPIC, reason=type(exc).__name__).inc()
        event = dead_letter(channel, raw, reason, type(exc).__name__, replay_id)
        self._pending.append(self._encode(self.config.topic_prefix + DLQ_TOPIC, event))

    def _window(self, channel: str) -> DeliveryWindow:
        return self._windows.setdefault(channel, DeliveryWindow())


def _raw_message(message: object) -> bytes:
    """A message as JSON for its dead letter, however it is shaped (deep nesting is cut)."""
    return json.dumps(_bounded(message, _MAX_RAW_DEPTH), default=repr, sort_keys=True).encode(
        errors="backslashreplace"
    )


def _bounded(value: object, depth: int) -> object:
    """``value`` with containers below ``depth`` levels replaced by a marker and keys as text."""
    if isinstance(value, Mapping | list | tuple):
        if depth <= 0:
            return f"<{type(value).__name__} nested deeper than {_MAX_RAW_DEPTH} levels>"
        if isinstance(value, Mapping):
            return {_key(key): _bounded(item, depth - 1) for key, item in value.items()}
        return [_bounded(item, depth - 1) for item in value]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**4000:
        return "<huge int>"  # past int-to-text's digit limit
    return value


def _text(value: str, limit: int) -> str:
    """``value`` cut to ``limit`` characters, lone surrogates escaped (it must encode as UTF-8)."""
    return value[:limit].encode("utf-8", "backslashreplace").decode("utf-8")


def _key(key: object) -> str:
    return key if isinstance(key, str) else label(key)


def _capped(raw: bytes, reason: str) -> tuple[bytes, str]:
    """``raw`` cut to :data:`MAX_DEAD_LETTER_BYTES`, the reason saying so when it was."""
    if len(raw) <= MAX_DEAD_LETTER_BYTES:
        return raw, reason
    return raw[:MAX_DEAD_LETTER_BYTES], f"{reason} (raw value cut from {len(raw)} bytes)"


def _replay_id(message: Mapping[str, Any]) -> int | str | None:
    if not isinstance(message, Mapping):
        return None
    data = message.get("data")
    event = data.get("event") if isinstance(data, Mapping) else None
    replay_id = event.get("replayId") if isinstance(event, Mapping) else None
    if isinstance(replay_id, bool):
        return None
    if isinstance(replay_id, int):
        return replay_id if -(2**63) <= replay_id < 2**63 else None
    return replay_id if isinstance(replay_id, str) and len(replay_id) <= 200 else None


def _topic_of(event: Event, prefix: str) -> str:
    """``sf.cdc.<Object>`` for changes and snapshots, ``sf.events.<Name>`` for platform events."""
    if isinstance(event, RecordChanged):
        return f"{prefix}sf.cdc.{event.header.entity_name}"
    if isinstance(event, PlatformEventPublished):
        return f"{prefix}sf.events.{event.event_name}"
    raise TypeError(f"the ingestor does not publish {type(event).__name__} events")
