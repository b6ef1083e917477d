"""Events about the running system: predictions, workflow progress, usage signals, dead letters.

:class:`EventDeadLettered` is how nothing is dropped silently (ARCHITECTURE.md,
principle 6): the raw key and value bytes exactly as read, where they were read
(topic, partition, offset) and why they could not be processed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from schema_registry.events.decisions import Factor, ModelRef
from schema_registry.events.envelope import Event, FieldValue


@dataclass(frozen=True, kw_only=True)
class PredictionMade(Event):
    """A model scored an entity: live scoring, or a re-score of history with a new model."""

    schema_version = 1

    purpose: str
    entity: str
    model: ModelRef
    score: float
    features: Mapping[str, FieldValue] = field(default_factory=dict)
    factors: tuple[Factor, ...] = ()


@dataclass(frozen=True, kw_only=True)
class WorkflowAdvanced(Event):
    """A workflow instance moved from one state to the next; ``subject`` is the instance."""

    schema_version = 1

    workflow: str
    from_state: str | None
    to_state: str
    detail: str
    attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class UsageSignalReported(Event):
    """An ecosystem system reports a usage metric of an account; ``subject`` is the account."""

    schema_version = 1

    system: str
    metric: str
    value: float
    observed_at: datetime


@dataclass(frozen=True, kw_only=True)
class EventDeadLettered(Event):
    """A record could not be processed; it is kept with where it came from and why."""

    schema_version = 1

    original_topic: str
    original_partition: int
    original_offset: int
    original_key: bytes | None
    original_value: bytes | None
    original_headers: Mapping[str, bytes] = field(default_factory=dict)
    reason: str
    error_type: str


@dataclass(frozen=True, kw_only=True)
class SubjectErased(Event):
    """A data subject's key was destroyed: its personal values in every topic and table read as erased.

    ``subject`` is the erasure id; ``subjects`` the record ids whose keys went. The
    request's e-mail address, when it named one, is not recorded.
    """

    schema_version = 1

    subjects: tuple[str, ...]
    matched_by: str
    reason: str
    requested_by: str
