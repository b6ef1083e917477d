"""Which values of which events are personal, and whose: the one list of personal fields.

Personal values are the contact details and free text of people: the Lead and Contact
fields below, the text of Tasks and Cases, the matching fields of platform events, and
what the agents derive from them (a lead's decision makers, the recipient and text of a
notification about a person). Each value belongs to one data subject, the Lead or
Contact it is about, whose key seals it:

- a Lead or Contact change: the record itself;
- a Task or Case change: the person it names (``WhoId``, ``ContactId``) when the change
  carries it, else the Task or Case itself;
- a platform event: the Lead its ``Lead_Id__c`` names, else the event;
- a command or decision about a person: that person (the event's subject); of a
  notification, the title, the text and, for an e-mail, the recipient.

``SFE_PRIVACY_EXTRA_FIELDS`` adds fields (``Object.Field``, comma-separated), for custom
fields that hold personal data.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from schema_registry.events import (
    Event,
    LeadScored,
    NotificationRequested,
    PlatformEventPublished,
    RecordChanged,
    SalesforceWriteRequested,
)

_PERSON = frozenset(
    {
        "Salutation", "FirstName", "MiddleName", "LastName", "Suffix", "Name",
        "Name.FirstName", "Name.LastName", "Name.MiddleName", "Name.Salutation", "Name.Suffix",
        "Title", "Email", "Phone", "MobilePhone", "HomePhone", "OtherPhone", "Fax",
        "AssistantName", "AssistantPhone", "Birthdate", "Description",
        "Street", "City", "State", "PostalCode", "Country",
        "Address.Street", "Address.City", "Address.State", "Address.PostalCode",
        "Address.Country",
        "Decision_Makers__c",
    }
)  # fmt: skip
_CONTACT_ADDRESSES = frozenset(
    f"{kind}{part}"
    for kind in ("Mailing", "Other")
    for part in ("Street", "City", "State", "PostalCode", "Country")
) | frozenset(
    f"{kind}Address.{part}"
    for kind in ("Mailing", "Other")
    for part in ("Street", "City", "State", "PostalCode", "Country")
)

#: Personal fields per object or platform event.
PERSONAL_FIELDS: Mapping[str, frozenset[str]] = {
    "Lead": _PERSON,
    "Contact": _PERSON | _CONTACT_ADDRESSES,
    "Task": frozenset({"Subject", "Description"}),
    "Case": frozenset(
        {"Subject", "Description", "Comments", "SuppliedName", "SuppliedEmail", "SuppliedPhone"}
    ),
    "New_Lead__e": frozenset({"Email__c", "First_Name__c", "Last_Name__c", "Phone__c", "Name__c"}),
}
#: Fields holding e-mail addresses: indexed so that a subject can be erased by address.
EMAIL_FIELDS = frozenset({"Email", "Email__c", "SuppliedEmail"})
#: Key prefixes of records that are people (Lead, Contact).
PERSON_PREFIXES = ("00Q", "003")
#: Fields of a Task or Case that name the person it is about.
_PERSON_REFERENCES = ("WhoId", "ContactId")
_RECORD_ID = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")
#: Decision keys of :class:`LeadScored` ``enrichment`` that describe people.
LEAD_ENRICHMENT_PERSONAL = frozenset({"decision_makers"})
#: Fields of :class:`NotificationRequested` sealed when it is about a person; the recipient
#: only when it is an address (an e-mail), not a Slack channel.
NOTIFICATION_PERSONAL = ("recipient", "title", "body")


@dataclass(frozen=True)
class Policy:
    """The personal fields of each object, :data:`PERSONAL_FIELDS` plus configured extras."""

    fields: Mapping[str, frozenset[str]]

    @classmethod
    def with_extras(cls, extras: str = "") -> Policy:
        """The default list plus ``Object.Field`` entries of ``extras`` (comma-separated)."""
        merged = {name: set(values) for name, values in PERSONAL_FIELDS.items()}
        for entry in (part.strip() for part in extras.split(",")):
            if not entry:
                continue
            sobject, dot, name = entry.partition(".")
            if not dot or not sobject or not name:
                raise ValueError(f"{entry!r} is not Object.Field")
            merged.setdefault(sobject, set()).add(name)
        return cls({name: frozenset(values) for name, values in merged.items()})

    def personal_fields(self, event: Event) -> tuple[str, frozenset[str]] | None:
        """For an event with a ``fields`` map: its subject and which fields are personal."""
        if isinstance(event, RecordChanged):
            names = self.fields.get(event.header.entity_name)
            if not names:
                return None
            return record_subject(event.header.entity_name, event.subject, event.fields), names
        if isinstance(event, PlatformEventPublished):
            names = self.fields.get(event.event_name)
            if not names:
                return None
            lead = event.fields.get("Lead_Id__c")
            subject = lead if isinstance(lead, str) and is_record_id(lead) else event.subject
            return subject, names
        if isinstance(event, SalesforceWriteRequested):
            names = self.fields.get(event.sobject)
            if not names:
                return None
            target = event.record_id or event.subject
            return record_subject(event.sobject, target, event.fields), names
        return None


def record_subject(sobject: str, record_id: str, fields: Mapping[str, object]) -> str:
    """The data subject of a record's personal values (see the module docstring)."""
    if sobject in ("Task", "Case"):
        for reference in _PERSON_REFERENCES:
            person = fields.get(reference)
            if isinstance(person, str) and is_person_id(person):
                return person
    return record_id


def is_record_id(value: str) -> bool:
    """Whether ``value`` has the shape of a Salesforce record id (15 or 18 characters)."""
    return bool(_RECORD_ID.match(value))


def is_person_id(value: str) -> bool:
    """Whether ``value`` is the id of a Lead or a Contact."""
    return is_record_id(value) and value.startswith(PERSON_PREFIXES)


def is_about_person(event: Event) -> bool:
    """Whether a decision or notification is about a person (its subject is a Lead or Contact)."""
    return isinstance(event, (LeadScored, NotificationRequested)) and is_person_id(event.subject)
