"""Retry policy, Retry-After parsing and the retry loop of the notification transports."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from projections.notify.transport import (
    DeliveryError,
    PermanentDelivery,
    RetryPolicy,
    TransientDelivery,
    deliver,
    parse_retry_after,
)
from projections.salesforce.writer import SinkInterrupted
from schema_registry.events import NotificationChannel, NotificationRequested


def command() -> NotificationRequested:
    return NotificationRequested(
        id="c-1",
        source="test",
        subject="00Q000000000001AAA",
        time=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        channel=NotificationChannel.SLACK,
        recipient="#high-value-leads",
        template="high_value_lead",
        title="High-value lead",
        body="Acme (91)",
    )


class Scripted:
    """A transport that fails as scripted, then delivers (pure-logic stand-in)."""

    channel = NotificationChannel.SLACK

    def __init__(self, *failures: DeliveryError) -> None:
        self.failures = list(failures)
        self.sent = 0

    def send(self, command: NotificationRequested) -> None:
        self.sent += 1
        if self.failures:
            raise self.failures.pop(0)


class RecordingStop(threading.Event):
    """A stop event that records the waits asked of it and never sleeps."""

    def __init__(self, stop_at: int | None = None) -> None:
        super().__init__()
        self.waits: list[float] = []
        self.stop_at = stop_at

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(float(timeout or 0))
        return self.stop_at is not None and len(self.waits) >= self.stop_at


def top(low: float, high: float) -> float:
    return high


def test_backoff_doubles_up_to_the_cap_with_full_jitter() -> None:
    policy = RetryPolicy(backoff_base_s=0.5, backoff_max_s=3.0)
    assert [policy.backoff(n, top) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert policy.backoff(4, lambda low, high: low) == 0.0


def test_retry_after_is_a_floor_with_a_little_jitter() -> None:
    policy = RetryPolicy(backoff_base_s=0.5)
    assert policy.delay(1, 7.0, lambda low, high: low) == 7.0
    assert policy.delay(1, 7.0, top) == pytest.approx(7.7)
    assert policy.delay(1, 30.0, top) == 31.0  # jitter at most a second
    assert policy.delay(2, None, top) == 1.0


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("3", 3.0),
        (" 120 ", 120.0),
        ("Fri, 02 Jan 2026 03:04:35 GMT", 30.0),
        ("Fri, 02 Jan 2026 03:00:00 GMT", 0.0),  # in the past: retry now
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
    ],
)
def test_retry_after_header(header: str | None, seconds: float | None) -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_retry_after(header, now) == seconds


def test_transient_failures_are_retried_until_delivered() -> None:
    transport = Scripted(
        TransientDelivery("SLACK_503", "busy"), TransientDelivery("SLACK_429", "slow", 2.0)
    )
    stop = RecordingStop()
    assert deliver(transport, command(), RetryPolicy(backoff_base_s=0.5), stop, top) == 3
    assert transport.sent == 3
    assert stop.waits == [0.5, 2.2]


def test_a_permanent_failure_is_not_retried() -> None:
    transport = Scripted(PermanentDelivery("SLACK_404", "channel_not_found"))
    stop = RecordingStop()
    with pytest.raises(PermanentDelivery, match="SLACK_404: channel_not_found"):
        deliver(transport, command(), RetryPolicy(), stop, top)
    assert transport.sent == 1
    assert stop.waits == []


def test_attempts_are_bounded() -> None:
    transport = Scripted(*(TransientDelivery("SLACK_500", "oops") for _ in range(10)))
    stop = RecordingStop()
    with pytest.raises(PermanentDelivery) as raised:
        deliver(transport, command(), RetryPolicy(max_attempts=3, backoff_base_s=0.1), stop, top)
    assert raised.value.code == "SLACK_500"
    assert raised.value.message == "gave up after 3 attempts: oops"
    assert transport.sent == 3
    assert stop.waits == [0.1, 0.2]


def test_a_retry_after_beyond_the_budget_gives_up_at_once() -> None:
    transport = Scripted(TransientDelivery("SLACK_429", "rate limited", 600.0))
    stop = RecordingStop()
    with pytest.raises(PermanentDelivery, match="exceeds the retry budget"):
        deliver(transport, command(), RetryPolicy(budget_s=120), stop, top)
    assert transport.sent == 1
    assert stop.waits == []


def test_a_stop_during_a_wait_interrupts() -> None:
    transport = Scripted(TransientDelivery("SLACK_503", "busy"))
    with pytest.raises(SinkInterrupted):
        deliver(transport, command(), RetryPolicy(), RecordingStop(stop_at=1), top)
    assert transport.sent == 1
