"""Budget-aware, retrying sObject Collections writes (updates, creates and upserts).

:class:`ApiBudget` reads ``Sforce-Limit-Info: api-usage=N/M`` from every response of
the client's HTTP session (a ``requests`` response hook, so simple-salesforce's own
calls count too). Before each call it slows down linearly as the remaining budget
nears the configured reserve and stops at the reserve: it then waits, asking
``limits`` once per probe interval, until the budget returns; nothing is dropped,
the batch in hand is simply held. :class:`CollectionsWriter` retries
``REQUEST_LIMIT_EXCEEDED``, HTTP 429 and 5xx, timeouts and dropped connections with
exponential backoff and full jitter, for as long as the sink runs; records that fail
alone with a transient error (``UNABLE_TO_LOCK_ROW``: another transaction holds the
row) are written again in a smaller call, a few times, before their error counts. A
field update is idempotent; a create is made idempotent by :meth:`CollectionsWriter.upsert` on an
External ID holding the command id (a retried create finds the record its lost answer
was about). ``INVALID_SESSION_ID`` is handled below it by the client of
:func:`streams.salesforce.rest.connect`, which logs in again.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceError as ClientError

from schema_registry.events import SalesforceError
from sfe import metrics

log = logging.getLogger(__name__)

T = TypeVar("T")
_USAGE = re.compile(r"api-usage=(\d+)/(\d+)")
MAX_RECORDS = 200


class SinkInterrupted(Exception):
    """The sink was asked to stop while waiting for budget or a retry (control flow)."""


class TransientCallError(Exception):
    """A request failed in a way that passes, and the caller asked to recover it itself."""


@dataclass(frozen=True)
class BudgetSettings:
    """How the sink spends the org's daily API budget."""

    reserve: int = 5000
    slowdown_window: int = 5000
    max_delay_s: float = 2.0
    probe_interval_s: float = 60.0


