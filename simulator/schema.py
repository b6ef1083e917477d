"""The org's metadata: objects, fields, field types, and the ``describe`` shapes built from them.

Standard objects carry the fields integrations usually touch; the custom fields of the
project's data model (``AI_Enhanced_Score__c``, ``Churn_Risk__c``...) are declared with
their real types. ``Einstein_Lead_Score__c`` is where the simulated Einstein Lead
Scoring writes its 0-100 score. Values are validated and coerced by
:mod:`simulator.values`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from simulator.ids import KEY_PREFIXES

LONG_TEXT = 131072


@dataclass(frozen=True)
class Field:
    """One field of an sObject."""

    name: str
    type: str
    label: str = ""
    length: int = 0
    required: bool = False
    createable: bool = True
    updateable: bool = True
    picklist: tuple[str, ...] = ()
    default: Any = None
    reference_to: tuple[str, ...] = ()
    relationship_name: str | None = None
    custom: bool = False
    external_id: bool = False
    """An External ID: unique, and usable as the key of an upsert."""

    @property
    def restricted(self) -> bool:
        """Whether a picklist refuses values outside its list (custom ones and statuses do)."""
        return self.custom or self.name in ("Status", "StageName")

    def describe(self) -> dict[str, Any]:
        """The field as in ``/sobjects/X/describe`` ``fields``."""
        return {
            "name": self.name,
            "label": self.label or self.name.replace("__c", "").replace("_", " "),
            "type": self.type,
            "soapType": _SOAP_TYPES.get(self.type, "xsd:string"),
            "length": self.length,
            "precision": 18 if self.type in ("currency", "double", "percent") else 0,
            "scale": 2 if self.type in ("currency", "percent") else 0,
            "nillable": not self.required and self.type != "boolean",
            "createable": self.createable,
            "updateable": self.updateable,
            "custom": self.custom,
            "defaultedOnCreate": self.default is not None,
            "defaultValue": self.default if self.type == "boolean" else None,
            "externalId": self.external_id,
            "idLookup": self.name == "Id" or self.external_id,
            "filterable": True,
            "sortable": self.type not in ("textarea",),
            "unique": self.external_id,
            "calculated": not self.createable and not self.updateable and self.name != "Id",
            "picklistValues": [
                {"active": True, "defaultValue": v == self.default, "label": v, "value": v}
                for v in self.picklist
            ],
            "restrictedPicklist": self.type.endswith("picklist") and self.restricted,
            "referenceTo": list(self.reference_to),
            "relationshipName": self.relationship_name,
        }


_SOAP_TYPES = {
    "id": "tns:ID",
    "reference": "tns:ID",
    "boolean": "xsd:boolean",
    "int": "xsd:int",
    "double": "xsd:double",
    "currency": "xsd:double",
    "percent": "xsd:double",
    "date": "xsd:date",
    "datetime": "xsd:dateTime",
}


def _text(name: str, length: int = 255, **kw: Any) -> Field:
    return Field(name, "string", length=length, **kw)


def _ref(name: str, *targets: str, relationship: str, **kw: Any) -> Field:
    return Field(
        name, "reference", length=18, reference_to=targets, relationship_name=relationship, **kw
    )


def _custom(name: str, type_: str, length: int = 0, **kw: Any) -> Field:
    return Field(name, type_, length=length, custom=True, **kw)


# The pipeline's sink creates Tasks and Cases by upsert on this External ID (the id of
# the command that asked for the record), so a create retried after a lost answer
# finds the record it made instead of making another.
_COMMAND_KEY = _custom("SFE_Command_Id__c", "string", 36, external_id=True)

_SYSTEM = (
    Field("Id", "id", length=18, createable=False, updateable=False),
    Field("IsDeleted", "boolean", createable=False, updateable=False, default=False),
    Field("CreatedDate", "datetime", createable=False, updateable=False),
    _ref("CreatedById", "User", relationship="CreatedBy", createable=False, updateable=False),
    Field("LastModifiedDate", "datetime", createable=False, updateable=False),
    _ref(
        "LastModifiedById",
        "User",
        relationship="LastModifiedBy",
        createable=False,
        updateable=False,
    ),
    Field("SystemModstamp", "datetime", createable=False, updateable=False),
)
_OWNER = _ref("OwnerId", "User", relationship="Owner")
_SALUTATION = Field(
    "Salutation", "picklist", length=40, picklist=("Mr.", "Ms.", "Mrs.", "Dr.", "Prof.")
)
_DESCRIPTION = Field("Description", "textarea", length=32000)


def _address(prefix: str) -> tuple[Field, ...]:
    return (
        Field(f"{prefix}Street", "textarea", length=255), _text(f"{prefix}City", 40),
        _text(f"{prefix}State", 80), _text(f"{prefix}PostalCode", 20), _text(f"{prefix}Country", 80),
    )  # fmt: skip


_NAME = Field("Name", "string", length=121, createable=False, updateable=False)
# The values the ML models were trained on (ml/synthetic: "Financial Services", "Government")
# come alongside the older Salesforce-sample ones that simulator.einstein scores ("Finance").
_INDUSTRIES = (
    "Technology",
    "Financial Services",
    "Finance",
    "Healthcare",
    "Manufacturing",
    "Retail",
    "Education",
    "Energy",
    "Media",
    "Government",
)
# The lead model's training sources (ml/synthetic/leads.py SOURCES) first, then Salesforce's
# standard values, which simulator.einstein's points table still knows.
_LEAD_SOURCES = (
    "Web", "Event", "Cold Call", "Partner", "Referral", "Advertisement",
    "Phone Inquiry", "Partner Referral", "Purchased List", "Other",
)  # fmt: skip
STAGES = (
    "Prospecting", "Qualification", "Needs Analysis", "Value Proposition", "Id. Decision Makers",
    "Perception Analysis", "Proposal/Price Quote", "Negotiation/Review", "Closed Won", "Closed Lost",
)  # fmt: skip

_OBJECTS: dict[str, tuple[Field, ...]] = {
    "User": (
        _text("Username", 80, required=True), _text("FirstName", 40), _text("LastName", 80, required=True),
        _NAME, Field("Email", "email", length=128, required=True), _text("Alias", 8),
        Field("IsActive", "boolean", default=True), _text("Title", 80),
    ),
    "Account": (
        _text("Name", 255, required=True), _OWNER,
        Field("Type", "picklist", length=255, picklist=("Prospect", "Customer - Direct", "Customer - Channel", "Partner", "Other")),
        Field("Industry", "picklist", length=255, picklist=_INDUSTRIES),
        Field("AnnualRevenue", "currency"), Field("NumberOfEmployees", "int"),
        Field("Website", "url", length=255), Field("Phone", "phone", length=40),
        *_address("Billing"), *_address("Shipping"), _DESCRIPTION, _text("AccountNumber", 40),
        _text("Site", 80), Field("Rating", "picklist", length=255, picklist=("Hot", "Warm", "Cold")),
        _custom("Churn_Risk__c", "percent"), _custom("Risk_Factors__c", "textarea", LONG_TEXT),
        _custom("Usage_Score__c", "double"),
        _custom("Engagement_Level__c", "picklist", 255, picklist=("High", "Medium", "Low")),
        _custom("Product_Usage_Trend__c", "string", 255),
        _custom("Last_Active_Date__c", "datetime"), _custom("Monthly_Active_Users__c", "double"),
        _custom("Feature_Adoption_Rate__c", "percent"), _custom("Support_Ticket_Count_30d__c", "double"),
        _custom("NPS_Score__c", "double"),
        _custom("Intervention_Plan__c", "textarea", LONG_TEXT),
    ),
    "Contact": (
        _text("FirstName", 40), _text("LastName", 80, required=True), _NAME, _OWNER,
        Field("Email", "email", length=80), Field("Phone", "phone", length=40), _text("Title", 128),
        _ref("AccountId", "Account", relationship="Account"), _SALUTATION, _DESCRIPTION,
        Field("MobilePhone", "phone", length=40), _text("Department", 80), Field("Birthdate", "date"),
        Field("LeadSource", "picklist", length=255, picklist=_LEAD_SOURCES), *_address("Mailing"),
    ),
    "Lead": (
        _text("FirstName", 40), _text("LastName", 80, required=True), _NAME,
        _text("Company", 255, required=True), _text("Title", 128), _OWNER,
        Field("Email", "email", length=80), Field("Phone", "phone", length=40),
        Field("Status", "picklist", length=255, default="Open - Not Contacted", picklist=(
            "Open - Not Contacted", "Working - Contacted", "Closed - Converted", "Closed - Not Converted")),
        Field("LeadSource", "picklist", length=255, picklist=_LEAD_SOURCES),
        Field("Industry", "picklist", length=255, picklist=_INDUSTRIES),
        Field("Rating", "picklist", length=255, picklist=("Hot", "Warm", "Cold")),
        Field("AnnualRevenue", "currency"), Field("NumberOfEmployees", "int"),
        Field("Website", "url", length=255), *_address(""), _SALUTATION, _DESCRIPTION,
        Field("MobilePhone", "phone", length=40),
        _custom("Einstein_Lead_Score__c", "double", label="Einstein Lead Score"),
        _custom("AI_Enhanced_Score__c", "double"), _custom("AI_Reasoning__c", "textarea", LONG_TEXT),
        _custom("AI_Lead_Route__c", "picklist", 255, picklist=("Senior AE", "Nurture", "MQL")),
        _custom("Company_Intelligence__c", "textarea", LONG_TEXT),
        _custom("Tech_Stack__c", "multipicklist", 4099, picklist=(
            "Salesforce", "AWS", "Azure", "GCP", "Snowflake", "Kafka", "Python", "Java", "SAP", "HubSpot",
            "Kubernetes", "Databricks")),
        _custom("Estimated_Budget__c", "currency"), _custom("Decision_Makers__c", "textarea", LONG_TEXT),
        _custom("Web_Visits_30d__c", "double", label="Web Visits (30 days)"),
        _custom("Email_Opens_30d__c", "double", label="Email Opens (30 days)"),
        _custom("Content_Downloads_30d__c", "double", label="Content Downloads (30 days)"),
    ),
    "Opportunity": (
        _text("Name", 120, required=True), _OWNER, _ref("AccountId", "Account", relationship="Account"),
        Field("StageName", "picklist", length=255, required=True, picklist=STAGES),
        Field("Amount", "currency"), Field("CloseDate", "date", required=True),
        _DESCRIPTION, _text("NextStep", 255), Field("ForecastCategoryName", "picklist", length=255,
            picklist=("Omitted", "Pipeline", "Best Case", "Commit", "Closed")),
        Field("Probability", "percent"),
        Field("Type", "picklist", length=255, picklist=("New Business", "Existing Business")),
        Field("LeadSource", "picklist", length=255, picklist=_LEAD_SOURCES),
        Field("IsClosed", "boolean", createable=False, updateable=False, default=False),
        Field("IsWon", "boolean", createable=False, updateable=False, default=False),
        _custom("AI_Win_Probability__c", "percent"), _custom("Risk_Factors__c", "textarea", LONG_TEXT),
        _custom("Recommended_Actions__c", "textarea", LONG_TEXT), _custom("Next_Best_Action__c", "string", 255),
        _custom("Optimal_Close_Date__c", "date"), _custom("Competitor_Intelligence__c", "textarea", LONG_TEXT),
        _custom("Portal_URL__c", "url", 255), _custom("Provisioning_Status__c", "string", 255),
        _custom("Onboarding_Date__c", "date"),
    ),
    "Case": (
        Field("CaseNumber", "string", length=30, createable=False, updateable=False),
        _text("Subject", 255), _DESCRIPTION, _OWNER,
        Field("Type", "picklist", length=255, picklist=("Question", "Problem", "Feature Request")),
        Field("Reason", "picklist", length=255, picklist=("Installation", "Performance", "Breakdown", "Other")),
        _text("SuppliedName", 80), Field("SuppliedEmail", "email", length=80),
        Field("IsClosed", "boolean", createable=False, updateable=False, default=False),
        Field("Status", "picklist", length=255, default="New", picklist=("New", "Working", "Escalated", "Closed")),
        Field("Priority", "picklist", length=255, default="Medium", picklist=("High", "Medium", "Low")),
        Field("Origin", "picklist", length=255, picklist=("Phone", "Email", "Web")),
        _ref("AccountId", "Account", relationship="Account"), _ref("ContactId", "Contact", relationship="Contact"),
        _COMMAND_KEY,
    ),
    "Task": (
        _text("Subject", 255), Field("Description", "textarea", length=32000), _OWNER,
        Field("Status", "picklist", length=255, default="Not Started", picklist=(
            "Not Started", "In Progress", "Completed", "Waiting on someone else", "Deferred")),
        Field("Priority", "picklist", length=255, default="Normal", picklist=("High", "Normal", "Low")),
        Field("ActivityDate", "date"),
        _ref("WhoId", "Contact", "Lead", relationship="Who"),
        _ref("WhatId", "Account", "Opportunity", "Case", relationship="What"),
        _COMMAND_KEY,
    ),
}  # fmt: skip


@dataclass(frozen=True)
class SObject:
    """An object type with its fields by name (exact and lower-cased lookups)."""

    name: str
    fields: dict[str, Field]
    key_prefix: str
    _lower: dict[str, Field] = field(default_factory=dict, compare=False)

    def field(self, name: str) -> Field | None:
        """The field named ``name`` (case-insensitive, as in Salesforce)."""
        return self.fields.get(name) or self._lower.get(name.lower())

    def relationship(self, name: str) -> Field | None:
        """The reference field whose relationship is called ``name`` (case-insensitive)."""
        for candidate in self.fields.values():
            if candidate.relationship_name and candidate.relationship_name.lower() == name.lower():
                return candidate
        return None

    def children(self) -> dict[str, tuple[str, str, str]]:
        """Child relationships by lower-cased name: ``{"contacts": ("Contact", "AccountId", "Contacts")}``."""
        found: dict[str, tuple[str, str, str]] = {}
        for child in OBJECTS.values():
            for candidate in child.fields.values():
                if (
                    candidate.type == "reference"
                    and self.name in candidate.reference_to
                    and candidate.name not in ("OwnerId", "CreatedById", "LastModifiedById")
                ):
                    name = child.name[:-1] + "ies" if child.name.endswith("y") else child.name + "s"
                    found.setdefault(name.lower(), (child.name, candidate.name, name))
        return found

    def describe_global(self, version: str) -> dict[str, Any]:
        """The object as in the ``/sobjects`` list."""
        base = f"/services/data/v{version}/sobjects/{self.name}"
        return {
            "name": self.name,
            "label": self.name,
            "labelPlural": self.name + "s",
            "keyPrefix": self.key_prefix,
            "custom": False,
            "createable": True,
            "updateable": True,
            "deletable": True,
            "queryable": True,
            "replicateable": True,
            "urls": {
                "sobject": base,
                "describe": base + "/describe",
                "rowTemplate": base + "/{ID}",
            },
        }

    def describe(self, version: str) -> dict[str, Any]:
        """The object as in ``/sobjects/X/describe``."""
        result = self.describe_global(version)
        result["fields"] = [f.describe() for f in self.fields.values()]
        result["childRelationships"] = [
            {
                "childSObject": child,
                "field": lookup,
                "relationshipName": name,
                "cascadeDelete": False,
            }
            for child, lookup, name in self.children().values()
        ]
        return result


def _build() -> dict[str, SObject]:
    objects = {}
    for name, own in _OBJECTS.items():
        fields = {f.name: f for f in (*_SYSTEM[:1], *own, *_SYSTEM[1:])}
        objects[name] = SObject(
            name, fields, KEY_PREFIXES[name], {k.lower(): v for k, v in fields.items()}
        )
    return objects


OBJECTS: dict[str, SObject] = _build()
BY_PREFIX: dict[str, SObject] = {o.key_prefix: o for o in OBJECTS.values()}
_LOWER = {name.lower(): obj for name, obj in OBJECTS.items()}


def sobject(name: str) -> SObject | None:
    """The object type called ``name`` (case-insensitive)."""
    return _LOWER.get(name.lower())
