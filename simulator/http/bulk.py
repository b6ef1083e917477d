"""Bulk API 2.0 ingest and query jobs.

Bulk API 2.0: ingest jobs (CSV upload, processing in 200-record transactions, result
CSVs) and query jobs (CSV results paged with ``Sforce-Locator``).

Jobs are processed by a background task on the server's loop after ``UploadComplete``;
clients poll the job state as with a real org.
"""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from simulator import query, values
from simulator.errors import SalesforceError, not_found
from simulator.http.common import Caller, caller, json_body, reply, sim
from simulator.schema import sobject
from simulator.state import Simulator

_PREFIX = "/services/data/v{version:\\d+\\.\\d}/jobs"
_DELIMITERS = {
    "COMMA": ",",
    "TAB": "\t",
    "PIPE": "|",
    "SEMICOLON": ";",
    "CARET": "^",
    "BACKQUOTE": "`",
}
_OPERATIONS = {"insert", "update", "upsert", "delete", "hardDelete"}
_numbers = itertools.count(1)


@dataclass
class Job:
    """One Bulk API 2.0 job and its results."""

    id: str
    kind: str
    info: dict[str, Any]
    who: Caller
    data: list[str] = field(default_factory=list)
    success: list[list[str]] = field(default_factory=list)
    failed: list[list[str]] = field(default_factory=list)
    unprocessed: list[list[str]] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    cursor: query.Cursor | None = None
    task: asyncio.Task[None] | None = None


def _job(request: web.Request, kind: str) -> Job:
    job = sim(request).jobs.get(request.match_info["job"])
    if not isinstance(job, Job) or job.kind != kind:
        raise SalesforceError("NOT_FOUND", "The requested resource does not exist", 404)
    return job


async def create_job(request: web.Request) -> web.Response:
    """Create an ingest or query job."""
    state, who = sim(request), caller(request)
    kind = request.match_info["kind"]
    body = await json_body(request)
    if not isinstance(body, dict):
        raise SalesforceError("JSON_PARSER_ERROR", "Expected a JSON object")
    operation = str(body.get("operation", ""))
    now = values.format_datetime(datetime.now(UTC))
    job_id = f"7508d{next(_numbers):010d}AAA"
    info: dict[str, Any] = {
        "id": job_id, "operation": operation, "createdById": who.user_id, "createdDate": now,
        "systemModstamp": now, "concurrencyMode": "Parallel", "contentType": "CSV",
        "apiVersion": float(who.version), "lineEnding": body.get("lineEnding", "LF"),
        "columnDelimiter": body.get("columnDelimiter", "COMMA"),
    }  # fmt: skip
    if kind == "ingest":
        obj = sobject(str(body.get("object", "")))
        if obj is None:
            raise SalesforceError(
                "INVALIDENTITY", f"Entity '{body.get('object')}' is not supported by the Bulk API."
            )
        if operation not in _OPERATIONS:
            raise SalesforceError("INVALIDJOB", f"Invalid operation: {operation}")
        info.update(object=obj.name, state="Open", externalIdFieldName=body.get("externalIdFieldName"),
                    contentUrl=f"services/data/v{who.version}/jobs/ingest/{job_id}/batches")  # fmt: skip
        job = Job(job_id, kind, info, who)
    else:
        if operation not in ("query", "queryAll"):
            raise SalesforceError("INVALIDJOB", f"Invalid operation: {operation}")
        cursor = query.run(state.org, str(body.get("query", "")), operation == "queryAll")
        info.update(object=cursor.sobject.name, state="UploadComplete", query=body.get("query"))
        job = Job(job_id, kind, info, who, cursor=cursor)
        job.task = asyncio.create_task(_finish_query(job))
    state.jobs[job_id] = job
    return reply(info)


async def _finish_query(job: Job) -> None:
    await asyncio.sleep(0.05)
    job.info["state"] = "JobComplete"
    job.info["numberRecordsProcessed"] = job.cursor.size if job.cursor else 0


async def upload(request: web.Request) -> web.Response:
    """Receive the CSV data of an ingest job."""
    job = _job(request, "ingest")
    if job.info["state"] != "Open":
        raise SalesforceError("INVALIDJOBSTATE", "Job is not in Open state")
    job.data.append(await request.text())
    return web.Response(status=201)


async def job_info(request: web.Request) -> web.Response:
    """Job state and counters, or a state change (UploadComplete, Aborted), or deletion."""
    state = sim(request)
    kind = request.match_info["kind"]
    job = _job(request, kind)
    if request.method == "DELETE":
        state.jobs.pop(job.id, None)
        return web.Response(status=204)
    if request.method == "PATCH":
        wanted = (await json_body(request) or {}).get("state")
        if wanted == "UploadComplete" and job.info["state"] == "Open":
            job.info["state"] = "UploadComplete"
            job.task = asyncio.create_task(_process(state, job))
        elif wanted == "Aborted" and job.info["state"] in ("Open", "UploadComplete", "InProgress"):
            job.info["state"] = "Aborted"
        else:
            raise SalesforceError("INVALIDJOBSTATE", f"Invalid state transition to {wanted}")
    info = dict(job.info)
    if kind == "ingest":
        info.update(numberRecordsProcessed=len(job.success) + len(job.failed),
                    numberRecordsFailed=len(job.failed), retries=0, totalProcessingTime=0,
                    apiActiveProcessingTime=0, apexProcessingTime=0)  # fmt: skip
    return reply(info)