class ApiBudget:
    """The org's API usage as last reported, and the pace it allows."""

    def __init__(self, settings: BudgetSettings, stop: threading.Event) -> None:
        self.settings = settings
        self.stop = stop
        self.used: int | None = None
        self.limit: int | None = None

    def observe(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        """Response hook: remember ``Sforce-Limit-Info``."""
        match = _USAGE.search(response.headers.get("Sforce-Limit-Info", ""))
        if match:
            self.used, self.limit = int(match.group(1)), int(match.group(2))
            metrics.SF_API_USED.set(self.used)
            metrics.SF_API_LIMIT.set(self.limit)

    def exhausted(self) -> None:
        """Salesforce said ``REQUEST_LIMIT_EXCEEDED``: treat the budget as spent."""
        if self.limit is not None:
            self.used = self.limit

    @property
    def headroom(self) -> int | None:
        """Calls left above the reserve (None before the first response)."""
        if self.used is None or self.limit is None:
            return None
        return self.limit - self.used - self.settings.reserve

    def hold(self, sf: Salesforce) -> None:
        """Wait while usage is at the reserve, probing ``limits`` once per interval."""
        if (headroom := self.headroom) is not None and headroom <= 0:
            log.warning("API budget at the reserve; holding writes", extra={"used": self.used})
        while (headroom := self.headroom) is not None and headroom <= 0:
            self.wait(self.settings.probe_interval_s)
            try:
                sf.restful("limits")
            except (ClientError, requests.RequestException) as exc:
                log.info("budget probe failed: %s", exc)

    def pace(self, sf: Salesforce) -> None:
        """Wait as the budget asks before one call; raise :class:`SinkInterrupted` on stop."""
        self.hold(sf)
        headroom = self.headroom
        window = self.settings.slowdown_window
        if headroom is not None and window > 0 and headroom < window:
            self.wait(self.settings.max_delay_s * (1 - headroom / window))

    def wait(self, seconds: float) -> None:
        """Sleep ``seconds`` unless the sink is stopping (then :class:`SinkInterrupted`)."""
        if self.stop.wait(seconds):
            raise SinkInterrupted


@dataclass(frozen=True)
class RecordResult:
    """Salesforce's answer for one record of a Collections call."""

    success: bool
    record_id: str | None
    errors: tuple[SalesforceError, ...]


#: Record errors that pass: the record is written again, with backoff, before giving up.
TRANSIENT_RECORD_ERRORS = frozenset({"UNABLE_TO_LOCK_ROW"})


def _record_result(item: Mapping[str, Any]) -> RecordResult:
    return RecordResult(
        bool(item.get("success")),
        item.get("id"),
        tuple(
            SalesforceError(
                status_code=str(error.get("statusCode", "UNKNOWN")),
                message=str(error.get("message", "")),
                fields=tuple(error.get("fields") or ()),
            )
            for error in item.get("errors") or ()
        ),
    )


def is_transient(result: RecordResult) -> bool:
    """Whether a record failed only with errors that pass (a locked row)."""
    return (
        not result.success
        and bool(result.errors)
        and all(error.status_code in TRANSIENT_RECORD_ERRORS for error in result.errors)
    )


def _error_code(exc: ClientError) -> str:
    content = exc.content
    if isinstance(content, list) and content and isinstance(content[0], dict):
        return str(content[0].get("errorCode", exc.status))
    return str(exc.status)


class CollectionsWriter:
    """Writes groups of records through sObject Collections, within the API budget."""

    def __init__(
        self,
        sf: Salesforce,
        budget: ApiBudget,
        timeout_s: float = 60.0,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 60.0,
        record_retries: int = 5,
    ) -> None:
        """Write through ``sf`` within ``budget``; records locked by others are retried."""
        self.sf = sf
        self.record_retries = record_retries
        self.budget = budget
        self.timeout_s = timeout_s
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        sf.session.hooks["response"].append(budget.observe)

    def update(self, records: Sequence[Mapping[str, Any]], sobject: str) -> list[RecordResult]:
        """PATCH ``records`` (each with ``Id``) in calls of up to 200."""
        return self._write("PATCH", sobject, records)

    def create(self, records: Sequence[Mapping[str, Any]], sobject: str) -> list[RecordResult]:
        """POST new ``records`` in calls of up to 200."""
        return self._write("POST", sobject, records)

    def upsert(
        self, records: Sequence[Mapping[str, Any]], sobject: str, key_field: str
    ) -> list[RecordResult]:
        """Create or update ``records`` matched on the External ID ``key_field``."""
        return self._write("PATCH", sobject, records, f"/{sobject}/{key_field}")

    def _write(
        self, method: str, sobject: str, records: Sequence[Mapping[str, Any]], path: str = ""
    ) -> list[RecordResult]:
        results: list[RecordResult] = []
        for start in range(0, len(records), MAX_RECORDS):
            chunk = [
                {"attributes": {"type": sobject}, **record}
                for record in records[start : start + MAX_RECORDS]
            ]
            results.extend(self._write_chunk(method, chunk, path))
        return results

    def _write_chunk(
        self, method: str, chunk: Sequence[Mapping[str, Any]], path: str
    ) -> list[RecordResult]:
        """One call for ``chunk``, then calls for the records that failed transiently."""
        answers: list[RecordResult | None] = [None] * len(chunk)
        pending = list(range(len(chunk)))
        attempt = 0
        while pending:
            body = {"allOrNone": False, "records": [chunk[i] for i in pending]}
            again: list[int] = []
            for index, item in zip(pending, self._call(method, body, path), strict=True):
                result = _record_result(item)
                if is_transient(result) and attempt < self.record_retries:
                    again.append(index)
                else:
                    answers[index] = result
            pending = again
            if pending:
                delay = random.uniform(0, min(self.backoff_max_s, self.backoff_base_s * 2**attempt))
                attempt += 1
                log.warning(
                    "retrying %d records after UNABLE_TO_LOCK_ROW in %.2fs (attempt %d)",
                    len(pending),
                    delay,
                    attempt,
                )
                self.budget.wait(delay)
        return [answer for answer in answers if answer is not None]

    def _call(self, method: str, body: Mapping[str, Any], path: str = "") -> list[dict[str, Any]]:
        def send() -> list[dict[str, Any]]:
            answer = self.sf.restful(
                "composite/sobjects" + path, method=method, json=body, timeout=self.timeout_s
            )
            return list(answer or [])

        return self.call("composite/sobjects", send)

    def call(self, endpoint: str, send: Callable[[], T], retry: bool = True) -> T:
        """``send()`` one API request within the budget, counted under ``endpoint``.

        ``REQUEST_LIMIT_EXCEEDED``, HTTP 429 and 5xx, timeouts and dropped connections
        are retried with exponential backoff and full jitter until the sink stops, or,
        with ``retry=False``, raised as :class:`TransientCallError` for the caller to
        recover (a request that must not be sent twice). Other errors are raised.
        """
        attempt = 0
        while True:
            self.budget.pace(self.sf)
            metrics.SF_API_CALLS.labels(endpoint=endpoint).inc()
            started = time.monotonic()
            try:
                return send()
            except ClientError as exc:
                code = _error_code(exc)
                metrics.SF_API_ERRORS.labels(error_code=code).inc()
                if code == "REQUEST_LIMIT_EXCEEDED":
                    self.budget.exhausted()
                elif exc.status < 500 and exc.status != 429:
                    raise
                reason = code
            except (requests.Timeout, requests.ConnectionError) as exc:
                metrics.SF_API_ERRORS.labels(error_code=type(exc).__name__).inc()
                reason = type(exc).__name__
            finally:
                elapsed = time.monotonic() - started
                metrics.SF_API_LATENCY.labels(endpoint=endpoint).observe(elapsed)
            if not retry:
                raise TransientCallError(f"{endpoint}: {reason}")
            attempt += 1
            log.warning("retrying %s after %s (attempt %d)", endpoint, reason, attempt)
            self.back_off(attempt)

    def back_off(self, attempt: int) -> None:
        """Wait the full-jitter exponential delay of ``attempt`` (1, 2, ...)."""
        delay = random.uniform(0, min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1)))
        self.budget.wait(delay)
