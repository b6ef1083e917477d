"""The daily API request budget and the faults that make the next calls fail or slow down.

Every authenticated REST, Composite and Bulk call counts one request; the counter
resets at midnight UTC. ``Sforce-Limit-Info: api-usage=N/M`` reports it on every
response and a spent budget answers ``403 REQUEST_LIMIT_EXCEEDED``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from simulator.errors import SalesforceError, request_limit_exceeded


class DailyBudget:
    """Counts API requests per UTC day against a limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._day = datetime.now(UTC).date()

    def _roll(self) -> None:
        today = datetime.now(UTC).date()
        if today != self._day:
            self._day, self.used = today, 0

    def spend(self) -> None:
        """Count one request, or raise ``REQUEST_LIMIT_EXCEEDED`` when the budget is spent."""
        self._roll()
        if self.used >= self.limit:
            raise request_limit_exceeded(self.limit)
        self.used += 1

    def header(self) -> str:
        """The ``Sforce-Limit-Info`` value."""
        self._roll()
        return f"api-usage={self.used}/{self.limit}"


@dataclass
class Faults:
    """Faults armed through the admin endpoint or ``sfe sim fault``."""

    fail_next: int = 0
    fail_status: int = 503
    #: When set, ``fail_next`` fails only calls of this ``Sforce-Call-Options`` client.
    fail_client: str | None = None
    latency_seconds: float = 0.0
    locked_rows: int = 0

    def row_lock(self, record: str) -> SalesforceError | None:
        """``UNABLE_TO_LOCK_ROW`` for the next record write, while row locks are armed."""
        if self.locked_rows <= 0:
            return None
        self.locked_rows -= 1
        return SalesforceError(
            "UNABLE_TO_LOCK_ROW",
            f"unable to obtain exclusive access to this record or 1 records: {record}",
        )

    def next_failure(self, limit: int, client: str | None = None) -> SalesforceError | None:
        """The error the next call (of ``client``) must get, if a failure is armed."""
        if self.fail_next <= 0:
            return None
        if self.fail_client is not None and client != self.fail_client:
            return None
        self.fail_next -= 1
        if self.fail_status == 403:
            return request_limit_exceeded(limit)
        return SalesforceError(
            "SERVER_UNAVAILABLE" if self.fail_status == 503 else "UNKNOWN_EXCEPTION",
            "An unexpected error occurred. Please include this ErrorId if you contact support: "
            "1234567890-12345 (-1234567890)",
            self.fail_status,
        )