async def list_jobs(request: web.Request) -> web.Response:
    """Every job of one kind."""
    kind = request.match_info["kind"]
    jobs = [j.info for j in sim(request).jobs.values() if isinstance(j, Job) and j.kind == kind]
    return reply({"done": True, "records": jobs, "nextRecordsUrl": None})


def _rows(job: Job) -> list[list[str]]:
    delimiter = _DELIMITERS.get(str(job.info["columnDelimiter"]), ",")
    rows: list[list[str]] = []
    for chunk in job.data:
        parsed = list(csv.reader(io.StringIO(chunk), delimiter=delimiter))
        if parsed:
            job.header = job.header or parsed[0]
            rows.extend(r for r in parsed[1:] if r)
    return rows


async def _process(state: Simulator, job: Job) -> None:
    await asyncio.sleep(0.05)
    job.info["state"] = "InProgress"
    rows = _rows(job)
    name, operation = str(job.info["object"]), str(job.info["operation"])
    obj = sobject(name)
    unknown = [column for column in job.header if obj is None or obj.field(column) is None]
    if unknown:
        job.info.update(
            state="Failed", errorMessage=f"InvalidBatch : Field name not found : {unknown[0]}"
        )
        job.unprocessed.extend(rows)
        return
    size = state.config.bulk_batch_size
    for start in range(0, len(rows), size):
        if job.info["state"] == "Aborted":
            job.unprocessed.extend(rows[start:])
            return
        with state.org.transaction(job.who.user_id, job.who.origin) as tx:
            for row in rows[start : start + size]:
                fields = dict(zip(job.header, row, strict=False))
                try:
                    record_id, created = _apply_row(tx, name, operation, fields)
                    job.success.append([record_id, str(created).lower(), *row])
                except SalesforceError as error:
                    message = f"{error.error_code}:{error.message}:{';'.join(error.fields)} --"
                    job.failed.append([fields.get("Id", ""), message, *row])
        await asyncio.sleep(0)
    job.info["state"] = "JobComplete"


def _apply_row(tx: Any, name: str, operation: str, fields: dict[str, str]) -> tuple[str, bool]:
    fields = {("Id" if k.lower() == "id" else k): v for k, v in fields.items()}  # case-insensitive
    body: dict[str, Any] = {k: (None if v == "#N/A" else v) for k, v in fields.items() if v != ""}
    if operation in ("delete", "hardDelete"):
        tx.delete(name, fields.get("Id", ""))
        return fields.get("Id", ""), False
    if operation == "insert" or (operation == "upsert" and not body.get("Id")):
        body.pop("Id", None)
        return tx.create(name, body), True
    record_id = str(body.pop("Id", ""))
    if not record_id:
        raise SalesforceError(
            "MISSING_ARGUMENT", "Id not specified in an update call", fields=["Id"]
        )
    tx.update(name, record_id, body)
    return values.coerce(sobject(name), sobject(name).fields["Id"], record_id), False  # type: ignore[union-attr,arg-type]


def _csv(header: list[str], rows: list[list[str]]) -> web.Response:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerow(header)
    writer.writerows(rows)
    return web.Response(text=buffer.getvalue(), content_type="text/csv", charset="UTF-8")


async def results(request: web.Request) -> web.Response:
    """``successfulResults``, ``failedResults`` or ``unprocessedrecords`` of an ingest job."""
    job = _job(request, "ingest")
    which = request.match_info["which"]
    if which == "successfulResults":
        return _csv(["sf__Id", "sf__Created", *job.header], job.success)
    if which == "failedResults":
        return _csv(["sf__Id", "sf__Error", *job.header], job.failed)
    if which.lower() == "unprocessedrecords":
        return _csv(job.header, job.unprocessed)
    raise not_found()


async def query_results(request: web.Request) -> web.Response:
    """A page of a query job's CSV results; ``Sforce-Locator`` names the next page."""
    state = sim(request)
    job = _job(request, "query")
    if job.info["state"] != "JobComplete" or job.cursor is None:
        raise SalesforceError("INVALIDJOBSTATE", "Job is not complete", 400)
    cursor = job.cursor
    locator = request.query.get("locator")
    cursor.position = int(locator) if locator and locator.isdigit() else 0
    size = int(request.query.get("maxRecords", "50000"))
    records, done = query.page(state.org, cursor, size, job.who.version)
    header = [".".join(p) for p in cursor.query.fields]
    rows = [[_cell(_dig(r, p)) for p in cursor.query.fields] for r in records]
    response = _csv(header, rows)
    response.headers["Sforce-Locator"] = "null" if done else str(cursor.position)
    response.headers["Sforce-NumberOfRecords"] = str(len(rows))
    return response


def _dig(record: dict[str, Any] | None, path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(record, dict):
            return None
        record = next((v for k, v in record.items() if k.lower() == part.lower()), None)
    return record


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def routes() -> list[web.RouteDef]:
    """The Bulk API 2.0 routes."""
    kind = "{kind:ingest|query}"
    return [
        web.post(f"{_PREFIX}/{kind}", create_job),
        web.post(f"{_PREFIX}/{kind}/", create_job),
        web.get(f"{_PREFIX}/{kind}", list_jobs),
        web.route("*", f"{_PREFIX}/{kind}/{{job}}", job_info),
        web.put(_PREFIX + "/ingest/{job}/batches", upload),
        web.put(_PREFIX + "/ingest/{job}/batches/", upload),
        web.get(_PREFIX + "/ingest/{job}/{which}", results),
        web.get(_PREFIX + "/query/{job}/results", query_results),
    ]
