"""Salesforce error shapes: the exception the simulator raises and the JSON bodies it sends.

REST errors are JSON arrays of ``{"message", "errorCode", "fields"}``; per-record
results of sObject Collections use ``statusCode`` instead of ``errorCode``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class SalesforceError(Exception):
    """An error as Salesforce reports it: HTTP status, error code, message, fields."""

    error_code: str
    message: str
    status: int = 400
    fields: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.error_code}: {self.message}"

    def body(self, with_fields: bool = True) -> list[dict[str, Any]]:
        """The REST error array."""
        entry: dict[str, Any] = {"message": self.message, "errorCode": self.error_code}
        if with_fields and self.fields:
            entry["fields"] = self.fields
        return [entry]

    def record_error(self) -> dict[str, Any]:
        """The per-record error object of sObject Collections and Composite results."""
        return {"statusCode": self.error_code, "message": self.message, "fields": self.fields}


def invalid_session() -> SalesforceError:
    """The 401 every REST call gets with an expired, revoked or unknown token."""
    return SalesforceError("INVALID_SESSION_ID", "Session expired or invalid", 401)


def not_found() -> SalesforceError:
    """The 404 for a well-formed id that names no record."""
    return SalesforceError("NOT_FOUND", "The requested resource does not exist", 404)


def request_limit_exceeded(limit: int) -> SalesforceError:
    """The 403 once the daily API request budget is spent."""
    return SalesforceError(
        "REQUEST_LIMIT_EXCEEDED", f"TotalRequests Limit exceeded. Limit: {limit}", 403
    )
