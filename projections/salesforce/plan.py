"""What a batch of ``commands.salesforce`` commands needs from Salesforce: a pure planner.

The planner never calls Salesforce. Given the decoded commands of a batch (in log
order), the command ids already applied and the values the sink last wrote, it sorts
every command into one of four fates: a repeat of an applied command, rejected by
the conflict rules, already current (every field already holds its value), or
pending. A correction from ``sfe reconcile`` (:data:`CORRECTION_SOURCE`) is never
"already current": it exists because the org drifted from what the sink remembers.
Pending updates are merged per record (a later command wins a field) and grouped by
object, each record keeping its own fields, so the records of a batch fill calls of
200 whatever fields they set. Creates are grouped by object and field set, one new
record per command.

Conflict rules (SPEC.md, "Conflict Resolution"): Salesforce owns contact
information, deal stages and contract details. A command that touches one of the
fields of :data:`PROTECTED_FIELDS` (or any field of a :data:`PROTECTED_OBJECTS`
object) is rejected **as a whole**, its other fields included: a command is one
decision's intent, and applying half of it would hide the bug that produced it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from schema_registry.events import SalesforceError, SalesforceOperation, SalesforceWriteRequested
from schema_registry.events.envelope import FieldValue

#: Fields Salesforce owns on every object: contact information.
_CONTACT_INFORMATION = frozenset(
    {
        "Salutation", "FirstName", "MiddleName", "LastName", "Suffix", "Name", "Title",
        "Email", "Phone", "MobilePhone", "HomePhone", "OtherPhone", "Fax", "AssistantPhone",
        "Street", "City", "State", "PostalCode", "Country", "Address",
        "MailingStreet", "MailingCity", "MailingState", "MailingPostalCode", "MailingCountry",
        "BillingStreet", "BillingCity", "BillingState", "BillingPostalCode", "BillingCountry",
        "ShippingStreet", "ShippingCity", "ShippingState", "ShippingPostalCode",
        "ShippingCountry", "Website", "HasOptedOutOfEmail", "DoNotCall",
    }
)  # fmt: skip

#: The one list of fields the sink never writes, per object ("*" applies to every object).
PROTECTED_FIELDS: Mapping[str, frozenset[str]] = {
    "*": _CONTACT_INFORMATION,
    # Deal stages and the contract terms of a deal.
    "Opportunity": frozenset(
        {
            "StageName",
            "Probability",
            "ForecastCategoryName",
            "IsClosed",
            "IsWon",
            "Amount",
            "CloseDate",
            "ContractId",
        }
    ),
    "Lead": frozenset({"Status", "IsConverted"}),
    "Account": frozenset({"Type"}),
}

#: Objects Salesforce owns entirely: contact records and contract details.
PROTECTED_OBJECTS = frozenset({"Contact", "Contract", "ContractLineItem", "Order", "Quote"})

#: Source of ``sfe reconcile``'s corrections. They re-assert a value the org no longer
#: holds although the sink remembers writing it, so that memory cannot excuse them.
CORRECTION_SOURCE = "sfe.reconcile"

#: ``statusCode`` of the error a command touching a protected field is rejected with.
PROTECTED_FIELD = "PROTECTED_FIELD"
MISSING_RECORD_ID = "MISSING_RECORD_ID"

#: (object, record id, field) -> the value the sink last wrote there.
Memory = Mapping[tuple[str, str, str], FieldValue]


def protected_fields(sobject: str, fields: Iterable[str]) -> tuple[str, ...]:
    """The fields of ``fields`` that Salesforce owns on ``sobject`` (compound parts by root)."""
    if sobject in PROTECTED_OBJECTS:
        return tuple(sorted(fields))
    owned = PROTECTED_FIELDS["*"] | PROTECTED_FIELDS.get(sobject, frozenset())
    return tuple(sorted(name for name in fields if name.split(".", 1)[0] in owned))


@dataclass(frozen=True)
class Rejection:
    """A command the sink refuses without calling Salesforce."""

    command: SalesforceWriteRequested
    error: SalesforceError


@dataclass(frozen=True)
class PendingRecord:
    """One record of a Collections call and the commands whose fields it carries."""

    record_id: str | None
    values: Mapping[str, FieldValue]
    commands: tuple[SalesforceWriteRequested, ...]


@dataclass(frozen=True)
class Group:
    """Records of one object and operation (creates: one field set); ``fields``: their union."""

    operation: SalesforceOperation
    sobject: str
    fields: tuple[str, ...]
    records: tuple[PendingRecord, ...]


@dataclass(frozen=True)
class Plan:
    """The fate of every command of a batch."""

    repeats: tuple[SalesforceWriteRequested, ...] = ()
    rejected: tuple[Rejection, ...] = ()
    current: tuple[SalesforceWriteRequested, ...] = ()
    groups: tuple[Group, ...] = ()
    writes: int = 0


def _rejection(command: SalesforceWriteRequested) -> Rejection | None:
    owned = protected_fields(command.sobject, command.fields)
    if owned:
        return Rejection(
            command,
            SalesforceError(
                status_code=PROTECTED_FIELD,
                message=f"Salesforce owns {', '.join(owned)} on {command.sobject} "
                "(contact information, deal stages, contract details); the command is "
                "rejected as a whole",
                fields=owned,
            ),
        )
    if command.operation is SalesforceOperation.UPDATE and not command.record_id:
        return Rejection(
            command,
            SalesforceError(status_code=MISSING_RECORD_ID, message="an UPDATE needs record_id"),
        )
    return None


def _union(records: Iterable[PendingRecord]) -> tuple[str, ...]:
    return tuple(sorted({name for record in records for name in record.values}))


def plan(
    commands: Iterable[SalesforceWriteRequested], applied: Iterable[str], memory: Memory
) -> Plan:
    """Sort ``commands`` (log order) by fate; ``applied`` are command ids done earlier."""
    done = set(applied)
    repeats: list[SalesforceWriteRequested] = []
    rejected: list[Rejection] = []
    current: list[SalesforceWriteRequested] = []
    updates: dict[tuple[str, str], tuple[dict[str, FieldValue], list[SalesforceWriteRequested]]]
    updates = {}
    creates: list[SalesforceWriteRequested] = []
    for command in commands:
        if command.id in done:
            repeats.append(command)
            continue
        done.add(command.id)
        rejection = _rejection(command)
        if rejection is not None:
            rejected.append(rejection)
        elif command.operation is SalesforceOperation.CREATE:
            creates.append(command)
        else:
            record_id = str(command.record_id)
            values, owners = updates.setdefault((command.sobject, record_id), ({}, []))
            correction = command.source == CORRECTION_SOURCE
            changed = {
                name: value
                for name, value in command.fields.items()
                if correction
                or (command.sobject, record_id, name) not in memory
                or memory[(command.sobject, record_id, name)] != value
                or name in values
            }
            if changed:
                values.update(changed)
                owners.append(command)
            else:
                current.append(command)
    pending: dict[tuple[SalesforceOperation, str, tuple[str, ...]], list[PendingRecord]] = {}
    for (sobject, record_id), (values, owners) in updates.items():
        if values:
            # Updates of one object share calls whatever their fields: each record of a
            # Collections call carries its own, and a Bulk job's empty cells leave the
            # fields a record does not set alone.
            update_key = (SalesforceOperation.UPDATE, sobject, ())
            pending.setdefault(update_key, []).append(
                PendingRecord(record_id, values, tuple(owners))
            )
    for command in creates:
        create_key = (SalesforceOperation.CREATE, command.sobject, tuple(sorted(command.fields)))
        pending.setdefault(create_key, []).append(PendingRecord(None, command.fields, (command,)))
    groups = tuple(
        Group(op, sobject, names or _union(recs), tuple(recs))
        for (op, sobject, names), recs in pending.items()
    )
    writes = sum(len(r.values) for g in groups for r in g.records)
    return Plan(tuple(repeats), tuple(rejected), tuple(current), groups, writes)
