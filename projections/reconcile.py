"""Reconcile Salesforce against the log: find AI fields that no longer hold what the log says.

The log says what each AI field of a record should hold: the value of the **last
UPDATE command** for that (object, record, field) in ``commands.salesforce``
(commands are keyed by record id, so one record's commands sit in one partition, in
order). ``command.results`` refines that:

- a command the sink **rejected** (protected field, Salesforce's validation) never
  reached Salesforce and is not expected: its fields keep the value of the latest
  earlier command that was not rejected (and a re-sent correction would only fail
  again);
- a record whose latest command has **no result yet** is *pending*: the sink has not
  caught up with it, so it is neither compared nor corrected.

Only **AI fields** are compared: custom (``__c``) fields that the pipeline writes
and that :func:`projections.salesforce.plan.protected_fields` does not give to
Salesforce. Standard fields a command may carry (``OwnerId`` of a routed lead) are
assignments people are free to change afterwards, not AI output, and are left alone.

Salesforce's current values are read with one Bulk API 2.0 query job (``SELECT Id,
<AI fields> FROM <Object>``, with ``WHERE Id IN (...)`` chunks when few records are
in scope), through the simple-salesforce client of :func:`streams.salesforce.rest.connect`
and typed as :func:`streams.ingest.backfill.typed_value` types backfill rows. No value
from the log is pasted into SOQL as it came: the object name and record ids pass
:func:`streams.ingest.reader.checked_object_name` / ``checked_record_id``, field names
must be fields the object's ``describe`` lists.

Values are compared by field type (:func:`same_value`): numbers as numbers rounded to
the field's scale, dates and date-times as instants, multi-select picklists as sets,
text modulo line endings and truncation to the field's length, empty text as null.

A correction is one :class:`SalesforceWriteRequested` UPDATE per differing record,
holding only the differing fields, with the id ``derived_event_id(run key, AGENT,
"correct:<object>/<record id>")``. The run key names the object, ``--since`` and the
end offsets of ``commands.salesforce`` the run read, so a repeated run over the same
log yields the same ids, and a run after new commands (corrections included) new ones.
Corrections are appended to ``commands.salesforce`` in Kafka transactions.

The sink skips a field whose value it remembers having written
(:mod:`projections.salesforce.memory`); a drifted field is exactly one where that
memory is wrong, so the sink writes commands of this module's source
(:data:`~projections.salesforce.plan.CORRECTION_SOURCE`) whatever it remembers.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import partial
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message
from confluent_kafka import TopicPartition as Partition
from simple_salesforce import Salesforce

from projections.salesforce.plan import CORRECTION_SOURCE, protected_fields
from schema_registry.codec import Codec
from schema_registry.errors import UndecodableEvent
from schema_registry.events import (
    CommandExecuted,
    CommandOutcome,
    FieldValue,
    SalesforceOperation,
    SalesforceWriteRequested,
)
from schema_registry.ids import derived_event_id
from sfe import metrics
from sfe.kafka_security import client_config
from sfe.privacy.cipher import is_sealed
from sfe.privacy.service import Privacy
from streams.ingest.appender import OutboundRecord, TransactionalAppender, message_headers
from streams.ingest.backfill import typed_value
from streams.ingest.reader import (
    UnsafeQueryValue,
    checked_object_name,
    checked_record_id,
)
from streams.topic_admin import while_leaders_settle

log = logging.getLogger(__name__)

AGENT = CORRECTION_SOURCE
COMMANDS, RESULTS = "commands.salesforce", "command.results"
#: The objects whose AI fields the pipeline writes.
OBJECTS = ("Lead", "Opportunity", "Account")
#: Up to this many records in scope are read with ``WHERE Id IN`` chunks; more: a full scan.
ID_QUERY_LIMIT = 2000
_IDS_PER_QUERY = 200
_COMPOUND_TYPES = {"address", "location"}
_NUMBER_TYPES = {"int", "double", "currency", "percent"}

Progress = Callable[[int, int], None]


def _no_progress(done: int, total: int) -> None:
    return None


# ---------------------------------------------------------------------------------------
# Pure logic: which fields are ours, what the log expects, how values compare.


def ai_fields(sobject: str, names: Iterable[str]) -> tuple[str, ...]:
    """The fields of ``names`` reconcile compares on ``sobject``: custom, not Salesforce's."""
    custom = [name for name in names if name.endswith("__c")]
    owned = set(protected_fields(sobject, custom))
    return tuple(sorted(name for name in custom if name not in owned))


