"""Upcasters: bring a record written with an older schema version to the current one.

A record is always decoded with the schema it was written with, then raised one
version at a time. A step with a registered upcaster (``upcast_<subject>_v1_v2``)
runs it; a step without one applies Avro schema resolution (fields the new version
added take their defaults, fields it removed are dropped), which the backward
compatibility test guarantees is possible. Upcasters are pure functions of a plain
record, so they can be tested on their own and never touch bytes.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Mapping
from typing import Any

from fastavro import schemaless_reader, schemaless_writer
from fastavro.validation import ValidationError, validate

from schema_registry import catalog

Record = dict[str, Any]
Upcaster = Callable[[Record], Record]

_STATUS_CODE = re.compile(r"^([A-Z][A-Z0-9_]*):\s*(.*)$", re.DOTALL)


def upcast_command_results_v1_v2(record: Record) -> Record:
    """``command.results`` v1 → v2: ``succeeded``/``error`` become ``outcome``/``errors``.

    v1 wrote a failure as one text, ``"STATUS_CODE: message"`` when Salesforce gave a
    status code; v2 keeps Salesforce's errors as a list of records. A v1 failure
    without a recognisable status code keeps its text under ``UNKNOWN_ERROR``.
    """
    upcast = {key: value for key, value in record.items() if key not in ("succeeded", "error")}
    errors: list[Record] = []
    if record["succeeded"]:
        upcast["outcome"] = "APPLIED"
    else:
        upcast["outcome"] = "REJECTED"
        text = record["error"] or ""
        match = _STATUS_CODE.match(text)
        code, message = (match[1], match[2]) if match else ("UNKNOWN_ERROR", text)
        errors.append({"status_code": code, "message": message, "fields": []})
    upcast["errors"] = errors
    upcast["schema_version"] = 2
    return upcast


#: Explicit upcasters: subject → the version they read → the function.
UPCASTERS: Mapping[str, Mapping[int, Upcaster]] = {
    "command.results-value": {1: upcast_command_results_v1_v2},
}


def resolve(record: Record, subject: str, version: int) -> Record:
    """Read ``record`` of ``version`` as ``version + 1`` by Avro schema resolution."""
    writer = catalog.schema(subject, version).parsed
    reader = catalog.schema(subject, version + 1).parsed
    buffer = io.BytesIO()
    schemaless_writer(buffer, writer, record)
    buffer.seek(0)
    resolved = schemaless_reader(buffer, writer, reader)
    if not isinstance(resolved, dict):
        raise ValueError(f"{subject} v{version + 1} is not a record schema")
    resolved["schema_version"] = version + 1
    return resolved


def upcast(subject: str, record: Record) -> Record:
    """Raise ``record`` (carrying its ``schema_version``) to the subject's latest version."""
    latest = catalog.schema(subject).version
    version = record["schema_version"]
    if not isinstance(version, int) or not 1 <= version <= latest:
        raise ValueError(f"{subject} has no schema version {version!r} (latest is {latest})")
    steps = UPCASTERS.get(subject, {})
    while version < latest:
        step = steps.get(version)
        if step is None:
            record = resolve(record, subject, version)
        else:
            record = step(record)
            _check_upcast(record, subject, version + 1)
        version += 1
    return record


def _check_upcast(record: Record, subject: str, version: int) -> None:
    """An upcaster's output must be a valid record of the version it claims to produce."""
    if record.get("schema_version") != version:
        raise ValueError(f"the upcaster to {subject} v{version} wrote another schema_version")
    try:
        validate(record, catalog.schema(subject, version).parsed, strict=True)
    except ValidationError as exc:
        raise ValueError(
            f"the upcaster to {subject} v{version} wrote an invalid record: {exc}"
        ) from None
