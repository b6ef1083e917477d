"""Every schema version kept in the repository, and which event class each subject holds.

Schemas live in ``schema_registry/schemas/<subject>/v<N>.avsc``; no version is ever
edited or deleted once committed, so events written with it can still be read.
Subjects follow the TopicNameStrategy (``<topic>-value``): one subject per topic,
one event class per subject. Several topics may share an event class (the six CDC
topics hold :class:`RecordChanged`, the three dead-letter topics
:class:`EventDeadLettered`), each under its own subject.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from fastavro import parse_schema

from schema_registry import events
from schema_registry.errors import UnknownSubject

SCHEMA_DIR = Path(__file__).parent / "schemas"
_VERSION_FILE = re.compile(r"^v([1-9]\d*)\.avsc$")

#: Salesforce objects whose Change Data Capture events are ingested.
CDC_OBJECTS = ("Lead", "Contact", "Account", "Opportunity", "Case", "Task")
#: Salesforce platform events that are ingested.
PLATFORM_EVENTS = ("New_Lead__e",)


def value_subject(topic: str) -> str:
    """The subject of a topic's values under the TopicNameStrategy."""
    return f"{topic}-value"


#: The event class of each subject.
EVENT_TYPES: Mapping[str, type[events.Event]] = {
    **{value_subject(f"sf.cdc.{name}"): events.RecordChanged for name in CDC_OBJECTS},
    **{
        value_subject(f"sf.events.{name}"): events.PlatformEventPublished
        for name in PLATFORM_EVENTS
    },
    value_subject("sfe.ingest.checkpoints"): events.ReplayCheckpointStored,
    value_subject("decisions.leads"): events.LeadScored,
    value_subject("decisions.opportunities"): events.OpportunityInsightsComputed,
    value_subject("decisions.onboarding"): events.OnboardingPlanned,
    value_subject("decisions.churn"): events.ChurnRiskAssessed,
    value_subject("decisions.upsell"): events.UpsellCandidateFlagged,
    value_subject("commands.salesforce"): events.SalesforceWriteRequested,
    value_subject("commands.notifications"): events.NotificationRequested,
    value_subject("commands.provisioning"): events.ProvisioningRequested,
    value_subject("provisioning.results"): events.ProvisioningFinished,
    value_subject("command.results"): events.CommandExecuted,
    value_subject("predictions"): events.PredictionMade,
    value_subject("workflow.events"): events.WorkflowAdvanced,
    value_subject("usage.signals"): events.UsageSignalReported,
    value_subject("privacy.erasures"): events.SubjectErased,
    value_subject("dlq.ingest"): events.EventDeadLettered,
    value_subject("dlq.salesforce"): events.EventDeadLettered,
    value_subject("dlq.notifications"): events.EventDeadLettered,
}


@dataclass(frozen=True)
class SchemaVersion:
    """One committed version of a subject's schema."""

    subject: str
    version: int
    text: str = field(repr=False)

    @property
    def definition(self) -> dict[str, Any]:
        """The schema as parsed JSON (a fresh copy)."""
        definition: dict[str, Any] = json.loads(self.text)
        return definition

    @property
    def parsed(self) -> Any:
        """The schema parsed by fastavro, ready for its readers and writers."""
        return _parse(self.text)


@cache
def _parse(text: str) -> Any:
    return parse_schema(json.loads(text))


@cache
def subjects() -> Mapping[str, tuple[SchemaVersion, ...]]:
    """Every subject kept in the repository with its versions, oldest first."""
    found: dict[str, tuple[SchemaVersion, ...]] = {}
    for folder in sorted(path for path in SCHEMA_DIR.iterdir() if path.is_dir()):
        versions = []
        for path in folder.iterdir():
            match = _VERSION_FILE.match(path.name)
            if match:
                versions.append(SchemaVersion(folder.name, int(match[1]), path.read_text()))
        versions.sort(key=lambda item: item.version)
        if [item.version for item in versions] != list(range(1, len(versions) + 1)):
            raise RuntimeError(f"{folder}: versions must be v1.avsc, v2.avsc, ... without gaps")
        found[folder.name] = tuple(versions)
    return found


def versions(subject: str) -> tuple[SchemaVersion, ...]:
    """The versions of ``subject``, oldest first."""
    try:
        return subjects()[subject]
    except KeyError:
        raise UnknownSubject(subject) from None


def schema(subject: str, version: int | None = None) -> SchemaVersion:
    """Version ``version`` of ``subject``, or its latest version."""
    kept = versions(subject)
    if version is None:
        return kept[-1]
    if not 1 <= version <= len(kept):
        raise UnknownSubject(subject, version)
    return kept[version - 1]


def event_type(subject: str) -> type[events.Event]:
    """The event class whose instances ``subject`` holds."""
    try:
        return EVENT_TYPES[subject]
    except KeyError:
        raise UnknownSubject(subject) from None
