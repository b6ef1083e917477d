"""The frugal Salesforce sink: ``commands.salesforce`` into the org, exactly once in effect.

Each batch the :class:`~projections.runner.ProjectionRunner` consumes is decoded,
planned (:mod:`projections.salesforce.plan`) against what the sink remembers in
PostgreSQL (:mod:`projections.salesforce.memory`), and only the fields whose target
does not already hold the value are written, through sObject Collections
(:mod:`projections.salesforce.writer`), or a Bulk API 2.0 job for large updates
(:mod:`projections.salesforce.bulk`). After
Salesforce answered, one transaction stores the values written, the handled command
ids with their outcomes, one ``CommandExecuted`` per command (and a dead letter per
permanent failure) in an outbox, one ``salesforce.write`` entry of the audit trail
(:mod:`sfe.audit`: counts per object and outcome, API calls, command ids) when the
batch handled any command for the first time, and the consumed positions. The outbox is then
published to ``command.results`` and ``dlq.salesforce`` and emptied; a crash between
the two leaves the events in the outbox for the next start, under the same ids.

Creates are upserts on an External ID holding the command id (``SFE_Command_Id__c``
by default, :attr:`SalesforceSink.create_key_field`), so a create retried after its
answer was lost, or re-sent after a crash before the commit, updates the record it
made instead of making a second one.

A command seen before is answered from memory without a call: ``ALREADY_APPLIED``
(or its original rejection) under the id ``derived_event_id(command, sink,
"result:repeat")``; a first execution's result has the purpose ``"result"``.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Message, Producer
from simple_salesforce.exceptions import SalesforceError as ClientError
from sqlalchemy import Connection, Engine

from projections.runner import ProjectionRunner
from projections.salesforce import memory
from projections.salesforce.bulk import BulkUpdater
from projections.salesforce.memory import message_headers
from projections.salesforce.plan import Group, plan
from projections.salesforce.writer import CollectionsWriter, RecordResult, SinkInterrupted
from schema_registry.codec import Codec
from schema_registry.errors import UndecodableEvent
from schema_registry.events import (
    CommandExecuted,
    CommandOutcome,
    SalesforceError,
    SalesforceOperation,
    SalesforceWriteRequested,
)
from schema_registry.ids import derived_event_id
from sfe import audit, metrics
from sfe.privacy.service import Privacy

log = logging.getLogger(__name__)

AGENT = "projections.salesforce_sink"
COMMANDS, RESULTS, DLQ = "commands.salesforce", "command.results", "dlq.salesforce"
#: Audit action of a batch that handled commands (one entry per batch, see :mod:`sfe.audit`).
AUDIT_ACTION = "salesforce.write"
#: Up to this many command ids are listed in an audit entry; beyond, their count and SHA-256.
AUDIT_MAX_IDS = 50


def audit_details(
    sink: str,
    outcomes: Sequence[dict[str, Any]],
    sobjects: dict[str, str],
    api_calls: int,
    field_writes: int,
    messages: Sequence[Message],
) -> dict[str, Any]:
    """A small summary of a batch for the audit trail.

    Counts per object and outcome, the API calls the batch spent, the field writes
    it planned, the consumed offsets per partition, and the command ids (or, beyond
    :data:`AUDIT_MAX_IDS`, their count and the SHA-256 of the sorted ids, one per line).
    """
    counts: dict[str, dict[str, int]] = {}
    for row in outcomes:
        per_object = counts.setdefault(sobjects.get(row["command_id"], "?"), {})
        per_object[row["outcome"]] = per_object.get(row["outcome"], 0) + 1
    offsets: dict[str, list[int]] = {}
    for message in messages:
        key = f"{message.topic()}[{message.partition()}]"
        offset = int(message.offset() or 0)
        low, high = offsets.get(key, [offset, offset])
        offsets[key] = [min(low, offset), max(high, offset)]
    ids = sorted(row["command_id"] for row in outcomes)
    listed: Any = (
        ids
        if len(ids) <= AUDIT_MAX_IDS
        else {"count": len(ids), "sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest()}
    )
    return {
        "sink": sink,
        "outcomes": counts,
        "api_calls": api_calls,
        "field_writes": field_writes,
        "offsets": offsets,
        "command_ids": listed,
    }


class PermanentFailure(Exception):
    """Why a command went to ``dlq.salesforce`` (Salesforce's errors, or the sink's rules)."""


def result_event(
    command: SalesforceWriteRequested,
    outcome: CommandOutcome,
    errors: Sequence[SalesforceError] = (),
    salesforce_id: str | None = None,
    purpose: str = "result",
) -> CommandExecuted:
    """The ``CommandExecuted`` reporting ``outcome`` for ``command``."""
    return CommandExecuted(
        id=derived_event_id(command.id, AGENT, purpose),
        source=AGENT,
        subject=command.subject,
        time=datetime.now(UTC),
        causation_id=command.id,
        correlation_id=command.correlation_id or command.id,
        command_type=command.type,
        target=f"{command.sobject}/{command.record_id or 'new'}",
        outcome=outcome,
        errors=tuple(errors),
        salesforce_id=salesforce_id,
        operation=command.operation.value,
    )


class SalesforceSink:
    """A :class:`~projections.runner.Projection` whose effect is Salesforce writes."""

    def __init__(
        self,
        name: str,
        codec: Codec,
        writer: CollectionsWriter,
        create_key_field: str = "SFE_Command_Id__c",
        bulk_threshold: int = 0,
        privacy: Privacy | None = None,
    ) -> None:
        """Apply commands as sink ``name``.

        Creates upsert on ``create_key_field`` if set; updates of ``bulk_threshold``
        records or more (of one object and field set) go through Bulk API 2.0 if it is
        not 0. With ``privacy``, sealed values are opened only in the requests to
        Salesforce: the sink's memory keeps them sealed.
        """
        self.name = name
        self.privacy = privacy
        self.create_key_field = create_key_field
        self.bulk_threshold = bulk_threshold
        self.bulk = BulkUpdater(writer) if bulk_threshold > 0 else None
        self.codec = codec
        self.writer = writer
        self.prefix = codec.topic_prefix
        self.topics: Sequence[str] = [self.prefix + COMMANDS]
        self._outbox = memory.Outbox(self.name, AGENT, codec, RESULTS, DLQ)
        self.actor = audit.default_actor(f"sfe sink {name}")
        # Requests of the Salesforce session in the batch in hand (a response hook, as the
        # budget's): what the audit entry reports as the API calls the batch spent.
        self._api_calls = 0
        writer.sf.session.hooks["response"].append(self._count_call)

    def _count_call(self, response: Any, *args: Any, **kwargs: Any) -> None:
        self._api_calls += 1

    def project(self, connection: Connection, messages: Sequence[Message]) -> None:
        """Apply ``messages``' commands and stage their results (inside the runner's transaction)."""
        self._outbox = memory.Outbox(self.name, AGENT, self.codec, RESULTS, DLQ)
        self._api_calls = 0
        sources: dict[str, Message] = {}
        commands: list[SalesforceWriteRequested] = []
        for message in messages:
            try:
                event = self.codec.decode(
                    str(message.topic()), message.value(), message_headers(message)
                )
            except UndecodableEvent as exc:
                self._outbox.dead_letter(message, exc)
                continue
            if not isinstance(event, SalesforceWriteRequested):  # the catalogue forbids it
                self._outbox.dead_letter(message, PermanentFailure(f"not a command: {event.type}"))
                continue
            commands.append(event)
            sources[event.id] = message
        handled = memory.handled(connection, self.name, [c.id for c in commands])
        batch = plan(commands, handled, memory.remembered(connection, self.name, commands))
        log.debug(
            "batch of %d commands: %d field writes in %d groups, %d repeats, %d current",
            len(commands),
            batch.writes,
            len(batch.groups),
            len(batch.repeats),
            len(batch.current),
        )
        outcomes: list[dict[str, Any]] = []
        for command in batch.repeats:
            if command.id not in handled:
                # A redelivered copy in this same batch: its first copy is applied now and
                # gets the command's one result.
                continue
            outcome, errors, sf_id = handled[command.id]
            if outcome != CommandOutcome.REJECTED:
                outcome = CommandOutcome.ALREADY_APPLIED
            self._outbox.stage(result_event(command, outcome, errors, sf_id, "result:repeat"))
        for rejection in batch.rejected:
            self._finish(outcomes, rejection.command, CommandOutcome.REJECTED, (rejection.error,))
            self._outbox.dead_letter(
                sources[rejection.command.id], PermanentFailure(rejection.error.message)
            )
        for command in batch.current:
            self._finish(outcomes, command, CommandOutcome.ALREADY_APPLIED, (), command.record_id)
        values: list[dict[str, Any]] = []
        for group in batch.groups:
            for record, result in zip(group.records, self._write(group), strict=True):
                for command in record.commands:
                    if result.success:
                        self._finish(
                            outcomes, command, CommandOutcome.APPLIED, (), result.record_id
                        )
                        metrics.PROCESSING_LATENCY.labels(stage="salesforce_applied").observe(
                            (datetime.now(UTC) - command.time).total_seconds()
                        )
                    else:
                        self._finish(outcomes, command, CommandOutcome.REJECTED, result.errors)
                        reason = "; ".join(f"{e.status_code}: {e.message}" for e in result.errors)
                        self._outbox.dead_letter(sources[command.id], PermanentFailure(reason))
                if result.success and group.operation is SalesforceOperation.UPDATE:
                    values.extend(
                        {
                            "sink": self.name,
                            "sobject": group.sobject,
                            "record_id": record.record_id,
                            "field": name,
                            "value": value,
                            "command_id": record.commands[-1].id,
                        }
                        for name, value in record.values.items()
                    )
        memory.store(connection, values, outcomes, self._outbox.rows)
        if outcomes:
            sobjects = {command.id: command.sobject for command in commands}
            details = audit_details(
                self.name, outcomes, sobjects, self._api_calls, batch.writes, messages
            )
            audit.record(connection, AUDIT_ACTION, self.name, details, actor=self.actor)

    def _opened(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``rows`` with sealed values opened (an erased subject's values: null)."""
        if self.privacy is None:
            return rows
        pairs = [(name, value) for row in rows for name, value in row.items()]
        values = iter(self.privacy.open_values(pairs))
        return [{name: next(values) for name in row} for row in rows]

    def _call(self, group: Group) -> list[RecordResult]:
        if group.operation is SalesforceOperation.UPDATE:
            rows = [{"Id": record.record_id, **record.values} for record in group.records]
            rows = self._opened(rows)
            if self.bulk is not None and len(rows) >= self.bulk_threshold:
                return self._bulk_update(self.bulk, rows, group.sobject)
            return self.writer.update(rows, group.sobject)
        if not self.create_key_field:
            creates = self._opened([dict(r.values) for r in group.records])
            return self.writer.create(creates, group.sobject)
        key = self.create_key_field
        rows = [{**record.values, key: record.commands[0].id} for record in group.records]
        return self.writer.upsert(self._opened(rows), group.sobject, key)

    def _bulk_update(
        self, bulk: BulkUpdater, rows: list[dict[str, Any]], sobject: str
    ) -> list[RecordResult]:
        """Through one Bulk job; what it left undone or locked goes through Collections."""
        answers = bulk.update(rows, sobject)
        left = [index for index, answer in enumerate(answers) if answer is None]
        retried = self.writer.update([rows[index] for index in left], sobject) if left else []
        for index, answer in zip(left, retried, strict=True):
            answers[index] = answer
        return [answer for answer in answers if answer is not None]

    def _write(self, group: Group) -> list[RecordResult]:
        try:
            return self._call(group)
        except ClientError as exc:
            if exc.status not in (400, 404):  # auth or org trouble: not the commands' fault
                raise
            # The request itself was refused (unknown object or field, malformed values).
            content: list[Any] = exc.content if isinstance(exc.content, list) else []
            errors = tuple(
                SalesforceError(
                    status_code=str(e.get("errorCode", exc.status)),
                    message=str(e.get("message", "")),
                    fields=tuple(e.get("fields") or ()),
                )
                for e in content
                if isinstance(e, dict)
            ) or (SalesforceError(status_code=str(exc.status), message=str(exc)),)
            return [RecordResult(False, None, errors) for _ in group.records]

    def _finish(
        self,
        outcomes: list[dict[str, Any]],
        command: SalesforceWriteRequested,
        outcome: CommandOutcome,
        errors: Sequence[SalesforceError],
        salesforce_id: str | None = None,
    ) -> None:
        outcomes.append(
            {
                "sink": self.name,
                "command_id": command.id,
                "outcome": outcome.value,
                "salesforce_id": salesforce_id,
                "errors": [asdict(e) for e in errors],
            }
        )
        self._outbox.stage(result_event(command, outcome, errors, salesforce_id))


def run_sink(
    runner: ProjectionRunner,
    sink: SalesforceSink,
    engine: Engine,
    producer: Producer,
    stop: threading.Event,
) -> None:
    """Apply batches and publish their results until ``stop`` is set.

    While the API budget is at the reserve no batch is consumed, so no database
    transaction stays open; the commands wait in Kafka. A stop while the writer waits
    (budget, backoff) abandons the batch in hand uncommitted; the next start consumes
    it again from the stored positions.
    """
    memory.publish_outbox(engine, producer, sink.name)
    while not stop.is_set():
        try:
            sink.writer.budget.hold(sink.writer.sf)
            consumed = runner.process_batch().consumed
        except SinkInterrupted:
            log.info("stopped while waiting; the batch in hand is left for the next start")
            return
        if consumed:
            memory.publish_outbox(engine, producer, sink.name)
