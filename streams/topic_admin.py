"""Create the catalogue's topics on a broker, or check them, and report drift.

``ensure`` is idempotent: a missing topic is created with the catalogue's partitions
and settings; an existing one is compared with its entry. Differences are *drift*:
a different cleanup policy or retention can be fixed in place (``fix=True`` applies
the catalogue's value with an incremental config update); a different partition
count or replication factor is only reported, because changing the partition count
of a keyed topic moves keys to other partitions and breaks per-key order.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from sfe.kafka_security import client_config
from streams.topics import Topic

_RETRY_PAUSE_S = 0.2

T = TypeVar("T")


class TopicAdminError(Exception):
    """The broker refused or did not answer an administrative request."""


class TopicState(StrEnum):
    """What ``ensure`` found or did for one topic."""

    CREATED = "created"
    OK = "ok"
    FIXED = "fixed"
    DRIFT = "drift"


@dataclass(frozen=True)
class Drift:
    """One setting of a topic that differs from the catalogue."""

    setting: str
    expected: str
    actual: str
    fixable: bool

    def __str__(self) -> str:
        how = "" if self.fixable else " (not changed automatically)"
        return f"{self.setting}: expected {self.expected}, found {self.actual}{how}"


@dataclass(frozen=True)
class TopicReport:
    """The outcome of ``ensure`` for one topic."""

    topic: str
    state: TopicState
    drift: tuple[Drift, ...] = ()


class TopicAdmin:
    """Catalogue topics on one Kafka cluster."""

    def __init__(self, bootstrap: str, timeout_s: float = 30.0) -> None:
        self._admin = AdminClient(client_config(bootstrap))
        self._timeout_s = timeout_s

    def existing(self) -> dict[str, tuple[int, int]]:
        """Every topic on the cluster: its partition count and replication factor."""
        try:
            metadata = self._admin.list_topics(timeout=self._timeout_s)
        except KafkaException as exc:
            raise TopicAdminError(f"cannot list topics: {exc}") from None
        found = {}
        for name, entry in metadata.topics.items():
            partitions = entry.partitions.values()
            replicas = min((len(partition.replicas) for partition in partitions), default=0)
            found[name] = (len(entry.partitions), replicas)
        return found

    def _listed(self, names: Sequence[str]) -> dict[str, tuple[int, int]]:
        """Every topic, once the brokers' metadata lists all of ``names``."""
        deadline = time.monotonic() + self._timeout_s
        while True:
            existing = self.existing()
            absent = [name for name in names if name not in existing]
            if not absent:
                return existing
            if time.monotonic() > deadline:
                raise TopicAdminError(
                    f"{', '.join(absent)} exist but are not listed by the brokers"
                )
            time.sleep(_RETRY_PAUSE_S)

    def ensure(
        self, topics: Sequence[Topic], replication_factor: int = 1, fix: bool = False
    ) -> list[TopicReport]:
        """Create the missing ``topics`` and check the others; fix settings when ``fix``."""
        existing = self.existing()
        missing = [topic for topic in topics if topic.name not in existing]
        created = self._create(missing, replication_factor)
        if missing:  # return only once the brokers' metadata lists every topic
            existing = self._listed([topic.name for topic in missing])
        configs = self.configs(topic.name for topic in topics if topic.name not in created)
        reports = []
        for topic in topics:
            if topic.name in created:
                reports.append(TopicReport(topic.name, TopicState.CREATED))
                continue
            partitions, replicas = existing[topic.name]
            drift = _drift(topic, partitions, replicas, replication_factor, configs[topic.name])
            fixable = [item for item in drift if item.fixable]
            if fix and fixable:
                self._apply(topic, fixable)
                state = TopicState.FIXED if len(fixable) == len(drift) else TopicState.DRIFT
            else:
                state = TopicState.DRIFT if drift else TopicState.OK
            reports.append(TopicReport(topic.name, state, tuple(drift)))
        return reports

    def _create(self, topics: Iterable[Topic], replication_factor: int) -> set[str]:
        new = [
            NewTopic(topic.name, topic.partitions, replication_factor, config=topic.config())
            for topic in topics
        ]
        if not new:
            return set()
        created = set()
        for name, future in self._admin.create_topics(new, request_timeout=self._timeout_s).items():
            try:
                future.result(timeout=self._timeout_s)
                created.add(name)
            except KafkaException as exc:
                error = exc.args[0]
                if (
                    isinstance(error, KafkaError)
                    and error.code() == KafkaError.TOPIC_ALREADY_EXISTS
                ):
                    continue  # created concurrently by someone else: checked like any other
                raise TopicAdminError(f"cannot create {name}: {exc}") from None
        return created

    def configs(self, names: Iterable[str]) -> dict[str, dict[str, str]]:
        """The current topic-level settings of ``names``.

        A topic created a moment ago (by us or by someone else) is listed before every
        broker can describe it; such topics are asked again until the timeout.
        """
        pending = list(names)
        result: dict[str, dict[str, str]] = {}
        deadline = time.monotonic() + self._timeout_s
        while pending:
            resources = [ConfigResource(ResourceType.TOPIC, name) for name in pending]
            pending = []
            for resource, future in self._admin.describe_configs(resources).items():
                try:
                    entries = future.result(timeout=self._timeout_s)
                except KafkaException as exc:
                    if _is_unknown_topic(exc) and time.monotonic() < deadline:
                        pending.append(resource.name)
                        continue
                    raise TopicAdminError(f"cannot describe {resource.name}: {exc}") from None
                result[resource.name] = {key: entry.value for key, entry in entries.items()}
            if pending:
                time.sleep(_RETRY_PAUSE_S)
        return result

    def _apply(self, topic: Topic, drift: Iterable[Drift]) -> None:
        entries = [
            ConfigEntry(item.setting, item.expected, incremental_operation=AlterConfigOpType.SET)
            for item in drift
        ]
        resource = ConfigResource(ResourceType.TOPIC, topic.name, incremental_configs=entries)
        for future in self._admin.incremental_alter_configs([resource]).values():
            try:
                future.result(timeout=self._timeout_s)
            except KafkaException as exc:
                raise TopicAdminError(f"cannot update {topic.name}: {exc}") from None


