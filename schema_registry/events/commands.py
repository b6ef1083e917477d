"""Commands the agents issue and the results their executors report.

Commands are requests addressed to a sink (Salesforce, notifications, the ecosystem's
provisioning systems); their ids are derived from the decision that caused them, so
a redelivered decision yields the same command and the sink skips it. Results point
back to their command through ``causation_id``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from schema_registry.events.envelope import Event, FieldValue


class SalesforceOperation(StrEnum):
    """What a Salesforce command does to its record."""

    UPDATE = "UPDATE"
    CREATE = "CREATE"


@dataclass(frozen=True, kw_only=True)
class SalesforceWriteRequested(Event):
    """Set fields of a Salesforce record, or create one (a Task, a Case).

    ``subject`` is the target record id for an update, and the record the new one
    relates to for a create.
    """

    schema_version = 1

    operation: SalesforceOperation
    sobject: str
    record_id: str | None
    fields: Mapping[str, FieldValue]


class NotificationChannel(StrEnum):
    """How a notification reaches a person."""

    EMAIL = "EMAIL"
    SLACK = "SLACK"


@dataclass(frozen=True, kw_only=True)
class NotificationRequested(Event):
    """Tell a person or a channel something (an e-mail, a Slack message)."""

    schema_version = 1

    channel: NotificationChannel
    recipient: str
    template: str
    title: str
    body: str
    data: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class ProvisioningRequested(Event):
    """Ask one ecosystem system to provision a resource for an onboarding account."""

    schema_version = 1

    onboarding_id: str
    account_id: str
    system: str
    action: str
    parameters: Mapping[str, str]
    deadline: datetime


class ProvisioningStatus(StrEnum):
    """How a provisioning request ended."""

    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


@dataclass(frozen=True, kw_only=True)
class ProvisioningFinished(Event):
    """An ecosystem system reports the outcome of a provisioning request."""

    schema_version = 1

    onboarding_id: str
    system: str
    action: str
    status: ProvisioningStatus
    resource_url: str | None
    detail: str


class CommandOutcome(StrEnum):
    """What became of a command: applied, skipped as already applied, or rejected."""

    APPLIED = "APPLIED"
    ALREADY_APPLIED = "ALREADY_APPLIED"
    REJECTED = "REJECTED"


@dataclass(frozen=True, kw_only=True)
class SalesforceError:
    """One error Salesforce returned for a write (``statusCode``, ``message``, ``fields``)."""

    status_code: str
    message: str
    fields: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class CommandExecuted(Event):
    """A sink executed a command; ``causation_id`` is the command's id.

    Version 2 replaced v1's ``succeeded``/``error`` pair by ``outcome`` and the list of
    Salesforce errors; :func:`schema_registry.upcasters.upcast_command_results_v1_v2`
    reads v1 records into this shape. Version 3 added ``operation`` (what the command
    did: ``UPDATE`` or ``CREATE`` for a Salesforce write), null in older records.
    """

    schema_version = 3

    command_type: str
    target: str
    outcome: CommandOutcome
    errors: tuple[SalesforceError, ...] = ()
    salesforce_id: str | None = None
    operation: str | None = None
