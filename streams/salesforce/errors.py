"""Errors of the Salesforce client package."""

from __future__ import annotations


class SalesforceClientError(Exception):
    """Base of every error raised by :mod:`streams.salesforce`."""


class LoginFailed(SalesforceClientError):
    """The authorization server refused the grant; carries its ``error`` code."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
