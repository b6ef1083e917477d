"""Large updates through a Bulk API 2.0 ingest job: a handful of calls for any volume.

One job per call of :meth:`BulkUpdater.update`: create the job (``update``, CSV),
upload the records, mark the upload complete, poll the job until Salesforce has
processed it, then read ``successfulResults`` and ``failedResults`` and give one
:class:`~projections.salesforce.writer.RecordResult` per record, in input order. That is
six calls or so whether the job holds 2,000 records or 100,000, where sObject
Collections need one call per 200.

Every request goes through :meth:`CollectionsWriter.call`, so the API budget, the
retries and the metrics are the same as for Collections. A job's data is uploaded
only once: if creating the job or uploading fails transiently, the job is aborted and
a new one is made. Records the job left unprocessed (it failed or was aborted) and
records that failed only because their row was locked are returned as ``None`` for
the caller to write through Collections, which answer record by record.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from simple_salesforce.exceptions import SalesforceError as ClientError

from projections.salesforce.writer import (
    CollectionsWriter,
    RecordResult,
    TransientCallError,
    is_transient,
)
from schema_registry.events import SalesforceError

log = logging.getLogger(__name__)

ENDPOINT = "jobs/ingest"
_FINISHED = {"JobComplete", "Failed", "Aborted"}
#: Bulk API 2.0 sets a field to null with this cell value (an empty cell leaves it as is).
NULL_CELL = "#N/A"


def csv_cell(value: Any) -> str:
    """A field value as Bulk API 2.0 reads it from CSV."""
    if value is None:
        return NULL_CELL
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format(Decimal(repr(value)), "f")  # never an exponent
    return str(value)


def records_csv(records: Sequence[Mapping[str, Any]]) -> str:
    """``records`` as CSV text with a header row of every field any record sets.

    A record without one of the fields gets an empty cell, which Bulk API 2.0 reads
    as "leave as it is" (a null is ``#N/A``).
    """
    header = list(dict.fromkeys(name for record in records for name in record))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for record in records:
        writer.writerow([csv_cell(record[name]) if name in record else "" for name in header])
    return buffer.getvalue()


def parse_error(text: str) -> SalesforceError:
    """``sf__Error`` of a failed row (``CODE:message:fields --``) as a Salesforce error."""
    code, _, rest = text.partition(":")
    message, _, fields = rest.rpartition(":")
    if not message:  # no field list
        message, fields = rest, ""
    names = tuple(f for f in fields.replace("--", "").strip().split(";") if f)
    return SalesforceError(status_code=code.strip() or "UNKNOWN", message=message, fields=names)


class BulkUpdater:
    """Updates records of one object through one Bulk API 2.0 ingest job."""

    def __init__(
        self, writer: CollectionsWriter, poll_s: float = 1.0, max_poll_s: float = 10.0
    ) -> None:
        """Send through ``writer``; poll every ``poll_s``, backing off to ``max_poll_s``."""
        self.writer = writer
        self.sf = writer.sf
        self.poll_s = poll_s
        self.max_poll_s = max_poll_s

    def update(
        self, records: Sequence[Mapping[str, Any]], sobject: str
    ) -> list[RecordResult | None]:
        """Results of ``records`` (each with ``Id``), ``None`` where Collections must retry."""
        if not records:
            return []
        body = records_csv(records)
        job, attempt = None, 0
        while job is None:
            try:
                job = self._open_and_upload(sobject, body)
            except TransientCallError as exc:
                attempt += 1
                log.warning("bulk job for %s not started (%s); trying again", sobject, exc)
                self.writer.back_off(attempt)
        state = self._wait(job)
        by_id = self._results(job, "successfulResults")
        by_id.update(self._results(job, "failedResults"))
        results: list[RecordResult | None] = []
        for record in records:
            result = by_id.get(_id15(str(record["Id"])))
            results.append(None if result is None or is_transient(result) else result)
        left = sum(result is None for result in results)
        log.info(
            "bulk job %s for %d %s records: %s, %d left for Collections",
            job,
            len(records),
            sobject,
            state,
            left,
        )
        return results

    def _url(self, path: str = "") -> str:
        return f"{self.sf.base_url}{ENDPOINT}/{path}"

    def _request(self, method: str, path: str = "", retry: bool = True, **kwargs: Any) -> Any:
        def send() -> Any:
            response = self.sf._call_salesforce(
                method, self._url(path), name=ENDPOINT, timeout=self.writer.timeout_s, **kwargs
            )
            return response

        return self.writer.call(ENDPOINT, send, retry=retry)

    def _open_and_upload(self, sobject: str, body: str) -> str:
        spec = {
            "object": sobject,
            "operation": "update",
            "contentType": "CSV",
            "columnDelimiter": "COMMA",
            "lineEnding": "LF",
        }
        job = str(self._request("POST", json=spec, retry=False).json()["id"])
        try:
            self._request(
                "PUT",
                f"{job}/batches",
                retry=False,
                data=body.encode("utf-8"),
                headers={"Content-Type": "text/csv"},
            )
        except (TransientCallError, ClientError):
            self._abort(job)
            raise
        self._request("PATCH", job, json={"state": "UploadComplete"})
        return job

    def _abort(self, job: str) -> None:
        try:
            self._request("PATCH", job, json={"state": "Aborted"})
        except (ClientError, TransientCallError) as exc:  # an open job expires by itself
            log.warning("could not abort bulk job %s: %s", job, exc)

    def _wait(self, job: str) -> str:
        delay = self.poll_s
        while True:
            self.writer.budget.wait(delay)
            info = self._request("GET", job).json()
            state = str(info.get("state"))
            if state in _FINISHED:
                if state != "JobComplete":
                    log.warning("bulk job %s %s: %s", job, state, info.get("errorMessage"))
                return state
            delay = min(self.max_poll_s, delay * 1.5)

    def _results(self, job: str, which: str) -> dict[str, RecordResult]:
        text = self._request("GET", f"{job}/{which}/").text
        rows = csv.DictReader(io.StringIO(text))
        found: dict[str, RecordResult] = {}
        for row in rows:
            record_id = row.get("Id") or row.get("sf__Id") or ""
            if which == "successfulResults":
                result = RecordResult(True, row.get("sf__Id") or record_id, ())
            else:
                result = RecordResult(False, None, (parse_error(row.get("sf__Error", "")),))
            found[_id15(record_id)] = result
        return found


def _id15(record_id: str) -> str:
    """The case-sensitive 15-character form, so 15- and 18-character ids match."""
    return record_id[:15]
