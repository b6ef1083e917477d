"""Field values: validation and coercion of client input, with Salesforce's exact error codes.

Values are stored as Salesforce returns them in JSON: strings for text, dates
(``2026-01-31``) and date-times (``2026-01-31T09:30:00.000+0000``), numbers for
numeric types, booleans for checkboxes. CSV input (Bulk API 2.0) arrives as text
and goes through the same coercion.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Any

from simulator import ids
from simulator.errors import SalesforceError
from simulator.schema import Field, SObject

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_NUMERIC = {"int", "double", "currency", "percent"}


def label(field: Field) -> str:
    """A field's label as Salesforce puts it in error messages (``Last Name``)."""
    if field.label:
        return field.label
    if field.type == "reference" and field.name.endswith("Id"):
        return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", field.name[:-2]) + " ID"
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", field.name.removesuffix("__c").replace("_", " "))


def format_datetime(moment: datetime) -> str:
    """Salesforce's date-time format: ``2026-01-31T09:30:00.000+0000``."""
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        + f"{moment.microsecond // 1000:03d}+0000"
    )


def parse_datetime(text: str) -> datetime:
    """Parse an ISO-8601 date-time (``Z``, ``+0000`` or ``+00:00`` offsets)."""
    cleaned = text.strip().replace("Z", "+00:00")
    cleaned = re.sub(r"([+-]\d{2})(\d{2})$", r"\1:\2", cleaned)
    moment = datetime.fromisoformat(cleaned)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _wrong_type(field: Field, value: Any) -> SalesforceError:
    return SalesforceError(
        "INVALID_TYPE_ON_FIELD_IN_RECORD",
        f"{label(field)}: value not of required type: {value}",
        fields=[field.name],
    )


def coerce(sobject: SObject, field: Field, value: Any) -> Any:
    """The stored form of ``value`` for ``field``, or the error Salesforce would return."""
    if value is None or value == "":
        return None
    kind = field.type
    if kind in _NUMERIC:
        if isinstance(value, bool):
            raise _wrong_type(field, value)
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise _wrong_type(field, value) from None
        if kind == "int":
            if not number.is_integer():
                raise _wrong_type(field, value)
            return int(number)
        return number
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "false", "1", "0"):
            return str(value).lower() in ("true", "1")
        raise _wrong_type(field, value)
    if kind == "date":
        try:
            return date.fromisoformat(str(value)[:10]).isoformat()
        except ValueError:
            raise _wrong_type(field, value) from None
    if kind == "datetime":
        try:
            return format_datetime(parse_datetime(str(value)))
        except ValueError:
            raise _wrong_type(field, value) from None
    if kind in ("reference", "id"):
        try:
            return ids.normalize(value)
        except ids.MalformedId:
            raise SalesforceError(
                "MALFORMED_ID",
                f"{label(field)}: id value of incorrect type: {value}",
                fields=[field.name],
            ) from None
    if isinstance(value, dict | list):
        raise SalesforceError(
            "JSON_PARSER_ERROR",
            f"Cannot deserialize instance of string from {type(value).__name__.upper()} "
            f"value for field {field.name}",
        )
    text = str(value) if not isinstance(value, bool) else str(value).lower()
    if field.length and len(text) > field.length:
        raise SalesforceError(
            "STRING_TOO_LONG",
            f"{label(field)}: data value too large: {text[:100]} (max length={field.length})",
            fields=[field.name],
        )
    if kind == "email" and not _EMAIL.match(text):
        raise SalesforceError(
            "INVALID_EMAIL_ADDRESS",
            f"{label(field)}: invalid email address: {text}",
            fields=[field.name],
        )
    if kind == "picklist" and field.restricted and text not in field.picklist:
        raise SalesforceError(
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            f"{label(field)}: bad value for restricted picklist field: {text}",
            fields=[field.name],
        )
    if kind == "multipicklist" and field.restricted:
        for choice in text.split(";"):
            if choice and choice not in field.picklist:
                raise SalesforceError(
                    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    f"{label(field)}: bad value for restricted picklist field: {choice}",
                    fields=[field.name],
                )
    return text


def validate_input(sobject: SObject, data: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    """Check and coerce a record body from a client into ``{FieldName: stored value}``."""
    result: dict[str, Any] = {}
    for key, value in data.items():
        if key == "attributes":
            continue
        field = sobject.field(key)
        if field is None:
            raise SalesforceError(
                "INVALID_FIELD", f"No such column '{key}' on sobject of type {sobject.name}"
            )
        if field.name == "Id" and not creating:
            continue
        if not (field.createable if creating else field.updateable):
            action = "create" if creating else "update"
            raise SalesforceError(
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                f"Unable to {action} fields: {field.name}. Please check the security settings of "
                "this field and verify that it is read/write for your profile or permission set.",
                fields=[field.name],
            )
        result[field.name] = coerce(sobject, field, value)
    return result


def missing_required(sobject: SObject, values: dict[str, Any]) -> SalesforceError | None:
    """REQUIRED_FIELD_MISSING for a create lacking required fields, else ``None``."""
    missing = [
        f.name for f in sobject.fields.values() if f.required and values.get(f.name) in (None, "")
    ]
    if not missing:
        return None
    return SalesforceError(
        "REQUIRED_FIELD_MISSING",
        f"Required fields are missing: [{', '.join(missing)}]",
        fields=missing,
    )