def _drift(
    topic: Topic,
    partitions: int,
    replicas: int,
    replication_factor: int,
    config: dict[str, str],
) -> list[Drift]:
    """How the broker's ``topic`` differs from its catalogue entry."""
    drift = []
    if partitions != topic.partitions:
        drift.append(Drift("partitions", str(topic.partitions), str(partitions), False))
    if replicas != replication_factor:
        drift.append(Drift("replication.factor", str(replication_factor), str(replicas), False))
    for key, expected in topic.config().items():
        if config.get(key) != expected:
            drift.append(Drift(key, expected, str(config.get(key)), True))
    return drift


def _is_unknown_topic(exc: KafkaException) -> bool:
    error = exc.args[0] if exc.args else None
    return isinstance(error, KafkaError) and error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART


_LEADERSHIP_IN_FLUX = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._TRANSPORT,
        KafkaError._TIMED_OUT,
    }
)


def while_leaders_settle(call: Callable[[], T], timeout_s: float = 30.0) -> T:
    """Run a metadata call, retrying while partition leadership is still settling.

    A topic created moments ago, or a broker that just restarted, answers watermark
    and offset look-ups with ``NOT_LEADER_FOR_PARTITION`` or ``LEADER_NOT_AVAILABLE``
    for a short while; those pass, so the call is retried until ``timeout_s``.
    Any other error is raised at once.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return call()
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            settling = isinstance(error, KafkaError) and (
                error.code() in _LEADERSHIP_IN_FLUX or error.retriable()
            )
            if not settling or time.monotonic() >= deadline:
                raise
            time.sleep(_RETRY_PAUSE_S)
