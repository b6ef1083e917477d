"""What every workflow's decision function returns, and how derived events are built.

A workflow decides with plain functions: given a fact (an event read from Kafka),
the state it keeps and the scores of its models, it returns a :class:`Decision`, the
events to append (each with its topic and key) and the state to keep. The streaming
side only reads, calls and appends, so every decision is unit-tested without Kafka.

Derived events are built through a :class:`Derivation`: their ids are UUIDv5 of
(cause id, agent, purpose) (ARCHITECTURE.md, principle 3), their time is the cause's
time, their ``causation_id`` the cause and their ``correlation_id`` the flow's first
event. Deciding twice on the same fact therefore yields the same events, byte for byte.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from schema_registry.events import (
    Event,
    Factor,
    FieldValue,
    ModelRef,
    NotificationChannel,
    NotificationRequested,
    PredictionMade,
    SalesforceOperation,
    SalesforceWriteRequested,
    WorkflowAdvanced,
)
from schema_registry.ids import derived_event_id

#: Topic names of the catalogue the agents write (unprefixed).
SALESFORCE_COMMANDS = "commands.salesforce"
NOTIFICATIONS = "commands.notifications"
PROVISIONING = "commands.provisioning"
PREDICTIONS = "predictions"
WORKFLOW_EVENTS = "workflow.events"

#: Workflow states the projection treats as the end of a run.
COMPLETED = "COMPLETED"
FAILED = "FAILED"
STARTED = "STARTED"


@dataclass(frozen=True)
class Emission:
    """One event to append: the catalogue topic (unprefixed), the record key and the event."""

    topic: str
    key: str
    event: Event


@dataclass(frozen=True)
class Decision:
    """The outcome of deciding on one fact: the events to append (in order) and why."""

    emissions: tuple[Emission, ...] = ()
    #: Why nothing (or this) was done, for logs and metrics (``"echo"``, ``"senior_ae"``).
    outcome: str = ""

    def events(self, topic: str | None = None) -> list[Event]:
        """The emitted events, optionally only those for ``topic``."""
        return [e.event for e in self.emissions if topic is None or e.topic == topic]


IGNORED = Decision(outcome="ignored")


@dataclass(frozen=True)
class Derivation:
    """Builds the events an agent derives from one cause, with deterministic ids."""

    agent: str
    cause: Event
    #: Overrides the cause's correlation id (the flow's first event).
    correlation_id: str | None = None
    #: What ids derive from instead of the cause's id, when several facts may start the
    #: same work (a lead is qualified once whether its CDC CREATE or ``New_Lead__e`` came).
    identity: str | None = None
    _used: set[str] = field(default_factory=set, compare=False)

    def id(self, purpose: str) -> str:
        """The id of the event derived for ``purpose`` (unique per purpose within a cause)."""
        if purpose in self._used:
            raise ValueError(f"{self.agent} derived two events for purpose {purpose!r}")
        self._used.add(purpose)
        return derived_event_id(self.identity or self.cause.id, self.agent, purpose)

    @property
    def time(self) -> datetime:
        """The derived events' time: the cause's, so re-deciding yields equal events."""
        return self.cause.time

    def envelope(self, purpose: str, subject: str) -> dict[str, Any]:
        """Envelope fields of the event derived for ``purpose`` about ``subject``."""
        return {
            "id": self.id(purpose),
            "source": self.agent,
            "subject": subject,
            "time": self.time,
            "causation_id": self.cause.id,
            "correlation_id": self.correlation_id or self.cause.correlation_id or self.cause.id,
        }

    def update(
        self, purpose: str, sobject: str, record_id: str, fields: Mapping[str, FieldValue]
    ) -> Emission:
        """A field update of one Salesforce record."""
        event = SalesforceWriteRequested(
            **self.envelope(purpose, record_id),
            operation=SalesforceOperation.UPDATE,
            sobject=sobject,
            record_id=record_id,
            fields=dict(fields),
        )
        return Emission(SALESFORCE_COMMANDS, record_id, event)

    def create(
        self, purpose: str, sobject: str, related_id: str, fields: Mapping[str, FieldValue]
    ) -> Emission:
        """A new Salesforce record (a Task, a Case) related to ``related_id``."""
        event = SalesforceWriteRequested(
            **self.envelope(purpose, related_id),
            operation=SalesforceOperation.CREATE,
            sobject=sobject,
            record_id=None,
            fields=dict(fields),
        )
        return Emission(SALESFORCE_COMMANDS, related_id, event)

    def notify(
        self,
        purpose: str,
        about: str,
        channel: NotificationChannel,
        recipient: str,
        template: str,
        title: str,
        body: str,
        data: Mapping[str, str] | None = None,
    ) -> Emission:
        """An e-mail or Slack message about record ``about``."""
        event = NotificationRequested(
            **self.envelope(purpose, about),
            channel=channel,
            recipient=recipient,
            template=template,
            title=title,
            body=body,
            data=dict(data or {}),
        )
        return Emission(NOTIFICATIONS, about, event)

    def prediction(
        self,
        purpose: str,
        entity: str,
        subject: str,
        model: ModelRef,
        score: float,
        features: Mapping[str, FieldValue],
        factors: Sequence[Factor],
    ) -> Emission:
        """A model score (0-1) of ``subject`` for ``ml_predictions`` and model monitoring."""
        event = PredictionMade(
            **self.envelope(f"prediction:{purpose}", subject),
            purpose=purpose,
            entity=entity,
            model=model,
            score=score,
            features=dict(features),
            factors=tuple(factors),
        )
        return Emission(PREDICTIONS, subject, event)

    def workflow(
        self,
        purpose: str,
        workflow: str,
        run_id: str,
        from_state: str | None,
        to_state: str,
        detail: str,
        record_id: str,
        steps_completed: int,
        total_steps: int,
        **attributes: str,
    ) -> Emission:
        """A transition of workflow run ``run_id`` (the projection's ``workflow_executions``)."""
        event = WorkflowAdvanced(
            **self.envelope(purpose, run_id),
            workflow=workflow,
            from_state=from_state,
            to_state=to_state,
            detail=detail,
            attributes={
                "record_id": record_id,
                "steps_completed": str(steps_completed),
                "total_steps": str(total_steps),
                **attributes,
            },
        )
        return Emission(WORKFLOW_EVENTS, run_id, event)


def run_id(agent: str, cause_id: str) -> str:
    """The id of the workflow run ``agent`` starts on cause ``cause_id`` (deterministic)."""
    return derived_event_id(cause_id, agent, "run")
