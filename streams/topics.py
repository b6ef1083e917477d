"""The topic catalogue: every Kafka topic of the pipeline, its shape and its promise to consumers.

Each :class:`Topic` names its partition count, what its key is, how long records
are kept (or that it is compacted), the schema subject of its values (TopicNameStrategy:
``<topic>-value``, kept in ``schema_registry/schemas``), who writes and reads it, and
what its consumers can rely on. ``sfe topics ensure`` creates the topics from this
module, and ``docs/topics.md`` is generated from it, so the broker, the docs and the
code cannot disagree.

Topics that are joined on the same key (record id, account id) have the same
partition count, so they stay co-partitioned. The log-of-record topics keep their
records forever: any projection can be rebuilt from offset zero.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from schema_registry.catalog import CDC_OBJECTS, PLATFORM_EVENTS, value_subject

#: Retention of records that are kept forever (``retention.ms=-1``).
FOREVER: int | None = None
DAY_MS = 24 * 60 * 60 * 1000

_RECORD_ORDER = (
    "Keyed by record id, so every change of one record lands in one partition, in order."
)
_DERIVED_IDS = (
    "Event ids are UUIDv5 of (cause id, agent, purpose): a redelivered or replayed cause "
    "yields the same ids, so consumers deduplicate on `id`."
)


@dataclass(frozen=True)
class Topic:
    """One topic of the catalogue."""

    name: str
    partitions: int
    key: str
    description: str
    guarantees: str
    producers: str
    consumers: str
    retention_ms: int | None = FOREVER
    compacted: bool = False
    #: Catalogue subject of the values; the topic name itself unless the topic is prefixed.
    schema_topic: str = ""

    def __post_init__(self) -> None:
        if self.partitions < 1:
            raise ValueError(f"{self.name}: partitions must be at least 1")
        if self.compacted and self.retention_ms is not None:
            raise ValueError(f"{self.name}: a compacted topic keeps the latest value per key")
        if not self.schema_topic:
            object.__setattr__(self, "schema_topic", self.name)

    @property
    def value_subject(self) -> str:
        """The catalogue subject of this topic's values (``<topic>-value``)."""
        return value_subject(self.schema_topic)

    @property
    def cleanup_policy(self) -> str:
        """``compact`` or ``delete``."""
        return "compact" if self.compacted else "delete"

    @property
    def retention(self) -> str:
        """Retention in words, for people."""
        if self.compacted:
            return "compacted (latest value per key)"
        if self.retention_ms is None:
            return "forever"
        days = self.retention_ms / DAY_MS
        return f"{days:g} days"

    def config(self) -> dict[str, str]:
        """The topic-level settings ``sfe topics ensure`` creates and checks."""
        if self.compacted:
            return {"cleanup.policy": "compact"}
        retention = -1 if self.retention_ms is None else self.retention_ms
        return {"cleanup.policy": "delete", "retention.ms": str(retention)}

    def prefixed(self, prefix: str) -> Topic:
        """A copy of the entry under ``prefix`` (isolated environments, tests); same schema."""
        return replace(self, name=prefix + self.name, schema_topic=self.schema_topic)


def _cdc(obj: str) -> Topic:
    return Topic(
        name=f"sf.cdc.{obj}",
        partitions=6,
        key=f"{obj} record id (18 characters)",
        description=(
            f"Salesforce Change Data Capture events of {obj} records, one Kafka record per "
            "record id of each event. Also the snapshots read after gap and overflow events "
            "and by backfills (`is_snapshot`)."
        ),
        guarantees=(
            f"{_RECORD_ORDER} Each change is appended exactly once: a redelivered event "
            "(same replay id or EventUuid) is not appended again. Records of one multi-record "
            "event share transaction key and sequence number. Changes made by this integration "
            "are flagged `is_echo`."
        ),
        producers="`sfe ingest` (CometD), outbound-message and webhook ingress, `sfe backfill`",
        consumers="agents, projections, replay and reconciliation",
    )


