"""The Salesforce sink's memory in PostgreSQL, and the outbox of its result events.

Per sink instance (``sink``, so that environments and tests sharing a database never
see each other's memory): ``salesforce_field_values`` holds the value last written
to each (object, record, field), ``salesforce_commands`` every command handled with
its outcome, and ``salesforce_outbox`` the encoded result and dead-letter events of
batches whose transaction committed. All three are written in the transaction that
also stores the consumed positions; :func:`publish_outbox` then produces the staged
events, waits for the broker to acknowledge them and only then deletes them.

The memory records what the sink wrote, not what Salesforce holds now: a person
changing an AI field by hand is not seen here (``sfe reconcile`` finds such drift).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import KafkaError, Message, Producer
from sqlalchemy import (
    ARRAY,
    BindParameter,
    Connection,
    Engine,
    String,
    any_,
    bindparam,
    delete,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import insert

from projections.tables import salesforce_commands, salesforce_field_values, salesforce_outbox
from schema_registry.codec import Codec
from schema_registry.dead_letters import coordinates, dead_letter
from schema_registry.events import (
    CommandOutcome,
    Event,
    SalesforceError,
    SalesforceWriteRequested,
)
from schema_registry.wire import ReadHeaders
from sfe import metrics

log = logging.getLogger(__name__)

#: A handled command: its outcome, Salesforce's errors and the record id it concerned.
Handled = tuple[CommandOutcome, tuple[SalesforceError, ...], str | None]


class OutboxNotDelivered(Exception):
    """Staged events could not be published; they stay in the outbox for the next try."""


def handled(connection: Connection, sink: str, command_ids: Sequence[str]) -> dict[str, Handled]:
    """The commands of ``command_ids`` that ``sink`` has handled before."""
    t = salesforce_commands
    rows = connection.execute(
        select(t.c.command_id, t.c.outcome, t.c.errors, t.c.salesforce_id).where(
            t.c.sink == sink, t.c.command_id == any_(_text_array(command_ids))
        )
    )
    return {
        command_id: (
            CommandOutcome(outcome),
            tuple(SalesforceError(**{**e, "fields": tuple(e["fields"])}) for e in errors),
            salesforce_id,
        )
        for command_id, outcome, errors, salesforce_id in rows
    }


def remembered(
    connection: Connection, sink: str, commands: Sequence[SalesforceWriteRequested]
) -> dict[tuple[str, str, str], Any]:
    """The values ``sink`` last wrote to the records ``commands`` target."""
    targets = {(c.sobject, c.record_id) for c in commands if c.record_id}
    if not targets:
        return {}
    t = salesforce_field_values
    # One array parameter, whatever the batch size: a list of row constructors this long
    # (10,000 pairs) exceeds PostgreSQL's expression depth limit.
    rows = connection.execute(
        select(t.c.sobject, t.c.record_id, t.c.field, t.c.value).where(
            t.c.sink == sink,
            t.c.record_id == any_(_text_array(sorted({record_id for _, record_id in targets}))),
        )
    )
    return {
        (sobject, record_id, name): value
        for sobject, record_id, name, value in rows
        if (sobject, record_id) in targets
    }


def _text_array(values: Sequence[str]) -> BindParameter[Any]:
    array: Any = ARRAY(String)
    return bindparam(None, list(values), type_=array)


def store(
    connection: Connection,
    values: Sequence[dict[str, Any]],
    outcomes: Sequence[dict[str, Any]],
    outbox: Sequence[dict[str, Any]],
) -> None:
    """Remember written values and handled commands, and stage events (caller's transaction).

    Rows go as executemany parameter sets, which SQLAlchemy sends in pages of
    multi-row INSERTs: one statement with every row of a large batch would pass
    PostgreSQL's limit of 65,535 parameters.
    """
    if values:
        statement = insert(salesforce_field_values)
        connection.execute(
            statement.on_conflict_do_update(
                constraint="salesforce_field_values_pkey",
                set_={
                    "value": statement.excluded.value,
                    "command_id": statement.excluded.command_id,
                    "written_at": func.now(),
                },
            ),
            list(values),
        )
    if outcomes:
        connection.execute(insert(salesforce_commands).on_conflict_do_nothing(), list(outcomes))
    if outbox:
        connection.execute(insert(salesforce_outbox), list(outbox))


def publish_outbox(engine: Engine, producer: Producer, sink: str) -> int:
    """Publish ``sink``'s staged events, wait for the broker, then delete them; how many."""
    t = salesforce_outbox
    with engine.connect() as connection:
        rows = connection.execute(
            select(t.c.id, t.c.topic, t.c.key, t.c.value, t.c.headers)
            .where(t.c.sink == sink)
            .order_by(t.c.id)
        ).all()
    if not rows:
        return 0
    failures: list[str] = []

    def delivered(error: KafkaError | None, message: Message) -> None:
        if error is not None:
            failures.append(f"{message.topic()}: {error}")

    for _, topic, key, value, headers in rows:
        producer.produce(
            topic,
            value,
            key,
            headers=[(name, bytes.fromhex(raw)) for name, raw in headers],
            on_delivery=delivered,
        )
        producer.poll(0)
    if producer.flush(30) != 0 or failures:
        raise OutboxNotDelivered(f"{sink}: {failures or 'flush timed out'}; kept in the outbox")
    with engine.begin() as connection:
        connection.execute(delete(t).where(t.c.sink == sink, t.c.id <= rows[-1][0]))
    return len(rows)


def message_headers(message: Message) -> ReadHeaders:
    """A consumed record's headers as the codec reads them (name, value pairs)."""
    raw = message.headers() or []
    return list(raw.items()) if isinstance(raw, dict) else list(raw)


class Outbox:
    """The result and dead-letter events a sink stages in one batch's transaction.

    :attr:`rows` go to :func:`store` with the batch; :func:`publish_outbox` produces
    them after the commit.
    """

    def __init__(self, sink: str, agent: str, codec: Codec, results: str, dlq: str) -> None:
        """Stage for ``sink`` (whose events come from ``agent``) on catalogue topics."""
        self.sink = sink
        self.agent = agent
        self.codec = codec
        self.results = results
        self.dlq = dlq
        self.rows: list[dict[str, Any]] = []

    def stage(self, event: Event, topic: str | None = None, key: bytes | None = None) -> None:
        """Stage ``event`` for ``topic`` (the results topic by default), keyed by its subject."""
        target = self.codec.topic_prefix + (topic or self.results)
        encoded = self.codec.encode(target, event)
        self.rows.append(
            {
                "sink": self.sink,
                "topic": target,
                "key": key if key is not None else event.subject.encode(),
                "value": encoded.value,
                "headers": [[name, value.hex()] for name, value in encoded.headers],
            }
        )

    def dead_letter(self, message: Message, error: Exception) -> None:
        """Stage a dead letter of ``message`` with ``error`` as its reason."""
        _, timestamp = message.timestamp()
        letter = dead_letter(
            consumer=self.agent,
            topic=str(message.topic()),
            partition=int(message.partition() or 0),
            offset=int(message.offset() or 0),
            key=message.key(),
            value=message.value(),
            headers=message_headers(message),
            error=error,
            time=datetime.fromtimestamp(timestamp / 1000, UTC),
        )
        metrics.DEAD_LETTERS.labels(
            topic=self.codec.topic_prefix + self.dlq, reason=letter.error_type
        ).inc()
        where = coordinates(
            letter.original_topic, letter.original_partition, letter.original_offset
        )
        log.warning("dead letter %s (id %s): %s", where, letter.id, letter.reason)
        self.stage(letter, self.dlq, message.key())
