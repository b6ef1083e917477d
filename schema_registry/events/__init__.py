"""Domain events: frozen dataclasses, one per schema subject, grouped by the flow they serve."""

from schema_registry.events.commands import (
    CommandExecuted,
    CommandOutcome,
    NotificationChannel,
    NotificationRequested,
    ProvisioningFinished,
    ProvisioningRequested,
    ProvisioningStatus,
    SalesforceError,
    SalesforceOperation,
    SalesforceWriteRequested,
)
from schema_registry.events.decisions import (
    ChurnRiskAssessed,
    Factor,
    LeadRoute,
    LeadScored,
    ModelRef,
    OnboardingPlanned,
    OpportunityInsightsComputed,
    PlannedProvisioning,
    UpsellCandidateFlagged,
)
from schema_registry.events.envelope import ENVELOPE_FIELDS, Event, FieldValue
from schema_registry.events.operations import (
    EventDeadLettered,
    PredictionMade,
    UsageSignalReported,
    WorkflowAdvanced,
)
from schema_registry.events.salesforce import (
    ChangeEventHeader,
    ChangeType,
    PlatformEventPublished,
    RecordChanged,
    ReplayCheckpointStored,
)

__all__ = [
    "ENVELOPE_FIELDS",
    "ChangeEventHeader",
    "ChangeType",
    "ChurnRiskAssessed",
    "CommandExecuted",
    "CommandOutcome",
    "Event",
    "EventDeadLettered",
    "Factor",
    "FieldValue",
    "LeadRoute",
    "LeadScored",
    "ModelRef",
    "NotificationChannel",
    "NotificationRequested",
    "OnboardingPlanned",
    "OpportunityInsightsComputed",
    "PlannedProvisioning",
    "PlatformEventPublished",
    "PredictionMade",
    "ProvisioningFinished",
    "ProvisioningRequested",
    "ProvisioningStatus",
    "RecordChanged",
    "ReplayCheckpointStored",
    "SalesforceError",
    "SalesforceOperation",
    "SalesforceWriteRequested",
    "UpsellCandidateFlagged",
    "UsageSignalReported",
    "WorkflowAdvanced",
]