def _platform_event(name: str) -> Topic:
    return Topic(
        name=f"sf.events.{name}",
        partitions=6,
        key="id of the record the event is about (Lead_Id__c for New_Lead__e)",
        description=f"Salesforce `{name}` platform events, as published.",
        guarantees=(
            "Appended exactly once per EventUuid; events about one record keep their order."
        ),
        producers="`sfe ingest` (CometD)",
        consumers="agents.lead_qualification",
    )


def _decision(topic: str, about: str, description: str, consumers: str) -> Topic:
    return Topic(
        name=topic,
        partitions=6,
        key=f"{about} id",
        description=description,
        guarantees=(
            f"{_DERIVED_IDS} Each decision records its inputs (model and version, features, "
            "factors, enrichment answers), so replaying projections never calls out again."
        ),
        producers="agents",
        consumers=consumers,
    )


CATALOGUE: tuple[Topic, ...] = (
    *(_cdc(obj) for obj in CDC_OBJECTS),
    *(_platform_event(name) for name in PLATFORM_EVENTS),
    Topic(
        name="sfe.ingest.checkpoints",
        partitions=1,
        key="streaming channel (e.g. /data/LeadChangeEvent) or ingress channel",
        description="Where each channel resumes: the replay id up to which its events are committed.",
        guarantees=(
            "Compacted: the latest checkpoint per channel is kept forever. A checkpoint is "
            "written in the same Kafka transaction as the events it covers, so a restart "
            "neither skips nor repeats an event. Read it with read_committed."
        ),
        producers="`sfe ingest`, `sfe ingress`",
        consumers="`sfe ingest`, `sfe ingress` (on start)",
        compacted=True,
    ),
    _decision(
        "decisions.leads",
        "Lead",
        "Lead scores (0.4 x Einstein + 0.6 x model) and the route each lead takes.",
        "projections (AI_Enhanced_Score__c, AI_Reasoning__c), routing commands",
    ),
    _decision(
        "decisions.opportunities",
        "Opportunity",
        "Win probability, risk factors, next best action and optimal close date.",
        "projections (AI_Win_Probability__c, Next_Best_Action__c, ...), alerts",
    ),
    _decision(
        "decisions.onboarding",
        "Account",
        "Onboarding plans of Closed Won opportunities: the provisioning tasks to fan out.",
        "agents.onboarding (fan-out and tracking)",
    ),
    _decision(
        "decisions.churn",
        "Account",
        "Daily churn risk per account with risk factors and intervention plan.",
        "projections (Churn_Risk__c, Risk_Factors__c, Intervention_Plan__c), case creation",
    ),
    _decision(
        "decisions.upsell",
        "Account",
        "Accounts flagged as expansion candidates, with the products to offer.",
        "projections, notifications",
    ),
    Topic(
        name="commands.salesforce",
        partitions=6,
        key="target record id (the related record for creates)",
        description="Field updates and record creates (Tasks, Cases) for Salesforce.",
        guarantees=(
            f"{_RECORD_ORDER} {_DERIVED_IDS} The Salesforce sink skips command ids it has "
            "applied and updates whose target already holds the value."
        ),
        producers="agents",
        consumers="projections.salesforce",
    ),
    Topic(
        name="commands.notifications",
        partitions=3,
        key="id of the record the notification is about",
        description="E-mails and Slack messages to send (e.g. #high-value-leads).",
        guarantees=(
            f"{_DERIVED_IDS} The notification sink sends each id once and remembers it; a "
            "crash between a send and its commit can send it again, with the id in the message."
        ),
        producers="agents",
        consumers="projections.notifications",
        retention_ms=30 * DAY_MS,
    ),
    Topic(
        name="commands.provisioning",
        partitions=6,
        key="Account id",
        description="Provisioning requests to the ecosystem's systems for onboarding accounts.",
        guarantees=(
            f"{_DERIVED_IDS} Delivery is at least once: a system must treat a repeated id as "
            "the same request and report its result again on `provisioning.results`."
        ),
        producers="agents.onboarding",
        consumers="ecosystem systems (one consumer group per system, filtering on `system`)",
    ),
    Topic(
        name="provisioning.results",
        partitions=6,
        key="Account id (co-partitioned with commands.provisioning)",
        description="Outcomes of provisioning requests; `causation_id` is the request id.",
        guarantees="Results of one account stay in order; a result may be reported twice.",
        producers="ecosystem systems",
        consumers="agents.onboarding (completion, time-outs)",
    ),
    Topic(
        name="command.results",
        partitions=6,
        key="the command's subject (co-partitioned with commands.salesforce)",
        description="What became of each command: applied, already applied, or rejected.",
        guarantees="One result per command id; `causation_id` is the command id.",
        producers="projections (sinks)",
        consumers="agents (workflow tracking), the CLI",
    ),
    Topic(
        name="predictions",
        partitions=6,
        key="scored record id",
        description="Model scores, live and from re-scoring history with a new model version.",
        guarantees=f"{_DERIVED_IDS} The model name and version are on every record.",
        producers="agents, `ml` re-scoring jobs",
        consumers="model monitoring, projections",
    ),
    Topic(
        name="workflow.events",
        partitions=6,
        key="workflow instance id",
        description="State transitions of workflow instances (onboarding, churn prevention).",
        guarantees="Transitions of one instance stay in order.",
        producers="agents",
        consumers="projections (workflow state), the CLI",
    ),
    Topic(
        name="usage.signals",
        partitions=6,
        key="Account id",
        description="Usage metrics of accounts reported by the ecosystem's systems.",
        guarantees="Signals of one account stay in order; kept 400 days for model training.",
        producers="ecosystem systems",
        consumers="agents.churn (daily batch), `ml` training",
        retention_ms=400 * DAY_MS,
    ),
    Topic(
        name="privacy.erasures",
        partitions=1,
        key="erasure id",
        description=(
            "Erasures of data subjects (`sfe privacy erase`): whose keys were destroyed, "
            "when, by whom and why; no personal data."
        ),
        guarantees=(
            "One record per erasure run, appended after the keys are gone; kept forever, as "
            "the record that the subjects' values in the log are unreadable on purpose."
        ),
        producers="`sfe privacy erase`",
        consumers="compliance reporting, downstream systems that keep their own copies",
    ),
    Topic(
        name="dlq.ingest",
        partitions=1,
        key="the original record's key",
        description="Input that could not be decoded or validated, with its raw bytes and why.",
        guarantees="Nothing is dropped silently: every rejected input is here, with topic, partition and offset.",
        producers="`sfe ingest`, every consumer that decodes",
        consumers="operators (`sfe` CLI), metrics",
    ),
    Topic(
        name="dlq.salesforce",
        partitions=1,
        key="the command's target record id",
        description="Commands Salesforce rejected permanently, with the command bytes and Salesforce's error.",
        guarantees="Every permanently rejected command is here; transient errors are retried instead.",
        producers="projections.salesforce",
        consumers="operators (`sfe` CLI), metrics",
    ),
    Topic(
        name="dlq.notifications",
        partitions=1,
        key="the id of the record the notification is about",
        description=(
            "Notifications that were not delivered (refused by Slack or the mail server, "
            "retries exhausted, no transport or address), with the command bytes and why."
        ),
        guarantees="Every undelivered notification command is here, with its coordinates.",
        producers="projections.notifications",
        consumers="operators (`sfe` CLI), metrics",
    ),
)


def catalogue(prefix: str = "") -> tuple[Topic, ...]:
    """Every topic, optionally under ``prefix`` (for isolated environments and tests)."""
    return tuple(topic.prefixed(prefix) for topic in CATALOGUE) if prefix else CATALOGUE


def topic(name: str) -> Topic:
    """The catalogue entry of ``name``."""
    for entry in CATALOGUE:
        if entry.name == name:
            return entry
    raise KeyError(f"{name} is not in the topic catalogue")