@dataclass
class RecordExpectation:
    """What the log says one record's AI fields should hold, and the command behind it."""

    record_id: str
    values: dict[str, FieldValue] = field(default_factory=dict)
    #: The latest command of the record that was not rejected (its values are re-asserted).
    command_id: str = ""
    correlation_id: str | None = None
    #: The time of the record's latest command in the log, whatever became of it.
    last_time: datetime | None = None
    #: The latest command has no result yet: the sink has not caught up.
    pending: bool = False


@dataclass
class Expectations:
    """Folds ``command.results`` and then ``commands.salesforce`` into expectations per record.

    Feed every result first (:meth:`add_result`), then the commands in log order
    (:meth:`add_command`); commands of other objects, creates and updates carrying no
    AI field are ignored.
    """

    sobject: str
    #: Command id -> was it rejected (a command with no entry has no result yet).
    outcomes: dict[str, bool] = field(default_factory=dict)
    records: dict[str, RecordExpectation] = field(default_factory=dict)
    commands: int = 0
    rejected: int = 0

    def add_result(self, result: CommandExecuted) -> None:
        """Remember what became of the command ``result.causation_id``."""
        if result.causation_id:
            rejected = result.outcome is CommandOutcome.REJECTED
            self.outcomes[result.causation_id] = rejected or self.outcomes.get(
                result.causation_id, False
            )

    def add_command(self, command: SalesforceWriteRequested) -> None:
        """Fold one command (log order within its record's partition)."""
        if (
            command.sobject != self.sobject
            or command.operation is not SalesforceOperation.UPDATE
            or not command.record_id
        ):
            return
        names = ai_fields(self.sobject, command.fields)
        if not names:
            return
        self.commands += 1
        record = self.records.setdefault(command.record_id, RecordExpectation(command.record_id))
        record.last_time = command.time
        outcome = self.outcomes.get(command.id)
        record.pending = outcome is None
        if outcome:  # rejected: Salesforce never held these values
            self.rejected += 1
            return
        for name in names:
            record.values[name] = command.fields[name]
        record.command_id = command.id
        record.correlation_id = command.correlation_id or command.id

    def in_scope(self, since: datetime | None = None) -> list[RecordExpectation]:
        """Records to compare: with expected values, not pending, last command at/after ``since``."""
        return [
            record
            for record in self.records.values()
            if record.values
            and not record.pending
            and (since is None or (record.last_time is not None and record.last_time >= since))
        ]

    def pending(self, since: datetime | None = None) -> int:
        """How many records in the window wait for the sink."""
        return sum(
            1
            for r in self.records.values()
            if r.pending and (since is None or (r.last_time is not None and r.last_time >= since))
        )


@dataclass(frozen=True)
class FieldInfo:
    """What comparison needs to know of a field (from ``describe``)."""

    name: str
    type: str
    length: int = 0
    scale: int | None = None


