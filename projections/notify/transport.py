"""What a notification transport is, how its failures are classified, and how they are retried.

A :class:`Transport` delivers one :class:`NotificationRequested` on its channel and
either returns (delivered) or raises a :class:`DeliveryError`:

- :class:`TransientDelivery` (HTTP 429 and 5xx, SMTP 4xx, time-outs, dropped
  connections) is retried by :func:`deliver` with exponential backoff and full
  jitter; a ``Retry-After`` the receiver sent is honoured (never retried earlier);
- :class:`PermanentDelivery` (other HTTP 4xx, SMTP 5xx, a recipient with no
  address) is not retried: the sink reports the command failed and dead-letters it.

Retries of one command are bounded by a number of attempts and a total waiting time
(:class:`RetryPolicy`), so that a batch never outlives the Kafka consumer's poll
interval; a command that exhausts them fails like a permanent one, with the last
error as its reason. Error messages never contain a secret (webhook URL, password).
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Protocol

from projections.salesforce.writer import SinkInterrupted
from schema_registry.events import NotificationChannel, NotificationRequested

log = logging.getLogger(__name__)


class DeliveryError(Exception):
    """A notification was not delivered: a short ``code`` and a message free of secrets."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class TransientDelivery(DeliveryError):
    """Worth retrying; ``retry_after`` is the receiver's own wait in seconds, when it gave one."""

    def __init__(self, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(code, message)
        self.retry_after = retry_after


class PermanentDelivery(DeliveryError):
    """Retrying cannot help (the receiver refused this notification)."""


class Transport(Protocol):
    """Delivers notifications of one channel (Slack, e-mail, or another added later)."""

    channel: NotificationChannel

    def send(self, command: NotificationRequested) -> None:
        """Deliver ``command`` once; raise :class:`TransientDelivery` or :class:`PermanentDelivery`.

        The command's id must travel with the message (a Slack context block, an
        e-mail ``Message-ID``), so that a receiver can recognise the rare repeat.
        """


@dataclass(frozen=True)
class RetryPolicy:
    """How long one command may be retried: attempts, backoff, and a total waiting budget."""

    max_attempts: int = 5
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    budget_s: float = 120.0

    def backoff(self, attempt: int, rng: Callable[[float, float], float] = random.uniform) -> float:
        """Full-jitter exponential delay before retry number ``attempt`` (1 for the first)."""
        return rng(0.0, min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1)))

    def delay(
        self,
        attempt: int,
        retry_after: float | None,
        rng: Callable[[float, float], float] = random.uniform,
    ) -> float:
        """The wait before retry ``attempt``: the receiver's ``Retry-After``, else backoff.

        A ``Retry-After`` is a floor, never shortened; a little jitter (up to 10 %, at
        most a second) is added so that several sinks do not return at the same instant.
        """
        if retry_after is not None:
            return retry_after + rng(0.0, min(1.0, retry_after * 0.1))
        return self.backoff(attempt, rng)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` (seconds or an HTTP date); None if absent or bad."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def deliver(
    transport: Transport,
    command: NotificationRequested,
    policy: RetryPolicy,
    stop: threading.Event,
    rng: Callable[[float, float], float] = random.uniform,
) -> int:
    """Send ``command`` through ``transport``, retrying transient failures; the attempts it took.

    Raises :class:`PermanentDelivery` when the receiver refused, or when the transient
    failures outlasted ``policy`` (the last error's code and message, with the count).
    Raises :class:`~projections.salesforce.writer.SinkInterrupted` when ``stop`` is set
    during a wait: the caller abandons the batch uncommitted.
    """
    waited = 0.0
    attempt = 1
    while True:
        try:
            transport.send(command)
            return attempt
        except TransientDelivery as exc:
            if attempt >= policy.max_attempts:
                raise PermanentDelivery(
                    exc.code, f"gave up after {attempt} attempts: {exc.message}"
                ) from exc
            wait = policy.delay(attempt, exc.retry_after, rng)
            if waited + wait > policy.budget_s:
                raise PermanentDelivery(
                    exc.code,
                    f"gave up after {attempt} attempts ({waited:.1f}s waited; the next "
                    f"wait of {wait:.1f}s exceeds the retry budget): {exc.message}",
                ) from exc
            log.warning(
                "notification %s via %s: %s; retry %d in %.2fs",
                command.id,
                transport.channel.value,
                exc,
                attempt,
                wait,
            )
            if stop.wait(wait):
                raise SinkInterrupted from exc
            waited += wait
            attempt += 1
