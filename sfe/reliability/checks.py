"""What a soak checks after the pipeline drained: nothing lost, nothing applied twice.

In the manner of Kafka's own transaction system tests, every check compares two
independently kept sets and counts both directions:

- **changes**: every change event the org published on the ingestor's channels (its
  SQLite event store, copied before each purge) against the change records in
  ``sf.cdc.*`` (committed reads),
  by identity ``(entity, transactionKey, sequenceNumber, record id)``. A change whose
  event was purged before the ingestor read it (the replay-id expiry fault) counts as
  recovered when a snapshot of its record was appended after the purge;
- **decisions**: ``decisions.leads`` holds one ``LeadScored`` per lead created; on
  the topics written in transactions (:data:`TRANSACTIONAL_DECISIONS`) no fact is
  decided twice; on every decision topic each cause has one decision id (repeated ids
  are counted as redeliveries where the agent is at least once), every Opportunity
  change the insight agent triggers on caused an insight, every deal won an onboarding
  plan and every account of the churn batch an assessment;
- **projection rows**: ``sync_log``, ``ml_predictions`` and ``workflow_executions``
  against the ids on ``command.results``, ``predictions`` and ``workflow.events``;
  the sink's ``salesforce_commands`` against the ids on ``commands.salesforce``;
- **Salesforce fields**: the last applied value of every (record, field) on
  ``commands.salesforce`` against the org and against the sink's memory
  (``salesforce_field_values``); each applied create exists once in the org (by
  ``SFE_Command_Id__c``);
- **redundant writes**: the org's own count of the pipeline's record writes that
  changed nothing (``record_writes`` in ``/_sim/status``) must be zero.
"""

from __future__ import annotations

import json
import math
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, TopicPartition
from simple_salesforce import Salesforce
from sqlalchemy import Engine, select

from agents.opportunity_insights import triggers as insight_trigger
from projections.salesforce_sink import AGENT as SINK_AGENT
from projections.tables import (
    ml_predictions,
    salesforce_commands,
    salesforce_field_values,
    sync_log,
    workflow_executions,
)
from schema_registry.codec import Codec
from schema_registry.events import (
    ChurnRiskAssessed,
    CommandExecuted,
    CommandOutcome,
    Event,
    LeadScored,
    OnboardingPlanned,
    OpportunityInsightsComputed,
    PredictionMade,
    RecordChanged,
    SalesforceOperation,
    SalesforceWriteRequested,
    WorkflowAdvanced,
)
from schema_registry.ids import derived_event_id
from sfe.kafka_security import client_config
from sfe.privacy.service import Privacy
from streams.topics import catalogue

#: A change's identity: (entity, transaction key, sequence number, record id).
ChangeId = tuple[str, str, int, str]
#: Where a record was read: (topic, partition, offset).
Position = tuple[str, int, int]


@dataclass(frozen=True)
class Logged:
    """One decoded record of a topic."""

    topic: str
    partition: int
    offset: int
    event: Event