def _number(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _instant(value: Any) -> datetime | None:
    text = str(value).strip().replace("Z", "+00:00")
    if len(text) >= 5 and text[-5] in "+-" and text[-3] != ":":  # +0000 -> +00:00
        text = f"{text[:-2]}:{text[-2:]}"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(microsecond=moment.microsecond // 1000 * 1000)


def _day(value: Any) -> date | None:
    try:
        return date.fromisoformat(str(value).strip()[:10])
    except ValueError:
        return None


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


def same_value(expected: FieldValue, actual: Any, info: FieldInfo) -> bool:
    """True when Salesforce holding ``actual`` means it holds ``expected`` in ``info``'s type.

    ``actual`` is what a query returned (JSON or Bulk CSV: numbers may be text).
    Numbers compare after rounding both sides half-up to the field's scale (Salesforce
    rounds on save); percents are compared as stored (``42.5`` is 42.5 %); dates by day;
    date-times as UTC instants at millisecond precision; multi-select picklists as sets;
    booleans by truth value; text with CRLF line ends as LF, cut to the field's length.
    Null and empty text are the same (Salesforce stores empty text as null).
    """
    if _blank(expected) or _blank(actual):
        return _blank(expected) and _blank(actual)
    kind = info.type
    if kind in _NUMBER_TYPES:
        want, have = _number(expected), _number(actual)
        if want is None or have is None:
            return str(expected) == str(actual)
        scale = 0 if kind == "int" else info.scale
        if scale is not None:
            quantum = Decimal(1).scaleb(-scale)
            want = want.quantize(quantum, ROUND_HALF_UP)
            have = have.quantize(quantum, ROUND_HALF_UP)
            return want == have
        return math.isclose(float(want), float(have), rel_tol=1e-12, abs_tol=1e-12)
    if kind == "boolean":
        return _truth(expected) == _truth(actual)
    if kind == "date":
        return _day(expected) is not None and _day(expected) == _day(actual)
    if kind == "datetime":
        return _instant(expected) is not None and _instant(expected) == _instant(actual)
    if kind == "multipicklist":
        return _choices(expected) == _choices(actual)
    want_text = str(expected).replace("\r\n", "\n")
    have_text = str(actual).replace("\r\n", "\n")
    if info.length > 0:
        want_text, have_text = want_text[: info.length], have_text[: info.length]
    return want_text == have_text


def _truth(value: Any) -> bool:
    return str(value).strip().lower() in ("true", "1")


def _choices(value: Any) -> frozenset[str]:
    return frozenset(part.strip() for part in str(value).split(";") if part.strip())


@dataclass(frozen=True)
class Difference:
    """One record whose AI fields differ: field -> (expected, what Salesforce holds)."""

    sobject: str
    record_id: str
    fields: Mapping[str, tuple[FieldValue, Any]]
    #: The command whose values the correction re-asserts.
    command_id: str
    correlation_id: str | None


def diff_record(
    sobject: str,
    expectation: RecordExpectation,
    actual: Mapping[str, Any],
    infos: Mapping[str, FieldInfo],
) -> Difference | None:
    """The AI fields of one record whose Salesforce value is not the expected one (or None)."""
    differing = {
        name: (value, actual.get(name))
        for name, value in sorted(expectation.values.items())
        if name in infos and not same_value(value, actual.get(name), infos[name])
    }
    if not differing:
        return None
    return Difference(
        sobject,
        expectation.record_id,
        differing,
        expectation.command_id,
        expectation.correlation_id,
    )


def run_key(sobject: str, since: datetime | None, ends: Mapping[int, int]) -> str:
    """What a reconcile run's ids derive from: the object, the window and the log read."""
    window = since.astimezone(UTC).isoformat() if since else "all"
    offsets = ",".join(f"{partition}:{ends[partition]}" for partition in sorted(ends))
    return f"reconcile:{sobject}:{window}:{offsets}"


def correction(difference: Difference, key: str, time: datetime) -> SalesforceWriteRequested:
    """The UPDATE that puts the expected values of ``difference`` back (deterministic id)."""
    return SalesforceWriteRequested(
        id=derived_event_id(key, AGENT, f"correct:{difference.sobject}/{difference.record_id}"),
        source=AGENT,
        subject=difference.record_id,
        time=time,
        causation_id=difference.command_id,
        correlation_id=difference.correlation_id or difference.command_id,
        operation=SalesforceOperation.UPDATE,
        sobject=difference.sobject,
        record_id=difference.record_id,
        fields={name: expected for name, (expected, _) in difference.fields.items()},
    )


# ---------------------------------------------------------------------------------------
# Reading the log.


class LogReader:
    """Reads ``command.results`` and ``commands.salesforce`` to the ends seen at the start."""

    def __init__(self, bootstrap: str, codec: Codec, batch_size: int = 20_000) -> None:
        """Read through a group-less, ``read_committed`` consumer."""
        self.codec = codec
        self.batch_size = batch_size
        self.undecodable = 0
        self._consumer = Consumer(
            {
                **client_config(bootstrap),
                "group.id": "sfe-reconcile",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
                "fetch.max.bytes": 64 * 1024 * 1024,
            }
        )

    def close(self) -> None:
        """Leave the broker."""
        self._consumer.close()

    def ranges(self, topic: str) -> dict[int, tuple[int, int]]:
        """(first, end) offsets of every partition of ``topic`` now."""
        metadata = self._consumer.list_topics(topic, 30).topics.get(topic)
        if metadata is None or metadata.error is not None:
            raise KafkaException(f"topic {topic!r} does not exist (run: sfe topics ensure)")
        found = {}
        for number in sorted(metadata.partitions):
            low, high = while_leaders_settle(
                partial(self._consumer.get_watermark_offsets, Partition(topic, number), 10)
            )
            found[number] = (low, high)
        return found

    def read(
        self,
        topic: str,
        ranges: Mapping[int, tuple[int, int]],
        on_event: Callable[[Any], None],
        progress: Callable[[int], None],
        stop: threading.Event,
    ) -> int:
        """Decode every record of ``ranges`` into ``on_event`` (log order per partition)."""
        wanted = {n: (low, high) for n, (low, high) in ranges.items() if high > low}
        if not wanted:
            return 0
        self._consumer.assign([Partition(topic, n, low) for n, (low, _) in wanted.items()])
        pending = set(wanted)
        read = 0
        try:
            while pending:
                if stop.is_set():
                    raise ReconcileInterrupted(f"stopped while reading {topic}")
                batch = 0
                for message in self._consumer.consume(self.batch_size, 0.25):
                    number = int(message.partition() or 0)
                    error = message.error()
                    if error is not None and error.code() == KafkaError._PARTITION_EOF:
                        pending.discard(number)
                        continue
                    if error is not None:
                        raise KafkaException(error)
                    offset = int(message.offset() or 0)
                    if number not in pending or offset >= wanted[number][1]:
                        pending.discard(number)
                        continue
                    if offset >= wanted[number][1] - 1:
                        pending.discard(number)
                    batch += 1
                    self._decode(topic, message, on_event)
                read += batch
                progress(batch)
        finally:
            self._consumer.unassign()
        return read

    def _decode(self, topic: str, message: Message, on_event: Callable[[Any], None]) -> None:
        try:
            event = self.codec.decode(topic, message.value(), message_headers(message))
        except UndecodableEvent as exc:  # the sink dead-letters these; nothing to expect
            self.undecodable += 1
            log.debug("skipping undecodable record of %s: %s", topic, exc)
            return
        on_event(event)


class ReconcileInterrupted(Exception):
    """The run was stopped before it finished; nothing was appended by the unfinished part."""


def read_expectations(
    reader: LogReader,
    sobject: str,
    prefix: str,
    progress: Progress = _no_progress,
    stop: threading.Event | None = None,
) -> tuple[Expectations, dict[int, int]]:
    """Fold the log into expectations; also the ``commands.salesforce`` end offsets read to.

    The command topic's ends are taken first, so every command read had its result
    topic read afterwards: a command whose result is not found is truly pending.
    """
    stop = stop or threading.Event()
    commands_topic, results_topic = prefix + COMMANDS, prefix + RESULTS
    command_ranges = reader.ranges(commands_topic)
    result_ranges = reader.ranges(results_topic)
    total = sum(high - low for low, high in (*command_ranges.values(), *result_ranges.values()))
    done = 0

    def advance(count: int) -> None:
        nonlocal done
        if count:
            done += count
            progress(done, total)

    folded = Expectations(sobject)

    def on_result(event: Any) -> None:
        if isinstance(event, CommandExecuted):
            folded.add_result(event)

    def on_command(event: Any) -> None:
        if isinstance(event, SalesforceWriteRequested):
            folded.add_command(event)

    reader.read(results_topic, result_ranges, on_result, advance, stop)
    reader.read(commands_topic, command_ranges, on_command, advance, stop)
    if done != total:  # transaction markers and aborted records take offsets too
        progress(total, total)
    return folded, {n: high for n, (_, high) in command_ranges.items()}


# ---------------------------------------------------------------------------------------
# Reading Salesforce.


def describe_fields(client: Salesforce, sobject: str) -> dict[str, FieldInfo]:
    """Every non-compound field of ``sobject`` by name, from ``describe``."""
    name = checked_object_name(sobject)
    description = getattr(client, name).describe()
    return {
        str(f["name"]): FieldInfo(
            str(f["name"]),
            str(f["type"]),
            int(f.get("length") or 0),
            None if f.get("scale") is None else int(f["scale"]),
        )
        for f in description["fields"]
        if f["type"] not in _COMPOUND_TYPES
    }


def query_fields(wanted: Iterable[str], infos: Mapping[str, FieldInfo]) -> tuple[str, ...]:
    """The fields of ``wanted`` the object has (the only names a query may contain)."""
    return tuple(sorted(name for name in set(wanted) if name in infos and name != "Id"))


def bulk_values(
    client: Salesforce,
    sobject: str,
    fields: Sequence[str],
    infos: Mapping[str, FieldInfo],
    record_ids: Sequence[str] | None = None,
) -> Iterator[dict[str, Any]]:
    """Rows of ``Id`` and ``fields`` of ``sobject`` (Bulk API 2.0), typed by ``describe``.

    With ``record_ids``, only those records (``WHERE Id IN``, 200 ids per query job);
    otherwise every record of the object.
    """
    name = checked_object_name(sobject)
    unknown = [f for f in fields if f not in infos]
    if unknown:
        raise UnsafeQueryValue(f"not fields of {name}: {unknown!r}")
    select = f"SELECT {', '.join(('Id', *fields))} FROM {name}"
    if record_ids is None:
        queries = [select]
    else:
        ids = [checked_record_id(record_id) for record_id in record_ids]
        queries = [
            select
            + " WHERE Id IN ("
            + ", ".join(f"'{i}'" for i in ids[s : s + _IDS_PER_QUERY])
            + ")"
            for s in range(0, len(ids), _IDS_PER_QUERY)
        ]
    for soql in queries:
        for page in getattr(client.bulk2, name).query(soql, max_records=10_000, wait=1):
            for row in csv.DictReader(io.StringIO(str(page))):
                yield {
                    column: typed_value(value, infos[column].type if column in infos else "string")
                    for column, value in row.items()
                }


# ---------------------------------------------------------------------------------------
# The run.


@dataclass
class Report:
    """What a reconcile run found (and, with ``apply``, appended)."""

    sobject: str
    since: datetime | None
    commands: int = 0
    rejected: int = 0
    undecodable: int = 0
    in_scope: int = 0
    pending: int = 0
    compared: int = 0
    #: Records the log expects values of that Salesforce does not have (deleted or unknown).
    missing: list[str] = field(default_factory=list)
    differences: list[Difference] = field(default_factory=list)
    corrections: list[SalesforceWriteRequested] = field(default_factory=list)
    key: str = ""
    #: Record ids in the log that are not Salesforce ids: never queried, never corrected.
    invalid_ids: list[str] = field(default_factory=list)

    @property
    def differing_fields(self) -> int:
        """Number of differing (record, field) pairs."""
        return sum(len(d.fields) for d in self.differences)


def compare(
    client: Salesforce,
    sobject: str,
    expectations: Sequence[RecordExpectation],
    progress: Progress = _no_progress,
    stop: threading.Event | None = None,
) -> tuple[list[Difference], list[str], int]:
    """Differences, records missing in Salesforce, and records compared."""
    stop = stop or threading.Event()
    if not expectations:
        return [], [], 0
    infos = describe_fields(client, sobject)
    fields = query_fields((n for e in expectations for n in e.values), infos)
    unknown = sorted({n for e in expectations for n in e.values} - set(fields))
    if unknown:
        log.warning("%s has no fields %s; they are not compared", sobject, ", ".join(unknown))
    by_id = {e.record_id[:15]: e for e in expectations}
    ids = sorted(e.record_id for e in expectations) if len(by_id) <= ID_QUERY_LIMIT else None
    seen: set[str] = set()
    differences: list[Difference] = []
    total = len(by_id)
    for row in bulk_values(client, sobject, fields, infos, ids):
        if stop.is_set():
            raise ReconcileInterrupted("stopped while comparing")
        expectation = by_id.get(str(row.get("Id") or "")[:15])
        if expectation is None or expectation.record_id[:15] in seen:
            continue
        seen.add(expectation.record_id[:15])
        difference = diff_record(sobject, expectation, row, infos)
        if difference is not None:
            differences.append(difference)
        if len(seen) % 1000 == 0 and len(seen) < total:
            progress(len(seen), total)
    progress(total, total)
    missing = sorted(e.record_id for key, e in by_id.items() if key not in seen)
    differences.sort(key=lambda d: d.record_id)
    return differences, missing, len(seen)


def append_corrections(
    appender: TransactionalAppender,
    codec: Codec,
    corrections: Sequence[SalesforceWriteRequested],
    batch_size: int = 2000,
) -> int:
    """Append ``corrections`` to ``commands.salesforce``, ``batch_size`` per Kafka transaction."""
    topic = codec.topic_prefix + COMMANDS
    appender.init()
    for start in range(0, len(corrections), batch_size):
        batch = []
        for command in corrections[start : start + batch_size]:
            encoded = codec.encode(topic, command)
            batch.append(
                OutboundRecord(
                    topic, command.subject.encode(), encoded.value, tuple(encoded.headers)
                )
            )
        appender.append(batch, [])
        metrics.EVENTS_PRODUCED.labels(topic=topic).inc(len(batch))
    appender.close()
    return len(corrections)


def reconcile(
    reader: LogReader,
    client: Salesforce,
    sobject: str,
    since: datetime | None = None,
    read_progress: Progress = _no_progress,
    compare_progress: Progress = _no_progress,
    stop: threading.Event | None = None,
    privacy: Privacy | None = None,
) -> Report:
    """Compare ``sobject``'s AI fields in Salesforce with the log (nothing is written).

    With ``privacy``, sealed expected values are opened to be compared (those of erased
    subjects are not compared) and the corrections are sealed again.
    """
    name = checked_object_name(sobject)
    expectations, ends = read_expectations(
        reader, name, reader.codec.topic_prefix, read_progress, stop
    )
    scope, invalid_ids = [], []
    for expectation in expectations.in_scope(since):
        try:
            checked_record_id(expectation.record_id)
        except UnsafeQueryValue:
            invalid_ids.append(expectation.record_id)
            continue
        scope.append(expectation)
    if invalid_ids:
        log.warning("%d record ids in the log are not Salesforce ids; skipped", len(invalid_ids))
    if privacy is not None:
        open_expectations(scope, privacy)
    report = Report(
        name,
        since,
        commands=expectations.commands,
        rejected=expectations.rejected,
        undecodable=reader.undecodable,
        in_scope=len(scope),
        pending=expectations.pending(since),
        key=run_key(name, since, ends),
        invalid_ids=sorted(invalid_ids),
    )
    report.differences, report.missing, report.compared = compare(
        client, name, scope, compare_progress, stop
    )
    metrics.RECONCILE_DIFFERENCES.labels(object=name).inc(report.differing_fields)
    now = datetime.now(UTC)
    report.corrections = [correction(d, report.key, now) for d in report.differences]
    if privacy is not None:
        report.corrections = privacy.seal(report.corrections)
    return report


def open_expectations(expectations: Sequence[RecordExpectation], privacy: Privacy) -> None:
    """Open the sealed expected values in place (one key lookup); drop erased subjects' values."""
    sealed = [
        (expectation, name, value)
        for expectation in expectations
        for name, value in expectation.values.items()
        if is_sealed(value)
    ]
    if not sealed:
        return
    opened = privacy.open_values([(name, value) for _, name, value in sealed])
    for (expectation, name, _), value in zip(sealed, opened, strict=True):
        if value is None:
            del expectation.values[name]
        else:
            expectation.values[name] = value
