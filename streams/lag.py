"""Consumer lag per group and partition, published as ``sfe_consumer_lag_records``.

Lag is what ``kafka-consumer-groups.sh`` calls LAG: the partition's log-end offset
minus the consumer's position (the next offset it will process). On topics written
in transactions the log end includes commit markers, so a drained partition can read
as one record behind until the next batch.

Every consumer in the pipeline reports through :class:`LagPublisher`, which also
removes the series of partitions that moved to another member of the group, so a
rebalance leaves no stale lag behind:

- confluent-kafka consumers (the lead worker's batch loop, the projections and the
  Salesforce sink) use :class:`ConfluentLag`, from the consumer's positions and the
  high watermarks its fetches already carry (no extra broker round trip);
- the Faust agents use :func:`faust_lags` on the figures Faust's monitor keeps.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Mapping
from typing import TypeVar

from confluent_kafka import Consumer, KafkaException

from sfe import metrics

PartitionKey = tuple[str, int]
TP = TypeVar("TP", bound=tuple[str, int])
"""A (topic, partition) pair, or Faust's named tuple of them."""


class LagPublisher:
    """Sets the lag gauge for one consumer group and retires revoked partitions."""

    def __init__(self, group: str, prefix: str = "") -> None:
        """Publish under ``group``; topic labels drop ``prefix`` (the catalogue's names)."""
        self.group = group
        self.prefix = prefix
        self._published: set[PartitionKey] = set()

    def publish(self, lags: Mapping[PartitionKey, int]) -> None:
        """Set the lag of every partition in ``lags``; forget those no longer held."""
        for topic, partition in self._published - set(lags):
            with contextlib.suppress(KeyError):  # already gone
                metrics.CONSUMER_LAG.remove(self.group, self._label(topic), str(partition))
        for (topic, partition), lag in lags.items():
            metrics.CONSUMER_LAG.labels(self.group, self._label(topic), str(partition)).set(
                max(0, lag)
            )
        self._published = set(lags)

    def _label(self, topic: str) -> str:
        return topic.removeprefix(self.prefix)


class ConfluentLag:
    """Lag of a confluent-kafka consumer, reported at most every ``every_seconds``."""

    def __init__(
        self, consumer: Consumer, group: str, prefix: str = "", every_seconds: float = 5.0
    ) -> None:
        """Report for ``consumer``, a member of ``group``."""
        self.consumer = consumer
        self.publisher = LagPublisher(group, prefix)
        self.every_seconds = every_seconds
        self._last = 0.0

    def maybe_report(self) -> None:
        """Publish the lag if the last report is older than the interval."""
        now = time.monotonic()
        if now - self._last < self.every_seconds:
            return
        self._last = now
        assignment = self.consumer.assignment()
        lags: dict[PartitionKey, int] = {}
        if assignment:
            for tp in self.consumer.position(assignment):
                try:
                    _low, high = self.consumer.get_watermark_offsets(tp, cached=True)
                except KafkaException:
                    continue
                if tp.offset >= 0 and high >= 0:
                    lags[(tp.topic, tp.partition)] = high - tp.offset
        self.publisher.publish(lags)


def faust_lags(
    assignment: Iterable[TP],
    end_offsets: Mapping[TP, int],
    committed_offsets: Mapping[TP, int],
) -> dict[PartitionKey, int]:
    """Lag of each assigned partition from Faust's monitor figures.

    Faust commits the next offset to process, so lag is end minus committed. A
    partition missing either figure (nothing fetched or nothing committed since the
    worker started) is left out rather than guessed.
    """
    lags: dict[PartitionKey, int] = {}
    for tp in assignment:
        key = (tp[0], tp[1])
        end = end_offsets.get(tp)
        committed = committed_offsets.get(tp)
        if end is not None and committed is not None:
            lags[key] = max(0, end - committed)
    return lags
