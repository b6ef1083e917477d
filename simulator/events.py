"""The event bus: retained CDC and Platform Event messages, replay ids, and waiting subscribers.

All Change Data Capture events share one stream (``/data/ChangeEvents`` and every
``/data/<Object>ChangeEvent`` channel read it); each Platform Event type has its own.
Replay ids increase within a stream and say nothing else. Events older than the
retention window are purged; a subscriber asking to resume from a purged position
is told its replay id is invalid, as Salesforce does.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

CDC_STREAM = "cdc"
ALL_CHANGE_EVENTS = "/data/ChangeEvents"


@dataclass(frozen=True)
class BusEvent:
    """One retained event: its stream, replay id, the channel it belongs to, its payload."""

    stream: str
    replay_id: int
    channel: str
    created: float
    payload: dict[str, Any]
    schema: str


def stream_of(channel: str) -> str | None:
    """The stream a subscription channel reads, or ``None`` for an unknown channel."""
    if channel == ALL_CHANGE_EVENTS or (
        channel.startswith("/data/") and channel.endswith("ChangeEvent")
    ):
        return CDC_STREAM
    if channel.startswith("/event/") and channel.endswith("__e"):
        return channel
    return None


def matches(subscription: str, event: BusEvent) -> bool:
    """Whether ``event`` is delivered to a subscriber of ``subscription``."""
    return subscription == event.channel or (
        subscription == ALL_CHANGE_EVENTS and event.stream == CDC_STREAM
    )


class EventBus:
    """Retains events per stream and wakes long-polling subscribers when one arrives."""

    def __init__(self, retention_seconds: float, clock: Callable[[], float] = time.time) -> None:
        self.retention_seconds = retention_seconds
        self._clock = clock
        self._events: dict[str, list[BusEvent]] = {}
        self._last_id: dict[str, int] = {}
        self._purged_through: dict[str, int] = {}
        self._arrived = asyncio.Event()
        self.on_append: Callable[[BusEvent], None] | None = None
        self.on_purge: Callable[[str, int], None] | None = None

    def publish(self, channel: str, payload: dict[str, Any], schema: str = "") -> BusEvent:
        """Append an event to the stream of ``channel`` and wake subscribers."""
        self.purge()
        stream = stream_of(channel) or channel
        replay_id = self._last_id.get(stream, 0) + 1
        self._last_id[stream] = replay_id
        event = BusEvent(stream, replay_id, channel, self._clock(), payload, schema)
        self._events.setdefault(stream, []).append(event)
        if self.on_append:
            self.on_append(event)
        self.wake()
        return event

    def restore(self, event: BusEvent) -> None:
        """Put back an event loaded from persistent storage (no wake-up, no callback)."""
        self._events.setdefault(event.stream, []).append(event)
        self._last_id[event.stream] = max(self._last_id.get(event.stream, 0), event.replay_id)

    def set_purged_through(self, stream: str, replay_id: int) -> None:
        """Record that events up to ``replay_id`` of ``stream`` are gone."""
        self._purged_through[stream] = max(self._purged_through.get(stream, 0), replay_id)
        self._last_id[stream] = max(self._last_id.get(stream, 0), replay_id)

    def purge(self, retention_seconds: float | None = None) -> None:
        """Drop events older than the retention window (or ``retention_seconds``, once)."""
        window = self.retention_seconds if retention_seconds is None else retention_seconds
        horizon = self._clock() - window
        for stream, events in self._events.items():
            keep = 0
            while keep < len(events) and events[keep].created < horizon:
                keep += 1
            if keep:
                self.set_purged_through(stream, events[keep - 1].replay_id)
                del events[:keep]
                if self.on_purge:
                    self.on_purge(stream, self._purged_through[stream])

    def latest(self, stream: str) -> int:
        """The replay id of the newest event ever appended to ``stream`` (0 if none)."""
        return self._last_id.get(stream, 0)

    def purged_through(self, stream: str) -> int:
        """The highest replay id of ``stream`` no longer retained (0 if none)."""
        return self._purged_through.get(stream, 0)

    def start_position(self, channel: str, replay_id: int) -> int | None:
        """Where a subscriber starts (events after this id), or ``None`` if the id is invalid.

        A stored replay id is valid while the event it names is retained.
        """
        stream = stream_of(channel) or channel
        self.purge()
        if replay_id == -1:
            return self.latest(stream)
        if replay_id == -2:
            return self.purged_through(stream)
        if (
            replay_id < 1
            or replay_id <= self.purged_through(stream)
            or replay_id > self.latest(stream)
        ):
            return None
        return replay_id

    def read(self, channel: str, after: int, limit: int) -> list[BusEvent]:
        """Up to ``limit`` retained events for ``channel`` with replay id above ``after``."""
        stream = stream_of(channel) or channel
        events = self._events.get(stream, [])
        low, high = 0, len(events)
        while low < high:
            middle = (low + high) // 2
            if events[middle].replay_id <= after:
                low = middle + 1
            else:
                high = middle
        found = []
        for event in events[low:]:
            if matches(channel, event):
                found.append(event)
                if len(found) >= limit:
                    break
        return found

    async def wait(self, timeout: float) -> None:
        """Return when a new event arrives or after ``timeout`` seconds."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._arrived.wait(), timeout)

    def wake(self) -> None:
        """Wake every waiting subscriber (on new events, dropped or forgotten clients)."""
        arrived, self._arrived = self._arrived, asyncio.Event()
        arrived.set()