def read_log(bootstrap: str, prefix: str, names: Iterable[str]) -> dict[str, list[Logged]]:
    """Every committed record of the prefixed topics ``names``, decoded, in partition order."""
    codec = Codec(topic_prefix=prefix)
    topics = [prefix + name for name in names]
    consumer = Consumer(
        {
            **client_config(bootstrap),
            "group.id": f"{prefix}sfe.soak.checker.{uuid.uuid4().hex[:8]}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    out: dict[str, list[Logged]] = {topic.removeprefix(prefix): [] for topic in topics}
    try:
        metadata = consumer.list_topics(timeout=30)
        assignment = [
            TopicPartition(topic, partition, 0)
            for topic in topics
            if topic in metadata.topics
            for partition in metadata.topics[topic].partitions
        ]
        consumer.assign(assignment)
        open_partitions = {(tp.topic, tp.partition) for tp in assignment}
        while open_partitions:
            for message in consumer.consume(1000, 5.0):
                error = message.error()
                topic, partition = str(message.topic()), int(message.partition() or 0)
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        open_partitions.discard((topic, partition))
                        continue
                    raise RuntimeError(f"reading {topic}: {error}")
                raw = message.headers() or []
                pairs = raw.items() if isinstance(raw, dict) else raw
                headers = [(str(k), v if isinstance(v, bytes) else b"") for k, v in pairs]
                event = codec.decode(topic, message.value(), headers)
                out[topic.removeprefix(prefix)].append(
                    Logged(topic, partition, int(message.offset() or 0), event)
                )
    finally:
        consumer.close()
    return out


@dataclass
class Check:
    """One invariant: how many items were expected, found, lost, duplicated, unexpected."""

    name: str
    expected: int = 0
    found: int = 0
    lost: int = 0
    duplicated: int = 0
    unexpected: int = 0
    #: Items that arrived another way (changes recovered by snapshot after a purge).
    recovered: int = 0
    #: Extra copies of an item under its own id on an at-least-once topic (a redelivery
    #: that every consumer skips by id): reported, not a failure.
    redelivered: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No item lost, duplicated or unexpected."""
        return self.lost == 0 and self.duplicated == 0 and self.unexpected == 0

    def example(self, text: str) -> None:
        """Keep a few examples of what went wrong."""
        if len(self.examples) < 10:
            self.examples.append(text)

    def line(self, width: int = 34) -> str:
        """One line for the summary, the name padded to ``width``."""
        extra = f", {self.recovered:,} recovered by snapshot" if self.recovered else ""
        if self.redelivered:
            extra += f", {self.redelivered:,} redelivered copies"
        verdict = "ok" if self.ok else "FAILED " + "; ".join(self.examples)
        return (
            f"{self.name:<{width}} expected {self.expected:>7,}  found {self.found:>7,}  "
            f"lost {self.lost:>3}  duplicated {self.duplicated:>3}  unexpected "
            f"{self.unexpected:>3}{extra}  {verdict}"
        )


def compare(
    name: str, expected: Iterable[Any], found: Sequence[Any], allow_extra: bool = False
) -> Check:
    """Count ``found`` (a multiset) against the set ``expected``: lost, twice, unexpected."""
    want = set(expected)
    have = Counter(found)
    check = Check(name, expected=len(want), found=sum(have.values()))
    for item in want - set(have):
        check.lost += 1
        check.example(f"lost {item}")
    for item, count in have.items():
        if count > 1:
            check.duplicated += count - 1
            check.example(f"{item} x{count}")
        if item not in want and not allow_extra:
            check.unexpected += 1
            check.example(f"unexpected {item}")
    return check


def compare_ids(name: str, expected: Iterable[str], logged: Sequence[str]) -> Check:
    """Like :func:`compare` for event ids on an at-least-once topic.

    A repeated id is a redelivery of one event (consumers skip it by id), counted in
    :attr:`Check.redelivered`; lost and unexpected ids still fail.
    """
    check = compare(name, expected, logged)
    check.redelivered, check.duplicated = check.duplicated, 0
    check.examples = [e for e in check.examples if e.startswith(("lost", "unexpected"))]
    return check


def count(name: str, expected: int, found: int) -> Check:
    """A count that must match exactly (short: lost; over: unexpected)."""
    check = Check(name, expected=expected, found=found)
    check.lost, check.unexpected = max(0, expected - found), max(0, found - expected)
    if check.lost or check.unexpected:
        check.example(f"{found} for {expected}")
    return check


# -- changes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrgChange:
    """A change event the org published."""

    identity: ChangeId
    stream: str
    replay_id: int


def org_changes(
    events: Iterable[tuple[str, int, str, str]], channels: Iterable[str] | None = None
) -> dict[ChangeId, OrgChange]:
    """The change events among the org's stored ``(stream, replay id, channel, payload)``.

    Only those of ``channels`` (the ingestor's subscriptions) when given.
    """
    wanted = None if channels is None else set(channels)
    changes: dict[ChangeId, OrgChange] = {}
    for stream, replay_id, channel, payload in events:
        if not channel.startswith("/data/") or (wanted is not None and channel not in wanted):
            continue
        header = json.loads(payload)["ChangeEventHeader"]
        for record_id in header["recordIds"]:
            identity = (
                str(header["entityName"]),
                str(header["transactionKey"]),
                int(header["sequenceNumber"]),
                str(record_id),
            )
            changes[identity] = OrgChange(identity, stream, replay_id)
    return changes


def check_changes(
    published: dict[ChangeId, OrgChange],
    cdc: Iterable[Logged],
    purged: dict[ChangeId, OrgChange],
) -> Check:
    """Every published change in Kafka once; purged ones at least covered by a snapshot."""
    changes: list[ChangeId] = []
    snapshots: set[str] = set()
    for logged in cdc:
        event = logged.event
        if not isinstance(event, RecordChanged):
            continue
        if event.is_snapshot:
            snapshots.add(event.subject)
            continue
        header = event.header
        changes.append(
            (header.entity_name, header.transaction_key, header.sequence_number, event.subject)
        )
    check = compare("org changes -> sf.cdc.*", published, changes)
    # A purged change that never reached Kafka is recovered if its record was re-read.
    have = set(changes)
    for identity in list(published):
        if identity in have or identity not in purged:
            continue
        if identity[3] in snapshots:
            check.lost -= 1
            check.recovered += 1
            check.examples = [e for e in check.examples if e != f"lost {identity}"]
    return check


# -- decisions ----------------------------------------------------------------------------

#: Decision topics written in Kafka transactions with the consumed offsets.
TRANSACTIONAL_DECISIONS = ("decisions.leads", "decisions.opportunities", "decisions.onboarding")


def check_decisions(
    decisions: Iterable[Logged],
    lead_ids: Sequence[str],
    opportunity_changes: Iterable[Logged],
    won_ids: Sequence[str],
    accounts_assessed: int | None,
) -> list[Check]:
    """One decision per cause, none missing; repeated ids only where delivery allows them.

    The lead and opportunity agents append in Kafka transactions (exactly once in the
    log): one fact decided twice there is a duplicate. The Faust agents' topics are at
    least once with deterministic ids: a repeated id is a redelivery, but two different
    ids for one cause would be two decisions.
    """
    logged = list(decisions)
    lead_path = [e for e in logged if e.topic.endswith("decisions.leads")]
    agents = [e for e in logged if not e.topic.endswith("decisions.leads")]
    # A lead decision's id derives from the lead: one id per lead, however many facts
    # (its CREATE, a recovery snapshot) led to it.
    per_lead: dict[str, set[str]] = defaultdict(set)
    for entry in lead_path:
        if isinstance(entry.event, LeadScored):
            per_lead[entry.event.subject].add(entry.event.id)
    leads = compare(
        "decisions.leads: one per lead",
        lead_ids,
        [lead for lead, ids in per_lead.items() for _ in ids],
    )
    transactional = []
    for topic in TRANSACTIONAL_DECISIONS:
        # One fact decided twice is a duplicate; the same decision again from another
        # fact (a recovery snapshot of a lead) is a redelivery.
        written = [e for e in logged if e.topic.endswith(topic)]
        facts = [(e.event.id, e.event.causation_id or "") for e in written]
        check = compare(f"{topic}: each fact once (txn)", set(facts), facts)
        check.redelivered = len(set(facts)) - len({e.event.id for e in written})
        transactional.append(check)
    causes: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for entry in agents:
        event = entry.event
        causes[(event.type, event.subject, event.causation_id or "")].add(event.id)
    by_cause = Check("agent decisions: one id per cause", expected=len(causes), found=len(causes))
    by_cause.redelivered = len(agents) - sum(len(ids) for ids in causes.values())
    for cause, ids in causes.items():
        if len(ids) > 1:
            by_cause.duplicated += len(ids) - 1
            by_cause.example(f"{cause}: {len(ids)} ids")

    def distinct(kind: type[Event], attribute: str = "subject") -> set[str]:
        return {str(getattr(e.event, attribute)) for e in agents if isinstance(e.event, kind)}

    # Every Opportunity change the agent must decide on (its own trigger rule) caused one.
    triggering = {
        e.event.id: e
        for e in opportunity_changes
        if isinstance(e.event, RecordChanged) and insight_trigger(e.event)
    }
    causes_of_insights = set(triggering)
    insights = {
        str(e.event.causation_id)
        for e in agents
        if isinstance(e.event, OpportunityInsightsComputed)
    }
    checks = [
        leads,
        *transactional,
        by_cause,
        _located(
            compare("opportunity insights: one per trigger", causes_of_insights, list(insights)),
            triggering,
        ),
        compare(
            "onboarding plans: one per deal won",
            won_ids,
            list(distinct(OnboardingPlanned, "opportunity_id")),
        ),
    ]
    if accounts_assessed is not None:
        checks.append(
            count("churn assessments", accounts_assessed, len(distinct(ChurnRiskAssessed)))
        )
    return checks


def _located(check: Check, where: dict[str, Logged]) -> Check:
    """Name the record, partition and offset of each lost cause in the examples."""
    examples = []
    for example in check.examples:
        entry = where.get(example.removeprefix("lost "))
        if example.startswith("lost ") and entry is not None:
            event = entry.event
            kind = ""
            if isinstance(event, RecordChanged):
                kind = "snapshot " if event.is_snapshot else f"{event.header.change_type.value} "
            example += (
                f" ({kind}{event.subject} at {event.time:%H:%M:%S}, "
                f"{entry.topic}[{entry.partition}]@{entry.offset})"
            )
        examples.append(example)
    check.examples = examples
    return check


# -- projections --------------------------------------------------------------------------


def _column(engine: Engine, column: Any, where: Any = None) -> list[str]:
    query = select(column)
    if where is not None:
        query = query.where(where)
    with engine.connect() as connection:
        return [str(value) for (value,) in connection.execute(query)]


def first_results(
    commands: Sequence[SalesforceWriteRequested], results: Sequence[CommandExecuted]
) -> Check:
    """One first-execution result per command; answers to repeats are redeliveries.

    The sink answers a command's first execution under ``derived_event_id(command,
    sink, "result")`` and a repeat under the purpose ``"result:repeat"``.
    """
    ids = {c.id for c in commands}
    first = {derived_event_id(c, SINK_AGENT, "result"): c for c in ids}
    repeat = {derived_event_id(c, SINK_AGENT, "result:repeat") for c in ids}
    distinct = {r.id for r in results}
    check = compare(
        "one first result per command", set(first), [i for i in distinct if i not in repeat]
    )
    check.redelivered = len(distinct & repeat)
    return check


def check_projections(engine: Engine, log: dict[str, list[Logged]], sink: str) -> list[Check]:
    """Each read-model row once per source event, and the sink's record of each command."""
    results = [e.event for e in log["command.results"] if isinstance(e.event, CommandExecuted)]
    predictions = [e.event for e in log["predictions"] if isinstance(e.event, PredictionMade)]
    runs = {
        e.event.subject for e in log["workflow.events"] if isinstance(e.event, WorkflowAdvanced)
    }
    commands = [
        e.event for e in log["commands.salesforce"] if isinstance(e.event, SalesforceWriteRequested)
    ]
    checks = [
        compare_ids("command.results ids", {r.id for r in results}, [r.id for r in results]),
        compare_ids("commands.salesforce ids", {c.id for c in commands}, [c.id for c in commands]),
        compare("sync_log rows", {r.id for r in results}, _column(engine, sync_log.c.event_id)),
        compare(
            "ml_predictions rows",
            {p.id for p in predictions},
            _column(engine, ml_predictions.c.event_id),
        ),
        compare("workflow_executions rows", runs, _column(engine, workflow_executions.c.event_id)),
        compare(
            "salesforce_commands rows (sink)",
            {c.id for c in commands},
            _column(engine, salesforce_commands.c.command_id, salesforce_commands.c.sink == sink),
        ),
        first_results(commands, results),
    ]
    return checks


# -- Salesforce fields --------------------------------------------------------------------


def _same(want: Any, have: Any) -> bool:
    if want is None or have is None:
        return want is None and have is None
    if isinstance(want, bool) or isinstance(have, bool):
        return bool(want) == bool(have) and type(want) is type(have)
    if isinstance(want, int | float) and isinstance(have, int | float):
        return math.isclose(float(want), float(have), rel_tol=1e-9, abs_tol=1e-6)
    return str(want) == str(have)


def final_values(
    log: dict[str, list[Logged]],
) -> tuple[dict[tuple[str, str, str], Any], dict[str, str]]:
    """The last applied value of each (object, record, field), and applied creates' objects.

    Commands count in log order (per record: one partition), each id once.
    """
    outcomes = {
        e.event.causation_id: e.event.outcome
        for e in log["command.results"]
        if isinstance(e.event, CommandExecuted) and e.event.causation_id
    }
    applied = (CommandOutcome.APPLIED, CommandOutcome.ALREADY_APPLIED)
    values: dict[tuple[str, str, str], Any] = {}
    creates: dict[str, str] = {}
    ordered = sorted(log["commands.salesforce"], key=lambda e: (e.partition, e.offset))
    seen: set[str] = set()
    for entry in ordered:
        command = entry.event
        # A redelivered copy (an id seen before) is skipped by the sink, so it is here.
        if not isinstance(command, SalesforceWriteRequested) or command.id in seen:
            continue
        seen.add(command.id)
        if outcomes.get(command.id) not in applied:
            continue
        if command.operation is SalesforceOperation.CREATE:
            creates[command.id] = command.sobject
            continue
        record = command.record_id or command.subject
        for name, value in command.fields.items():
            values[(command.sobject, record, name)] = value
    return values, creates


def check_fields(
    sf: Salesforce,
    engine: Engine,
    log: dict[str, list[Logged]],
    sink: str,
    key_field: str,
    privacy: Privacy | None = None,
) -> list[Check]:
    """The org and the sink's memory hold each field's last applied value; creates once.

    With ``privacy`` the org is compared with the opened values (personal values travel
    sealed; the sink's memory keeps them sealed, as the log does).
    """
    values, creates = final_values(log)
    opened = dict(values)
    if privacy is not None:
        items = list(values.items())
        plain = privacy.open_values([(name, value) for (_, _, name), value in items])
        opened = {key: value for (key, _), value in zip(items, plain, strict=True)}
    by_object: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for sobject, record, name in values:
        by_object[sobject][record].add(name)
    org = Check("Salesforce fields hold final value", expected=len(values))
    for sobject, records in by_object.items():
        names = sorted({name for fields in records.values() for name in fields})
        ids = sorted(records)
        for start in range(0, len(ids), 200):
            chunk = ids[start : start + 200]
            rows = sf.restful(
                "composite/sobjects/" + sobject,
                params={"ids": ",".join(chunk), "fields": ",".join(["Id", *names])},
            )
            for row in rows or []:
                if row is None:
                    continue
                for name in records[str(row["Id"])]:
                    org.found += 1
                    want, have = opened[(sobject, str(row["Id"]), name)], row.get(name)
                    if not _same(want, have):
                        org.lost += 1
                        org.example(f"{sobject} {row['Id']}.{name}: org {have!r}, log {want!r}")
    org.lost += org.expected - org.found
    memory = Check("sink memory holds final value", expected=len(values))
    query = select(
        salesforce_field_values.c.sobject,
        salesforce_field_values.c.record_id,
        salesforce_field_values.c.field,
        salesforce_field_values.c.value,
    ).where(salesforce_field_values.c.sink == sink)
    with engine.connect() as connection:
        remembered = {(o, r, f): v for o, r, f, v in connection.execute(query)}
    for item, want in values.items():
        if item not in remembered:
            memory.lost += 1
            memory.example(f"not remembered {item}")
            continue
        memory.found += 1
        if not _same(want, remembered[item]):
            memory.lost += 1
            memory.example(f"{item}: memory {remembered[item]!r}, log {want!r}")
    memory.unexpected = len(set(remembered) - set(values))
    created: list[str] = []
    for sobject in sorted(set(creates.values())):
        soql = f"SELECT {key_field} FROM {sobject} WHERE {key_field} != null"
        created += [str(r[key_field]) for r in sf.query_all(soql)["records"]]
    return [org, memory, compare("records created by commands", creates, created)]


def check_redundant_writes(status: dict[str, Any], client: str, interruptions: int = 0) -> Check:
    """The org's count of the pipeline's writes that changed nothing.

    Zero is required unless the sink was interrupted (``interruptions``: sink kills,
    PostgreSQL or broker restarts) between a Salesforce call and the commit of what it
    did: it then sends that batch again, and those re-sent writes are reported (as
    ``redelivered``) rather than failed.
    """
    writes: Counter[str] = Counter()
    for origin, counts in dict(status.get("record_writes", {})).items():
        if origin.endswith(f"client={client}"):
            writes.update({str(k): int(v) for k, v in dict(counts).items()})
    check = Check(
        "pipeline writes that changed nothing",
        expected=writes["changed"] + writes["created"],
        found=writes["changed"] + writes["created"] + writes["unchanged"],
    )
    if interruptions:
        check.redelivered = writes["unchanged"]
    else:
        check.duplicated = writes["unchanged"]
        if check.duplicated:
            check.example(f"{check.duplicated} record writes left the record as it was")
    return check


def topic_names(prefix: str = "") -> list[str]:
    """The catalogue's topic names (without prefix)."""
    return [topic.name.removeprefix(prefix) for topic in catalogue(prefix)]
